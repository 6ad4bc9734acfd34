// A real full disk for the database: a small tmpfs mounted for the test, the
// embedded database's DATA_DIR inside it, or a PostgreSQL tablespace (the
// test database's every table) on it. Mounting needs root, as CI has; where
// it cannot be done the tests that need it are skipped, saying why.
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, open, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { SERVER_URL, serverDatabase, type TestDatabase } from './database.js';

const run = promisify(execFile);

export interface SmallDisk {
  dir: string;
  /** Writes a file until the disk has no space left. */
  fill(): Promise<void>;
  /** Removes what fill() wrote. */
  free(): Promise<void>;
  unmount(): Promise<void>;
}

/** A tmpfs of `mib` MiB, or why there cannot be one here. */
export async function mountSmallDisk(mib: number): Promise<SmallDisk | string> {
  if (process.getuid?.() !== 0) return 'mounting a small disk needs root';
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pc-disk-'));
  try {
    await run('mount', ['-t', 'tmpfs', '-o', `size=${mib}m,mode=0755`, 'tmpfs', dir]);
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    return `cannot mount a tmpfs: ${(error as Error).message}`;
  }
  const filler = path.join(dir, 'filler');
  return {
    dir,
    async fill() {
      const file = await open(filler, 'a');
      try {
        // Big chunks, then small ones for the last pages.
        for (const size of [1 << 20, 1 << 12]) {
          const chunk = Buffer.alloc(size, 1);
          for (;;) {
            try {
              await file.write(chunk);
            } catch (error) {
              if ((error as NodeJS.ErrnoException).code === 'ENOSPC') break;
              throw error;
            }
          }
        }
      } finally {
        await file.close();
      }
    },
    free: () => rm(filler, { force: true }),
    async unmount() {
      await run('umount', ['--lazy', dir]).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A fresh test database (TEST_DATABASE) whose files are all on `disk`, or why there cannot be one. */
export async function databaseOn(disk: SmallDisk): Promise<TestDatabase | string> {
  if ((process.env.TEST_DATABASE ?? 'pglite') === 'pglite') {
    const dir = path.join(disk.dir, 'data');
    return { kind: 'pglite', env: { DATA_DIR: dir }, drop: () => rm(dir, { recursive: true, force: true }) };
  }
  // The tablespace is a directory the PostgreSQL server itself writes to.
  if (!['127.0.0.1', 'localhost', '[::1]'].includes(new URL(SERVER_URL).hostname)) return 'the test PostgreSQL server is on another machine';
  const location = path.join(disk.dir, 'tablespace');
  await mkdir(location);
  try {
    await run('chown', ['postgres:postgres', location]);
  } catch (error) {
    return `cannot give the tablespace to the postgres user: ${(error as Error).message}`;
  }
  return serverDatabase('portcullis_small', location);
}
