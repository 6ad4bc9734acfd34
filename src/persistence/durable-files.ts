// Makes the embedded database keep what it commits through a power loss.
// PGlite starts PostgreSQL with fsync off (its -F), and the Node file system
// it runs on answers fsync without syncing anything: a commit was in the
// operating system's cache only, and a crash of the machine could lose it or
// leave the files torn. Here PostgreSQL runs with fsync on, and its fsync
// reaches the disk (fsync(2) on the real file), so a commit is acknowledged
// once its write-ahead log is on disk, as on a PostgreSQL server.
import { existsSync, readdirSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { NodeFS } from '@electric-sql/pglite/nodefs';
import { DIRECTORY_SYNC_UNSUPPORTED, fsyncUninterrupted, syncDirectory, syncFile } from './file-sync.js';

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
  // Log lines begin with their severity (see isPanic).
  '-c',
  'log_line_prefix=',
  // Two segments of write-ahead log kept for reuse after a checkpoint, not
  // five: 32 MB more of a small disk left for the database itself.
  '-c',
  'min_wal_size=32MB',
];

/**
 * Whether a line PostgreSQL logged is a PANIC. Only at the line's start:
 * a failed statement's ERROR, DETAIL, CONTEXT and STATEMENT lines quote
 * values a request sent ("PANIC: x" as a uuid), and PostgreSQL indents a
 * message's continuation lines, so no value starts a line.
 */
const isPanic = (line: string) => line.startsWith('PANIC:  ');

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
    // Not a database, and not nothing: an earlier release's first start cut
    // short (it made the database in place), or someone's files. Neither can
    // be opened, and neither is deleted: moved aside, and said.
    if (existsSync(pgdata) && readdirSync(pgdata).length > 0) {
      const aside = `${pgdata}.incomplete-${Date.now()}`;
      await rename(pgdata, aside);
      process.stderr.write(`portcullis: ${pgdata} held files but no database (no PG_VERSION): moved aside to ${aside}, and a new database made\n`);
    }
    const making = `${pgdata}.new`;
    await rm(making, { recursive: true, force: true });
    await (await start(making, dataDir)).close();
    syncTree(making);
    await rename(making, pgdata);
    syncDirectory(dataDir);
    // DATA_DIR's own entry, where its parent lets us read it (a directory one may only pass through does not).
    try {
      syncDirectory(path.dirname(dataDir));
    } catch (error) {
      if (!['EACCES', 'EPERM'].includes((error as NodeJS.ErrnoException).code ?? '')) throw error;
    }
  }
  return start(pgdata, dataDir);
}

async function start(pgdata: string, dataDir: string): Promise<PGlite> {
  const fs = new DurableNodeFS(pgdata, dataDir);
  const db = await PGlite.create({
    fs,
    startParams: [...DURABLE_START_PARAMS],
    // Every PANIC, not only a failed sync's: a write to the log that failed too.
    onStderr: (text) => (isPanic(text) ? stop(dataDir, `failed: ${text.trim()}`) : false),
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

/** Syncs every file and directory under `root`, `root` included. */
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
}
