// Summarises a V8 CPU profile (from `npm run bench -- --cpu-prof`): self time by
// package or source file, and the hottest functions.
// `node --import tsx bench/profile-summary.ts bench/results/profiles/CPU.*.cpuprofile [--top N]`
import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

export interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** Where a function lives: an npm package, a Portcullis source file, a Node built-in, or V8 itself. */
export function owner(url: string, functionName: string): string {
  if (!url) return functionName || '(anonymous)';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1]!;
  const src = /\/(src\/[^?]+)/.exec(url);
  if (src) return src[1]!;
  if (url.startsWith('node:')) return url;
  return url.replace(/^file:\/\//, '');
}

/** Only the samples between these offsets (seconds from the start of the profile); several: their union. */
export interface Window {
  from: number;
  to: number;
}

/**
 * `operations`: how many operations the windows completed; the summary then also
 * gives microseconds per operation, comparable across processes (e.g. Portcullis
 * against the baseline in the same scenario).
 */
export function summarise(profile: Profile, top = 25, window?: Window | Window[], operations?: number): string {
  const windows = window === undefined ? undefined : Array.isArray(window) ? window : [window];
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const self = new Map<number, number>();
  let elapsed = 0;
  profile.samples.forEach((id, index) => {
    const delta = profile.timeDeltas[index] ?? 0;
    elapsed += delta;
    if (windows && !windows.some(({ from, to }) => elapsed >= from * 1e6 && elapsed <= to * 1e6)) return;
    self.set(id, (self.get(id) ?? 0) + delta);
  });
  const total = [...self.values()].reduce((sum, value) => sum + value, 0);
  const idle = [...self.entries()]
    .filter(([id]) => byId.get(id)!.callFrame.functionName === '(idle)')
    .reduce((sum, [, value]) => sum + value, 0);
  const busy = total - idle;
  const owners = new Map<string, number>();
  const functions = new Map<string, number>();
  for (const [id, time] of self) {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    if (functionName === '(idle)') continue;
    const who = owner(url, functionName);
    owners.set(who, (owners.get(who) ?? 0) + time);
    const fn = `${functionName || '(anonymous)'} ${url ? `${owner(url, '')}:${lineNumber + 1}` : ''}`.trim();
    functions.set(fn, (functions.get(fn) ?? 0) + time);
  }
  // Each sample charged to the nearest frame on its stack that belongs to a
  // package or a Portcullis file, so that native work (socket writes, hashing)
  // lands on whoever asked for it.
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const charged = new Map<string, number>();
  for (const [id, time] of self) {
    if (byId.get(id)!.callFrame.functionName === '(idle)') continue;
    let current: number | undefined = id;
    let who = owner(byId.get(id)!.callFrame.url, byId.get(id)!.callFrame.functionName);
    while (current !== undefined) {
      const { url } = byId.get(current)!.callFrame;
      if (/node_modules\/|\/src\//.test(url)) {
        who = owner(url, '');
        break;
      }
      current = parent.get(current);
    }
    charged.set(who, (charged.get(who) ?? 0) + time);
  }
  // Inclusive: each sample counts once for every package / Portcullis file on its stack.
  const inclusive = new Map<string, number>();
  for (const [id, time] of self) {
    if (byId.get(id)!.callFrame.functionName === '(idle)') continue;
    const seen = new Set<string>();
    for (let current: number | undefined = id; current !== undefined; current = parent.get(current)) {
      const { url } = byId.get(current)!.callFrame;
      if (/node_modules\/|\/src\//.test(url)) seen.add(owner(url, ''));
    }
    for (const who of seen) inclusive.set(who, (inclusive.get(who) ?? 0) + time);
  }
  const pct = (value: number) =>
    `${((100 * value) / busy).toFixed(1).padStart(5)}%` + (operations ? `  ${(value / operations).toFixed(1).padStart(6)} µs/op` : '');
  const lines = [
    `profile: ${(total / 1e6).toFixed(1)} s sampled, ${(busy / 1e6).toFixed(1)} s busy on the main thread (percentages of busy time)` +
      (operations ? `; ${operations} operations, ${(busy / operations).toFixed(1)} µs of main thread each` : ''),
    '',
    'self time by package / file:',
    ...[...owners.entries()].sort(([, a], [, b]) => b - a).slice(0, top).map(([who, time]) => `  ${pct(time)}  ${who}`),
    '',
    'charged to the nearest package / Portcullis file on the stack:',
    ...[...charged.entries()].sort(([, a], [, b]) => b - a).slice(0, top).map(([who, time]) => `  ${pct(time)}  ${who}`),
    '',
    'inclusive (time with the package / file anywhere on the stack):',
    ...[...inclusive.entries()].sort(([, a], [, b]) => b - a).slice(0, top).map(([who, time]) => `  ${pct(time)}  ${who}`),
    '',
    'hottest functions (self time):',
    ...[...functions.entries()].sort(([, a], [, b]) => b - a).slice(0, top).map(([fn, time]) => `  ${pct(time)}  ${fn}`),
  ];
  return lines.join('\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === realpathSync(process.argv[1])) {
  const args = process.argv.slice(2);
  const topIndex = args.indexOf('--top');
  const top = topIndex >= 0 ? Number(args.splice(topIndex, 2)[1]) : 25;
  if (args.length === 0) {
    process.stderr.write('usage: node --import tsx bench/profile-summary.ts FILE.cpuprofile [--top N]\n');
    process.exit(2);
  }
  for (const file of args) {
    process.stdout.write(`${file}\n${summarise(JSON.parse(readFileSync(file, 'utf8')) as Profile, top)}\n\n`);
  }
}
