// Holding the server's statements at a lock from outside: PostgreSQL only
// (PGlite runs every connection in one session, where an outside transaction
// cannot hold a lock against the server's statements).
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';

/** Whether the tests run on the embedded database, where no outside lock can hold the server. */
export const embedded = (process.env.TEST_DATABASE ?? 'pglite') === 'pglite';

/**
 * Waits until `count` of the server's statements wait for a lock (the test's on `admin`, or one the server's own take in turn).
 * The default wait is generous because a request's way to the lock (client, HTTP, the lookup before the
 * consuming statement) took over 5 s once on a loaded CI machine, and 20 s were missed once in a
 * full run on a machine busy with other tests (not reproduced alone); a test that never gets there
 * still fails (within the test's 60 s).
 */
export async function heldAtTheLock(admin: pg.Client, count = 1, timeoutMs = 40_000): Promise<void> {
  const waiting = async () =>
    (await admin.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`)).rows[0]!.n;
  for (const deadline = Date.now() + timeoutMs; (await waiting()) < count; ) {
    if (Date.now() > deadline) throw new Error(`fewer than ${count} statements of the server reached the lock`);
    await sleep(10);
  }
}
