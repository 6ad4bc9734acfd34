// A third-party app logs a person in with openid-client (authorization code +
// PKCE) and uses the tokens; a resource server checks them with jose.
import argon2 from 'argon2';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, startPortcullis, TEST_ENV, type TestPortcullis } from '../support/portcullis.js';
import { allow, authorizationRequest, discover, logIn, pageKind, POST_LOGOUT_URI, REDIRECT_URI, signIn, signInRefusal, visit } from '../support/relying-party.js';
import { UserAgent } from '../support/user-agent.js';
import { sha256 } from '../support/digest.js';

const alice = { email: 'alice@example.com', password: 'correct horse battery staple' };

let pc: TestPortcullis;
let app: { client_id: string; client_secret?: string };
let rp: oidc.Configuration;

beforeAll(async () => {
  pc = await startPortcullis();
  await pc.createUser(alice.email, alice.password, 'Alice Liddell');
  app = await pc.createClient({ name: 'Photo App', redirectUris: [REDIRECT_URI], postLogoutRedirectUris: [POST_LOGOUT_URI] });
  rp = await discover(pc.issuer, app.client_id, app.client_secret);
});

afterAll(async () => {
  await pc?.close();
});

describe('a confidential client doing authorization code + PKCE', () => {
  it('gets an ID token signed with a key from the JWKS, with the person as subject', async () => {
    const { tokens, seen } = await logIn(new UserAgent(), rp, 'openid profile email', alice);
    expect(seen).toEqual(['login', 'consent']);
    const jwks = createRemoteJWKSet(new URL(rp.serverMetadata().jwks_uri!));
    const { payload, protectedHeader } = await jwtVerify(tokens.id_token!, jwks, { issuer: pc.issuer, audience: app.client_id });
    // RS256: what a client that names no algorithm expects (OpenID Connect Registration §2).
    expect(protectedHeader.alg).toBe('RS256');
    expect(payload.sub).toMatch(/^[0-9a-f-]{36}$/);
    expect(tokens.token_type.toLowerCase()).toBe('bearer');
    expect(tokens.refresh_token).toBeUndefined(); // no offline_access asked
  });

  it('serves userinfo with the claims of the granted scopes only', async () => {
    const { tokens } = await logIn(new UserAgent(), rp, 'openid email', alice);
    const claims = tokens.claims()!;
    const info = await oidc.fetchUserInfo(rp, tokens.access_token, claims.sub);
    expect(info).toMatchObject({ sub: claims.sub, email: 'alice@example.com', email_verified: false });
    expect(info.name).toBeUndefined();

    const withProfile = await logIn(new UserAgent(), rp, 'openid profile', alice);
    const profile = await oidc.fetchUserInfo(rp, withProfile.tokens.access_token, claims.sub);
    expect(profile.name).toBe('Alice Liddell');
    expect(profile.email).toBeUndefined();
  });

  it('signs ID tokens with ES256 for a client that asks for it', async () => {
    const modern = await pc.createClient({ name: 'Modern', redirectUris: [REDIRECT_URI], idTokenAlg: 'ES256' });
    const modernRp = await discover(pc.issuer, modern.client_id, modern.client_secret);
    const { tokens } = await logIn(new UserAgent(), modernRp, 'openid', alice);
    expect(decodeProtectedHeader(tokens.id_token!).alg).toBe('ES256');
    const jwks = createRemoteJWKSet(new URL(rp.serverMetadata().jwks_uri!));
    await jwtVerify(tokens.id_token!, jwks, { issuer: pc.issuer, audience: modern.client_id });
  });
});

/** Alice signed in to the app with offline access on two devices: each sign-in's tokens. */
async function onTwoDevices() {
  const phone = await logIn(new UserAgent(), rp, 'openid offline_access', alice, { prompt: 'consent' });
  const laptop = await logIn(new UserAgent(), rp, 'openid offline_access', alice, { prompt: 'consent' });
  return { phone: phone.tokens, laptop: laptop.tokens };
}

/** The laptop's sign-in still works for the app: its access token, and a refresh. */
async function stillWorks(tokens: oidc.TokenEndpointResponse) {
  expect((await oidc.tokenIntrospection(rp, tokens.access_token)).active).toBe(true);
  expect((await oidc.refreshTokenGrant(rp, tokens.refresh_token!)).access_token).toBeTruthy();
}

describe('refresh tokens', () => {
  it('are issued with offline_access and rotate on every use', async () => {
    const { tokens } = await logIn(new UserAgent(), rp, 'openid offline_access', alice, { prompt: 'consent' });
    expect(tokens.refresh_token).toBeTruthy();
    const first = await oidc.refreshTokenGrant(rp, tokens.refresh_token!);
    expect(first.refresh_token).toBeTruthy();
    expect(first.refresh_token).not.toBe(tokens.refresh_token);
    const second = await oidc.refreshTokenGrant(rp, first.refresh_token!);
    expect(second.access_token).toBeTruthy();
  });

  it("refresh to ID tokens with the first one's issuer, subject, audience and auth_time, and no nonce (OIDC Core §12.2)", async () => {
    const { tokens } = await logIn(new UserAgent(), rp, 'openid offline_access', alice, { prompt: 'consent', max_age: '3600' });
    const first = tokens.claims()!;
    expect(first.nonce).toEqual(expect.any(String));
    expect(first.auth_time).toEqual(expect.any(Number));
    // How the person signed in (OIDC Core §2, RFC 8176 §2): with a password.
    expect(first.amr).toEqual(['pwd']);
    const refreshed = await oidc.refreshTokenGrant(rp, tokens.refresh_token!);
    // Rotated once: the refresh token made by the first refresh holds no nonce either.
    const again = await oidc.refreshTokenGrant(rp, refreshed.refresh_token!);
    for (const claims of [refreshed.claims()!, again.claims()!]) {
      expect(claims).toMatchObject({ iss: first.iss, sub: first.sub, aud: first.aud, auth_time: first.auth_time, amr: ['pwd'] });
      expect(claims.iat).toBeGreaterThanOrEqual(first.iat);
      expect(claims).not.toHaveProperty('nonce');
    }
  });

  it('a refresh token stored with a nonce (as 0.5.0 stored them) refreshes to an ID token without one', async () => {
    const { tokens } = await logIn(new UserAgent(), rp, 'openid offline_access', alice, { prompt: 'consent' });
    const prisma = pc.server.services.database.prisma;
    const planted = await prisma.$executeRaw`UPDATE provider_artifacts SET payload = jsonb_set(payload, '{nonce}', to_jsonb(${tokens.claims()!.nonce}::text))
      WHERE kind = 'RefreshToken' AND id = ${sha256(tokens.refresh_token!)}`;
    expect(planted).toBe(1);
    const refreshed = await oidc.refreshTokenGrant(rp, tokens.refresh_token!);
    expect(refreshed.claims()).toMatchObject({ sub: tokens.claims()!.sub });
    expect(refreshed.claims()).not.toHaveProperty('nonce');
  });

  it("a reused refresh token ends every token of its sign-in, on that device only: the consent, and the app's sign-in on another device, stay", async () => {
    const { phone, laptop } = await onTwoDevices();
    const rotated = await oidc.refreshTokenGrant(rp, phone.refresh_token!);
    const logged = pc.log.length;

    await expect(oidc.refreshTokenGrant(rp, phone.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant' });

    // Everything issued in that sign-in is gone: the rotated-in refresh token and the access tokens.
    await expect(oidc.refreshTokenGrant(rp, rotated.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant' });
    expect((await oidc.tokenIntrospection(rp, rotated.access_token)).active).toBe(false);
    expect((await oidc.tokenIntrospection(rp, phone.access_token)).active).toBe(false);
    // Not the other device's, nor the consent: a thief held tokens of that sign-in only.
    await stillWorks(laptop);
    expect((await logIn(new UserAgent(), rp, 'openid offline_access', alice)).seen).toEqual(['login']);
    // The audit trail has the theft, by ids only, and the sign-in before it.
    const warnings = pc.log.slice(logged).filter((line) => line.includes('"message":"tokens revoked: a code or refresh token was used twice"'));
    expect(warnings.map((line) => JSON.parse(line))).toEqual([
      expect.objectContaining({ level: 'warn', route: 'token', client: rp.clientMetadata().client_id, grant: expect.any(String) }),
    ]);
    expect(pc.log.some((line) => line.includes('"message":"signed in"') && line.includes(`"client":"${rp.clientMetadata().client_id}"`))).toBe(true);
    for (const token of [phone.refresh_token!, rotated.refresh_token!, phone.access_token, rotated.access_token]) {
      expect(pc.log.join('\n')).not.toContain(token);
    }
  });

  it("a code exchanged twice ends the tokens of its sign-in (RFC 6749 §4.1.2), on that device only", async () => {
    const { laptop } = await onTwoDevices();
    const ua = new UserAgent();
    // (offline_access is granted only on a consent page: prompt=consent, OIDC Core §11.)
    const request = await authorizationRequest(rp, 'openid offline_access', { prompt: 'consent' });
    const callback = await allow(ua, await signIn(ua, await visit(ua, request.url), alice.email, alice.password));
    expect(pageKind(callback)).toBe('callback');
    const checks = { pkceCodeVerifier: request.verifier, expectedState: request.state, expectedNonce: request.nonce };
    const phone = await oidc.authorizationCodeGrant(rp, new URL(callback.url), checks);
    const logged = pc.log.length;
    await expect(oidc.authorizationCodeGrant(rp, new URL(callback.url), checks)).rejects.toMatchObject({ error: 'invalid_grant' });
    expect((await oidc.tokenIntrospection(rp, phone.access_token)).active).toBe(false);
    await expect(oidc.refreshTokenGrant(rp, phone.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant' });
    await stillWorks(laptop);
    expect(pc.log.slice(logged).filter((line) => line.includes('"message":"tokens revoked: a code or refresh token was used twice"'))).toHaveLength(1);
    // The browser is still signed in, and the consent stands: the app signs in again without a page.
    expect((await logIn(ua, rp, 'openid offline_access', alice)).seen).toEqual([]);
  });

  it('of eight concurrent uses of one refresh token at most one succeeds, and what the winner got is revoked; the consent stays', async () => {
    const ua = new UserAgent();
    const { tokens } = await logIn(ua, rp, 'openid offline_access', alice, { prompt: 'consent' });
    const results = await Promise.allSettled(Array.from({ length: 8 }, () => oidc.refreshTokenGrant(rp, tokens.refresh_token!)));
    const succeeded = results.filter((result) => result.status === 'fulfilled') as PromiseFulfilledResult<oidc.TokenEndpointResponse>[];
    expect(succeeded.length).toBeLessThanOrEqual(1);
    for (const result of results) if (result.status === 'rejected') expect(result.reason).toMatchObject({ error: 'invalid_grant' });
    // A replay was seen, so whatever the winner got is revoked with the rest of the sign-in.
    for (const { value } of succeeded) {
      await expect(oidc.refreshTokenGrant(rp, value.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant' });
      expect((await oidc.tokenIntrospection(rp, value.access_token)).active).toBe(false);
    }
    expect((await oidc.tokenIntrospection(rp, tokens.access_token)).active).toBe(false);
    expect((await logIn(ua, rp, 'openid offline_access', alice)).seen).toEqual([]);
  });

  describe('with REFRESH_TOKEN_REUSE_INTERVAL', () => {
    // A response lost on the way, or two tabs refreshing at once: the same
    // refresh token presented again within the interval is no replay.
    let lenient: TestPortcullis;
    let lenientRp: oidc.Configuration;

    beforeAll(async () => {
      lenient = await startPortcullis({ REFRESH_TOKEN_REUSE_INTERVAL: '3s' });
      await lenient.createUser(alice.email, alice.password);
      const client = await lenient.createClient({ name: 'Mobile App', redirectUris: [REDIRECT_URI] });
      lenientRp = await discover(lenient.issuer, client.client_id, client.client_secret);
    });

    afterAll(async () => {
      await lenient?.close();
    });

    const active = async (token: string) => (await oidc.tokenIntrospection(lenientRp, token)).active;

    it("a refresh token used again within the interval gets tokens of its own; past it, a use revokes the sign-in's tokens", async () => {
      const ua = new UserAgent();
      const { tokens } = await logIn(ua, lenientRp, 'openid offline_access', alice, { prompt: 'consent' });
      const first = await oidc.refreshTokenGrant(lenientRp, tokens.refresh_token!);
      const firstUsed = Date.now();
      const again = await oidc.refreshTokenGrant(lenientRp, tokens.refresh_token!);
      expect(again.refresh_token).toBeTruthy();
      expect(again.refresh_token).not.toBe(first.refresh_token);
      expect(again.access_token).not.toBe(first.access_token);
      // Neither use revoked anything: both lines of tokens work.
      expect(await active(first.access_token)).toBe(true);
      expect(await active(again.access_token)).toBe(true);
      const next = await oidc.refreshTokenGrant(lenientRp, first.refresh_token!);
      expect(lenient.log.some((line) => line.includes('used twice'))).toBe(false);
      // The second use is in the audit trail, by ids only.
      const reused = lenient.log.filter((line) => line.includes('"message":"refresh token used again within its reuse interval"'));
      expect(reused).toHaveLength(1);
      expect(JSON.parse(reused[0]!)).toMatchObject({ level: 'info', client: lenientRp.clientMetadata().client_id, grant: expect.any(String) });

      // The interval counts from the first use, not from the latest.
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, firstUsed + 3300 - Date.now())));
      await expect(oidc.refreshTokenGrant(lenientRp, tokens.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant' });
      for (const refreshToken of [next.refresh_token!, again.refresh_token!]) {
        await expect(oidc.refreshTokenGrant(lenientRp, refreshToken)).rejects.toMatchObject({ error: 'invalid_grant' });
      }
      for (const accessToken of [first.access_token, again.access_token, next.access_token]) expect(await active(accessToken)).toBe(false);
      expect(lenient.log.some((line) => line.includes('"message":"tokens revoked: a code or refresh token was used twice"'))).toBe(true);
      expect((await logIn(ua, lenientRp, 'openid offline_access', alice)).seen).toEqual([]);
    });

    it('an authorization code is still used once: exchanged again within the interval, it ends the tokens it gave (RFC 6749 §4.1.2)', async () => {
      const ua = new UserAgent();
      const request = await authorizationRequest(lenientRp, 'openid offline_access', { prompt: 'consent' });
      const callback = await allow(ua, await signIn(ua, await visit(ua, request.url), alice.email, alice.password));
      const checks = { pkceCodeVerifier: request.verifier, expectedState: request.state, expectedNonce: request.nonce };
      const tokens = await oidc.authorizationCodeGrant(lenientRp, new URL(callback.url), checks);
      await expect(oidc.authorizationCodeGrant(lenientRp, new URL(callback.url), checks)).rejects.toMatchObject({ error: 'invalid_grant' });
      expect(await active(tokens.access_token)).toBe(false);
      await expect(oidc.refreshTokenGrant(lenientRp, tokens.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant' });
    });

    it('eight concurrent uses of one refresh token all succeed, and the grant stands', async () => {
      const ua = new UserAgent();
      const { tokens } = await logIn(ua, lenientRp, 'openid offline_access', alice, { prompt: 'consent' });
      const results = await Promise.all(Array.from({ length: 8 }, () => oidc.refreshTokenGrant(lenientRp, tokens.refresh_token!)));
      expect(new Set(results.map((result) => result.refresh_token)).size).toBe(8);
      for (const result of results) expect(await active(result.access_token)).toBe(true);
      await oidc.refreshTokenGrant(lenientRp, results[7]!.refresh_token!);
      // The consent stands: signing in again asks nothing.
      expect((await logIn(ua, lenientRp, 'openid offline_access', alice)).seen).toEqual([]);
    });
  });

  it('a refresh refused for its resource leaves the refresh token usable', async () => {
    const { tokens } = await logIn(new UserAgent(), rp, 'openid offline_access', alice, { prompt: 'consent' });
    // The library consumes the refresh token before it checks the resource; the failed request must not.
    await expect(
      oidc.refreshTokenGrant(rp, tokens.refresh_token!, { resource: 'https://unregistered.example/' }),
    ).rejects.toMatchObject({ error: 'invalid_target' });
    const refreshed = await oidc.refreshTokenGrant(rp, tokens.refresh_token!);
    expect((await oidc.tokenIntrospection(rp, refreshed.access_token)).active).toBe(true);
    // Nothing of the failed request was stored: the first success is no reuse.
    expect((await oidc.tokenIntrospection(rp, tokens.access_token)).active).toBe(true);
  });

  it('give no more than the client still has: scopes taken from it leave the next refresh and UserInfo, and without offline_access its refresh tokens end', async () => {
    const shrinking = await pc.createClient({ name: 'Shrinking', redirectUris: [REDIRECT_URI], scope: 'openid email profile offline_access' });
    const shrinkingRp = await discover(pc.issuer, shrinking.client_id, shrinking.client_secret);
    const bystander = await logIn(new UserAgent(), rp, 'openid email offline_access', alice, { prompt: 'consent' });
    const { tokens } = await logIn(new UserAgent(), shrinkingRp, 'openid email profile offline_access', alice, { prompt: 'consent' });
    const sub = tokens.claims()!.sub;
    expect(await oidc.fetchUserInfo(shrinkingRp, tokens.access_token, sub)).toMatchObject({ email: alice.email, name: 'Alice Liddell' });

    expect((await pc.cli(['client', 'update', shrinking.client_id, '--scope', 'openid profile offline_access'])).code).toBe(0);
    // At once, for the access token already issued: UserInfo reads what the consent holds now.
    const before = await oidc.fetchUserInfo(shrinkingRp, tokens.access_token, sub);
    expect([before.email, before.name]).toEqual([undefined, 'Alice Liddell']);
    const refreshed = await oidc.refreshTokenGrant(shrinkingRp, tokens.refresh_token!);
    expect(refreshed.scope?.split(' ').sort()).toEqual(['offline_access', 'openid', 'profile']);
    const after = await oidc.fetchUserInfo(shrinkingRp, refreshed.access_token, sub);
    expect([after.email, after.name]).toEqual([undefined, 'Alice Liddell']);
    // Given back to the client, a scope is not back in the consent: the person is asked for it again.
    expect((await pc.cli(['client', 'update', shrinking.client_id, '--scope', 'openid email profile offline_access'])).code).toBe(0);
    const again = await oidc.refreshTokenGrant(shrinkingRp, refreshed.refresh_token!);
    expect(again.scope?.split(' ')).not.toContain('email');

    // Without offline_access, its refresh tokens end; other clients' stay.
    expect((await pc.cli(['client', 'update', shrinking.client_id, '--scope', 'openid profile'])).code).toBe(0);
    await expect(oidc.refreshTokenGrant(shrinkingRp, again.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant' });
    const other = await oidc.refreshTokenGrant(rp, bystander.tokens.refresh_token!);
    expect(other.scope?.split(' ').sort()).toEqual(['email', 'offline_access', 'openid']);
  });

  it('end when the client is left with no OpenID Connect scope at all, and UserInfo gives the consent nothing more', async () => {
    const emptied = await pc.createClient({ name: 'Emptied', redirectUris: [REDIRECT_URI], scope: 'openid email offline_access' });
    const emptiedRp = await discover(pc.issuer, emptied.client_id, emptied.client_secret);
    const { tokens } = await logIn(new UserAgent(), emptiedRp, 'openid email offline_access', alice, { prompt: 'consent' });
    const sub = tokens.claims()!.sub;
    expect((await oidc.fetchUserInfo(emptiedRp, tokens.access_token, sub)).email).toBe(alice.email);
    expect((await pc.cli(['client', 'update', emptied.client_id, '--scope', ''])).code).toBe(0);
    await expect(oidc.refreshTokenGrant(emptiedRp, tokens.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant' });
    expect((await oidc.fetchUserInfo(emptiedRp, tokens.access_token, sub).catch(() => ({ email: undefined }))).email).toBeUndefined();
  });

  it('end when the refresh_token grant is taken from the client, and do not come back with it', async () => {
    const grantless = await pc.createClient({ name: 'Grantless', redirectUris: [REDIRECT_URI], scope: 'openid offline_access' });
    const grantlessRp = await discover(pc.issuer, grantless.client_id, grantless.client_secret);
    const { tokens } = await logIn(new UserAgent(), grantlessRp, 'openid offline_access', alice, { prompt: 'consent' });
    expect((await pc.cli(['client', 'update', grantless.client_id, '--grant-type', 'authorization_code'])).code).toBe(0);
    await expect(oidc.refreshTokenGrant(grantlessRp, tokens.refresh_token!)).rejects.toMatchObject({ error: 'unauthorized_client' });
    expect((await oidc.tokenIntrospection(grantlessRp, tokens.refresh_token!)).active).toBe(false);
    expect((await pc.cli(['client', 'update', grantless.client_id, '--grant-type', 'authorization_code', '--grant-type', 'refresh_token'])).code).toBe(0);
    await expect(oidc.refreshTokenGrant(grantlessRp, tokens.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant' });
  });

  it('keep working when the sign-in grants are taken from the client, which can start no new sign-in', async () => {
    const winding = await pc.createClient({ name: 'Winding Down', redirectUris: [REDIRECT_URI], scope: 'openid offline_access' });
    const windingRp = await discover(pc.issuer, winding.client_id, winding.client_secret);
    const { tokens } = await logIn(new UserAgent(), windingRp, 'openid offline_access', alice, { prompt: 'consent' });
    expect((await pc.cli(['client', 'update', winding.client_id, '--grant-type', 'refresh_token'])).code).toBe(0);
    const refreshed = await oidc.refreshTokenGrant(windingRp, tokens.refresh_token!);
    expect(refreshed.claims()!.sub).toBe(tokens.claims()!.sub);
    const request = await authorizationRequest(windingRp, 'openid offline_access');
    const page = await visit(new UserAgent(), request.url);
    expect(pageKind(page)).toBe('callback');
    expect(new URL(page.url).searchParams.get('error')).toBe('unauthorized_client');
  });

  it('are not issued to a client not allowed the refresh_token grant', async () => {
    const noRefresh = await pc.createClient({ name: 'No Refresh', redirectUris: [REDIRECT_URI], grantTypes: ['authorization_code'] });
    const noRefreshRp = await discover(pc.issuer, noRefresh.client_id, noRefresh.client_secret);
    const { tokens } = await logIn(new UserAgent(), noRefreshRp, 'openid offline_access', alice, { prompt: 'consent' });
    expect(tokens.refresh_token).toBeUndefined();
  });
});

describe('introspection and revocation', () => {
  it('introspection describes an active access token', async () => {
    const { tokens } = await logIn(new UserAgent(), rp, 'openid email', alice);
    const result = await oidc.tokenIntrospection(rp, tokens.access_token);
    expect(result).toMatchObject({ active: true, client_id: app.client_id, sub: tokens.claims()!.sub, token_type: 'Bearer' });
    expect(result.scope!.split(' ').sort()).toEqual(['email', 'openid']);
    expect(result.exp).toBeGreaterThan(Date.now() / 1000);
  });

  it('a revoked access token is inactive and no longer opens userinfo', async () => {
    const { tokens } = await logIn(new UserAgent(), rp, 'openid email', alice);
    await oidc.tokenRevocation(rp, tokens.access_token);
    expect((await oidc.tokenIntrospection(rp, tokens.access_token)).active).toBe(false);
    await expect(oidc.fetchUserInfo(rp, tokens.access_token, tokens.claims()!.sub)).rejects.toBeDefined();
  });

  it('revocation answers 200 with an empty JSON object (RFC 7009 §2.2: the body is ignored; clients that take only JSON read it), known token or not', async () => {
    const { tokens } = await logIn(new UserAgent(), rp, 'openid', alice);
    for (const token of [tokens.access_token, 'not-a-token-of-ours']) {
      const response = await fetch(`${rp.serverMetadata().revocation_endpoint}`, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          authorization: `Basic ${Buffer.from(`${app.client_id}:${app.client_secret}`).toString('base64')}`,
        },
        body: new URLSearchParams({ token }),
      });
      expect([response.status, response.headers.get('content-type'), await response.text()]).toEqual([200, 'application/json; charset=utf-8', '{}']);
    }
    expect((await oidc.tokenIntrospection(rp, tokens.access_token)).active).toBe(false);
  });

  it("revoking a refresh token ends that sign-in's tokens only: the consent, and the app's sign-in on another device, stay", async () => {
    const { phone, laptop } = await onTwoDevices();
    const logged = pc.log.length;
    await oidc.tokenRevocation(rp, phone.refresh_token!);
    // For the audit trail, without the token.
    const lines = pc.log.slice(logged).filter((line) => line.includes('"message":"tokens revoked"'));
    expect(lines.map((line) => JSON.parse(line))).toEqual([expect.objectContaining({ client: app.client_id, presented: 'RefreshToken', grant: expect.any(String) })]);
    expect(lines.join('\n')).not.toContain(phone.refresh_token!);
    await expect(oidc.refreshTokenGrant(rp, phone.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant' });
    expect((await oidc.tokenIntrospection(rp, phone.access_token)).active).toBe(false);
    await stillWorks(laptop);
    expect((await logIn(new UserAgent(), rp, 'openid', alice)).seen).toEqual(['login']);
  });

  it("revoking an access token ends that sign-in's tokens, the refresh token included; the consent, and another device's sign-in, stay", async () => {
    const { phone, laptop } = await onTwoDevices();
    await oidc.tokenRevocation(rp, phone.access_token);
    expect((await oidc.tokenIntrospection(rp, phone.access_token)).active).toBe(false);
    await expect(oidc.refreshTokenGrant(rp, phone.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant' });
    await stillWorks(laptop);
    expect((await logIn(new UserAgent(), rp, 'openid', alice)).seen).toEqual(['login']);
  });

  it('introspection, revocation and the token endpoint without client authentication are invalid_client (RFC 6749 §5.2)', async () => {
    for (const [path, body] of [['/token/introspection', 'token=whatever'], ['/token/revocation', 'token=whatever'], ['/token', 'grant_type=client_credentials']]) {
      const response = await fetch(`${pc.issuer}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body,
      });
      expect(response.status).toBe(401);
      expect(response.headers.get('www-authenticate')).toMatch(/^Basic realm=/);
      expect(await response.json()).toMatchObject({ error: 'invalid_client' });
    }
    // A request that cannot be read is still invalid_request.
    const unreadable = await fetch(`${pc.issuer}/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(unreadable.status).toBe(400);
    expect(await unreadable.json()).toMatchObject({ error: 'invalid_request' });
  });
});

describe('what the database holds', () => {
  it('keeps only SHA-256 digests of token ids, so a dump yields no usable token', async () => {
    const { tokens } = await logIn(new UserAgent(), rp, 'openid offline_access', alice, { prompt: 'consent' });
    const prisma = pc.server.services.database.prisma;
    const rows = await prisma.providerArtifact.findMany({ select: { id: true, payload: true } });
    const dump = JSON.stringify(rows);
    for (const token of [tokens.access_token, tokens.refresh_token!]) {
      expect(dump).not.toContain(token);
      expect(rows.some((row) => row.id === sha256(token))).toBe(true);
    }
    const secrets = await prisma.client.findMany({ select: { clientSecretHash: true } });
    expect(JSON.stringify(secrets)).not.toContain(app.client_secret);
    const passwords = await prisma.password.findMany({ select: { hash: true } });
    expect(passwords.every((row) => row.hash.startsWith('$argon2id$'))).toBe(true);
  });
});

describe('argon2 parameters raised (ARGON2_*)', () => {
  it('a sign-in stores the password anew at the new cost; until then a wrong password for the account takes as long as for no account', async () => {
    const server = await startPortcullis({ ARGON2_MEMORY_KIB: '32768', ARGON2_TIME_COST: '3' });
    try {
      const ivy = { email: 'ivy@example.com', password: 'ivys long password' };
      // Stored when the parameters were lower: by the CLI, run with the cheap test ones.
      const made = await runCli(['user', 'create', '--email', ivy.email, '--password-stdin'], { ...server.env, ...TEST_ENV }, `${ivy.password}\n`);
      expect(made.code, made.stderr).toBe(0);
      const stored = async () => (await server.server.services.database.prisma.password.findFirstOrThrow({ where: { user: { email: ivy.email } } })).hash;
      expect(await stored()).toMatch(/^\$argon2id\$v=19\$m=1024,p=1,t=1\$/);
      const client = await server.createClient({ name: 'Rehashing', redirectUris: [REDIRECT_URI] });
      const config = await discover(server.issuer, client.client_id, client.client_secret);

      // A wrong password: for Ivy (her cheap hash, then the current cost) and
      // for nobody (the current cost), taking turns; each the least of five
      // (a busy machine only ever adds time).
      const wrong = async (email: string) => {
        const ua = new UserAgent();
        const login = await visit(ua, (await authorizationRequest(config, 'openid')).url);
        const started = performance.now();
        const page = await signIn(ua, login, email, 'not the password');
        expect(signInRefusal(page)).toBe('wrong_credentials');
        return performance.now() - started;
      };
      await wrong('nobody@example.com'); // the first also makes the decoy's hash
      const known: number[] = [];
      const unknown: number[] = [];
      for (let turn = 0; turn < 5; turn++) {
        known.push(await wrong(ivy.email));
        unknown.push(await wrong('nobody@example.com'));
      }
      // Without the decoy after it, her cheap hash answers in a fraction of the time.
      expect(Math.min(...known)).toBeGreaterThan(0.5 * Math.min(...unknown));

      await logIn(new UserAgent(), config, 'openid', ivy);
      expect(await stored()).toMatch(/^\$argon2id\$v=19\$m=32768,p=1,t=3\$/);
      // The same password, stored anew, signs in.
      expect((await logIn(new UserAgent(), config, 'openid', ivy, { prompt: 'login' })).seen).toContain('login');
    } finally {
      await server.close();
    }
  });
});

describe('passwords are compared as Unicode text (NFKC, NIST SP 800-63B §5.1.1.2)', () => {
  it('a password set decomposed signs in typed composed, and one stored as typed by an earlier release still signs in, and is stored anew', async () => {
    const decomposed = 'cafe\u0301 au lait, sil vous plait';
    const composed = decomposed.normalize('NFC');
    expect(composed).not.toBe(decomposed);
    const client = await pc.createClient({ name: 'Unicode app', redirectUris: [REDIRECT_URI] });
    const config = await discover(pc.issuer, client.client_id, client.client_secret);
    await pc.createUser('noor@example.com', decomposed, 'Noor');
    expect((await logIn(new UserAgent(), config, 'openid', { email: 'noor@example.com', password: composed })).seen).toContain('login');

    // Stored by a release before 0.5.8: the password hashed as it was typed.
    await pc.createUser('omar@example.com', 'placeholder password', 'Omar');
    const prisma = pc.server.services.database.prisma;
    const asTyped = await argon2.hash(decomposed, { type: argon2.argon2id, memoryCost: 1024, timeCost: 1 });
    await prisma.password.updateMany({ where: { user: { email: 'omar@example.com' } }, data: { hash: asTyped } });
    const omar = { email: 'omar@example.com', password: decomposed };
    expect((await logIn(new UserAgent(), config, 'openid', omar)).seen).toContain('login');
    const stored = (await prisma.password.findFirstOrThrow({ where: { user: { email: omar.email } } })).hash;
    expect(stored).not.toBe(asTyped);
    // Stored anew, normalized: typed composed it signs in too; a wrong one does not.
    expect((await logIn(new UserAgent(), config, 'openid', { ...omar, password: composed }, { prompt: 'login' })).seen).toContain('login');
    const ua = new UserAgent();
    const wrong = await signIn(ua, await visit(ua, (await authorizationRequest(config, 'openid')).url), omar.email, 'cafe au lait');
    expect(signInRefusal(wrong)).toBe('wrong_credentials');
  });
});

describe('client authentication', () => {
  // Secrets are stored as digests, so an HMAC keyed with the plain secret
  // (client_secret_jwt) cannot be checked: discovery must not offer it to a
  // library choosing a method, nor an HMAC algorithm (private_key_jwt: private-key-jwt.test.ts).
  it('discovery offers only the methods a client can use, and both secret methods work', async () => {
    const metadata = rp.serverMetadata();
    expect(metadata.token_endpoint_auth_methods_supported).toEqual(['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'none']);
    expect(metadata.token_endpoint_auth_signing_alg_values_supported!.filter((alg) => alg.startsWith('HS'))).toEqual([]);
    const { tokens } = await logIn(new UserAgent(), rp, 'openid offline_access', alice, { prompt: 'consent' });
    const viaPost = await oidc.discovery(new URL(pc.issuer), app.client_id, app.client_secret, oidc.ClientSecretPost(app.client_secret!), {
      execute: [oidc.allowInsecureRequests],
    });
    expect((await oidc.refreshTokenGrant(viaPost, tokens.refresh_token!)).access_token).toBeTruthy();
  });

  it('a client_secret_jwt assertion is refused with invalid_client', async () => {
    const viaJwt = await oidc.discovery(new URL(pc.issuer), app.client_id, app.client_secret, oidc.ClientSecretJwt(app.client_secret!), {
      execute: [oidc.allowInsecureRequests],
    });
    await expect(oidc.clientCredentialsGrant(viaJwt)).rejects.toMatchObject({ error: 'invalid_client' });
  });

  it('a registered client\'s failed authentication is logged at info, never with the secret tried; an unknown client\'s is not', async () => {
    const guessed = 'not-the-secret-of-this-client';
    const unknown = 'no-such-client-id';
    const logged = pc.log.length;
    for (const [id, secret, path] of [[app.client_id, guessed, '/token'], [app.client_id, guessed, '/token/introspection'], [unknown, guessed, '/token']] as const) {
      const response = await fetch(`${pc.issuer}${path}`, {
        method: 'POST',
        headers: { authorization: `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: path === '/token' ? 'grant_type=client_credentials' : 'token=whatever',
      });
      expect(response.status).toBe(401);
    }
    const lines = pc.log.slice(logged).map((line) => JSON.parse(line) as Record<string, unknown>).filter((line) => line.message === 'client authentication failed');
    expect(lines).toEqual([
      expect.objectContaining({ level: 'info', route: 'token', client: app.client_id, detail: 'invalid secret provided' }),
      expect.objectContaining({ level: 'info', route: 'introspection', client: app.client_id, detail: 'invalid secret provided' }),
    ]);
    expect(pc.log.slice(logged).join('\n')).not.toContain(guessed);
    expect(pc.log.slice(logged).join('\n')).not.toContain(unknown);
  });
});

describe('RP-initiated logout', () => {
  it('signs the person out after confirmation, sends them back, and the next login asks for the password', async () => {
    // Someone who has given this app no consent with offline_access (which outlives sign-outs).
    const lou = { email: 'lou@example.com', password: 'lous own password' };
    await pc.createUser(lou.email, lou.password);
    const ua = new UserAgent();
    const { tokens } = await logIn(ua, rp, 'openid', lou);
    const endSession = oidc.buildEndSessionUrl(rp, { id_token_hint: tokens.id_token!, post_logout_redirect_uri: POST_LOGOUT_URI });
    const confirm = await ua.open(endSession.href, {}, POST_LOGOUT_URI);
    expect(confirm.status).toBe(200);
    expect(confirm.html).toContain('Sign out');
    // Both choices sign out of the app; the page says what the second keeps, and where either leads.
    expect(confirm.html).toMatch(/<button class="secondary"[^>]*>Stay signed in to <bdi>[^<]+<\/bdi><\/button>/);
    expect(confirm.html).toContain('you then go back to <strong class="destination">127.0.0.1:9999</strong>');
    // It says whom "Sign out" signs out.
    expect(confirm.html).toContain('You are signed in as <strong><bdi>lou@example.com</bdi></strong> on this device.');
    expect(confirm.html).not.toContain('asked to sign out another account');
    const action = /<form[^>]*id="op.logoutForm"[^>]*action="([^"]+)"/.exec(confirm.html)?.[1] ?? UserAgent.formAction(confirm, '/confirm');
    const done = await ua.post(confirm, action, { ...UserAgent.hiddenFields(confirm), logout: 'yes' }, POST_LOGOUT_URI);
    expect(done.url.startsWith(POST_LOGOUT_URI)).toBe(true);

    const again = await logIn(ua, rp, 'openid', lou);
    expect(again.seen).toEqual(['login', 'consent']);
    // The logged-out session's tokens no longer work.
    expect((await oidc.tokenIntrospection(rp, tokens.access_token)).active).toBe(false);
  });

  it("signing out on one device ends that sign-in's tokens; the app's sign-ins in other browsers keep working and keep the consent, which new sign-ins are asked for again", async () => {
    const kit = { email: 'kit@example.com', password: 'kits own password' };
    await pc.createUser(kit.email, kit.password);
    const prisma = pc.server.services.database.prisma;
    const grantsOfKit = async (sub: string) => {
      const [row] = await prisma.$queryRaw<{ live: number; withdrawn: number; longest: number | null; longestExp: number | null }[]>`
        SELECT count(*) FILTER (WHERE consumed_at IS NULL)::int AS live, count(*) FILTER (WHERE consumed_at IS NOT NULL)::int AS withdrawn,
               max(EXTRACT(EPOCH FROM expires_at - now())) FILTER (WHERE consumed_at IS NOT NULL)::float8 AS longest,
               max((payload->>'exp')::numeric - EXTRACT(EPOCH FROM now())) FILTER (WHERE consumed_at IS NOT NULL)::float8 AS "longestExp"
        FROM provider_artifacts WHERE kind = 'Grant' AND account_id = ${sub} AND client_id = ${app.client_id}`;
      return row!;
    };
    const signOutOf = async (ua: UserAgent, tokens: oidc.TokenEndpointResponse) => {
      const endSession = oidc.buildEndSessionUrl(rp, { id_token_hint: tokens.id_token!, post_logout_redirect_uri: POST_LOGOUT_URI });
      const confirm = await ua.open(endSession.href, {}, POST_LOGOUT_URI);
      const done = await ua.post(confirm, UserAgent.formAction(confirm, '/confirm'), { ...UserAgent.hiddenFields(confirm), logout: 'yes' }, POST_LOGOUT_URI);
      expect(done.url.startsWith(POST_LOGOUT_URI)).toBe(true);
    };
    const [laptop, phone, tablet, desk] = [new UserAgent(), new UserAgent(), new UserAgent(), new UserAgent()];
    const atLaptop = await logIn(laptop, rp, 'openid email', kit);
    expect(atLaptop.seen).toEqual(['login', 'consent']);
    const atPhone = await logIn(phone, rp, 'openid email', kit);
    expect(atPhone.seen).toEqual(['login']); // the consent is remembered
    // The tablet signed in long ago: its access token has expired, only its session holds the consent.
    const atTablet = await logIn(tablet, rp, 'openid email', kit);
    await prisma.$executeRaw`UPDATE provider_artifacts SET expires_at = now() - interval '1 second' WHERE id = ${sha256(atTablet.tokens.access_token)}`;
    await logIn(desk, rp, 'openid email', kit);
    const sub = atLaptop.tokens.claims()!.sub;
    // Sign-ins are timed to the second: the sign-out comes in a later one.
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const logged = pc.log.length;

    await signOutOf(laptop, atLaptop.tokens);
    expect((await oidc.tokenIntrospection(rp, atLaptop.tokens.access_token)).active).toBe(false);
    // The phone's sign-in goes on: its token works, and it holds the consent (prompt=none gets a code).
    expect((await oidc.tokenIntrospection(rp, atPhone.tokens.access_token)).active).toBe(true);
    expect((await oidc.fetchUserInfo(rp, atPhone.tokens.access_token, sub)).email).toBe(kit.email);
    const silent = await logIn(phone, rp, 'openid email', kit, { prompt: 'none' });
    expect(silent.seen).toEqual([]);
    // The consent was withdrawn from new sign-ins ("until you sign out"), kept no longer than a session can last.
    const withdrawn = await grantsOfKit(sub);
    expect(withdrawn).toMatchObject({ live: 0, withdrawn: 1 });
    expect(withdrawn.longest).toBeLessThanOrEqual(30 * 24 * 3600);
    expect(withdrawn.longestExp).toBeLessThanOrEqual(30 * 24 * 3600 + 1); // what is issued under it lives no longer (withinGrant)
    const lines = pc.log.slice(logged).filter((line) => line.includes('"message":"tokens revoked at sign-out"'));
    expect(lines.map((line) => JSON.parse(line))).toEqual([
      expect.objectContaining({ level: 'info', route: 'end_session_confirm', client: app.client_id, grant: expect.any(String), consent: 'withdrawn' }),
    ]);
    // A sign-in made since in a browser that held it is asked again, as any new one is (here left on the consent page).
    const relogin = await authorizationRequest(rp, 'openid email', { prompt: 'login' });
    expect(pageKind(await signIn(desk, await visit(desk, relogin.url), kit.email, kit.password))).toBe('consent');
    const again = await logIn(laptop, rp, 'openid email', kit);
    expect(again.seen).toEqual(['login', 'consent']);
    expect(await grantsOfKit(sub)).toMatchObject({ live: 1, withdrawn: 1 });

    // Signed out on the phone too, its tokens end.
    await signOutOf(phone, silent.tokens);
    for (const tokens of [atPhone.tokens, silent.tokens]) expect((await oidc.tokenIntrospection(rp, tokens.access_token)).active).toBe(false);
    expect((await oidc.tokenIntrospection(rp, again.tokens.access_token)).active).toBe(true);
    // The tablet, with no token left, still holds the consent: its session does.
    expect((await logIn(tablet, rp, 'openid email', kit, { prompt: 'none' })).seen).toEqual([]);
    // Allow given again there remembers it again, for new sign-ins too.
    expect((await logIn(tablet, rp, 'openid email', kit, { prompt: 'consent' })).seen).toEqual(['consent']);
    expect(await grantsOfKit(sub)).toMatchObject({ live: 2, withdrawn: 0 });
  });

  it('a sign-out from two apps names each app in its log line', async () => {
    const otherApp = await pc.createClient({ name: 'Second App', redirectUris: [REDIRECT_URI] });
    const otherRp = await discover(pc.issuer, otherApp.client_id, otherApp.client_secret);
    // Someone who has given neither app offline_access (which outlives sign-outs).
    const liv = { email: 'liv@example.com', password: 'livs own password' };
    await pc.createUser(liv.email, liv.password);
    const ua = new UserAgent();
    const { tokens } = await logIn(ua, rp, 'openid', liv);
    const second = await logIn(ua, otherRp, 'openid', liv);
    const logged = pc.log.length;
    const endSession = oidc.buildEndSessionUrl(rp, { id_token_hint: tokens.id_token!, post_logout_redirect_uri: POST_LOGOUT_URI });
    const confirm = await ua.open(endSession.href, {}, POST_LOGOUT_URI);
    await ua.post(confirm, UserAgent.formAction(confirm, '/confirm'), { ...UserAgent.hiddenFields(confirm), logout: 'yes' }, POST_LOGOUT_URI);
    const lines = pc.log.slice(logged).filter((line) => line.includes('"message":"tokens revoked at sign-out"')).map((line) => JSON.parse(line) as { client: string });
    expect(lines.map((line) => line.client).sort()).toEqual([app.client_id, otherApp.client_id].sort());
    expect((await oidc.tokenIntrospection(otherRp, second.tokens.access_token)).active).toBe(false);
  });

  it("an id_token_hint naming someone other than the person signed in: the page says that signing out signs out the person signed in", async () => {
    const mia = { email: 'mia@example.com', password: 'mias own password' };
    const ned = { email: 'ned@example.com', password: 'neds own password' };
    await pc.createUser(mia.email, mia.password, 'Mia');
    await pc.createUser(ned.email, ned.password);
    const { tokens: miasTokens } = await logIn(new UserAgent(), rp, 'openid', mia);
    const nedsBrowser = new UserAgent();
    await logIn(nedsBrowser, rp, 'openid', ned);
    const endSession = oidc.buildEndSessionUrl(rp, { id_token_hint: miasTokens.id_token!, post_logout_redirect_uri: POST_LOGOUT_URI });
    const confirm = await nedsBrowser.open(endSession.href, {}, POST_LOGOUT_URI);
    expect(confirm.status).toBe(200);
    expect(confirm.html).toContain('You are signed in as <strong><bdi>ned@example.com</bdi></strong> on this device. ');
    expect(confirm.html).toMatch(/asked to sign out another account, but signing out here signs out this one\./);
    expect(confirm.html).not.toContain('mia@example.com');
  });

  it('an ID token signed before client update --id-token-alg is still taken as id_token_hint, at sign-out and with prompt=none; a forged one is not', async () => {
    const changing = await pc.createClient({ name: 'Changing', redirectUris: [REDIRECT_URI], postLogoutRedirectUris: [POST_LOGOUT_URI], idTokenAlg: 'ES256' });
    const changingRp = await discover(pc.issuer, changing.client_id, changing.client_secret);
    const ua = new UserAgent();
    const { tokens } = await logIn(ua, changingRp, 'openid', alice);
    expect(decodeProtectedHeader(tokens.id_token!).alg).toBe('ES256');
    expect((await pc.cli(['client', 'update', changing.client_id, '--id-token-alg', 'RS256'])).code).toBe(0);
    const rsRp = await oidc.discovery(new URL(pc.issuer), changing.client_id, { client_secret: changing.client_secret, id_token_signed_response_alg: 'RS256' }, undefined, {
      execute: [oidc.allowInsecureRequests],
    });
    // The server hears of the change from the database (on PostgreSQL, a notification): once its
    // ID tokens are RS256, the hint below is checked with the new algorithm.
    const deadline = Date.now() + 5000;
    for (;;) {
      const request = await authorizationRequest(rsRp, 'openid', { prompt: 'none' });
      const callback = await visit(ua, request.url);
      const issued = await oidc.authorizationCodeGrant(rsRp, new URL(callback.url), { pkceCodeVerifier: request.verifier, expectedState: request.state, expectedNonce: request.nonce }).catch(() => undefined);
      if (issued && decodeProtectedHeader(issued.id_token!).alg === 'RS256') break;
      expect(Date.now()).toBeLessThan(deadline);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }

    // prompt=none naming the person with the earlier token: a code, and an RS256 ID token.
    const silent = await visit(ua, (await authorizationRequest(rsRp, 'openid', { prompt: 'none', id_token_hint: tokens.id_token! })).url);
    expect(new URL(silent.url).searchParams.get('error')).toBeNull();
    expect(pageKind(silent)).toBe('callback');

    // A hint of our shape but not our signature is refused, whatever its algorithm.
    const [header, payload] = tokens.id_token!.split('.');
    const forged = `${header}.${payload}.${Buffer.from('not our signature').toString('base64url')}`;
    const refused = await ua.open(oidc.buildEndSessionUrl(rsRp, { id_token_hint: forged, post_logout_redirect_uri: POST_LOGOUT_URI }).href, {}, POST_LOGOUT_URI);
    expect(refused.status).toBe(400);

    const confirm = await ua.open(oidc.buildEndSessionUrl(rsRp, { id_token_hint: tokens.id_token!, post_logout_redirect_uri: POST_LOGOUT_URI }).href, {}, POST_LOGOUT_URI);
    expect(confirm.status).toBe(200);
    const done = await ua.post(confirm, UserAgent.formAction(confirm, '/confirm'), { ...UserAgent.hiddenFields(confirm), logout: 'yes' }, POST_LOGOUT_URI);
    expect(done.url.startsWith(POST_LOGOUT_URI)).toBe(true);
    expect((await logIn(ua, rsRp, 'openid', alice)).seen).toContain('login');
  });

  it('a post-logout address removed while the confirmation page was open gets nobody: the person, signed out, lands on the signed-out page', async () => {
    const leaving = await pc.createClient({ name: 'Leaving', redirectUris: [REDIRECT_URI], postLogoutRedirectUris: [POST_LOGOUT_URI, `${POST_LOGOUT_URI}?from=app`] });
    const leavingRp = await discover(pc.issuer, leaving.client_id, leaving.client_secret);
    const confirmPage = async (ua: UserAgent, postLogout: string) => {
      const { tokens } = await logIn(ua, leavingRp, 'openid', alice);
      const endSession = oidc.buildEndSessionUrl(leavingRp, { id_token_hint: tokens.id_token!, post_logout_redirect_uri: postLogout, state: 'st' });
      const confirm = await ua.open(endSession.href, {}, POST_LOGOUT_URI);
      expect(confirm.status).toBe(200);
      return confirm;
    };
    const signOut = (ua: UserAgent, confirm: Awaited<ReturnType<typeof confirmPage>>) =>
      ua.post(confirm, UserAgent.formAction(confirm, '/confirm'), { ...UserAgent.hiddenFields(confirm), logout: 'yes' }, POST_LOGOUT_URI);

    // Still registered (with its query): sent back there, with state.
    const kept = new UserAgent();
    const keptDone = await signOut(kept, await confirmPage(kept, `${POST_LOGOUT_URI}?from=app`));
    expect(keptDone.url).toBe(`${POST_LOGOUT_URI}?from=app&state=st`);

    const ua = new UserAgent();
    const confirm = await confirmPage(ua, POST_LOGOUT_URI);
    expect((await pc.cli(['client', 'update', leaving.client_id, '--post-logout-redirect-uri', `${POST_LOGOUT_URI}?from=app`])).code).toBe(0);
    const done = await signOut(ua, confirm);
    expect(done.url.startsWith(POST_LOGOUT_URI)).toBe(false);
    expect(done.url.startsWith(`${pc.issuer}/session/end/success`)).toBe(true);
    expect(done.status).toBe(200);
    // Signed out all the same: the next sign-in asks for the password.
    expect((await logIn(ua, leavingRp, 'openid', alice)).seen).toContain('login');
  });
});

afterAll(() => {
  expect(pc?.errors ?? []).toEqual([]);
});
