// The zero-setup database: PostgreSQL compiled to WebAssembly (PGlite), with its
// data under DATA_DIR. PGlite lives inside one process, and two processes
// opening its files at once corrupt them beyond repair. So one process holds
// the directory, decided by a lock file created atomically (O_EXCL):
// - a server that holds it serves the database on a Unix socket in the
//   directory, and a CLI started meanwhile connects through that socket;
// - a CLI that holds it works alone, and a server or another CLI started
//   meanwhile waits for it to finish (CLI commands are short);
// - a second server is refused: several instances need PostgreSQL.
import { realpathSync } from 'node:fs';
import { chmod, link, mkdir, readFile, readlink, rename, rm, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import { openDurably } from './durable-files.js';

const SOCKET_PORT = 5432;
const LOCK_FILE = 'portcullis.lock';
const HALF_WRITTEN_MS = 5_000;
/** How long a process waits for a CLI to finish, or for a starting server's socket. */
const WAIT_MS = 60_000;
const POLL_MS = 100;

export type EmbeddedRole = 'server' | 'cli';

export interface EmbeddedDatabase {
  connectionString: string;
  /** True when this process opened PGlite; false when it joined a server's. */
  owner: boolean;
  /** Says in the lock that the schema is migrated: until then a CLI waits rather than joins. */
  ready(): Promise<void>;
  close(): Promise<void>;
}

/** The data directories this process has open (see openEmbedded). */
const openHere = new Set<string>();

/** Where PGlite keeps the database's files. */
const dataPath = (dataDir: string) => path.join(dataDir, 'pgdata');

/** Whether `dataDir` holds a database (PostgreSQL's PG_VERSION marks one), without opening, or making, it. */
export async function embeddedDatabaseExists(dataDir: string): Promise<boolean> {
  return (await stat(path.join(dataPath(dataDir), 'PG_VERSION')).catch(() => undefined))?.isFile() === true;
}

/** The embedded database is held by a process this one cannot share it with. */
export class EmbeddedDatabaseBusy extends Error {
  override name = 'EmbeddedDatabaseBusy';
}

interface Holder {
  pid: number;
  role: EmbeddedRole;
  ready?: boolean;
  /** The holder's start time in clock ticks since boot (Linux), telling it from a later process given its pid. */
  startTicks?: number;
  /** The holder's pid namespace (/proc/self/ns/pid), within which its pid and start time mean it. */
  pidNamespace?: string;
}

function connectionStringFor(dir: string, port: number): string {
  // libpq convention: host is the directory, the socket is `.s.PGSQL.<port>` inside it.
  return `postgresql://postgres@localhost/postgres?host=${encodeURIComponent(dir)}&port=${port}`;
}

function socketAnswers(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(socketPath);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

function alive(pid: number): boolean {
  if (pid === process.pid) return false; // a lock left by an earlier life of this pid (a container restarted)
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'; // alive, someone else's
  }
}

/**
 * Whether the lock's holder still runs: its pid is alive and is the process
 * that wrote the lock (the same start time, in clock ticks since boot, which
 * no wall-clock change moves). After a crash (kill -9, the OOM killer, a host
 * restart) the pid may have gone to another process (a container's init, a
 * shell), which would otherwise hold the directory for good.
 */
async function holderRuns(holder: Holder): Promise<boolean> {
  if (!alive(holder.pid)) return false;
  // Only where the holder's pid means the same process to us and to /proc:
  // the same pid namespace (not a container sharing the volume), and a /proc
  // that is this namespace's (its `self` is our own pid). Otherwise, and for a
  // lock written before this check or off Linux, a live pid is the holder.
  if (typeof holder.startTicks !== 'number' || holder.pidNamespace === undefined) return true;
  const here = await ownIdentity();
  if (!here.procIsOurs || here.pidNamespace !== holder.pidNamespace) return true;
  const stat = await readFile(`/proc/${holder.pid}/stat`, 'utf8').catch(() => '');
  // A zombie has exited and closed its files; it only waits for its parent
  // to reap it, and kill(pid, 0) still finds it (a restart 0.3 s after a
  // kill -9 met one).
  if (exitedIn(stat)) return false;
  const ticks = startTicksIn(stat);
  return ticks === undefined || ticks === holder.startTicks;
}

interface Identity {
  startTicks?: number;
  pidNamespace?: string;
  /** Whether /proc shows this process as `self` under its own pid (it was mounted for our pid namespace). */
  procIsOurs: boolean;
}

let identity: Promise<Identity> | undefined;

/** This process as a lock records it (see holderOf), read once. */
function ownIdentity(): Promise<Identity> {
  return (identity ??= (async () => {
    const [stat, pidNamespace] = await Promise.all([
      readFile('/proc/self/stat', 'utf8').catch(() => ''),
      readlink('/proc/self/ns/pid').catch(() => undefined),
    ]);
    return { startTicks: startTicksIn(stat), pidNamespace, procIsOurs: Number.parseInt(stat, 10) === process.pid };
  })());
}

/** Whether a /proc/<pid>/stat says its process has exited: state (field 3) Z, a zombie, or X, dead. */
function exitedIn(stat: string): boolean {
  const state = stat.charAt(stat.lastIndexOf(')') + 2);
  return state === 'Z' || state === 'X';
}

/** Field 22 of a /proc/<pid>/stat, starttime; undefined if it holds none. */
function startTicksIn(stat: string): number | undefined {
  // Counted after the command name, which may hold spaces and parentheses
  // (what follows it starts at field 3).
  if (!stat) return undefined;
  const ticks = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
  return Number.isSafeInteger(ticks) ? ticks : undefined;
}

async function readHolder(lockPath: string): Promise<Holder | undefined> {
  try {
    const holder = JSON.parse(await readFile(lockPath, 'utf8')) as Partial<Holder>;
    // A holder whatever its role (a later version may name others): whether it is alive decides.
    return typeof holder.pid === 'number' ? (holder as Holder) : undefined;
  } catch {
    return undefined; // gone, or being written this instant
  }
}

/**
 * Frontend messages that end a group: Sync (extended protocol), Query
 * (simple), Terminate, and CopyDone and CopyFail (the end of a simple
 * protocol's COPY FROM STDIN). Flush does not: a cursor reading by Execute
 * and Flush keeps its portal until its Sync.
 */
const GROUP_ENDS = new Set(['S', 'Q', 'X', 'c', 'f'].map((type) => type.charCodeAt(0)));

/**
 * PGlite is one session, which the socket server shares among its
 * connections, taking their messages in turn one message at a time. A query
 * in the extended protocol is several (Parse, Bind, Describe, Execute, Sync),
 * and its unnamed statement and portal are the session's: a message of
 * another connection in between replaces them, and a server's query and a
 * CLI's running at once failed ("bind message supplies 2 parameters, but
 * prepared statement requires 1"), or could run with the other's values.
 * The socket server keeps one connection's messages together only inside a
 * transaction; here a group of messages up to its Sync counts as one too.
 * (pglite-socket's queue reads `db.isInTransaction()` to decide, and calls
 * nothing else on it than the session's own methods.)
 */
function keepMessageGroupsTogether(server: PGLiteSocketServer, db: PGlite): void {
  const queue = (server as unknown as { queryQueue?: { db?: PGlite } }).queryQueue;
  if (!queue || queue.db !== db) throw new Error('@electric-sql/pglite-socket changed: its query queue is not where Portcullis expects it (see keepMessageGroupsTogether)');
  let midGroup = false;
  queue.db = new Proxy(db, {
    get(target, property) {
      if (property === 'isInTransaction') return () => midGroup || target.isInTransaction();
      if (property === 'execProtocolRawStream') {
        return async (message: Uint8Array, options: unknown) => {
          // A startup message has no type byte: its first is the length's, 0.
          midGroup = message.length > 0 && message[0] !== 0 && !GROUP_ENDS.has(message[0]!);
          return target.execProtocolRawStream(message, options as Parameters<PGlite['execProtocolRawStream']>[1]);
        };
      }
      // The queue rolls back the transaction of a connection that went away:
      // its group ends once that is done (not before, or another connection's
      // message could run ahead of the rollback and start a group of its own).
      if (property === 'exec') {
        return async (...args: Parameters<PGlite['exec']>) => {
          try {
            return await target.exec(...args);
          } finally {
            midGroup = false;
          }
        };
      }
      // On the session itself: its getters and methods use private fields.
      const value = Reflect.get(target, property);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

/**
 * A lock that does not name its holder: taken in one step (tryLock), it is
 * one whose data never reached the disk (a power loss), or one an earlier
 * version left half-written, which nobody would ever remove. Or it is being
 * replaced this instant by a rename, or written by an earlier version, which
 * names its holder within milliseconds: one still unreadable after
 * HALF_WRITTEN_MS is not that.
 */
async function leftHalfWritten(lockPath: string): Promise<boolean> {
  const written = await stat(lockPath).catch(() => undefined);
  return written !== undefined && Date.now() - written.mtimeMs > HALF_WRITTEN_MS;
}

const holderOf = async (role: EmbeddedRole, ready: boolean) => {
  const { startTicks, pidNamespace, procIsOurs } = await ownIdentity();
  const identified = procIsOurs && pidNamespace !== undefined ? { startTicks, pidNamespace } : {};
  return JSON.stringify({ pid: process.pid, role, ready, startedAt: new Date().toISOString(), ...identified });
};

async function createLock(lockPath: string, role: EmbeddedRole): Promise<boolean> {
  try {
    await writeFile(lockPath, await holderOf(role, false), { flag: 'wx', mode: 0o600 });
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
}

/**
 * Takes the lock, naming this process, in one step: written whole to a file
 * of its own first, then linked into place (which fails if the lock exists),
 * so that no other process ever reads it empty or half-written.
 */
async function tryLock(lockPath: string, role: EmbeddedRole): Promise<boolean> {
  const mine = `${lockPath}.${process.pid}.new`;
  await writeFile(mine, await holderOf(role, false), { mode: 0o600 });
  try {
    await link(mine, lockPath);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    // A file system without hard links: created and written in one call instead.
    if (code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP' || code === 'ENOSYS') return createLock(lockPath, role);
    throw error;
  } finally {
    await rm(mine, { force: true });
  }
}

/**
 * Removes the lock of a process that died without cleaning up. Moved aside
 * first and checked, so that a lock another starting process took meanwhile
 * is put back rather than deleted.
 */
async function breakStaleLock(lockPath: string, stalePid: number | undefined): Promise<void> {
  const aside = `${lockPath}.${process.pid}.stale`;
  try {
    await rename(lockPath, aside);
  } catch {
    return; // someone else broke it first
  }
  const moved = await readHolder(aside);
  if (moved && moved.pid !== stalePid) {
    await writeFile(lockPath, await readFile(aside), { flag: 'wx', mode: 0o600 }).catch(() => undefined);
  }
  await rm(aside, { force: true });
}

/**
 * Opens the embedded database in `dataDir` for a server or a CLI, or joins the
 * server that holds it (a CLI only). The directory is made private to its
 * owner: it holds the database files and the encryption key.
 */
export async function openEmbedded(dataDir: string, role: EmbeddedRole): Promise<EmbeddedDatabase> {
  // Two PGlite instances on one directory in one process (two servers in a
  // test, say) each take the other's files for their own: one's checkpoint
  // removes a file the other is to sync, and it stops (PANIC). Settled before
  // anything is awaited and before the lock, which takes a lock naming this
  // pid for an earlier life's (see alive): it would be broken and taken from
  // the instance that holds it, leaving the directory unlocked once either closed.
  const held = canonicalDirectory(dataDir);
  if (openHere.has(held)) {
    throw new EmbeddedDatabaseBusy(`the embedded database in ${dataDir} is already open in this process; several instances need PostgreSQL (DATABASE_URL)`);
  }
  openHere.add(held);
  let open = true;
  // Once, and only when closed for good: a later open of the directory may hold it by then.
  const forget = () => {
    if (open) openHere.delete(held);
    open = false;
  };
  try {
    const database = await openOrJoin(dataDir, role, forget);
    if (!database.owner) forget(); // joined a server's: nothing is open here
    return database;
  } catch (error) {
    forget();
    throw error;
  }
}

/**
 * The directory as the file system knows it: two paths to one directory
 * (through a symlink, or `..`) are one. One not made yet is named through its
 * nearest parent that exists. Synchronous: nothing is awaited before the
 * in-process check.
 */
function canonicalDirectory(dir: string): string {
  const absolute = path.resolve(dir);
  try {
    return realpathSync(absolute);
  } catch {
    const parent = path.dirname(absolute);
    return parent === absolute ? absolute : path.join(canonicalDirectory(parent), path.basename(absolute));
  }
}

async function openOrJoin(dataDir: string, role: EmbeddedRole, closed: () => void): Promise<EmbeddedDatabase> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  await chmod(dataDir, 0o700);
  const lockPath = path.join(dataDir, LOCK_FILE);
  const socketPath = path.join(dataDir, `.s.PGSQL.${SOCKET_PORT}`);
  const deadline = Date.now() + WAIT_MS;
  while (!(await tryLock(lockPath, role))) {
    const holder = await readHolder(lockPath);
    if (holder ? !(await holderRuns(holder)) : await leftHalfWritten(lockPath)) {
      await breakStaleLock(lockPath, holder?.pid);
      continue;
    }
    if (holder?.role === 'server') {
      if (role === 'server') {
        throw new EmbeddedDatabaseBusy(
          `the embedded database in ${dataDir} is served by another Portcullis server (pid ${holder.pid}); ` +
            'several instances need PostgreSQL (DATABASE_URL)',
        );
      }
      // Joined once its migrations are done: the CLI's own would run beside them.
      if (holder.ready && (await socketAnswers(socketPath))) {
        return { connectionString: connectionStringFor(dataDir, SOCKET_PORT), owner: false, ready: async () => undefined, close: async () => undefined };
      }
    }
    if (Date.now() > deadline) {
      throw new EmbeddedDatabaseBusy(
        `the embedded database in ${dataDir} is held by process ${holder?.pid ?? '?'}, which did not ` +
          `${holder?.role === 'server' ? 'answer' : 'finish'} within ${WAIT_MS / 1000} s; if no Portcullis process is running, delete ${lockPath}`,
      );
    }
    await sleep(POLL_MS);
  }

  // A server serves the database at the known socket; a CLI that holds the
  // directory serves nobody, and talks to PGlite through a socket of its own.
  const port = role === 'server' ? SOCKET_PORT : process.pid;
  const servedAt = path.join(dataDir, `.s.PGSQL.${port}`);
  let db: PGlite | undefined;
  let server: PGLiteSocketServer | undefined;
  const release = async () => {
    try {
      await server?.stop();
      await db?.close();
      await rm(servedAt, { force: true });
      await rm(lockPath, { force: true });
    } finally {
      closed(); // not before: another open here meanwhile would take the lock as an earlier life's
    }
  };
  try {
    const pgdata = dataPath(dataDir);
    // PGlite's file system error for this names neither the path nor the cause.
    if ((await stat(pgdata).catch(() => undefined))?.isDirectory() === false) throw new Error(`${pgdata} is not a directory`);
    db = await openDurably(pgdata, dataDir);
    await rm(servedAt, { force: true });
    // The multiplexer keeps a transaction's statements together; a few
    // connections let the CLI work while the server runs.
    server = new PGLiteSocketServer({ db, path: servedAt, maxConnections: 16 });
    keepMessageGroupsTogether(server, db);
    await server.start();
  } catch (error) {
    await release().catch(() => undefined);
    throw error;
  }
  return {
    connectionString: connectionStringFor(dataDir, port),
    owner: true,
    async ready() {
      // Replaced in one rename: the lock is never absent, so nobody can take it meanwhile.
      const next = `${lockPath}.${process.pid}.next`;
      await writeFile(next, await holderOf(role, true), { mode: 0o600 });
      await rename(next, lockPath);
    },
    close: release,
  };
}
