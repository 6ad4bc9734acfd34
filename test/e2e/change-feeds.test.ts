// Instances keep registered clients and accounts in memory between requests;
// a change made anywhere (the CLI, another instance, SQL) must still take
// effect at once.
import * as oidc from 'openid-client';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { dbRelay } from '../support/db-relay.js';
import { startPortcullis, type TestPortcullis } from '../support/portcullis.js';
import { discover, logIn, REDIRECT_URI } from '../support/relying-party.js';
import { UserAgent } from '../support/user-agent.js';

let pc: TestPortcullis;

beforeAll(async () => {
  pc = await startPortcullis();
});

afterAll(async () => {
  expect(pc?.errors ?? []).toEqual([]);
  await pc?.close();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const robot = () => pc.createClient({ name: 'Robot', grantTypes: ['client_credentials'], scope: 'openid' });

it('a client deleted right after use is refused on the next request', async () => {
  const client = await robot();
  for (let i = 0; i < 3; i++) expect((await pc.clientCredentials(client)).status).toBe(200);
  expect((await pc.cli(['client', 'delete', client.client_id])).code).toBe(0);
  expect(await pc.clientCredentials(client)).toMatchObject({ status: 401, body: { error: 'invalid_client' } });
});

it.runIf(process.env.TEST_DATABASE === 'postgres')(
  'while the change feed is down nothing is served from memory, and it comes back by itself',
  async () => {
    const client = await robot();
    expect((await pc.clientCredentials(client)).status).toBe(200);
    // Cut the server's LISTEN connection, as a database failover would.
    const admin = new pg.Client({ connectionString: pc.env.DATABASE_URL });
    await admin.connect();
    const { rowCount } = await admin.query(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'portcullis listen %'",
    );
    expect(rowCount).toBe(3); // clients, users and signing keys
    // A deletion now is announced to nobody; the server must still see it.
    expect((await pc.cli(['client', 'delete', client.client_id])).code).toBe(0);
    expect((await pc.clientCredentials(client)).status).toBe(401);

    // The feed reconnects, and changes are seen again.
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const { rows } = await admin.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'portcullis listen %'");
    expect(rows[0].n).toBe(3);
    await admin.end();
    const another = await robot();
    expect((await pc.clientCredentials(another)).status).toBe(200);
    expect((await pc.cli(['client', 'delete', another.client_id])).code).toBe(0);
    expect((await pc.clientCredentials(another)).status).toBe(401);
  },
);

it.runIf(process.env.TEST_DATABASE === 'postgres')(
  'a feed whose reconnection was swallowed by a link that dropped packets comes back once the link does, and catches up with what it missed',
  async () => {
    const relay = await dbRelay({ host: '127.0.0.1', port: 5432 });
    const url = new URL(pc.env.DATABASE_URL!);
    url.port = String(relay.port);
    // A second instance reaching the database through the relay; its keys
    // change only when announced (KEY_REFRESH_INTERVAL 1h).
    const other = await startPortcullis({ DATABASE_URL: url.toString(), DATABASE_TIMEOUT: '2s', KEY_REFRESH_INTERVAL: '1h', KEY_ACTIVATION_DELAY: '2h' }, pc.database);
    try {
      const published = async () => ((await (await fetch(`${other.issuer}/jwks`)).json()) as { keys: { kid: string }[] }).keys.map((key) => key.kid);
      expect((await published()).length).toBeGreaterThan(0);
      relay.freeze();
      // The heartbeat gives the feeds up within 10 s (two intervals) and each
      // tries again a second later: wait until those attempts reach the link.
      const deadline = Date.now() + 20_000;
      while (relay.heldWhileFrozen < 3 && Date.now() < deadline) await sleep(200);
      expect(relay.heldWhileFrozen).toBeGreaterThanOrEqual(3); // clients, users and signing keys
      // Announced while the instance's feed is down: it hears nothing of it.
      type Key = { kid: string; status: string };
      const rotated = await pc.cli(['keys', 'rotate', '--now', '--json']);
      expect(rotated.code, rotated.stderr).toBe(0);
      const fresh = (JSON.parse(rotated.stdout) as Key[]).filter((key) => key.status === 'current').map((key) => key.kid);
      relay.heal();
      // The held attempts are given up 5 s after they began, the next ones
      // land, and the keys are read again as the feed comes back.
      const back = Date.now() + 15_000;
      let kids = await published();
      while (!fresh.every((kid) => kids.includes(kid)) && Date.now() < back) {
        await sleep(200);
        kids = await published();
      }
      expect(kids).toEqual(expect.arrayContaining(fresh));
    } finally {
      await other.close();
      await relay.close();
    }
  },
  60_000,
);

it('a client changed in the database and announced is served with its new metadata on the next request', async () => {
  const client = await robot();
  for (let i = 0; i < 3; i++) expect((await pc.clientCredentials(client)).status).toBe(200);
  const db = pc.outsideConnection();
  await db.connect();
  try {
    // What an administrator's script would do: change the row and announce it, in one transaction.
    // (Literals, not parameters: the embedded database's socket speaks the simple protocol only; ids are base64url.)
    await db.query(`BEGIN;
      UPDATE clients SET metadata = metadata || '{"grant_types": ["authorization_code"], "response_types": ["code"], "redirect_uris": ["https://app.example.com/callback"]}' WHERE client_id = '${client.client_id}';
      SELECT pg_notify('portcullis_client_changes', '${client.client_id}');
      COMMIT`);
  } finally {
    await db.end();
  }
  await delivered();
  // Now a web app's client, no longer allowed client credentials: on the first
  // request after the change, which loads it, and on those after it, which the
  // cache serves (with the client built from the new metadata, not the old one).
  for (let i = 0; i < 3; i++) expect(await pc.clientCredentials(client)).toMatchObject({ status: 400, body: { error: 'unauthorized_client' } });
});

// A NOTIFY reaches the server's LISTEN connection asynchronously, moments
// after the change commits: "at once" means within this, not before the
// next request that happens to be faster than the notification.
const NOTIFY_DELIVERY_MS = 250;

const delivered = () => new Promise((resolve) => setTimeout(resolve, NOTIFY_DELIVERY_MS));

it('a person renamed or deleted with plain SQL is seen at once by userinfo and refresh', async () => {
  const bob = { email: 'bob@example.com', password: 'a long enough password' };
  await pc.createUser(bob.email, bob.password, 'Bob');
  const app = await pc.createClient({ name: 'Notes', redirectUris: [REDIRECT_URI], scope: 'openid profile offline_access' });
  const rp = await discover(pc.issuer, app.client_id, app.client_secret);
  const { tokens } = await logIn(new UserAgent(), rp, 'openid profile offline_access', bob, { prompt: 'consent' });
  const sub = tokens.claims()!.sub;
  expect(sub).toMatch(/^[0-9a-f-]{36}$/); // inlined below: simple-protocol statements only (see embedded.ts)
  // Read twice, so that a cache (where there is one) holds the account.
  for (let i = 0; i < 2; i++) expect(await oidc.fetchUserInfo(rp, tokens.access_token, sub)).toMatchObject({ name: 'Bob' });
  const refreshed = await oidc.refreshTokenGrant(rp, tokens.refresh_token!);

  const admin = pc.outsideConnection();
  await admin.connect();
  try {
    await admin.query(`UPDATE users SET name = 'Robert', updated_at = now() WHERE id = '${sub}'`);
    await delivered();
    expect(await oidc.fetchUserInfo(rp, refreshed.access_token, sub)).toMatchObject({ name: 'Robert' });
    await admin.query(`DELETE FROM users WHERE id = '${sub}'`);
  } finally {
    await admin.end();
  }
  await delivered();
  await expect(oidc.refreshTokenGrant(rp, refreshed.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant' });
});
