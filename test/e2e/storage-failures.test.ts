// When the database refuses a write, the client gets an error and no token:
// nothing is handed out that was not stored (src/provider/request-scope.ts
// lets token saves overlap the rest of the request, never the response).
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { dbRelay } from '../support/db-relay.js';
import { freePort, startPortcullis, type TestPortcullis } from '../support/portcullis.js';
import { authorizationRequest, discover, logIn, pageKind, REDIRECT_URI, signIn, visit } from '../support/relying-party.js';
import { UserAgent } from '../support/user-agent.js';

let pc: TestPortcullis;
let admin: pg.Client;

beforeAll(async () => {
  pc = await startPortcullis();
  admin = pc.outsideConnection();
  await admin.connect();
});

afterAll(async () => {
  await admin?.end();
  await pc?.close();
});

it('a token whose save fails is not handed out, and the next one is', async () => {
  const robot = await pc.createClient({ name: 'Robot', grantTypes: ['client_credentials'], scope: 'openid' });
  expect((await pc.clientCredentials(robot)).status).toBe(200);
  let refusedId: string | null = null;

  await admin.query(`CREATE FUNCTION refuse_tokens() RETURNS trigger LANGUAGE plpgsql AS $$
                     BEGIN RAISE EXCEPTION 'write refused (simulated)'; END $$`);
  await admin.query(`CREATE TRIGGER refuse_tokens BEFORE INSERT ON provider_artifacts
                     FOR EACH ROW WHEN (NEW.kind = 'ClientCredentials') EXECUTE FUNCTION refuse_tokens()`);
  try {
    const refused = await pc.clientCredentials(robot);
    refusedId = refused.headers.get('x-request-id');
    expect(refused.status).toBe(500);
    expect(refused.body).toEqual({ error: 'server_error', error_description: 'oops! something went wrong' });
    expect(refused.body.access_token).toBeUndefined();
  } finally {
    await admin.query('DROP TRIGGER refuse_tokens ON provider_artifacts');
    await admin.query('DROP FUNCTION refuse_tokens()');
  }
  const { status, body } = await pc.clientCredentials(robot);
  expect(status).toBe(200);
  const introspected = await fetch(`${pc.issuer}/token/introspection`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`${robot.client_id}:${robot.client_secret}`).toString('base64')}`,
    },
    body: new URLSearchParams({ token: body.access_token as string }),
  });
  expect(await introspected.json()).toMatchObject({ active: true, client_id: robot.client_id });
  // The failure was logged as a server error, with no token in the line, and
  // with the request id the client got in X-Request-Id.
  expect(refusedId).toMatch(/^[0-9a-f-]{36}$/);
  expect(pc.errors.filter((line) => line.includes('write refused (simulated)')).map((line) => JSON.parse(line).request)).toEqual([refusedId]);
  expect(pc.errors.join('\n')).not.toContain(body.access_token as string);
});

it('a server error on a page is logged once, with the reference the page shows and the request id of its response', async () => {
  const web = await pc.createClient({ name: 'Web', redirectUris: [REDIRECT_URI] });
  const rp = await discover(pc.issuer, web.client_id, web.client_secret);
  await admin.query(`CREATE FUNCTION refuse_interactions() RETURNS trigger LANGUAGE plpgsql AS $$
                     BEGIN RAISE EXCEPTION 'interaction write refused (simulated)'; END $$`);
  await admin.query(`CREATE TRIGGER refuse_interactions BEFORE INSERT ON provider_artifacts
                     FOR EACH ROW WHEN (NEW.kind = 'Interaction') EXECUTE FUNCTION refuse_interactions()`);
  try {
    const response = await fetch((await authorizationRequest(rp, 'openid')).url, { headers: { accept: 'text/html' }, redirect: 'manual' });
    expect(response.status).toBe(500);
    const html = await response.text();
    const reference = /Reference: <code>([^<]+)<\/code>/.exec(html)?.[1];
    expect(reference).toMatch(/^[0-9a-f]{8}$/);
    // The library's words for an internal error are not shown, nor what failed: the reference is the way to them.
    expect(html).not.toContain('something went wrong');
    expect(html).not.toContain('simulated');
    const logged = pc.errors.filter((line) => line.includes('interaction write refused (simulated)')).map((line) => JSON.parse(line));
    expect(logged).toEqual([expect.objectContaining({ request: response.headers.get('x-request-id'), reference, route: 'authorization' })]);
  } finally {
    await admin.query('DROP TRIGGER refuse_interactions ON provider_artifacts');
    await admin.query('DROP FUNCTION refuse_interactions()');
  }
});

it('a server error on the device code page shows the reference its log line names', async () => {
  const tv = await pc.createClient({ name: 'Hall TV', grantTypes: ['device_code'], scope: 'openid', public: true });
  const started = await fetch(`${pc.issuer}/device/auth`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ client_id: tv.client_id, scope: 'openid' }),
  });
  const { user_code: userCode } = (await started.json()) as { user_code: string };
  const ua = new UserAgent();
  const entry = await ua.open(`${pc.issuer}/device`);
  const confirmation = await ua.post(entry, '/device', { ...UserAgent.formFields(entry, '/device'), user_code: userCode });
  const form = [...confirmation.html.matchAll(/<form[^>]*>[\s\S]*?<\/form>/g)].map((match) => match[0]).find((html) => html.includes('name="confirm"'));
  expect(form).toBeDefined();
  // Continue marks the code as being confirmed: that write is refused.
  await admin.query(`CREATE FUNCTION refuse_device_codes() RETURNS trigger LANGUAGE plpgsql AS $$
                     BEGIN RAISE EXCEPTION 'device code write refused (simulated)'; END $$`);
  await admin.query(`CREATE TRIGGER refuse_device_codes BEFORE INSERT OR UPDATE ON provider_artifacts
                     FOR EACH ROW WHEN (NEW.kind = 'DeviceCode') EXECUTE FUNCTION refuse_device_codes()`);
  try {
    const page = await ua.post({ ...confirmation, html: form! }, UserAgent.formAction({ ...confirmation, html: form! }, '/device'), UserAgent.hiddenFields({ ...confirmation, html: form! }));
    expect(page.status).toBe(500);
    const reference = /Reference: <code>([^<]+)<\/code>/.exec(page.html)?.[1];
    expect(reference).toMatch(/^[0-9a-f]{8}$/);
    const logged = pc.errors.filter((line) => line.includes('device code write refused (simulated)')).map((line) => JSON.parse(line));
    expect(logged).toEqual([expect.objectContaining({ reference, route: 'code_verification' })]);
  } finally {
    await admin.query('DROP TRIGGER refuse_device_codes ON provider_artifacts');
    await admin.query('DROP FUNCTION refuse_device_codes()');
  }
});

it('a database out of file descriptors or memory (SQLSTATE 53000, 53200) is answered 503 with Retry-After, and logged in one line for the spell', async () => {
  const robot = await pc.createClient({ name: 'Starved robot', grantTypes: ['client_credentials'], scope: 'openid' });
  for (const sqlstate of ['53000', '53200']) {
    await admin.query(`CREATE FUNCTION starve_tokens() RETURNS trigger LANGUAGE plpgsql AS $$
                       BEGIN RAISE EXCEPTION 'out of file descriptors (simulated)' USING ERRCODE = '${sqlstate}'; END $$`);
    await admin.query(`CREATE TRIGGER starve_tokens BEFORE INSERT ON provider_artifacts
                       FOR EACH ROW WHEN (NEW.kind = 'ClientCredentials') EXECUTE FUNCTION starve_tokens()`);
    try {
      const refused = await pc.clientCredentials(robot);
      expect([sqlstate, refused.status, refused.headers.get('retry-after'), refused.body]).toEqual([sqlstate, 503, '5', { error: 'temporarily_unavailable', error_description: expect.any(String) }]);
      const logged = pc.errors.filter((line) => line.includes(refused.headers.get('x-request-id')!)).map((line) => JSON.parse(line));
      // The first request of the spell; the next within it only at debug.
      if (sqlstate === '53000') {
        expect(logged).toEqual([expect.objectContaining({ message: 'database out of resources', route: 'token' })]);
        expect(logged[0].stack).toBeUndefined();
      } else {
        expect(logged).toEqual([]);
      }
    } finally {
      await admin.query('DROP TRIGGER starve_tokens ON provider_artifacts');
      await admin.query('DROP FUNCTION starve_tokens()');
    }
  }
  expect((await pc.clientCredentials(robot)).status).toBe(200);
});

it("a single-page app's script may read a 503's Retry-After (Access-Control-Expose-Headers: it is no CORS-safelisted header)", async () => {
  const origin = 'http://localhost:5299';
  const page = await pc.createClient({ name: 'Starved page', redirectUris: [`${origin}/callback`], public: true });
  await admin.query(`CREATE FUNCTION starve_pushed() RETURNS trigger LANGUAGE plpgsql AS $$
                     BEGIN RAISE EXCEPTION 'out of memory (simulated)' USING ERRCODE = '53200'; END $$`);
  await admin.query(`CREATE TRIGGER starve_pushed BEFORE INSERT ON provider_artifacts
                     FOR EACH ROW WHEN (NEW.kind = 'PushedAuthorizationRequest') EXECUTE FUNCTION starve_pushed()`);
  try {
    const refused = await fetch(`${pc.issuer}/request`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin },
      body: new URLSearchParams({
        client_id: page.client_id,
        response_type: 'code',
        scope: 'openid',
        redirect_uri: `${origin}/callback`,
        code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
        code_challenge_method: 'S256',
      }),
    });
    expect([refused.status, refused.headers.get('retry-after'), refused.headers.get('access-control-allow-origin')]).toEqual([503, '5', origin]);
    expect(refused.headers.get('access-control-expose-headers')?.split(',').map((name) => name.trim().toLowerCase())).toContain('retry-after');
  } finally {
    await admin.query('DROP TRIGGER starve_pushed ON provider_artifacts');
    await admin.query('DROP FUNCTION starve_pushed()');
  }
});

it('the health probes: liveness and readiness answer without credentials, and are not cached', async () => {
  for (const [path, body] of [
    ['/healthz', { status: 'ok' }],
    ['/readyz', { status: 'ready' }],
  ] as const) {
    const response = await fetch(`${pc.issuer}${path}`);
    expect(response.status).toBe(200);
    expect(response.headers.get('cache-control')).toBe('no-store');
    expect(await response.json()).toEqual(body);
    expect((await fetch(`${pc.issuer}${path}`, { method: 'HEAD' })).status).toBe(200);
  }
  const post = await fetch(`${pc.issuer}/readyz`, { method: 'POST' });
  expect(post.status).toBe(405);
  expect(post.headers.get('allow')).toBe('GET, HEAD, OPTIONS');
});

it('readiness follows the database: 503 while it refuses connections, 200 once it is back; liveness stays 200', async (context) => {
  // The embedded database lives in the server's own process: it cannot be taken away from it.
  if (pc.database.kind !== 'postgres') return context.skip();
  const robot = await pc.createClient({ name: 'Refused robot', grantTypes: ['client_credentials'], scope: 'openid' });
  const { rows } = await admin.query<{ name: string; pid: number }>('SELECT current_database() AS name, pg_backend_pid() AS pid');
  const { name, pid: ours } = rows[0]!;
  // From another database: PostgreSQL will not close the one a session is in.
  const serverUrl = new URL(pc.env.DATABASE_URL!);
  serverUrl.pathname = '/postgres';
  const server = new pg.Client({ connectionString: serverUrl.toString() });
  await server.connect();
  try {
    await server.query(`ALTER DATABASE ${name} ALLOW_CONNECTIONS false`);
    // The server's connections (pool, change feeds), not this test's.
    await server.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> $2', [name, ours]);
    const down = await fetch(`${pc.issuer}/readyz`);
    expect(down.status).toBe(503);
    expect(await down.json()).toEqual({ status: 'unavailable', reason: 'the database does not answer' });
    expect((await fetch(`${pc.issuer}/healthz`)).status).toBe(200);
    // Requests meanwhile are answered 503 too ("not currently accepting connections"), not 500.
    const refused = await pc.clientCredentials(robot);
    expect([refused.status, refused.body.error, refused.headers.get('retry-after')]).toEqual([503, 'temporarily_unavailable', '5']);
  } finally {
    await server.query(`ALTER DATABASE ${name} ALLOW_CONNECTIONS true`);
    await server.end();
  }
  const up = await fetch(`${pc.issuer}/readyz`);
  expect(up.status).toBe(200);
  // The refused request logged one line, without a stack: the database's state, not a fault.
  expect(pc.errors.filter((line) => !line.includes('(simulated)')).map((line) => JSON.parse(line).message)).toEqual(['database unreachable']);
});

it.skipIf(process.env.TEST_DATABASE !== 'postgres')('a database dropped under the server is answered 503, and one made again empty (a restore under way) is not ready', async () => {
  // Its key refresh and its sweep run every second, to meet the dropped database too.
  const own = await startPortcullis({ KEY_REFRESH_INTERVAL: '1s', SWEEP_INTERVAL: '1s' });
  const robot = await own.createClient({ name: 'Robot', grantTypes: ['client_credentials'], scope: 'openid' });
  expect((await own.clientCredentials(robot)).status).toBe(200);
  const name = new URL(own.env.DATABASE_URL!).pathname.slice(1);
  const serverUrl = new URL(own.env.DATABASE_URL!);
  serverUrl.pathname = '/postgres';
  const server = new pg.Client({ connectionString: serverUrl.toString() });
  await server.connect();
  const readiness = async () => {
    const response = await fetch(`${own.issuer}/readyz`);
    return { status: response.status, body: await response.json() };
  };
  try {
    await server.query(`DROP DATABASE ${name} WITH (FORCE)`);
    const gone = await own.clientCredentials(robot);
    expect(gone.status).toBe(503);
    expect(gone.headers.get('retry-after')).toBe('5');
    expect(await readiness()).toEqual({ status: 503, body: { status: 'unavailable', reason: 'the database does not answer' } });
    // The background tasks meet it too: expected while the database is away, so a warning, on
    // one line. The key refresh's statements, and the sweep's, which goes through Prisma's raw
    // query (its P2010 wraps the database's code).
    for (const task of ['key refresh', 'sweep']) {
      const failed = () => own.log.filter((line) => line.includes(`${task} failed`));
      for (let waited = 0; failed().length === 0 && waited < 50; waited++) await new Promise((resolve) => setTimeout(resolve, 100));
      expect(failed().length, task).toBeGreaterThan(0);
      for (const line of failed()) {
        const { level, message, error } = JSON.parse(line) as { level: string; message: string; error: string };
        expect({ level, message }).toEqual({ level: 'warn', message: `${task} failed: database unreachable` });
        expect(error).not.toContain('\n');
      }
    }

    await server.query(`CREATE DATABASE ${name}`);
    const empty = await own.clientCredentials(robot);
    expect(empty.status).toBe(503);
    expect(await readiness()).toEqual({ status: 503, body: { status: 'unavailable', reason: "the database has none of Portcullis's tables (dropped and made again?)" } });
    // One line each, without a stack: an operator's doing, not a fault in Portcullis.
    expect(own.errors.length).toBeGreaterThan(0);
    for (const line of own.errors) expect(JSON.parse(line)).toMatchObject({ message: expect.stringMatching(/^database (unreachable|without its tables)$/) });
    expect(own.errors.some((line) => line.includes('"database without its tables"'))).toBe(true);
  } finally {
    await server.end();
    await own.close();
  }
});

it.skipIf(process.env.TEST_DATABASE !== 'postgres')('a database that takes no writes (a failover to a standby) is answered 503 and is not ready, until it takes them again', async () => {
  const own = await startPortcullis();
  const robot = await own.createClient({ name: 'Robot', grantTypes: ['client_credentials'], scope: 'openid' });
  expect((await own.clientCredentials(robot)).status).toBe(200);
  const name = new URL(own.env.DATABASE_URL!).pathname.slice(1);
  const server = new pg.Client({ connectionString: Object.assign(new URL(own.env.DATABASE_URL!), { pathname: '/postgres' }).toString() });
  await server.connect();
  // New sessions start read-only, as on a standby; the server's are made again.
  const sessionsAnew = () => server.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1', [name]);
  const readiness = async () => {
    const response = await fetch(`${own.issuer}/readyz`);
    return { status: response.status, body: await response.json() };
  };
  try {
    await server.query(`ALTER DATABASE ${name} SET default_transaction_read_only = on`);
    await sessionsAnew();
    // (The first requests may meet the connections just closed: 503 as well.)
    for (let attempt = 0; attempt < 3; attempt++) {
      const refused = await own.clientCredentials(robot);
      expect([refused.status, refused.body.error, refused.headers.get('retry-after')]).toEqual([503, 'temporarily_unavailable', '5']);
    }
    expect(await readiness()).toEqual({ status: 503, body: { status: 'unavailable', reason: 'the database takes no writes (a standby?)' } });
    // One line each, without a stack.
    expect(own.errors.some((line) => line.includes('"database read-only"'))).toBe(true);
    for (const line of own.errors) expect(JSON.parse(line)).toMatchObject({ message: expect.stringMatching(/^database (unreachable|read-only)$/) });

    await server.query(`ALTER DATABASE ${name} RESET default_transaction_read_only`);
    await sessionsAnew();
    await own.clientCredentials(robot); // (may meet a connection just closed)
    expect((await own.clientCredentials(robot)).status).toBe(200);
    expect(await readiness()).toEqual({ status: 200, body: { status: 'ready' } });
  } finally {
    await server.query(`ALTER DATABASE ${name} RESET default_transaction_read_only`).catch(() => undefined);
    await server.end();
    await own.close();
  }
});

it.skipIf(process.env.TEST_DATABASE !== 'postgres')('a database that is down or hangs is answered 503 with Retry-After, as JSON or a page, within DATABASE_TIMEOUT; once it is back the server serves again by itself', async () => {
  const robot = await pc.createClient({ name: 'Patient robot', grantTypes: ['client_credentials'], scope: 'openid' });
  const web = await pc.createClient({ name: 'Patient app', redirectUris: [REDIRECT_URI] });
  const relay = await dbRelay({ host: '127.0.0.1', port: 5432 });
  const url = new URL(pc.env.DATABASE_URL!);
  url.port = String(relay.port);
  // A second instance on the same database, reaching it through the relay.
  const other = await startPortcullis({ DATABASE_URL: url.toString(), DATABASE_TIMEOUT: '2s', METRICS_PORT: String(await freePort()) }, pc.database);
  // Every 503 the clients see, to be counted and logged once each.
  let unavailable = 0;
  const seen = (response: Response) => {
    if (response.status === 503) unavailable++;
    return response;
  };
  const authorize = async () =>
    seen(await fetch(`${other.issuer}/auth?${new URLSearchParams({ client_id: web.client_id, response_type: 'code', scope: 'openid', redirect_uri: REDIRECT_URI, code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256' })}`, {
      headers: { accept: 'text/html' },
      redirect: 'manual',
    }));
  const clientCredentials = async () => {
    const answer = await other.clientCredentials(robot);
    if (answer.status === 503) unavailable++;
    return answer;
  };
  // Signed in through the second instance: a sign-out during the outage fails
  // in its route and again in the session save after it, and is still one 503.
  const person = { email: 'pat@example.com', password: 'pats own password' };
  await pc.createUser(person.email, person.password);
  const browser = new UserAgent();
  try {
    await logIn(browser, await discover(other.issuer, web.client_id, web.client_secret), 'openid', person);
    expect((await clientCredentials()).status).toBe(200);
    for (const takeAway of [() => relay.cut(), () => relay.freeze()]) {
      takeAway();
      let started = Date.now();
      const token = seen(await fetch(`${other.issuer}/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${robot.client_id}:${robot.client_secret}`).toString('base64')}` },
        body: 'grant_type=client_credentials',
      }));
      expect(token.status).toBe(503);
      expect(token.headers.get('retry-after')).toBe('5');
      expect(await token.json()).toMatchObject({ error: 'temporarily_unavailable' });
      // A hung database is given DATABASE_TIMEOUT (2 s here, and 5 s more for an answer that
      // never comes) per statement, not forever.
      expect(Date.now() - started).toBeLessThan(15_000);
      started = Date.now();
      const page = await authorize();
      expect(page.status).toBe(503);
      expect(page.headers.get('retry-after')).toBe('5');
      const html = await page.text();
      expect(html).toContain('We cannot sign you in right now');
      // A way on: the same authorization request again, as a link.
      const again = /<a class="button" href="([^"]+)">Try again<\/a>/.exec(html)?.[1]?.replace(/&amp;/g, '&');
      expect(again && new URL(again, other.issuer).href).toBe(page.url);
      expect(Date.now() - started).toBeLessThan(15_000);
      const signOut = await browser.open(`${other.issuer}/session/end`, { headers: { accept: 'text/html' } });
      expect(signOut.status).toBe(503);
      // Not "cannot sign you in": someone at a shared computer must know the sign-out did not happen.
      expect(signOut.html).toContain('We cannot sign you out right now');
      expect(signOut.html).toContain('you may still be signed in');
      expect(signOut.html).toContain('<a class="button" href="/session/end">Try again</a>');
      unavailable++;

      relay.restore();
      const deadline = Date.now() + 15_000;
      let status = 0;
      while ((status = (await clientCredentials()).status) !== 200 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 200));
      expect(status).toBe(200);
      expect((await authorize()).status).toBe(303);
    }
    // Logged as what it is, without a stack trace: once for the outage (both cuts fell in one
    // spell), not once per request, which the metrics count.
    expect(unavailable).toBeGreaterThanOrEqual(6);
    expect(other.errors.filter((line) => JSON.parse(line).message === 'database unreachable')).toHaveLength(1);
    expect(other.errors.filter((line) => line.includes('database unreachable') && line.includes('    at '))).toEqual([]);
    const metrics = await (await fetch(other.server.metricsUrl!)).text();
    expect(metrics).toContain(`\nportcullis_database_unreachable_total ${unavailable}\n`);
    // 30 s without a failure end the spell, in a line that says how many requests it failed.
    const ended = () => other.log.filter((line) => line.includes('database unreachable: no request failed for 30 s'));
    for (let waited = 0; ended().length === 0 && waited < 500; waited++) await new Promise((resolve) => setTimeout(resolve, 100));
    expect(ended().map((line) => JSON.parse(line))).toEqual([expect.objectContaining({ level: 'info', failed: unavailable })]);
  } finally {
    await other.close();
    await relay.close();
  }
}, 150_000);

it.skipIf(process.env.TEST_DATABASE !== 'postgres')('a statement the database holds past DATABASE_TIMEOUT is cancelled there: 503, and nothing is stored after the client was told it failed', async () => {
  const robot = await pc.createClient({ name: 'Waiting robot', grantTypes: ['client_credentials'], scope: 'openid' });
  const other = await startPortcullis({ DATABASE_TIMEOUT: '2s' }, pc.database);
  const tokens = async () => (await admin.query(`SELECT count(*)::int AS n FROM provider_artifacts WHERE kind = 'ClientCredentials'`)).rows[0].n as number;
  try {
    expect((await other.clientCredentials(robot)).status).toBe(200);
    const before = await tokens();
    const holder = pc.outsideConnection();
    await holder.connect();
    try {
      // Inserts wait; reads (the client's lookup) go on.
      await holder.query('BEGIN');
      await holder.query('LOCK TABLE provider_artifacts IN EXCLUSIVE MODE');
      const refused = await other.clientCredentials(robot);
      expect(refused.status).toBe(503);
      expect(refused.body).toMatchObject({ error: 'temporarily_unavailable' });
    } finally {
      await holder.query('COMMIT');
      await holder.end();
    }
    // The cancelled insert was rolled back, not left to land once the lock went.
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(await tokens()).toBe(before);
    expect((await other.clientCredentials(robot)).status).toBe(200);
  } finally {
    await other.close();
  }
});

it('a write the database refuses for want of disk space is answered 503 with Retry-After, to be retried', async () => {
  // The same SQLSTATE a full disk gives (53100), where mounting a small one
  // is not possible; test/e2e/disk-space.test.ts fills a real one. Last in
  // this file: on PostgreSQL readiness then says "out of disk space" for 10 s.
  const robot = await pc.createClient({ name: 'Robot', grantTypes: ['client_credentials'], scope: 'openid' });
  const web = await pc.createClient({ name: 'Spacious app', redirectUris: [REDIRECT_URI] });
  const person = { email: 'sam@example.com', password: 'sams own password' };
  await pc.createUser(person.email, person.password);
  // A sign-in page open before the disk filled up.
  const browser = new UserAgent();
  const login = await visit(browser, (await authorizationRequest(await discover(pc.issuer, web.client_id, web.client_secret), 'openid')).url);
  expect(pageKind(login)).toBe('login');
  await admin.query(`CREATE FUNCTION no_space() RETURNS trigger LANGUAGE plpgsql AS $$
                     BEGIN RAISE EXCEPTION 'no space (simulated)' USING ERRCODE = 'disk_full'; END $$`);
  // (Inserts and updates: a sign-in updates the interaction the request made.)
  await admin.query(`CREATE TRIGGER no_space BEFORE INSERT OR UPDATE ON provider_artifacts
                     FOR EACH ROW WHEN (NEW.kind IN ('ClientCredentials', 'Interaction')) EXECUTE FUNCTION no_space()`);
  try {
    const response = await pc.clientCredentials(robot);
    expect(response.status).toBe(503);
    expect(response.headers.get('retry-after')).toBe('5');
    expect(response.body).toMatchObject({ error: 'temporarily_unavailable' });
    // The sign-in cannot be saved: the page says to try again, and its way on
    // opens the sign-in again rather than sending the form (and password) again.
    const refused = await signIn(browser, login, person.email, person.password);
    expect(refused.status).toBe(503);
    expect(refused.html).toContain('We cannot sign you in right now');
    const uid = new URL(login.url).pathname.split('/')[2];
    expect(refused.html).toContain(`<a class="button" href="/interaction/${uid}">Try again</a>`);
  } finally {
    await admin.query('DROP TRIGGER no_space ON provider_artifacts');
    await admin.query('DROP FUNCTION no_space()');
  }
  // Readiness: the embedded database's disk is this machine's, which has
  // space; a PostgreSQL server's is out of sight, so the failure counts for 10 s.
  const ready = await fetch(`${pc.issuer}/readyz`);
  if (pc.database.kind === 'postgres') {
    expect(ready.status).toBe(503);
    expect(await ready.json()).toEqual({ status: 'unavailable', reason: 'the database is out of disk space' });
  } else {
    expect(ready.status).toBe(200);
  }
  // One line for the spell, not one per request.
  const lines = pc.errors.filter((line) => line.includes('no space (simulated)'));
  expect(lines).toHaveLength(1);
  for (const line of lines) {
    expect(line).toContain('"message":"database out of space"');
    expect(line).not.toContain('    at ');
  }
  expect((await pc.clientCredentials(robot)).status).toBe(200);
  // Space back, "Try again" goes on where the person was.
  const again = await browser.open(`${pc.issuer}/interaction/${new URL(login.url).pathname.split('/')[2]}`, {}, REDIRECT_URI);
  expect(pageKind(again)).toBe('login');
  expect(pageKind(await signIn(browser, again, person.email, person.password))).toBe('consent');
});
