// The oidc-provider adapter contract, against a real database: what the
// provider relies on when requests race each other.
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { openDatabase, type Database } from '../../src/persistence/database.js';
import { sha256 } from '../../src/persistence/hash.js';
import { ArtifactAdapter } from '../../src/provider/adapter.js';
import { ArtifactWriter } from '../../src/provider/artifact-writer.js';
import { freshDatabase, type TestDatabase } from '../support/database.js';
import { TEST_ENV } from '../support/portcullis.js';

let testDb: TestDatabase;
let db: Database;

beforeAll(async () => {
  testDb = await freshDatabase();
  db = await openDatabase(loadConfig({ ...TEST_ENV, ...testDb.env }).database, 'server');
  await db.migrate();
});

afterAll(async () => {
  await db?.close();
  await testDb?.drop();
});

const refresh = () => new ArtifactAdapter('RefreshToken', db.sql);

it('of two consumptions of one token in the same instant, exactly one wins and the grant is revoked', async () => {
  const tokens = refresh();
  const access = new ArtifactAdapter('AccessToken', db.sql);
  await tokens.upsert('rt-1', { kind: 'RefreshToken', grantId: 'grant-1', jti: 'rt-1' }, 3600);
  await access.upsert('at-1', { kind: 'AccessToken', grantId: 'grant-1', jti: 'at-1' }, 3600);

  const results = await Promise.allSettled([tokens.consume('rt-1'), tokens.consume('rt-1'), tokens.consume('rt-1')]);
  expect(results.filter((result) => result.status === 'fulfilled')).toHaveLength(1);
  for (const result of results.filter((r) => r.status === 'rejected')) {
    expect((result as PromiseRejectedResult).reason).toMatchObject({ error: 'invalid_grant' });
  }
  expect(await access.find('at-1')).toBeUndefined();
});

it('tokens saved on a consumption are stored only if that consumption wins', async () => {
  // What a token exchange does (ArtifactAdapter.consume, then upsert): the new
  // tokens ride on the consumption, in its statement when they can.
  const writer = new ArtifactWriter(db.sql);
  const access = new ArtifactAdapter('AccessToken', db.sql);
  await refresh().upsert('rt-race', { kind: 'RefreshToken', grantId: 'grant-race', jti: 'rt-race' }, 3600);
  const token = (id: string) => ({
    kind: 'AccessToken',
    id: sha256(id),
    payload: JSON.stringify({ kind: 'AccessToken', grantId: 'grant-race' }),
    grantId: 'grant-race',
    uid: null,
    userCode: null,
    accountId: null,
    clientId: null,
    expiresAt: new Date(Date.now() + 60_000),
  });
  // Two exchanges of one refresh token in the same instant: one statement.
  const first = writer.consume('RefreshToken', sha256('rt-race'));
  const second = writer.consume('RefreshToken', sha256('rt-race'));
  const saves = [writer.saveIfConsumed(token('at-first'), first.call, first.marked), writer.saveIfConsumed(token('at-second'), second.call, second.marked)];
  expect(await first.marked).toBe(true);
  expect(await second.marked).toBe(false);
  await Promise.all(saves);
  expect(await access.find('at-first')).toMatchObject({ grantId: 'grant-race' });
  expect(await access.find('at-second')).toBeUndefined();
  // A later replay whose consumption went out before its save.
  const third = writer.consume('RefreshToken', sha256('rt-race'));
  expect(await third.marked).toBe(false);
  await writer.saveIfConsumed(token('at-third'), third.call, third.marked);
  expect(await access.find('at-third')).toBeUndefined();
});

it('within a reuse interval a refresh token is found unused and consumed again, an authorization code never', async () => {
  const opts = { refreshTokenReuseInterval: 2 };
  const tokens = new ArtifactAdapter('RefreshToken', db.sql, undefined, opts);
  const codes = new ArtifactAdapter('AuthorizationCode', db.sql, undefined, opts);
  const access = new ArtifactAdapter('AccessToken', db.sql);
  await tokens.upsert('rt-again', { kind: 'RefreshToken', grantId: 'grant-again', jti: 'rt-again' }, 3600);
  await codes.upsert('code-again', { kind: 'AuthorizationCode', grantId: 'grant-code', jti: 'code-again' }, 3600);
  await access.upsert('at-again', { kind: 'AccessToken', grantId: 'grant-again', jti: 'at-again' }, 3600);
  await access.upsert('at-code', { kind: 'AccessToken', grantId: 'grant-code', jti: 'at-code' }, 3600);

  // Three uses at once and one more after them: none of them a replay.
  await Promise.all([tokens.consume('rt-again'), tokens.consume('rt-again'), tokens.consume('rt-again')]);
  await tokens.consume('rt-again');
  const firstUse = Date.now();
  expect((await tokens.find('rt-again'))!.consumed).toBeUndefined();
  expect(await access.find('at-again')).toBeDefined();

  // The interval counts from the first use; past it, a use is a replay.
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, firstUse + 2200 - Date.now())));
  expect((await tokens.find('rt-again'))!.consumed).toBeGreaterThan(0);
  await expect(tokens.consume('rt-again')).rejects.toMatchObject({ error: 'invalid_grant' });
  expect(await access.find('at-again')).toBeUndefined();

  // Without an interval a consumption is one at once, whatever the clocks say: here the
  // database's is ahead of this process's by two seconds.
  const strict = refresh();
  await strict.upsert('rt-strict', { kind: 'RefreshToken', grantId: 'grant-strict', jti: 'rt-strict' }, 3600);
  await strict.consume('rt-strict');
  await db.sql.query({ name: 'test-consumed-ahead', text: `UPDATE provider_artifacts SET consumed_at = now() + interval '2 seconds' WHERE id = $1` }, [sha256('rt-strict')]);
  expect((await strict.find('rt-strict'))!.consumed).toBeGreaterThan(0);

  // A code is used once, whatever the refresh tokens' interval.
  const results = await Promise.allSettled([codes.consume('code-again'), codes.consume('code-again')]);
  expect(results.filter((result) => result.status === 'fulfilled')).toHaveLength(1);
  // The replay revoked its grant, the code with it.
  expect(await codes.find('code-again')).toBeUndefined();
  expect(await access.find('at-code')).toBeUndefined();
});

it('finds what it saved, marks consumption, and forgets destroyed and expired rows', async () => {
  const tokens = refresh();
  await Promise.all([
    tokens.upsert('a', { kind: 'RefreshToken', jti: 'a', accountId: 'x' }, 3600),
    tokens.upsert('b', { kind: 'RefreshToken', jti: 'b' }, 1),
  ]);
  expect(await tokens.find('a')).toMatchObject({ jti: 'a', accountId: 'x' });
  expect((await tokens.find('a'))!.consumed).toBeUndefined();
  await tokens.consume('a');
  expect((await tokens.find('a'))!.consumed).toBeGreaterThan(0);
  await tokens.destroy('a');
  expect(await tokens.find('a')).toBeUndefined();
  await new Promise((resolve) => setTimeout(resolve, 1100));
  expect(await tokens.find('b')).toBeUndefined();
  // Kinds do not see each other's rows.
  await new ArtifactAdapter('AccessToken', db.sql).upsert('c', { kind: 'AccessToken', jti: 'c' }, 60);
  expect(await tokens.find('c')).toBeUndefined();
});

it('a model saved with no life left is stored as expired, not as kept forever', async () => {
  // An interaction or grant saved "for the rest of its life" in its last second gets 0 (or less).
  const tokens = refresh();
  await Promise.all([tokens.upsert('none-left', { kind: 'RefreshToken', jti: 'none-left' }, 0), tokens.upsert('overdue', { kind: 'RefreshToken', jti: 'overdue' }, -2)]);
  expect(await tokens.find('none-left')).toBeUndefined();
  expect(await tokens.find('overdue')).toBeUndefined();
  const { rows } = await db.sql.query<{ expires_at: Date | null }>({ name: 'test-expiry-of', text: 'SELECT expires_at FROM provider_artifacts WHERE id = ANY($1)' }, [[sha256('none-left'), sha256('overdue')]]);
  expect(rows).toHaveLength(2);
  // The sweeper deletes by expires_at: a row without one would stay for good.
  for (const row of rows) expect(row.expires_at!.getTime()).toBeLessThanOrEqual(Date.now());
});

it('revokeByGrantId removes every token of the grant and nothing else', async () => {
  const kinds = ['AccessToken', 'RefreshToken', 'AuthorizationCode'].map((kind) => new ArtifactAdapter(kind, db.sql));
  await Promise.all(kinds.map((adapter, i) => adapter.upsert(`g2-${i}`, { kind: 'x', grantId: 'grant-2', jti: `g2-${i}` }, 60)));
  await kinds[0]!.upsert('other', { kind: 'AccessToken', grantId: 'grant-3', jti: 'other' }, 60);
  await Promise.all(kinds.map((adapter) => adapter.revokeByGrantId('grant-2')));
  for (const [i, adapter] of kinds.entries()) expect(await adapter.find(`g2-${i}`)).toBeUndefined();
  expect(await kinds[0]!.find('other')).toBeDefined();
});

// PGlite has one session for everything, so only a server can deadlock.
// (Grants here, which the writer saves: a session is saved by a statement of
// its own, see the adapter's saveSessionKeeping.)
it.runIf(process.env.TEST_DATABASE === 'postgres')(
  'a batched save chosen as a deadlock victim is retried and lands',
  async () => {
    const grants = new ArtifactAdapter('Grant', db.sql);
    await Promise.all(['s-1', 's-2'].map((id) => grants.upsert(id, { kind: 'Grant', jti: id, accountId: 'before' }, 600)));
    // The batch locks its rows in primary-key order: take the later one first.
    const [first, second] = ['s-1', 's-2'].sort((a, b) => (sha256(a) < sha256(b) ? -1 : 1)) as [string, string];
    const other = new pg.Client({ connectionString: testDb.env.DATABASE_URL });
    await other.connect();
    try {
      await other.query('BEGIN');
      // The other transaction waits long before looking for deadlocks, so ours is the victim.
      await other.query("SET LOCAL deadlock_timeout = '20s'");
      const touch = "UPDATE provider_artifacts SET payload = payload || '{\"accountId\":\"other\"}' WHERE kind = 'Grant' AND id = $1";
      await other.query(touch, [sha256(second)]);

      const batch = Promise.all([first, second].map((id) => grants.upsert(id, { kind: 'Grant', jti: id, accountId: 'after' }, 600)));
      batch.catch(() => undefined);
      // Wait until the batch holds `first` and waits for `second` ...
      for (let waited = 0; ; waited += 20) {
        const { rows } = await other.query("SELECT count(*)::int AS n FROM pg_locks WHERE NOT granted AND locktype = 'transactionid'");
        if (rows[0].n > 0) break;
        if (waited > 5000) throw new Error('the batch never waited for the row lock');
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      // ... then close the cycle. PostgreSQL aborts the batch; this goes through.
      await other.query(touch, [sha256(first)]);
      await other.query('COMMIT');
      await batch;
    } finally {
      await other.end();
    }
    for (const id of [first, second]) expect(await grants.find(id)).toMatchObject({ accountId: 'after' });
  },
  30_000,
);

// Group commit: one save statement at a time; what is saved meanwhile waits
// and goes in the next one (artifact-writer.ts). A row lock held from outside
// keeps the first statement running for as long as the test needs.
it.runIf(process.env.TEST_DATABASE === 'postgres')(
  'saves made while a save is in flight wait for it, then share one statement',
  async () => {
    const grants = new ArtifactAdapter('Grant', db.sql);
    await grants.upsert('held', { kind: 'Grant', jti: 'held', accountId: 'before' }, 600);
    const other = new pg.Client({ connectionString: testDb.env.DATABASE_URL });
    await other.connect();
    const later = Array.from({ length: 5 }, (_, i) => `later-${i}`);
    try {
      await other.query('BEGIN');
      await other.query("SELECT 1 FROM provider_artifacts WHERE kind = 'Grant' AND id = $1 FOR UPDATE", [sha256('held')]);
      const first = grants.upsert('held', { kind: 'Grant', jti: 'held', accountId: 'after' }, 600);
      for (let waited = 0; ; waited += 20) {
        const { rows } = await other.query("SELECT count(*)::int AS n FROM pg_locks WHERE NOT granted AND locktype = 'transactionid'");
        if (rows[0].n > 0) break;
        if (waited > 5000) throw new Error('the first save never waited for the row lock');
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      // Each in an event-loop turn of its own: without group commit, a statement each.
      const saves: Promise<void>[] = [];
      for (const id of later) {
        saves.push(grants.upsert(id, { kind: 'Grant', jti: id, accountId: 'later' }, 600));
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      let landed = false;
      void Promise.all(saves).then(() => (landed = true));
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(landed).toBe(false);
      await other.query('COMMIT');
      await first;
      await Promise.all(saves);
      expect(landed).toBe(true);
      // Rows written by one statement (an autocommit transaction) share its transaction id.
      const { rows } = await other.query('SELECT DISTINCT xmin::text FROM provider_artifacts WHERE kind = $1 AND id = ANY($2)', [
        'Grant',
        later.map(sha256),
      ]);
      expect(rows).toHaveLength(1);
    } finally {
      await other.end();
    }
    expect(await grants.find('held')).toMatchObject({ accountId: 'after' });
    for (const id of later) expect(await grants.find(id)).toMatchObject({ accountId: 'later' });
  },
  30_000,
);

// A table that grows from nothing while a server runs (autovacuum may be off,
// as on the machines these tests run on) must still be read through its
// indexes: plans made while it was tiny must not be kept.
it.runIf(process.env.TEST_DATABASE === 'postgres')(
  'lookups made after the table has grown from empty still use its index',
  async () => {
    const tokens = new ArtifactAdapter('AccessToken', db.sql);
    // A page of rows, and enough lookups for PostgreSQL to settle on a plan for that size.
    await Promise.all(Array.from({ length: 30 }, (_, i) => tokens.upsert(`first-${i}`, { kind: 'AccessToken', jti: `first-${i}` }, 3600)));
    for (let i = 0; i < 12; i++) await Promise.all([tokens.find(`first-${i}`), tokens.find(`missing-${i}`)]);
    const admin = new pg.Client({ connectionString: testDb.env.DATABASE_URL });
    await admin.connect();
    try {
      await admin.query(`INSERT INTO provider_artifacts (kind, id, payload, expires_at)
                         SELECT 'AccessToken', md5(i::text), '{}', now() + interval '1 hour' FROM generate_series(1, 20000) i`);
      const seqScans = async () => {
        // Backends report their counters when idle, at most once a second.
        await new Promise((resolve) => setTimeout(resolve, 1500));
        const { rows } = await admin.query("SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'provider_artifacts'");
        return Number(rows[0].seq_scan);
      };
      const before = await seqScans();
      for (let i = 0; i < 20; i++) await Promise.all([tokens.find(`grown-${i}`), tokens.find(`other-${i}`)]);
      expect((await seqScans()) - before).toBe(0);
      // Nor is any lookup JIT-compiled once the table's size makes plans look expensive.
      const { rows } = await db.sql.query<{ jit: string }>({ name: 'test-jit', text: "SELECT current_setting('jit') AS jit" }, []);
      expect(rows[0]!.jit).toBe('off');
    } finally {
      await admin.end();
    }
  },
  30_000,
);

it('a session signed out of stays signed out when a request that loaded it before saves it back after', async () => {
  const sessions = new ArtifactAdapter('Session', db.sql);
  await sessions.upsert('session-1', { kind: 'Session', accountId: 'account-1', uid: 'uid-1', jti: 'session-1' }, 14 * 86400);
  const loaded = await sessions.find('session-1');
  expect(loaded).toMatchObject({ accountId: 'account-1' });
  await sessions.destroy('session-1');
  await sessions.upsert('session-1', loaded!, 3600); // the in-flight request's save, at its end
  expect(await sessions.find('session-1')).toBeUndefined();
  expect(await sessions.findByUid('uid-1')).toBeUndefined();
  // What is left says nothing about whose session it was, and goes within the hour (the sweep).
  const { rows } = await db.sql.query<{ payload: unknown; expires_at: Date }>(
    { name: 'test-ended-session', text: `SELECT payload, expires_at FROM provider_artifacts WHERE kind = 'Session' AND id = $1` },
    [sha256('session-1')],
  );
  expect(rows).toEqual([{ payload: { signedOut: true }, expires_at: expect.any(Date) }]);
  expect(rows[0]!.expires_at.getTime()).toBeLessThanOrEqual(Date.now() + 3600_000 + 5_000);
  // Other sessions are saved and changed as ever.
  await sessions.upsert('session-2', { kind: 'Session', accountId: 'account-2', jti: 'session-2' }, 3600);
  await sessions.upsert('session-2', { kind: 'Session', accountId: 'account-3', jti: 'session-2' }, 3600);
  expect(await sessions.find('session-2')).toMatchObject({ accountId: 'account-3' });
});
