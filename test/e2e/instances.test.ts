// Several instances of one deployment on one PostgreSQL database, the
// production topology: what each keeps in its own memory (cookie keys, cached
// clients) must agree with the others and with the database. PostgreSQL only:
// the embedded database is held by one process.
import pg from 'pg';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { startServer, type RunningServer } from '../../src/server.js';
import { freshDatabase, type TestDatabase } from '../support/database.js';
import { embedded, heldAtTheLock } from '../support/locks.js';
import { freePort, runCli, startPortcullis, TEST_ENV, type TestPortcullis } from '../support/portcullis.js';
import { authorizationRequest, discover, REDIRECT_URI } from '../support/relying-party.js';

describe.skipIf(embedded)('several instances of one deployment', () => {
  const cleanup: (() => Promise<unknown>)[] = [];
  afterAll(async () => {
    for (const step of cleanup.reverse()) await step();
  });

  it('two instances starting together on a new database make one cookie key, and each accepts the other’s cookies', async () => {
    const database: TestDatabase = await freshDatabase();
    cleanup.push(() => database.drop());
    const [portA, portB] = [await freePort(), await freePort()];
    // One deployment: one database, one encryption key, one issuer; each instance its own port.
    const env = { ...TEST_ENV, ...database.env, HOST: '127.0.0.1', ISSUER: `http://localhost:${portA}`, ENCRYPTION_KEYS: 'one-encryption-key-for-the-whole-deployment-0123' };
    expect((await runCli(['migrate'], env)).code).toBe(0);

    // Holding back every insert of a cookie key until both instances got that far
    // puts their first starts side by side: each finds no key, and would make one.
    const [admin, watcher] = [new pg.Client({ connectionString: database.env.DATABASE_URL }), new pg.Client({ connectionString: database.env.DATABASE_URL })];
    for (const client of [admin, watcher]) {
      await client.connect();
      cleanup.push(() => client.end());
    }
    await admin.query('BEGIN');
    await admin.query('LOCK TABLE cookie_keys IN SHARE ROW EXCLUSIVE MODE');
    const silent = createLogger('silent');
    const starting = [portA, portB].map((port) => startServer(loadConfig({ ...env, PORT: String(port) }), silent));
    for (const start of starting) cleanup.push(() => start.then((server: RunningServer) => server.close(), () => undefined));
    // Both held: at the table, or one of them at the lock that makes them take
    // turns. (Watched from outside the transaction, whose view of the
    // statistics would stay as it first read them.)
    await heldAtTheLock(watcher, 2, 30_000);
    await admin.query('COMMIT');
    await Promise.all(starting);

    expect((await admin.query('SELECT count(*)::int AS n FROM cookie_keys')).rows[0].n).toBe(1);
    // A sign-in that starts on one instance goes on at the other.
    const created = await runCli(['client', 'create', '--name', 'Hopping', '--redirect-uri', REDIRECT_URI, '--json'], { ...env, PORT: String(portA) });
    const { client_id: clientId, client_secret: clientSecret } = JSON.parse(created.stdout) as { client_id: string; client_secret: string };
    const rp = await discover(env.ISSUER, clientId, clientSecret);
    for (const [first, then] of [[portA, portB], [portB, portA]]) {
      const authorization = (await authorizationRequest(rp, 'openid')).url;
      authorization.port = String(first);
      const started = await fetch(authorization, { redirect: 'manual' });
      expect(started.status).toBe(303);
      const cookies = started.headers.getSetCookie().map((cookie) => cookie.split(';')[0]).join('; ');
      const page = await fetch(`http://localhost:${then}${started.headers.get('location')}`, { headers: { cookie: cookies } });
      expect(page.status).toBe(200);
      expect(await page.text()).toContain('Sign in');
    }
  });

  it('a feed connection that stops answering without closing is given up within seconds: a rotated secret is refused', async () => {
    const pc: TestPortcullis = await startPortcullis();
    cleanup.push(() => pc.database.drop(), () => pc.server.close());
    const robot = (await pc.createClient({ name: 'Robot', grantTypes: ['client_credentials'] })) as { client_id: string; client_secret: string };
    expect((await pc.clientCredentials(robot)).status).toBe(200); // the client is cached now

    const admin = pc.outsideConnection();
    await admin.connect();
    cleanup.push(() => admin.end());
    const { rows } = await admin.query<{ pid: number }>(
      `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'portcullis listen portcullis_client_changes'`,
    );
    expect(rows).toHaveLength(1);
    // The connection's server process frozen: the connection stays open and
    // nothing arrives on it, as when a network drops an idle link silently.
    const backend = rows[0]!.pid;
    process.kill(backend, 'SIGSTOP');
    try {
      const rotated = await pc.cli(['client', 'rotate-secret', robot.client_id, '--json']);
      expect(rotated.code).toBe(0);
      const since = Date.now();
      let status = 200;
      while (status === 200 && Date.now() - since < 20_000) {
        await sleep(250);
        status = (await pc.clientCredentials(robot)).status;
      }
      // Unnoticed, the cached client would answer for its whole cache life (60 s).
      expect(status).toBe(401);
      expect(Date.now() - since).toBeLessThan(15_000);
      const { client_secret: secret } = JSON.parse(rotated.stdout) as { client_secret: string };
      expect((await pc.clientCredentials({ client_id: robot.client_id, client_secret: secret })).status).toBe(200);
    } finally {
      process.kill(backend, 'SIGCONT');
    }
  });

  it('an instance whose clock is off from the database\'s by more than 2 s says so at start, by how much and which way; a CLI stamps by the database\'s', async () => {
    const first = await startPortcullis();
    cleanup.push(() => first.close());
    await skewDatabaseClock(first, '+');
    const logged = await clockWarning(first);
    expect(logged).toMatchObject({ level: 'warn', message: expect.stringContaining(' s behind the database') });
    expect(logged.seconds).toBeGreaterThan(-61);
    expect(logged.seconds).toBeLessThan(-59);
    // The first instance's connections were made before: its clock and the database's agreed.
    expect(first.log.some((line) => line.includes('clock is'))).toBe(false);
    // A CLI stamps the audit trail by the database's clock, not its own.
    const env = { ...TEST_ENV, ...first.database.env };
    const made = await runCli(['api', 'create', '--identifier', 'https://clocked.example.com', '--scope', 'read:time'], env);
    expect(made.code).toBe(0);
    const listed = await runCli(['audit', 'list', '--json', '--limit', '1'], env);
    const [recorded] = (JSON.parse(listed.stdout) as { command: string; at: string }[]).slice(-1);
    expect(recorded!.command).toBe('api create');
    expect(Date.parse(recorded!.at) - Date.now()).toBeGreaterThan(50_000);
  });

  it('an instance whose clock is ahead of the database\'s says so too', async () => {
    const first = await startPortcullis();
    cleanup.push(() => first.close());
    await skewDatabaseClock(first, '-');
    const logged = await clockWarning(first);
    expect(logged).toMatchObject({ level: 'warn', message: expect.stringContaining(' s ahead of the database') });
    expect(logged.seconds).toBeGreaterThan(59);
    expect(logged.seconds).toBeLessThan(61);
  });

  /** Sets the database's clock a minute ahead (+) or behind (-), for connections made from now on (the tables are made already). */
  async function skewDatabaseClock(pc: TestPortcullis, sign: '+' | '-'): Promise<void> {
    const name = new URL(pc.database.env.DATABASE_URL!).pathname.slice(1);
    const admin = pc.outsideConnection();
    await admin.connect();
    try {
      await admin.query(`CREATE SCHEMA skewed`);
      await admin.query(`CREATE FUNCTION skewed.clock_timestamp() RETURNS timestamptz LANGUAGE sql AS 'SELECT pg_catalog.clock_timestamp() ${sign} interval ''1 minute'''`);
      await admin.query(`CREATE FUNCTION skewed.now() RETURNS timestamptz LANGUAGE sql AS 'SELECT pg_catalog.now() ${sign} interval ''1 minute'''`);
      // (After public, where the tables are and new ones would go; before pg_catalog, whose functions it shadows.)
      await admin.query(`ALTER DATABASE "${name}" SET search_path = public, skewed, pg_catalog`);
    } finally {
      await admin.end();
    }
  }

  /** The clock warning of a second instance started on `first`'s database (whose own connections were made before the skew). */
  async function clockWarning(first: TestPortcullis): Promise<{ level: string; message: string; seconds: number }> {
    const second = await startPortcullis({ LOG_LEVEL: 'info' }, first.database);
    cleanup.push(() => second.close());
    let warning: string | undefined;
    for (let tries = 0; !warning && tries < 100; tries++) {
      warning = second.log.find((line) => line.includes('clock is'));
      if (!warning) await sleep(50);
    }
    expect(warning, 'no clock warning').toBeDefined();
    return JSON.parse(warning!) as { level: string; message: string; seconds: number };
  }
});
