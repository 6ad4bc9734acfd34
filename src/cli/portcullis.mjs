#!/usr/bin/env node
// The `portcullis` bin. It runs the CLI as `npm run build` compiled it into
// dist/ when that build is newer than every source file (tsc -b's own rule:
// dist/.tsbuildinfo newer than its newest input), and the TypeScript sources
// through tsx's loader otherwise, so that no build step is ever needed and a
// stale build is never run. tsx compiles the module graph on every run: about
// 1 s more per command, 3 s on a busy machine.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));

/** The latest modification time of a TypeScript source under the directory (tsc's inputs). */
function newestUnder(directory) {
  let newest = 0;
  for (const entry of readdirSync(directory, { withFileTypes: true })) {
    const path = `${directory}/${entry.name}`;
    if (entry.isDirectory()) newest = Math.max(newest, newestUnder(path));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

function buildIsCurrent() {
  const built = statSync(`${root}dist/.tsbuildinfo`, { throwIfNoEntry: false });
  return built !== undefined && existsSync(`${root}dist/cli/index.js`) && newestUnder(`${root}src`) < built.mtimeMs;
}

if (buildIsCurrent()) {
  await import(new URL('../../dist/cli/index.js', import.meta.url).href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('./index.ts');
}
