// The processes the harness runs: Portcullis, the baseline, the example
// resource server, the CLI, the load generator. Each is its own OS process.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import type { LoadSpec, PhaseResult } from '../load.js';

/** The repository the harness benchmarks: the current directory when it is a Portcullis checkout (npm run sets it). */
export const ROOT = existsSync(path.join(process.cwd(), 'src', 'main.ts'))
  ? process.cwd()
  : fileURLToPath(new URL('../..', import.meta.url));
export const BENCH_DIR = fileURLToPath(new URL('..', import.meta.url));

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Resident set size of a process in MiB (Linux /proc; `ps` elsewhere). */
export function rssMiB(pid: number | undefined): number | null {
  if (!pid) return null;
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kib = /^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1];
    return kib ? Math.round((Number(kib) / 1024) * 10) / 10 : null;
  } catch {
    return null;
  }
}

export interface ServiceOptions {
  name: string;
  /** Script path relative to ROOT: a `.ts` file runs through tsx's loader, a `.js` file as it is. */
  script: string;
  env: Record<string, string>;
  nodeArgs?: string[];
  /** Ready when a GET of this URL answers with one of these statuses. */
  readyUrl: string;
  readyStatuses?: number[];
  timeoutMs?: number;
}

/** A long-running child: started, waited for, measured, stopped. */
export class Service {
  private output: string[] = [];
  private exited?: { code: number | null; signal: NodeJS.Signals | null };
  private exitPromise: Promise<void>;
  /** Lines the service logged at error level (JSON logs) or that look like crashes. */
  readonly errorLines: string[] = [];

  /** Wall-clock time of the spawn, to place the process's CPU profile samples in time. */
  readonly startedAt = Date.now();

  private constructor(
    readonly name: string,
    private readonly child: ChildProcess,
  ) {
    const collect = (chunk: Buffer) => {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (!line.trim()) continue;
        this.output.push(line);
        if (this.output.length > 200) this.output.shift();
        if (line.includes('"level":"error"') && this.errorLines.length < 50) this.errorLines.push(line);
      }
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    this.exitPromise = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exited = { code, signal };
        resolve();
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  rss(): number | null {
    return this.exited ? null : rssMiB(this.child.pid);
  }

  recentOutput(lines = 30): string {
    return this.output.slice(-lines).join('\n');
  }

  static async start(options: ServiceOptions): Promise<Service> {
    const loader = options.script.endsWith('.ts') ? ['--import', 'tsx'] : [];
    const child = spawn(process.execPath, [...(options.nodeArgs ?? []), ...loader, options.script], {
      cwd: ROOT,
      env: { ...baseEnv(), ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const service = new Service(options.name, child);
    const deadline = Date.now() + (options.timeoutMs ?? 60_000);
    const statuses = options.readyStatuses ?? [200];
    while (Date.now() < deadline) {
      if (service.exited) {
        throw new Error(`${options.name} exited during start (code ${service.exited.code}):\n${service.recentOutput()}`);
      }
      try {
        const response = await fetch(options.readyUrl, { signal: AbortSignal.timeout(2000) });
        await response.arrayBuffer();
        if (statuses.includes(response.status)) return service;
      } catch {
        // not listening yet
      }
      await sleep(100);
    }
    await service.stop();
    throw new Error(`${options.name} did not become ready within ${(options.timeoutMs ?? 60_000) / 1000}s:\n${service.recentOutput()}`);
  }

  /** SIGTERM (the services shut down cleanly and write CPU profiles), SIGKILL after 15 s. */
  async stop(): Promise<void> {
    if (this.exited) return;
    this.child.kill('SIGTERM');
    const killer = setTimeout(() => this.child.kill('SIGKILL'), 15_000);
    await this.exitPromise;
    clearTimeout(killer);
  }
}

/** The environment every child inherits: enough to find node, npm's tools and a temp dir, nothing else of ours. */
function baseEnv(): Record<string, string> {
  const keep = ['PATH', 'HOME', 'TMPDIR', 'LANG', 'SystemRoot', 'NODE_OPTIONS', 'UV_THREADPOOL_SIZE'];
  return Object.fromEntries(keep.filter((key) => process.env[key] !== undefined).map((key) => [key, process.env[key]!]));
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Portcullis as `npm start` runs it: the compiled build (see buildPortcullis). */
export const PORTCULLIS_MAIN = 'dist/main.js';

/** Compiles src/ into dist/ as `npm start` does first (`tsc -b`: nothing to do when it is up to date). */
export async function buildPortcullis(): Promise<void> {
  const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  const { code, stdout, stderr } = await runNode([tsc, '-b', 'tsconfig.build.json'], {});
  if (code !== 0) throw new Error(`building Portcullis (tsc -b tsconfig.build.json) failed:\n${(stdout + stderr).trim().slice(-3000)}`);
}

/** Runs a node script (relative to ROOT) to completion. */
export function runNode(args: string[], env: Record<string, string>, stdin?: string, tsx = false): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...(tsx ? ['--import', 'tsx'] : []), ...args], {
      cwd: ROOT,
      env: { ...baseEnv(), ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.end(stdin ?? '');
  });
}

/**
 * The load generator (bench/load.ts --serve) as one long-lived child process,
 * driven over IPC one spec at a time: every slice of a measurement then runs
 * in a process whose JIT is already warm, as the servers' are.
 */
export class LoadGenerator {
  private readonly child: ChildProcess;
  private stderr = '';
  private pending?: { resolve(results: PhaseResult[]): void; reject(error: Error): void };
  private exited = false;

  constructor(script: string) {
    this.child = spawn(process.execPath, ['--import', 'tsx', script, '--serve'], {
      cwd: ROOT,
      env: baseEnv(),
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    this.child.stderr!.on('data', (chunk) => (this.stderr = (this.stderr + chunk).slice(-4000)));
    this.child.on('message', (reply: { results: PhaseResult[] } | { error: string }) => {
      const pending = this.pending;
      this.pending = undefined;
      if ('results' in reply) pending?.resolve(reply.results);
      else pending?.reject(new Error(`load generator failed: ${reply.error.slice(-1500)}`));
    });
    this.child.once('exit', (code) => {
      this.exited = true;
      this.pending?.reject(new Error(`load generator exited (${code}): ${this.stderr.trim().slice(-1500)}`));
      this.pending = undefined;
    });
  }

  run(spec: LoadSpec): Promise<PhaseResult[]> {
    if (this.exited) return Promise.reject(new Error(`load generator is gone: ${this.stderr.trim().slice(-1500)}`));
    if (this.pending) return Promise.reject(new Error('load generator is busy'));
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject };
      this.child.send({ spec });
    });
  }

  async close(): Promise<void> {
    if (this.exited) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.disconnect();
    const killer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(killer);
  }
}

/** `portcullis …` through the real CLI, with the server's environment. */
export async function portcullisCli(args: string[], env: Record<string, string>, stdin?: string): Promise<RunResult> {
  return runNode(['src/cli/portcullis.mjs', ...args], env, stdin);
}

export async function cliJson<T>(args: string[], env: Record<string, string>, stdin?: string): Promise<T> {
  const result = await portcullisCli([...args, '--json'], env, stdin);
  if (result.code !== 0) throw new Error(`portcullis ${args.slice(0, 2).join(' ')} failed (exit ${result.code}): ${result.stderr.trim()}`);
  return JSON.parse(result.stdout) as T;
}

export interface BenchDatabase {
  env: Record<string, string>;
  /** Connection string of the benchmark database itself (PostgreSQL only). */
  url?: string;
  label: string;
  /**
   * Where the server's autovacuum is off: VACUUM (ANALYZE) the benchmark
   * database, as autovacuum would have by then (and as pgbench does before each
   * run), and say how long it took; null where there is nothing to do.
   */
  tidy?(): Promise<number | null>;
  drop(): Promise<void>;
}

/** A fresh PostgreSQL database on the given server, dropped at the end. */
export async function createPostgresDatabase(serverUrl: string): Promise<BenchDatabase> {
  const name = `portcullis_bench_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  let version: string;
  let autovacuum: string;
  try {
    await admin.query(`CREATE DATABASE ${name}`);
    version = (await admin.query<{ server_version: string }>('SHOW server_version')).rows[0]!.server_version;
    // Reported because it changes what a churning table costs (see src/server.ts).
    autovacuum = (await admin.query<{ autovacuum: string }>('SHOW autovacuum')).rows[0]!.autovacuum;
  } finally {
    await admin.end();
  }
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return {
    env: { DATABASE_URL: url.toString() },
    url: url.toString(),
    label: `PostgreSQL ${version.split(' ')[0]} at ${url.host} (autovacuum ${autovacuum})`,
    async tidy() {
      if (autovacuum !== 'off') return null;
      const client = new pg.Client({ connectionString: url.toString() });
      await client.connect();
      try {
        const started = performance.now();
        await client.query('VACUUM (ANALYZE)');
        return (performance.now() - started) / 1000;
      } finally {
        await client.end();
      }
    },
    async drop() {
      const client = new pg.Client({ connectionString: serverUrl });
      await client.connect();
      try {
        await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await client.end();
      }
    },
  };
}

/** A fresh embedded PGlite data directory (short path: its Unix socket lives inside), removed at the end. */
export async function createPgliteDatabase(): Promise<BenchDatabase> {
  const { mkdtemp, rm } = await import('node:fs/promises');
  const os = await import('node:os');
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pcb-'));
  let version = '';
  try {
    const pkg = path.join(ROOT, 'node_modules', '@electric-sql', 'pglite', 'package.json');
    version = ` ${(JSON.parse(readFileSync(pkg, 'utf8')) as { version: string }).version}`;
  } catch {
    // version unknown
  }
  return {
    env: { DATA_DIR: dir },
    label: `embedded PGlite${version} (in the Portcullis process)`,
    drop: () => rm(dir, { recursive: true, force: true }),
  };
}

/** CPU seconds (user + system) a process has used so far, from /proc (Linux); null elsewhere. */
export function cpuSeconds(pid: number | undefined): number | null {
  if (!pid) return null;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th fields.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return null;
  }
}

const CLOCK_TICKS = 100; // USER_HZ, 100 on every Linux architecture Node supports

/** CPU seconds the whole machine has spent busy (all cores, all processes), from /proc/stat; null elsewhere. */
export function machineBusySeconds(): number | null {
  try {
    const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal ...: busy is all but idle and iowait.
    const total = fields.slice(0, 8).reduce((sum, value) => sum + value, 0);
    return (total - fields[3]! - fields[4]!) / CLOCK_TICKS;
  } catch {
    return null;
  }
}
