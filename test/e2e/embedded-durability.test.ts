// The embedded database keeps what it commits through a crash of the machine:
// a commit is synced to disk (fsync) before it is answered, a new database's
// files are synced once made, and a sync the disk fails stops the server
// (PGlite would otherwise spin for ever on its next statement) without losing
// what was committed before; the next start recovers. A power loss cannot be
// staged here: Debian's strace shows the syncs a real server makes, and
// injects a failed one into it.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { embedded } from '../support/locks.js';
import { freePort, runCli, TEST_ENV } from '../support/portcullis.js';

interface Started {
  process: ChildProcess;
  exited: Promise<number | null>;
  output(): string;
}

const dirs: string[] = [];
const running: ChildProcess[] = [];
afterAll(async () => {
  for (const child of running) child.kill('SIGKILL');
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

/** Runs `command` and waits until the server it starts says it listens. */
async function start(command: string, args: string[], env: Record<string, string>): Promise<Started> {
  const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  running.push(child);
  let output = '';
  child.stdout!.on('data', (chunk) => (output += chunk));
  child.stderr!.on('data', (chunk) => (output += chunk));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  for (let tries = 0; !output.includes('portcullis listening'); tries++) {
    if (tries > 600 || child.exitCode !== null) throw new Error(`the server did not start: ${output}`);
    await sleep(100);
  }
  return { process: child, exited, output: () => output };
}

/** The pid of the process that holds the embedded database, from its lock file. */
async function holderPid(dataDir: string): Promise<number> {
  return (JSON.parse(await readFile(path.join(dataDir, 'portcullis.lock'), 'utf8')) as { pid: number }).pid;
}

const SERVER = [process.execPath, '--import', 'tsx', 'src/main.ts'];

describe.runIf(embedded)('the embedded database on disk', () => {
  let dataDir: string;
  let env: Record<string, string>;

  it('a new database: every file synced once made, and each commit synced before it is answered', async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'pc-durable-'));
    dirs.push(dataDir);
    env = { ...TEST_ENV, LOG_LEVEL: 'info', DATA_DIR: dataDir, PORT: String(await freePort()), HOST: '127.0.0.1' };
    const trace = path.join(dataDir, '..', `${path.basename(dataDir)}.trace`);
    dirs.push(trace);
    // -y: each descriptor with its path; -ttt: when, to the microsecond.
    const server = await start('strace', ['-f', '-y', '-qq', '-ttt', '--seccomp-bpf', '-e', 'trace=fsync,fdatasync', '-o', trace, ...SERVER], env);
    const pgdata = path.join(dataDir, 'pgdata');
    // template1's files: PostgreSQL writes them while making the database, and never again.
    const template = await readdir(path.join(pgdata, 'base', '1'));

    const before = Date.now() / 1000;
    const created = await runCli(['user', 'create', '--email', 'ada@example.com', '--password-stdin'], env, 'correct horse battery staple\n');
    const after = Date.now() / 1000;
    expect(created.code, created.stderr).toBe(0);

    process.kill(await holderPid(dataDir), 'SIGTERM');
    expect(await server.exited).toBe(0);
    const syncs = (await readFile(trace, 'utf8'))
      .split('\n')
      .map((line) => /^\d+ +([\d.]+) (?:fsync|fdatasync)\(\d+<([^>]+)>\) = 0$/.exec(line))
      .filter((match) => match !== null)
      .map((match) => ({ at: Number(match[1]), file: match[2]! }));
    const synced = new Set(syncs.map((sync) => sync.file));
    expect(template.filter((file) => !synced.has(path.join(pgdata, 'base', '1', file)))).toEqual([]);
    expect(synced.has(dataDir)).toBe(true);
    // The write-ahead log, synced while the command ran (its answer came after).
    const walSyncs = syncs.filter((sync) => sync.file.startsWith(path.join(pgdata, 'pg_wal') + path.sep) && sync.at >= before && sync.at <= after);
    expect(walSyncs.length).toBeGreaterThan(0);
  });

  it('a sync the disk fails: the server stops at once and says why, the command is not answered as done, and the next start recovers with what was committed', async () => {
    const server = await start(SERVER[0]!, SERVER.slice(1), env);
    const pid = await holderPid(dataDir);
    // Every fsync of the server's fails with EIO from now on.
    const tracer = spawn('strace', ['-f', '-p', String(pid), '-e', 'trace=fsync', '-e', 'inject=fsync:error=EIO'], { stdio: ['ignore', 'ignore', 'pipe'] });
    running.push(tracer);
    let traced = '';
    tracer.stderr.on('data', (chunk) => (traced += chunk));
    for (let tries = 0; !traced.includes('attached'); tries++) {
      if (tries > 100) throw new Error(`strace did not attach: ${traced}`);
      await sleep(100);
    }

    const refused = await runCli(['user', 'create', '--email', 'grace@example.com', '--password-stdin'], env, 'another long passphrase\n');
    expect(await server.exited).toBe(1);
    expect(refused.code, refused.stderr).toBe(1);
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    expect(refused.stderr).toContain('the database is unreachable');
    const last = server.output().trim().split('\n').at(-1);
    expect(last).toBe(
      `portcullis: stopped: the embedded database could not write to disk in DATA_DIR (${dataDir}): EIO; ` +
        'nothing unwritten was acknowledged; once the disk is sound, start again and the database recovers from its write-ahead log',
    );

    const again = await start(SERVER[0]!, SERVER.slice(1), env);
    const users = JSON.parse((await runCli(['user', 'list', '--json'], env)).stdout) as { email: string }[];
    expect(users.map((user) => user.email)).toContain('ada@example.com');
    const next = await runCli(['user', 'create', '--email', 'hedy@example.com', '--password-stdin'], env, 'a third long passphrase\n');
    expect(next.code, next.stderr).toBe(0);
    again.process.kill('SIGTERM');
    expect(await again.exited).toBe(0);
  });
});
