// Running out of disk space. A database whose disk is full still answers
// reads, so `SELECT 1` says nothing of it, while every write that needs a new
// page fails (SQLSTATE 53100, see unavailable.ts). Readiness reports it until
// space is free again, and a start that fails says so (services.ts).
import { statfs } from 'node:fs/promises';

/**
 * Below this much free space the embedded database's disk counts as full: a
 * write-ahead log segment is 16 MiB, and the table files grow by pages beside it.
 */
export const FULL_BELOW_BYTES = 32 * 1024 * 1024;

/**
 * How long after a write failed for want of space a PostgreSQL server, whose
 * disk this process cannot see, counts as full. Readiness says so meanwhile,
 * while requests still reach the database: a read succeeds on a full disk,
 * so no statement's success says that space is back; only time without a
 * failure does.
 */
const REMEMBERED_MS = 10_000;

export interface FreeSpace {
  bytes: number;
  files: number;
}

/** Free space and free inodes of the file system holding `dir`, as an unprivileged process may use them; undefined if it cannot be read. */
export async function freeSpace(dir: string): Promise<FreeSpace | undefined> {
  try {
    const stats = await statfs(dir);
    return { bytes: stats.bavail * stats.bsize, files: stats.ffree };
  } catch {
    return undefined;
  }
}

export function isFull(free: FreeSpace): boolean {
  return free.bytes < FULL_BELOW_BYTES || free.files === 0;
}

/** "12.3 MiB free", for messages. */
export function describeFree(free: FreeSpace): string {
  const mib = `${(free.bytes / 1024 / 1024).toFixed(1)} MiB free`;
  return free.files === 0 ? `${mib}, no inodes free` : mib;
}

/** Remembers writes failed for want of space, until there is space again. */
export class SpaceWatch {
  private failedAt: number | undefined;

  /** `dataDir`: the embedded database's directory, whose disk this process can see; undefined for a PostgreSQL server. */
  constructor(private readonly dataDir?: string) {}

  noteOutOfSpace(): void {
    this.failedAt = Date.now();
  }

  /** Whether writes may still fail for want of space. */
  async full(): Promise<boolean> {
    if (this.failedAt === undefined) return false;
    if (this.dataDir === undefined) {
      if (Date.now() - this.failedAt >= REMEMBERED_MS) this.failedAt = undefined;
    } else {
      // Space freed counts at once; none freed keeps it full however long ago
      // the last write failed (readiness failing means no writes come to fail).
      const free = await freeSpace(this.dataDir);
      if (free && !isFull(free)) this.failedAt = undefined;
    }
    return this.failedAt !== undefined;
  }
}
