// The secret every pairwise sub comes from (keys/server-secrets.ts) is kept
// for good: a new one would give every person another sub at every pairwise
// app, which would know none of its people again (README, Keys). A database
// that held it and lost its row (a restore that left server_secrets out, a
// cleanup) does not quietly get a new one, as a start given no encryption key
// for a database that holds sealed keys makes no new key: it stops, and
// writes nothing. And a client's pairwise identifiers outlive an earlier
// release's rewrite of its registration. (From review BL.)
import * as oidc from 'openid-client';
import { afterAll, describe, expect, it } from 'vitest';
import { freshDatabase, type TestDatabase } from '../support/database.js';
import { startPortcullis, type CliResult, type TestPortcullis } from '../support/portcullis.js';
import { pageKind } from '../support/relying-party.js';
import { UserAgent } from '../support/user-agent.js';

const KEYS = { ENCRYPTION_KEYS: 'the-encryption-key-of-this-deployment-0123456789' };
const erin = { email: 'erin@example.com', password: 'erin has a long password' };

const databases: TestDatabase[] = [];
afterAll(async () => {
  for (const database of databases) await database.drop();
});

const subOf = (shown: CliResult) => (JSON.parse(shown.stdout) as { subject: { sub: string } }).subject.sub;

/** A deployment with a pairwise client, and the sub it knows Erin by (made from the secret, which the start made). */
async function deployment(): Promise<{ pc: TestPortcullis; database: TestDatabase; clientId: string; sub: string }> {
  const database = await freshDatabase();
  databases.push(database);
  const pc = await startPortcullis(KEYS, database);
  await pc.createUser(erin.email, erin.password, 'Erin Example');
  const created = await pc.cli(['client', 'create', '--name', 'Mail', '--redirect-uri', 'https://mail.example.com/callback', '--subject-type', 'pairwise', '--json']);
  expect(created.code, created.stderr).toBe(0);
  const clientId = (JSON.parse(created.stdout) as { client_id: string }).client_id;
  const shown = await pc.cli(['user', 'show', erin.email, '--client', clientId, '--json']);
  expect(shown.code, shown.stderr).toBe(0);
  return { pc, database, clientId, sub: subOf(shown) };
}

/** Erin's sign-in at the client (its secret rotated for the code exchange), and the ID token's claims. */
async function signInAt(pc: TestPortcullis, clientId: string) {
  const { client_secret: secret } = JSON.parse((await pc.cli(['client', 'rotate-secret', clientId, '--json'])).stdout) as { client_secret: string };
  const rp = await oidc.discovery(new URL(pc.issuer), clientId, secret, undefined, { execute: [oidc.allowInsecureRequests] });
  const redirectUri = 'https://mail.example.com/callback';
  const verifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const url = oidc.buildAuthorizationUrl(rp, { redirect_uri: redirectUri, scope: 'openid', state, code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256' });
  const ua = new UserAgent();
  let page = await ua.open(url.href, {}, redirectUri);
  for (let step = 0; step < 3 && !page.url.startsWith(redirectUri); step++) {
    page = pageKind(page) === 'login'
      ? await ua.post(page, UserAgent.formAction(page, '/login'), { ...UserAgent.formFields(page, '/login'), email: erin.email, password: erin.password }, redirectUri)
      : await ua.post(page, UserAgent.formAction(page, '/confirm'), UserAgent.formFields(page, '/confirm'), redirectUri);
  }
  return (await oidc.authorizationCodeGrant(rp, new URL(page.url), { pkceCodeVerifier: verifier, expectedState: state })).claims()!;
}

const secrets = async (pc: TestPortcullis) => (await pc.outsideQuery<{ n: number }>("SELECT count(*)::int AS n FROM server_secrets WHERE name = 'pairwise subjects'")).rows[0]!.n;
const LOST = "the database holds 1 client(s) with pairwise identifiers but not the server secret 'pairwise subjects' (table server_secrets), which they are made from: restore that row from a backup of this database; a new secret would give every person another sub at those apps";

describe('the pairwise secret, lost from the database', () => {
  it('a command that needs it makes no new one, and says what to do', async () => {
    const { pc } = await deployment();
    try {
      expect(await secrets(pc)).toBe(1);
      const clientId = (JSON.parse((await pc.cli(['client', 'list', '--json'])).stdout) as { client_id: string }[])[0]!.client_id;
      await pc.outsideQuery('DELETE FROM server_secrets');
      const after = await pc.cli(['user', 'show', erin.email, '--client', clientId, '--json']);
      expect([after.code, after.stdout, after.stderr]).toEqual([1, '', `portcullis: ${LOST}\n`]);
      // Nor does making another pairwise client.
      const another = await pc.cli(['client', 'create', '--name', 'Calendar', '--redirect-uri', 'https://calendar.example.com/callback', '--subject-type', 'pairwise']);
      expect([another.code, another.stderr]).toEqual([1, `portcullis: ${LOST}\n`]);
      expect(await secrets(pc)).toBe(0);
    } finally {
      await pc.close();
    }
  });

  it('a server start makes no new one: it stops, rather than give every person another sub at every pairwise app', async () => {
    const { pc, database } = await deployment();
    await pc.outsideQuery('DELETE FROM server_secrets');
    await pc.close();
    await expect(startPortcullis(KEYS, database)).rejects.toThrow(LOST);
  });
});

// An earlier release's CLI on this database (a rolling upgrade, a rollback:
// README, Schema, lets it run there) rewrites a client's registration from the
// fields it knows: 0.5.34's `client update CLIENT_ID --name …` stores the
// metadata without `subject_type` (its clients.ts, `UPDATE clients SET name =
// …, metadata = …`), as the statement below does.
describe('a pairwise client rewritten by an earlier release', () => {
  it("keeps its people's subs, and this release's next update writes the subject type back", async () => {
    const { pc, clientId, sub } = await deployment();
    try {
      // What 0.5.34's `portcullis client update CLIENT_ID --name 'Mail renamed'` writes (the same JSON but subject_type).
      await pc.outsideQuery(`UPDATE clients SET name = 'Mail renamed', metadata = metadata - 'subject_type', updated_at = now() WHERE client_id = $1`, [clientId]);
      const after = await pc.cli(['user', 'show', erin.email, '--client', clientId, '--json']);
      expect(after.code, after.stderr).toBe(0);
      expect(subOf(after)).toBe(sub);
      expect(JSON.parse((await pc.cli(['client', 'show', clientId, '--json'])).stdout)).toMatchObject({ subject_type: 'pairwise' });
      // The server too: the app's ID token names Erin as before.
      expect((await signInAt(pc, clientId)).sub).toBe(sub);
      expect((await pc.cli(['client', 'update', clientId, '--name', 'Mail'])).code).toBe(0);
      const stored = await pc.outsideQuery<{ subject_type: string }>(`SELECT metadata->>'subject_type' AS subject_type FROM clients WHERE client_id = $1`, [clientId]);
      expect(stored.rows).toEqual([{ subject_type: 'pairwise' }]);
    } finally {
      await pc.close();
    }
  });
});

// Probe BM: 0.5.35 as first committed (d2ad0aa) made pairwise clients with
// `subject_type` in their metadata alone; the column came with a later
// migration (*_client_pairwise_sector), which fills it for none of them. The
// server still reads the metadata's subject type (ClientAdapter spreads it,
// sectorOf falls back to the library's sectorIdentifier), the CLI only the
// column: they disagree about the sub, and the next `client update` drops the
// subject type from the metadata, so that the app is handed user ids.
describe('a pairwise client made before the column', () => {
  it('keeps one sub, the same at the server and the CLI, through a client update', async () => {
    const { pc: first, database, clientId, sub } = await deployment();
    try {
      // The database as the pairwise commit left it: no column, its migration not applied.
      const last = (await first.outsideQuery<{ name: string }>(`SELECT migration_name AS name FROM "_prisma_migrations" WHERE migration_name LIKE '%_client_pairwise_sector'`)).rows[0]!.name;
      await first.outsideQuery(`DELETE FROM "_prisma_migrations" WHERE migration_name = $1`, [last]);
      await first.outsideQuery('ALTER TABLE "clients" DROP COLUMN "pairwise_sector"');
    } finally {
      await first.close();
    }
    // This release's start applies the migration.
    const pc = await startPortcullis(KEYS, database);
    try {
      const shown = await pc.cli(['user', 'show', erin.email, '--client', clientId, '--json']);
      expect(shown.code, shown.stderr).toBe(0);
      const fromServer = (await signInAt(pc, clientId)).sub;
      // The app knew Erin by `sub`; the server and the CLI name her alike.
      expect(subOf(shown)).toBe(fromServer);
      expect(fromServer).toBe(sub);
      expect((await pc.cli(['client', 'update', clientId, '--name', 'Mail renamed'])).code).toBe(0);
      expect((await signInAt(pc, clientId)).sub).toBe(fromServer);
    } finally {
      await pc.close();
    }
  });
});
