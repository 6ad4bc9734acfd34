// The oidc-provider adapter contract, against a real database: what the
// provider relies on when requests race each other.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { openDatabase, type Database } from '../../src/persistence/database.js';
import { ArtifactAdapter } from '../../src/provider/adapter.js';
import { freshDatabase, type TestDatabase } from '../support/database.js';
import { TEST_ENV } from '../support/portcullis.js';

let testDb: TestDatabase;
let db: Database;

beforeAll(async () => {
  testDb = await freshDatabase();
  db = await openDatabase(loadConfig({ ...TEST_ENV, ...testDb.env }).database);
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

it('revokeByGrantId removes every token of the grant and nothing else', async () => {
  const kinds = ['AccessToken', 'RefreshToken', 'AuthorizationCode'].map((kind) => new ArtifactAdapter(kind, db.sql));
  await Promise.all(kinds.map((adapter, i) => adapter.upsert(`g2-${i}`, { kind: 'x', grantId: 'grant-2', jti: `g2-${i}` }, 60)));
  await kinds[0]!.upsert('other', { kind: 'AccessToken', grantId: 'grant-3', jti: 'other' }, 60);
  await Promise.all(kinds.map((adapter) => adapter.revokeByGrantId('grant-2')));
  for (const [i, adapter] of kinds.entries()) expect(await adapter.find(`g2-${i}`)).toBeUndefined();
  expect(await kinds[0]!.find('other')).toBeDefined();
});
