// Replays that race: every request reads the refresh token before any of them
// has consumed it, so the library's own reuse check (a token already marked
// consumed) cannot see the replay; the consumption in the database decides
// (src/provider/adapter.ts, checkConsumption). An outside transaction holds
// the token's row so that the consumptions wait until all the reads are done.
import { setTimeout as sleep } from 'node:timers/promises';
import * as oidc from 'openid-client';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { sha256 } from '../../src/persistence/hash.js';
import { embedded, heldAtTheLock } from '../support/locks.js';
import { startPortcullis, type TestPortcullis } from '../support/portcullis.js';
import { discover, logIn, REDIRECT_URI } from '../support/relying-party.js';
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

it.skipIf(embedded)('concurrent uses of one refresh token that all read it unused: one wins, and the grant is revoked', async () => {
  const ua = new UserAgent();
  const { tokens } = await logIn(ua, rp, 'openid offline_access', dana, { prompt: 'consent' });
  const admin = pc.outsideConnection();
  await admin.connect();
  try {
    await admin.query('BEGIN');
    await admin.query(`SELECT 1 FROM provider_artifacts WHERE kind = 'RefreshToken' AND id = $1 FOR UPDATE`, [sha256(tokens.refresh_token!)]);
    const uses = Array.from({ length: 6 }, () => oidc.refreshTokenGrant(rp, tokens.refresh_token!));
    await heldAtTheLock(admin);
    await sleep(500); // the other requests read the token meanwhile; their consumptions queue behind the held one
    await admin.query('COMMIT');
    const results = await Promise.allSettled(uses);

    const won = results.filter((result) => result.status === 'fulfilled') as PromiseFulfilledResult<oidc.TokenEndpointResponse>[];
    expect(won).toHaveLength(1);
    for (const result of results) if (result.status === 'rejected') expect(result.reason).toMatchObject({ error: 'invalid_grant' });
    // The replay revoked what the winner got, and the grant itself: consent is asked again.
    expect((await oidc.tokenIntrospection(rp, won[0]!.value.access_token)).active).toBe(false);
    await expect(oidc.refreshTokenGrant(rp, won[0]!.value.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant' });
    expect((await logIn(ua, rp, 'openid offline_access', dana)).seen).toEqual(['consent']);
    expect(pc.errors).toEqual([]);
  } finally {
    await admin.end();
  }
});
