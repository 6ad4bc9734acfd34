// A PostgreSQL server whose time zone is not UTC (Debian's initdb copies the
// host's): times written by Prisma, by SQL's now() and read back through the
// pg pool must still agree, or an API's own introspection and key rotation go
// wrong by the zone's offset.
import * as oidc from 'openid-client';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { serverDatabase, type TestDatabase } from '../support/database.js';
import { embedded } from '../support/locks.js';
import { startPortcullis, type TestPortcullis } from '../support/portcullis.js';
import { discover } from '../support/relying-party.js';

const API = 'https://zoned.example.com';
let db: TestDatabase;
let pc: TestPortcullis;

beforeAll(async () => {
  if (embedded) return; // PGlite is always UTC
  db = await serverDatabase('portcullis_zone');
  const admin = new pg.Client({ connectionString: db.env.DATABASE_URL });
  await admin.connect();
  // West of UTC: a wall-clock time read as UTC lies in the future.
  await admin.query(`ALTER DATABASE ${new URL(db.env.DATABASE_URL!).pathname.slice(1)} SET timezone TO 'America/New_York'`);
  await admin.end();
  pc = await startPortcullis({}, db);
});

afterAll(async () => {
  await pc?.close();
  await db?.drop();
});

it.skipIf(embedded)('an API introspects a token made for it at once, and keys rotated keep their activation delay', async () => {
  const created = await pc.cli(['api', 'create', '--identifier', API, '--scope', 'read:zone', '--token-format', 'opaque', '--json']);
  expect(created.code, created.stderr).toBe(0);
  const api = JSON.parse(created.stdout) as { client_id: string; client_secret: string };
  const robot = await pc.createClient({ name: 'Zoned robot', grantTypes: ['client_credentials'], scope: 'read:zone' });
  const machine = await discover(pc.issuer, robot.client_id, robot.client_secret);
  const tokens = await oidc.clientCredentialsGrant(machine, { resource: API, scope: 'read:zone' });
  const introspector = await discover(pc.issuer, api.client_id, api.client_secret);
  expect(await oidc.tokenIntrospection(introspector, tokens.access_token)).toMatchObject({ active: true, aud: API });

  // A rotation's new keys sign only after the activation delay (1h by
  // default), so a key retired as compromised right away is refused for now.
  const before = await pc.cli(['keys', 'list', '--json']);
  const current = (JSON.parse(before.stdout) as { kid: string; status: string }[]).filter((key) => key.status === 'current');
  expect(current.length).toBeGreaterThan(0);
  const rotated = await pc.cli(['keys', 'rotate']);
  expect(rotated.code, rotated.stderr).toBe(0);
  const after = JSON.parse((await pc.cli(['keys', 'list', '--json'])).stdout) as { kid: string; status: string }[];
  for (const key of current) expect(after.find((each) => each.kid === key.kid)?.status).toBe('current');
});
