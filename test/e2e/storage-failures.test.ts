// When the database refuses a write, the client gets an error and no token:
// nothing is handed out that was not stored (src/provider/request-scope.ts
// lets token saves overlap the rest of the request, never the response).
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startPortcullis, type TestPortcullis } from '../support/portcullis.js';

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

  await admin.query(`CREATE FUNCTION refuse_tokens() RETURNS trigger LANGUAGE plpgsql AS $$
                     BEGIN RAISE EXCEPTION 'disk full (simulated)'; END $$`);
  await admin.query(`CREATE TRIGGER refuse_tokens BEFORE INSERT ON provider_artifacts
                     FOR EACH ROW WHEN (NEW.kind = 'ClientCredentials') EXECUTE FUNCTION refuse_tokens()`);
  try {
    const refused = await pc.clientCredentials(robot);
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
  // The failure was logged as a server error, with no token in the line.
  expect(pc.errors.some((line) => line.includes('disk full (simulated)'))).toBe(true);
  expect(pc.errors.join('\n')).not.toContain(body.access_token as string);
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
  } finally {
    await server.query(`ALTER DATABASE ${name} ALLOW_CONNECTIONS true`);
    await server.end();
  }
  const up = await fetch(`${pc.issuer}/readyz`);
  expect(up.status).toBe(200);
  expect(pc.errors.filter((line) => !line.includes('disk full (simulated)'))).toEqual([]);
});
