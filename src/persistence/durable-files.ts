// Makes the embedded database keep what it commits through a power loss.
// PGlite starts PostgreSQL with fsync off (its -F), and the Node file system
// it runs on answers fsync without syncing anything: a commit was in the
// operating system's cache only, and a crash of the machine could lose it or
// leave the files torn. Here PostgreSQL runs with fsync on, and its fsync
// reaches the disk (fsync(2) on the real file), so a commit is acknowledged
// once its write-ahead log is on disk, as on a PostgreSQL server.
import { closeSync, existsSync, fsyncSync, openSync, readdirSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { NodeFS } from '@electric-sql/pglite/nodefs';

/** The parts of Emscripten's module this file uses (PGlite does not type them). */
interface EmscriptenModule {
  FS: {
    isDir(mode: number): boolean;
    filesystems: { NODEFS: { stream_ops: { fsync?: (stream: NodeStream) => number }; tryFSOperation<T>(operation: () => T): T } };
  };
}

/** An open file of Emscripten's Node file system: `nfd` is the real descriptor. */
interface NodeStream {
  nfd: number;
  node: { mode: number };
}

/**
 * PGlite's start parameters without -F (fsync off), with fsync on said
 * outright, and the write-ahead log synced by fsync: PostgreSQL's default on
 * Linux, fdatasync, is a call PGlite's build answers without doing anything.
 */
const DURABLE_START_PARAMS: readonly string[] = [
  ...PGlite.defaultStartParams.filter((parameter) => parameter !== '-F'),
  '-c',
  'fsync=on',
  '-c',
  'wal_sync_method=fsync',
];

/**
 * A directory may not take fsync on some file systems (EINVAL, EBADF);
 * PostgreSQL expects that and goes on, as the sync of a directory only makes
 * its entries durable where the file system supports it.
 */
const DIRECTORY_SYNC_UNSUPPORTED = new Set(['EINVAL', 'EBADF']);

/**
 * Stops the process. PostgreSQL answers a failed fsync, or a write to its
 * log that failed, with a PANIC: the kernel may have dropped the pages it
 * could not write, so nothing written since the last checkpoint can be
 * trusted, and a PostgreSQL server restarts and recovers from its
 * write-ahead log. PGlite cannot restart itself: after a PANIC its next
 * statement never returns (it spins, seen). So the process stops, before the
 * write is acknowledged, and the next start recovers.
 */
function stop(dataDir: string, why: string): never {
  process.stderr.write(
    `portcullis: stopped: the embedded database in DATA_DIR (${dataDir}) ${why}; nothing unwritten was acknowledged; ` +
      'once the disk is sound, start again and the database recovers from its write-ahead log\n',
  );
  process.exit(1);
}

/** PGlite's Node file system whose fsync syncs the real file; counts the syncs, to check it is used. */
class DurableNodeFS extends NodeFS {
  syncs = 0;
  readonly #dataDir: string;

  constructor(pgdata: string, dataDir: string) {
    super(pgdata);
    this.#dataDir = dataDir;
  }

  override async init(...args: Parameters<NodeFS['init']>): ReturnType<NodeFS['init']> {
    const { emscriptenOpts } = await super.init(...args);
    const syncFiles = (module: unknown) => {
      const { FS } = module as EmscriptenModule;
      const nodefs = FS.filesystems.NODEFS;
      nodefs.stream_ops.fsync = (stream) => {
        this.syncs++;
        try {
          fsyncUninterrupted(stream.nfd);
          return 0;
        } catch (error) {
          const code = (error as NodeJS.ErrnoException).code ?? '';
          // Thrown as Emscripten's error, which PostgreSQL reads as the errno.
          if (FS.isDir(stream.node.mode) && DIRECTORY_SYNC_UNSUPPORTED.has(code)) return nodefs.tryFSOperation(() => { throw error; });
          return stop(this.#dataDir, `could not write to disk: ${code || (error as Error).message}`);
        }
      };
    };
    return { emscriptenOpts: { ...emscriptenOpts, preRun: [...(emscriptenOpts.preRun ?? []), syncFiles] } };
  }
}

function fsyncUninterrupted(fd: number): void {
  for (let attempt = 1; ; attempt++) {
    try {
      return fsyncSync(fd);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EINTR' || attempt >= 5) throw error;
    }
  }
}

/**
 * Opens the embedded database in `pgdata`, making it first if there is none.
 * A new database is made beside it, synced whole and then renamed into
 * place: PGlite writes a new database's files without a sync, and a power
 * loss while they were still in the cache would leave a database that looks
 * made and is torn. PostgreSQL syncs the whole directory itself when it
 * starts after a crash.
 */
export async function openDurably(pgdata: string, dataDir: string): Promise<PGlite> {
  if (!existsSync(path.join(pgdata, 'PG_VERSION'))) {
    const making = `${pgdata}.new`;
    await rm(making, { recursive: true, force: true });
    await (await start(making, dataDir)).close();
    syncTree(making);
    await rename(making, pgdata);
    syncDirectory(dataDir);
    syncDirectory(path.dirname(dataDir));
  }
  return start(pgdata, dataDir);
}

async function start(pgdata: string, dataDir: string): Promise<PGlite> {
  const fs = new DurableNodeFS(pgdata, dataDir);
  const db = await PGlite.create({
    fs,
    startParams: [...DURABLE_START_PARAMS],
    // Every PANIC, not only a failed sync's: a write to the log that failed too.
    onStderr: (text) => (/\bPANIC:/.test(text) ? stop(dataDir, `failed: ${text.trim()}`) : false),
  });
  // Durability rests on PGlite's insides (its file system, its parameters):
  // a release that moved them must not run without it, unnoticed.
  const { rows } = await db.query<{ fsync: string; method: string }>(`SELECT current_setting('fsync') AS fsync, current_setting('wal_sync_method') AS method`);
  if (rows[0]?.fsync !== 'on' || rows[0]?.method !== 'fsync' || fs.syncs === 0) {
    await db.close();
    throw new Error(`this release of PGlite does not sync the embedded database to disk as Portcullis expects (fsync ${rows[0]?.fsync}, ${fs.syncs} syncs): install the version package-lock.json names`);
  }
  return db;
}

/** Syncs every file and directory under `root`, and `root`'s own entry in its parent. */
function syncTree(root: string): void {
  const walk = (directory: string) => {
    for (const entry of readdirSync(directory, { withFileTypes: true })) {
      const target = path.join(directory, entry.name);
      if (entry.isDirectory()) walk(target);
      else if (entry.isFile()) syncFile(target, false);
    }
    syncFile(directory, true);
  };
  walk(root);
  syncDirectory(path.dirname(root));
}

/** Syncs a directory, making the entries made in it (a new file's name) durable. */
export function syncDirectory(directory: string): void {
  syncFile(directory, true);
}

function syncFile(target: string, directory: boolean): void {
  const fd = openSync(target, 'r');
  try {
    fsyncUninterrupted(fd);
  } catch (error) {
    if (!(directory && DIRECTORY_SYNC_UNSUPPORTED.has((error as NodeJS.ErrnoException).code ?? ''))) throw error;
  } finally {
    closeSync(fd);
  }
}
