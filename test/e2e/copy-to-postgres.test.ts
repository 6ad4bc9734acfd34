// Leaving the embedded database: `portcullis copy --to` puts everything it
// holds into a new PostgreSQL database, and a server started there carries on
// where the embedded one stopped (the same people signed in, tokens, keys).
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import * as oidc from 'openid-client';
import * as OTPAuth from 'otpauth';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { SERVER_URL, serverDatabase, type TestDatabase } from '../support/database.js';
import { embedded } from '../support/locks.js';
import { runCli, startPortcullis, type TestPortcullis } from '../support/portcullis.js';
import { authorizationRequest, discover, logIn, pageKind, REDIRECT_URI, signIn, visit } from '../support/relying-party.js';
import { codeAt, enterCode, keyOn, stepNow } from '../support/totp.js';
import { UserAgent } from '../support/user-agent.js';

const cleanup: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const step of cleanup.reverse()) await step().catch(() => undefined);
});

/** Every row of every table but the migration record, as PostgreSQL's JSON of it, sorted. */
async function everyRow(connection: pg.Client): Promise<Record<string, string[]>> {
  const { rows: tables } = await connection.query<{ tablename: string }>(
    `SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> '_prisma_migrations' ORDER BY tablename`,
  );
  const all: Record<string, string[]> = {};
  for (const { tablename } of tables) {
    const { rows } = await connection.query<{ row: string }>(`SELECT row_to_json(t)::text AS row FROM ${pg.escapeIdentifier(tablename)} t`);
    all[tablename] = rows.map((row) => row.row).sort();
  }
  return all;
}

async function withConnection<T>(connectionString: string, work: (connection: pg.Client) => Promise<T>): Promise<T> {
  const connection = new pg.Client({ connectionString });
  await connection.connect();
  try {
    return await work(connection);
  } finally {
    await connection.end();
  }
}

async function newTarget(): Promise<string> {
  const target: TestDatabase = await serverDatabase('portcullis_copy');
  cleanup.push(() => target.drop());
  return target.env.DATABASE_URL!;
}

const tablesOf = (url: string) =>
  withConnection(url, async (connection) => (await connection.query<{ tablename: string }>(`SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1`)).rows.map((row) => row.tablename));

// The source is the embedded database whichever project runs the suite; once is enough.
// Each test starts several servers and CLIs, each on a database of its own: more than the suite's minute on a busy machine.
describe.runIf(embedded)('portcullis copy --to', () => {
  it('refuses while the server runs, then copies every row, and a server on PostgreSQL carries on: sessions, tokens, keys, passwords, secrets, the audit trail', { timeout: 180_000 }, async () => {
    const source: TestPortcullis = await startPortcullis();
    cleanup.push(() => source.database.drop());
    let running: TestPortcullis | undefined = source;
    cleanup.push(() => running?.server.close() ?? Promise.resolve());
    const client = await source.createClient({ name: 'Shop', redirectUris: [REDIRECT_URI], scope: 'openid email offline_access' });
    await source.createUser('ada@example.com', 'correct horse battery staple', 'Ada');
    expect((await source.cli(['api', 'create', '--identifier', 'https://orders.example', '--scope', 'read:orders'])).code).toBe(0);
    const signedIn = new UserAgent();
    const before = await logIn(signedIn, await discover(source.issuer, client.client_id, client.client_secret), 'openid email offline_access', {
      email: 'ada@example.com',
      password: 'correct horse battery staple',
    }, { prompt: 'consent' });
    expect(before.tokens.refresh_token).toBeTruthy();
    // Someone who set up TOTP: a key sealed under the server secret the copy carries too.
    expect((await source.cli(['user', 'create', '--email', 'tom@example.com', '--password-stdin', '--totp', 'required'], 'toms long passphrase\n')).code).toBe(0);
    const tomSignsIn = async (issuer: string, step: number, totp?: OTPAuth.TOTP) => {
      const ua = new UserAgent();
      const page = await signIn(ua, await visit(ua, (await authorizationRequest(await discover(issuer, client.client_id, client.client_secret), 'openid')).url), 'tom@example.com', 'toms long passphrase');
      const key = totp ?? keyOn(page).totp;
      const next = await enterCode(ua, page, codeAt(key, step));
      expect(pageKind(next), next.html.slice(0, 500)).toBe('consent');
      return key;
    };
    const step = stepNow();
    const totp = await tomSignsIn(source.issuer, step);
    const target = await newTarget();

    const whileRunning = await source.cli(['copy', '--to', target]);
    expect(whileRunning.code).toBe(1);
    expect(whileRunning.stderr).toContain('a server is running on the embedded database');
    expect(await tablesOf(target)).toEqual([]);

    await source.server.close();
    running = undefined;
    const cliEnv = { ...source.env };
    const copied = await runCli(['copy', '--to', target], cliEnv);
    expect(copied.stderr).toBe('');
    expect(copied.code).toBe(0);
    expect(copied.stdout).toMatch(/^copied clients: 2 row\(s\)$/m); // the app and the API's own credentials
    expect(copied.stdout).toMatch(/^copied users: 2 row\(s\)$/m);
    expect(copied.stdout).toMatch(/^copied totp_secrets: 1 row\(s\)$/m);
    const keyFile = path.join(source.env.DATA_DIR!, 'encryption.key');
    expect(copied.stdout).toContain(`ENCRYPTION_KEYS set to the content of ${keyFile}`);

    // Every row as it was, to the millisecond and the JSON document, in every table.
    const targetRows = await withConnection(target, everyRow);
    const restarted = await startPortcullis({ PORT: source.env.PORT, ISSUER: source.issuer }, source.database);
    running = restarted;
    const connection = restarted.outsideConnection();
    await connection.connect();
    const sourceRows = await everyRow(connection).finally(() => connection.end());
    // The copy itself was recorded afterwards, in the embedded database's audit trail alone.
    expect(JSON.parse(sourceRows.admin_events!.pop()!)).toMatchObject({ command: 'copy', outcome: 'ok' });
    expect(Object.keys(targetRows).length).toBeGreaterThanOrEqual(9);
    expect(targetRows).toEqual(sourceRows);
    await restarted.server.close();
    running = undefined;

    // A server on the copy, at the same address, with the key that sealed the copied keys.
    const moved = await startPortcullis(
      { PORT: source.env.PORT, ISSUER: source.issuer, DATABASE_URL: target, ENCRYPTION_KEYS: readFileSync(keyFile, 'utf8').trim() },
      { kind: 'postgres', env: { DATABASE_URL: target }, drop: async () => undefined },
    );
    running = moved;
    const config = await discover(moved.issuer, client.client_id, client.client_secret);
    // The refresh token and the access token issued on the embedded database.
    const refreshed = await oidc.refreshTokenGrant(config, before.tokens.refresh_token!);
    expect(refreshed.access_token).toBeTruthy();
    expect(refreshed.claims()?.sub).toBe(before.tokens.claims()?.sub);
    const info = await oidc.fetchUserInfo(config, before.tokens.access_token, before.tokens.claims()!.sub);
    expect(info.email).toBe('ada@example.com');
    // Signed by the same key: an API that cached the JWKS needs nothing new.
    const kid = (token: string) => JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString()).kid;
    expect(kid(refreshed.id_token!)).toBe(kid(before.tokens.id_token!));
    // The browser that signed in is still signed in, and its consent holds: straight back to the app.
    const again = await authorizationRequest(config, 'openid email offline_access');
    expect(pageKind(await visit(signedIn, again.url))).toBe('callback');
    // The password (the client's secret authenticated the refresh above).
    const fresh = await logIn(new UserAgent(), config, 'openid', { email: 'ada@example.com', password: 'correct horse battery staple' });
    expect(fresh.seen).toEqual(['login']);
    // The TOTP key, opened under the copied secret (the step after: a code is taken once, the copy knows which).
    await tomSignsIn(moved.issuer, step + 1, totp);
    // The audit trail came along, and goes on after the copied entries.
    expect((await moved.cli(['user', 'create', '--email', 'grace@example.com', '--password-stdin'], 'another long passphrase\n')).code).toBe(0);
    const trail = JSON.parse((await moved.cli(['audit', 'list', '--json'])).stdout) as { command: string }[];
    expect(trail.map((event) => event.command)).toEqual(['client create', 'user create', 'api create', 'user create', 'copy', 'user create']);
    expect(moved.errors).toEqual([]);
    // The embedded database's start said it is not for production; PostgreSQL's did not.
    const notForProduction = (log: string[]) => log.filter((line) => line.includes('the embedded database is for trying Portcullis and development')).length;
    expect([notForProduction(source.log), notForProduction(moved.log)]).toEqual([1, 0]);
  });

  it('refuses a database that is not new, a password in --to, and DATABASE_URL; a non-UTF-8 one, a mistyped DATA_DIR; a copy that fails leaves the database empty, and it takes the copy again; two at once', { timeout: 180_000 }, async () => {
    const source: TestPortcullis = await startPortcullis();
    cleanup.push(() => source.database.drop());
    await source.createUser('ada@example.com', 'correct horse battery staple');
    await source.server.close();
    const env = { ...source.env };

    // Another application's database: refused, and left exactly as it was.
    const foreign = await newTarget();
    await withConnection(foreign, (connection) => connection.query('CREATE TABLE invoices (id int PRIMARY KEY); INSERT INTO invoices VALUES (1)'));
    const intoForeign = await runCli(['copy', '--to', foreign], env);
    expect(intoForeign.code).toBe(1);
    expect(intoForeign.stderr).toBe(
      'portcullis: the database at --to is not empty (it holds 1 table(s): invoices): give the copy a new database of its own (CREATE DATABASE), which nothing else uses\n',
    );
    expect(await tablesOf(foreign)).toEqual(['invoices']);

    const withPassword = new URL(foreign);
    withPassword.password = 'secret';
    const passwordGiven = await runCli(['copy', '--to', withPassword.toString()], env);
    expect(passwordGiven.code).toBe(1);
    expect(passwordGiven.stderr).toContain('--to must not hold a password');
    expect(passwordGiven.stderr).not.toContain('secret');
    // node-postgres reads one from the query too.
    const inQuery = await runCli(['copy', '--to', `${foreign}?password=secret`], env);
    expect([inQuery.code, inQuery.stderr]).toEqual([1, expect.stringContaining('--to must not hold a password')]);
    expect(inQuery.stderr).not.toContain('secret');

    // A mistyped DATA_DIR: nothing to copy, and no new database made there.
    const nowhere = path.join(source.env.DATA_DIR!, 'typo');
    const noSource = await runCli(['copy', '--to', foreign], { ...env, DATA_DIR: nowhere });
    expect([noSource.code, noSource.stderr]).toEqual([1, `portcullis: DATA_DIR (${nowhere}) holds no embedded database: nothing to copy (check DATA_DIR)\n`]);
    expect(existsSync(nowhere)).toBe(false);

    const notPostgres = await runCli(['copy', '--to', 'mysql://localhost/x'], env);
    expect(notPostgres.code).toBe(1);
    expect(notPostgres.stderr).toContain('--to must be a postgresql:// connection string');
    const missing = await runCli(['copy'], env);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('--to is required');

    const onPostgres = await runCli(['copy', '--to', foreign], { ...env, DATABASE_URL: foreign });
    expect(onPostgres.code).toBe(1);
    expect(onPostgres.stderr).toContain('use pg_dump and pg_restore');

    // Names and emails are Unicode: a LATIN1 database is refused before anything is written.
    const latin1 = await newTarget();
    const latin1Name = new URL(latin1).pathname.slice(1);
    await withConnection(SERVER_URL, async (connection) => {
      await connection.query(`DROP DATABASE ${latin1Name}`);
      await connection.query(`CREATE DATABASE ${latin1Name} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0`);
    });
    const intoLatin1 = await runCli(['copy', '--to', latin1], env);
    expect(intoLatin1.code).toBe(1);
    expect(intoLatin1.stderr).toContain("the database at --to is encoded LATIN1, which cannot hold every name, email and request parameter Portcullis stores: make a database with CREATE DATABASE … ENCODING 'UTF8'");
    expect(await tablesOf(latin1)).toEqual([]);

    // A copy that fails midway (here a trigger refuses the users, made as the migrations make
    // the table) leaves the database as it was, empty, and it takes the copy once the cause is gone.
    const target = await newTarget();
    await withConnection(target, (connection) =>
      connection.query(`
        CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'no users today'; END $$;
        CREATE FUNCTION arm() RETURNS event_trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands() WHERE command_tag = 'CREATE TABLE' AND object_identity = 'public.users') THEN
            CREATE TRIGGER refuse BEFORE INSERT ON public.users FOR EACH STATEMENT EXECUTE FUNCTION refuse();
          END IF;
        END $$;
        CREATE EVENT TRIGGER arm ON ddl_command_end EXECUTE FUNCTION arm()`),
    );
    const failed = await runCli(['copy', '--to', target], env);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toBe('portcullis: the copy failed, and the database at --to is left as it was, empty: no users today\n');
    expect(failed.stdout).toMatch(/^copied clients: \d+ row\(s\)$/m); // clients went in before users failed
    expect(await tablesOf(target)).toEqual([]);
    // The connection lost at the same point (its backend ends itself): the same one line, no stack trace.
    await withConnection(target, (connection) =>
      connection.query(`CREATE OR REPLACE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NULL; END $$`),
    );
    const lost = await runCli(['copy', '--to', target], env);
    expect(lost.code).toBe(1);
    expect(lost.stderr).toMatch(/^portcullis: the copy failed, and the database at --to is left as it was, empty: [^\n]+\n$/);
    expect(await tablesOf(target)).toEqual([]);
    await withConnection(target, (connection) => connection.query('DROP EVENT TRIGGER arm'));
    const copied = await runCli(['copy', '--to', target, '--json'], env);
    expect(copied.stderr).toBe('');
    expect(JSON.parse(copied.stdout)).toMatchObject({ copied: { users: 1, passwords: 1 }, encryption_key_file: path.join(source.env.DATA_DIR!, 'encryption.key') });
    const twice = await runCli(['copy', '--to', target], env);
    expect(twice.code).toBe(1);
    expect(twice.stderr).toMatch(/^portcullis: the database at --to is not empty \(it holds 12 table\(s\): _prisma_migrations, admin_events, apis, clients, cookie_keys, …\)/);

    // Two copies at once into one new database (two sources): one copies, the other finds it taken.
    const other: TestPortcullis = await startPortcullis();
    cleanup.push(() => other.database.drop());
    await other.server.close();
    const shared = await newTarget();
    const both = await Promise.all([runCli(['copy', '--to', shared], env), runCli(['copy', '--to', shared], { ...other.env })]);
    expect(both.map((result) => result.code).sort()).toEqual([0, 1]);
    expect(both.find((result) => result.code === 1)!.stderr).toContain('the database at --to is not empty');
    const keys = await withConnection(shared, async (connection) => (await connection.query('SELECT count(*)::int AS n FROM signing_keys')).rows[0].n);
    const winner = both[0]!.code === 0 ? env : other.env;
    const winnerKeys = JSON.parse((await runCli(['keys', 'list', '--json'], winner)).stdout) as unknown[];
    expect(keys).toBe(winnerKeys.length);
  });
});
