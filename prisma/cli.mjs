#!/usr/bin/env node
// Runs the Prisma CLI offline. Prisma downloads native engines unless these
// variables name files that exist; on the paths we use (generate, migrate diff)
// the engines are never executed, so any existing file will do.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const placeholder = fileURLToPath(import.meta.url);
const require = createRequire(import.meta.url);
const cli = require.resolve('prisma/build/index.js');
const env = {
  ...process.env,
  PRISMA_SCHEMA_ENGINE_BINARY: process.env.PRISMA_SCHEMA_ENGINE_BINARY ?? placeholder,
  PRISMA_QUERY_ENGINE_LIBRARY: process.env.PRISMA_QUERY_ENGINE_LIBRARY ?? placeholder,
  // The schema's datasource names DATABASE_URL; generate never connects.
  DATABASE_URL: process.env.DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres',
  PRISMA_HIDE_UPDATE_MESSAGE: '1',
  CHECKPOINT_DISABLE: '1',
};
const config = fileURLToPath(new URL('./prisma.config.ts', import.meta.url));
const args = process.argv.slice(2);
if (['-v', '--version', 'version'].includes(args[0])) {
  // Prisma's own --version asks each native engine for its version, so it
  // would run the placeholder above and print a spawn error: say what is here.
  // Each package's package.json, where Node would look for the package (not every one exports that file).
  const version = (name) => {
    const file = require.resolve.paths(name).map((dir) => path.join(dir, name, 'package.json')).find((candidate) => existsSync(candidate));
    return file ? JSON.parse(readFileSync(file, 'utf8')).version : 'unknown';
  };
  console.log(`prisma ${version('prisma')}, @prisma/client ${version('@prisma/client')}, @prisma/adapter-pg ${version('@prisma/adapter-pg')} (no native engines: queries go through the pg driver adapter)`);
  process.exit(0);
}
// The config file lives in prisma/ to keep the project root to its fixed layout.
const withConfig = ['generate', 'migrate', 'db', 'validate', 'format', 'studio'].includes(args[0]) ? [...args, '--config', config] : args;
const result = spawnSync(process.execPath, [cli, ...withConfig], { stdio: 'inherit', env });
process.exit(result.status ?? 1);
