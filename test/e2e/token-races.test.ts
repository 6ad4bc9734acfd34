// Replays that race: every request reads the refresh token before any of them
// has consumed it, so the library's own reuse check (a token already marked
// consumed) cannot see the replay; the consumption in the database decides
// (src/provider/adapter.ts, checkConsumption). An outside transaction holds
// the token's row so that the consumptions wait until all the reads are done.
import { setTimeout as sleep } from 'node:timers/promises';
import * as oidc from 'openid-client';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { sha256 } from '../support/digest.js';
import { embedded, heldAtTheLock } from '../support/locks.js';
import { startPortcullis, type TestPortcullis } from '../support/portcullis.js';
import { authorizationRequest, discover, logIn, pageKind, REDIRECT_URI, visit } from '../support/relying-party.js';
import { UserAgent } from '../support/user-agent.js';


const dana = { email: 'dana@example.com', password: 'danas long password' };

let pc: TestPortcullis;
let rp: oidc.Configuration;

beforeAll(async () => {
  if (embedded) return;
  pc = await startPortcullis();
  await pc.createUser(dana.email, dana.password);
  const app = await pc.createClient({ name: 'Notes', redirectUris: [REDIRECT_URI] });
  rp = await discover(pc.issuer, app.client_id, app.client_secret);
});

afterAll(async () => {
  await pc?.close();
});

it.skipIf(embedded)("concurrent uses of one refresh token that all read it unused: one wins, and that sign-in's tokens are revoked, not another device's", async () => {
  const ua = new UserAgent();
  const { tokens } = await logIn(ua, rp, 'openid offline_access', dana, { prompt: 'consent' });
  const { tokens: elsewhere } = await logIn(new UserAgent(), rp, 'openid offline_access', dana, { prompt: 'consent' });
  const logged = pc.log.length;
  const admin = pc.outsideConnection();
  await admin.connect();
  try {
    await admin.query('BEGIN');
    const held = await admin.query(`SELECT 1 FROM provider_artifacts WHERE kind = 'RefreshToken' AND id = $1 FOR UPDATE`, [sha256(tokens.refresh_token!)]);
    expect(held.rowCount).toBe(1); // (or nothing below waits for it)
    const uses = Array.from({ length: 6 }, () => oidc.refreshTokenGrant(rp, tokens.refresh_token!));
    await heldAtTheLock(admin);
    await sleep(500); // the other requests read the token meanwhile; their consumptions queue behind the held one
    await admin.query('COMMIT');
    const results = await Promise.allSettled(uses);

    const won = results.filter((result) => result.status === 'fulfilled') as PromiseFulfilledResult<oidc.TokenEndpointResponse>[];
    expect(won).toHaveLength(1);
    for (const result of results) if (result.status === 'rejected') expect(result.reason).toMatchObject({ error: 'invalid_grant' });
    // The replay revoked what the winner got, as one seen after the other would (the rest of that sign-in).
    expect((await oidc.tokenIntrospection(rp, won[0]!.value.access_token)).active).toBe(false);
    await expect(oidc.refreshTokenGrant(rp, won[0]!.value.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant' });
    expect(pc.log.slice(logged).filter((line) => line.includes('"message":"tokens revoked: a code or refresh token was used twice"')).length).toBeGreaterThan(0);
    // Not the sign-in in another browser, nor the consent.
    expect((await oidc.tokenIntrospection(rp, elsewhere.access_token)).active).toBe(true);
    expect((await oidc.refreshTokenGrant(rp, elsewhere.refresh_token!)).access_token).toBeTruthy();
    expect((await logIn(ua, rp, 'openid offline_access', dana)).seen).toEqual([]);
    expect(pc.errors).toEqual([]);
  } finally {
    await admin.end();
  }
});

it.skipIf(embedded)("a client's revocation also revokes what a code exchange of the same sign-in, running at that moment, issued", async () => {
  const ua = new UserAgent();
  const first = await logIn(ua, rp, 'openid offline_access', dana, { prompt: 'consent' });
  // A second code in the same browser session (single sign-on), not yet exchanged.
  const request = await authorizationRequest(rp, 'openid');
  const callback = await visit(ua, request.url);
  expect(pageKind(callback)).toBe('callback');
  const code = new URL(callback.url).searchParams.get('code')!;
  const admin = pc.outsideConnection();
  await admin.connect();
  try {
    // Hold the code's row: the exchange waits to mark it used, then the
    // revocation's delete waits behind it, and the exchange goes first.
    await admin.query('BEGIN');
    await admin.query(`SELECT 1 FROM provider_artifacts WHERE kind = 'AuthorizationCode' AND id = $1 FOR UPDATE`, [sha256(code)]);
    const exchanging = oidc.authorizationCodeGrant(rp, new URL(callback.url), { pkceCodeVerifier: request.verifier, expectedState: request.state, expectedNonce: request.nonce });
    await heldAtTheLock(admin, 1);
    const revoking = oidc.tokenRevocation(rp, first.tokens.refresh_token!);
    await heldAtTheLock(admin, 2);
    await admin.query('COMMIT');
    const [exchanged] = await Promise.all([exchanging, revoking]);
    expect((await oidc.tokenIntrospection(rp, exchanged.access_token)).active).toBe(false);
    expect((await oidc.tokenIntrospection(rp, first.tokens.access_token)).active).toBe(false);
    expect(pc.errors).toEqual([]);
  } finally {
    await admin.end();
  }
});
