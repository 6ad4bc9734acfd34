// Instances keep registered clients in memory between requests; a change made
// anywhere (the CLI, another instance) must still take effect at once.
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startPortcullis, type TestPortcullis } from '../support/portcullis.js';

let pc: TestPortcullis;

beforeAll(async () => {
  pc = await startPortcullis();
});

afterAll(async () => {
  expect(pc?.errors ?? []).toEqual([]);
  await pc?.close();
});

async function clientCredentials(client: { client_id: string; client_secret?: string }) {
  const response = await fetch(`${pc.issuer}/token`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`${client.client_id}:${client.client_secret}`).toString('base64')}`,
    },
    body: 'grant_type=client_credentials',
  });
  return { status: response.status, body: (await response.json()) as { error?: string } };
}

const robot = () => pc.createClient({ name: 'Robot', grantTypes: ['client_credentials'], scope: 'openid' });

it('a client deleted right after use is refused on the next request', async () => {
  const client = await robot();
  for (let i = 0; i < 3; i++) expect((await clientCredentials(client)).status).toBe(200);
  expect((await pc.cli(['client', 'delete', client.client_id])).code).toBe(0);
  expect(await clientCredentials(client)).toMatchObject({ status: 401, body: { error: 'invalid_client' } });
});

it.runIf(process.env.TEST_DATABASE === 'postgres')(
  'while the change feed is down nothing is served from memory, and it comes back by itself',
  async () => {
    const client = await robot();
    expect((await clientCredentials(client)).status).toBe(200);
    // Cut the server's LISTEN connection, as a database failover would.
    const admin = new pg.Client({ connectionString: pc.env.DATABASE_URL });
    await admin.connect();
    const { rowCount } = await admin.query(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    );
    expect(rowCount).toBe(1);
    // A deletion now is announced to nobody; the server must still see it.
    expect((await pc.cli(['client', 'delete', client.client_id])).code).toBe(0);
    expect((await clientCredentials(client)).status).toBe(401);

    // The feed reconnects, and changes are seen again.
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const { rows } = await admin.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'");
    expect(rows[0].n).toBe(1);
    await admin.end();
    const another = await robot();
    expect((await clientCredentials(another)).status).toBe(200);
    expect((await pc.cli(['client', 'delete', another.client_id])).code).toBe(0);
    expect((await clientCredentials(another)).status).toBe(401);
  },
);
