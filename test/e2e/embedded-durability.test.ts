// The embedded database keeps what it commits through a crash of the machine:
// a commit is synced to disk (fsync) before it is answered, a new database's
// files are synced once made, and a sync the disk fails stops the server
// (PGlite would otherwise spin for ever on its next statement) without losing
// what was committed before; the next start recovers. A power loss cannot be
// staged here: Debian's strace shows the syncs a real server makes, and
// injects a failed one into it.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { embedded } from '../support/locks.js';
import { freePort, runCli, startPortcullis, TEST_ENV } from '../support/portcullis.js';
import { authorizationRequest, discover, pageKind, REDIRECT_URI, visit } from '../support/relying-party.js';
import { UserAgent } from '../support/user-agent.js';

interface Started {
  process: ChildProcess;
  exited: Promise<number | null>;
  output(): string;
  stderr(): string;
}

const dirs: string[] = [];
const running: ChildProcess[] = [];
/** Servers started under strace: killing strace leaves them running. */
const holders: number[] = [];
afterAll(async () => {
  for (const child of running) child.kill('SIGKILL');
  for (const pid of holders) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

/** Runs `command` and waits until the server it starts says it listens. */
async function start(command: string, args: string[], env: Record<string, string>): Promise<Started> {
  const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  running.push(child);
  let output = '';
  let stderr = '';
  child.stdout!.on('data', (chunk) => (output += chunk));
  child.stderr!.on('data', (chunk) => ((output += chunk), (stderr += chunk)));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  for (let tries = 0; !output.includes('portcullis listening'); tries++) {
    if (tries > 600 || child.exitCode !== null) throw new Error(`the server did not start: ${output}`);
    await sleep(100);
  }
  return { process: child, exited, output: () => output, stderr: () => stderr };
}

/** The pid of the process that holds the embedded database, from its lock file. */
async function holderPid(dataDir: string): Promise<number> {
  const { pid } = JSON.parse(await readFile(path.join(dataDir, 'portcullis.lock'), 'utf8')) as { pid: number };
  holders.push(pid);
  return pid;
}

const SERVER = [process.execPath, '--import', 'tsx', 'src/main.ts'];

describe.runIf(embedded)('the embedded database on disk', () => {
  let dataDir: string;
  let env: Record<string, string>;

  it('a new database: every file synced once made, and each commit synced before it is answered', { timeout: 120_000 }, async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'pc-durable-'));
    dirs.push(dataDir);
    env = { ...TEST_ENV, LOG_LEVEL: 'info', DATA_DIR: dataDir, PORT: String(await freePort()), HOST: '127.0.0.1' };
    const trace = path.join(dataDir, '..', `${path.basename(dataDir)}.trace`);
    dirs.push(trace);
    // -y: each descriptor with its path; -ttt: when, to the microsecond.
    const server = await start('strace', ['-f', '-y', '-qq', '-ttt', '--seccomp-bpf', '-e', 'trace=fsync,fdatasync', '-o', trace, ...SERVER], env);
    const pid = await holderPid(dataDir);
    const pgdata = path.join(dataDir, 'pgdata');
    // template1's files: PostgreSQL writes them while making the database, and never again.
    const template = await readdir(path.join(pgdata, 'base', '1'));

    const before = Date.now() / 1000;
    const created = await runCli(['user', 'create', '--email', 'ada@example.com', '--password-stdin'], env, 'correct horse battery staple\n');
    const after = Date.now() / 1000;
    expect(created.code, created.stderr).toBe(0);

    process.kill(pid, 'SIGTERM');
    expect(await server.exited).toBe(0);
    const syncs = (await readFile(trace, 'utf8'))
      .split('\n')
      .map((line) => /^\d+ +([\d.]+) (?:fsync|fdatasync)\(\d+<([^>]+)>\) = 0$/.exec(line))
      .filter((match) => match !== null)
      // A new database is made beside pgdata, synced, and renamed into place.
      .map((match) => ({ at: Number(match[1]), file: match[2]!.replace(`${pgdata}.new`, pgdata) }));
    const synced = new Set(syncs.map((sync) => sync.file));
    expect(template.filter((file) => !synced.has(path.join(pgdata, 'base', '1', file)))).toEqual([]);
    expect(synced.has(dataDir)).toBe(true);
    // The write-ahead log, synced while the command ran (its answer came after).
    const walSyncs = syncs.filter((sync) => sync.file.startsWith(path.join(pgdata, 'pg_wal') + path.sep) && sync.at >= before && sync.at <= after);
    expect(walSyncs.length).toBeGreaterThan(0);
  });

  it('a sync the disk fails: the server stops at once and says why, the command is not answered as done, and the next start recovers with what was committed', { timeout: 120_000 }, async (context) => {
    const server = await start(SERVER[0]!, SERVER.slice(1), { ...env, LOG_LEVEL: 'debug' });
    const pid = await holderPid(dataDir);
    // Once its start's work is done (the first sweep), so that the failure is the command's.
    for (let tries = 0; !server.output().includes('expired rows swept'); tries++) {
      if (tries > 300) throw new Error(`the first sweep did not end: ${server.output()}`);
      await sleep(100);
    }
    // Every fsync of the server's fails with EIO from now on.
    const tracer = spawn('strace', ['-f', '-p', String(pid), '-e', 'trace=fsync', '-e', 'inject=fsync:error=EIO'], { stdio: ['ignore', 'ignore', 'pipe'] });
    running.push(tracer);
    let traced = '';
    tracer.stderr.on('data', (chunk) => (traced += chunk));
    for (let tries = 0; !traced.includes('attached'); tries++) {
      // Tracing another process needs ptrace rights (root, or Yama's ptrace_scope 0).
      if (traced.includes('Operation not permitted')) {
        server.process.kill('SIGTERM');
        await server.exited;
        return context.skip(`strace cannot attach here: ${traced.trim()}`);
      }
      if (tries > 100) throw new Error(`strace did not attach: ${traced}`);
      await sleep(100);
    }

    const refused = await runCli(['user', 'create', '--email', 'grace@example.com', '--password-stdin'], env, 'another long passphrase\n');
    expect(await server.exited).toBe(1);
    expect(refused.code, `${refused.stdout} ${refused.stderr} ${server.stderr()} ${traced}`).toBe(1);
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    // The change may or may not have been made: its commit got no answer.
    expect(refused.stderr).toContain('the database is unreachable (the connection to it was lost midway): whether its last change was made is not known');
    expect(server.stderr().trim().split('\n').at(-1)).toBe(
      `portcullis: stopped: the embedded database in DATA_DIR (${dataDir}) could not write to disk: EIO; ` +
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

  it('is vacuumed and checkpointed after each sweep, as PostgreSQL\'s own processes would do (single-user PGlite has none); a value quoting PANIC in its log stops nothing', async () => {
    // A sign-in begun and left: its interaction expires, and a sweep deletes it.
    const pc = await startPortcullis({ SWEEP_INTERVAL: '1s', INTERACTION_TTL: '2s' });
    const db = pc.outsideConnection();
    await db.connect();
    try {
      const checkpoint = async () => (await db.query<{ lsn: string }>('SELECT checkpoint_lsn::text AS lsn FROM pg_control_checkpoint()')).rows[0]!.lsn;
      const vacuumed = async () =>
        (await db.query<{ at: Date | null }>(`SELECT last_vacuum AS at FROM pg_stat_user_tables WHERE relname = 'provider_artifacts'`)).rows[0]!.at;
      // A statement that fails quoting "PANIC:" (PostgreSQL logs the value) is an error like any other.
      await expect(db.query(`SELECT 'PANIC:  x'::int`)).rejects.toThrow('invalid input syntax for type integer');
      const first = await checkpoint();
      const app = await pc.createClient({ name: 'Web', redirectUris: [REDIRECT_URI] });
      const page = await visit(new UserAgent(), (await authorizationRequest(await discover(pc.issuer, app.client_id, app.client_secret), 'openid')).url);
      expect(pageKind(page)).toBe('login');
      for (let tries = 0; (await checkpoint()) === first || (await vacuumed()) === null; tries++) {
        if (tries > 100) throw new Error(`no checkpoint after ${first}, or no vacuum`);
        await sleep(100);
      }
    } finally {
      await db.end();
      await pc.close();
    }
  });

  it('a pgdata holding files but no database (a first start of 0.5.24 cut short) is moved aside, and a database made', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'pc-aside-'));
    dirs.push(dir);
    await mkdir(path.join(dir, 'pgdata', 'base'), { recursive: true });
    await writeFile(path.join(dir, 'pgdata', 'postgresql.conf'), '# half made\n');
    const listed = await runCli(['user', 'list'], { ...TEST_ENV, DATA_DIR: dir });
    expect(listed.code, listed.stderr).toBe(0);
    const aside = (await readdir(dir)).filter((name) => name.startsWith('pgdata.incomplete-'));
    expect(aside).toHaveLength(1);
    expect(listed.stderr).toContain(`held files but no database (no PG_VERSION): moved aside to ${path.join(dir, aside[0]!)}`);
    expect(await readFile(path.join(dir, aside[0]!, 'postgresql.conf'), 'utf8')).toBe('# half made\n');
    expect(await readdir(path.join(dir, 'pgdata'))).toContain('PG_VERSION');
  });
});
