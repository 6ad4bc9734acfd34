// Makes the embedded database keep what it commits through a power loss.
// PGlite starts PostgreSQL with fsync off (its -F), and the Node file system
// it runs on answers fsync without syncing anything: a commit was in the
// operating system's cache only, and a crash of the machine could lose it or
// leave the files torn. Here PostgreSQL runs with fsync on, and its fsync
// reaches the disk (fsync(2) on the real file), so a commit is acknowledged
// once its write-ahead log is on disk, as on a PostgreSQL server.
import { closeSync, fsyncSync, openSync, readdirSync } from 'node:fs';
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
 * PGlite's start parameters without -F (fsync off), and the write-ahead log
 * synced by fsync: PostgreSQL's default on Linux, fdatasync, is a call
 * PGlite's build answers without doing anything.
 */
export const DURABLE_START_PARAMS: readonly string[] = [
  ...PGlite.defaultStartParams.filter((parameter) => parameter !== '-F'),
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
 * Stops the process when a file cannot be synced. PostgreSQL answers a failed
 * fsync with a PANIC: the kernel may have dropped the pages it could not
 * write, so nothing written since the last checkpoint can be trusted, and a
 * PostgreSQL server restarts and recovers from its write-ahead log. PGlite
 * cannot restart itself: after the PANIC its next statement never returns
 * (it spins, seen). So the process stops here, before the write is
 * acknowledged, and the next start recovers.
 */
function stopOnLostWrite(dataDir: string, error: NodeJS.ErrnoException): never {
  process.stderr.write(
    `portcullis: stopped: the embedded database could not write to disk in DATA_DIR (${dataDir}): ${error.code ?? error.message}; ` +
      'nothing unwritten was acknowledged; once the disk is sound, start again and the database recovers from its write-ahead log\n',
  );
  process.exit(1);
}

/** PGlite's Node file system whose fsync syncs the real file. */
export class DurableNodeFS extends NodeFS {
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
        try {
          fsyncSync(stream.nfd);
          return 0;
        } catch (error) {
          const code = (error as NodeJS.ErrnoException).code ?? '';
          // Thrown as Emscripten's error, which PostgreSQL reads as the errno.
          if (FS.isDir(stream.node.mode) && DIRECTORY_SYNC_UNSUPPORTED.has(code)) return nodefs.tryFSOperation(() => { throw error; });
          return stopOnLostWrite(this.#dataDir, error as NodeJS.ErrnoException);
        }
      };
    };
    return { emscriptenOpts: { ...emscriptenOpts, preRun: [...(emscriptenOpts.preRun ?? []), syncFiles] } };
  }
}

/**
 * Syncs every file and directory under `root`, and `root`'s own entry in its
 * parent. PGlite writes a new database's files without a sync, and releases
 * before 0.5.25 synced nothing; PostgreSQL syncs the whole directory itself
 * only when it starts after a crash. Files already on disk sync in no time
 * (about 0.1 s for a new database's thousand files once they are written).
 */
export function syncTree(root: string): void {
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
    fsyncSync(fd);
  } catch (error) {
    if (!(directory && DIRECTORY_SYNC_UNSUPPORTED.has((error as NodeJS.ErrnoException).code ?? ''))) throw error;
  } finally {
    closeSync(fd);
  }
}
