// Syncing files and directories to disk (fsync(2)), for what must survive a
// power loss: the embedded database's files (durable-files.ts), a new
// encryption key file's name.
import { closeSync, fsyncSync, openSync } from 'node:fs';

/**
 * A directory may not take fsync on some file systems (EINVAL, EBADF);
 * PostgreSQL expects that and goes on, as the sync of a directory only makes
 * its entries durable where the file system supports it.
 */
export const DIRECTORY_SYNC_UNSUPPORTED = new Set(['EINVAL', 'EBADF']);

/** fsync(2), again if a signal interrupted it. */
export function fsyncUninterrupted(fd: number): void {
  for (let attempt = 1; ; attempt++) {
    try {
      return fsyncSync(fd);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EINTR' || attempt >= 5) throw error;
    }
  }
}

/** Syncs a directory, making the entries made in it (a new file's name) durable. */
export function syncDirectory(directory: string): void {
  syncFile(directory, true);
}

export function syncFile(target: string, directory: boolean): void {
  const fd = openSync(target, 'r');
  try {
    fsyncUninterrupted(fd);
  } catch (error) {
    if (!(directory && DIRECTORY_SYNC_UNSUPPORTED.has((error as NodeJS.ErrnoException).code ?? ''))) throw error;
  } finally {
    closeSync(fd);
  }
}
