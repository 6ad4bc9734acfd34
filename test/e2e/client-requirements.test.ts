// What a client's registration can require of it: its authorization requests
// pushed (RFC 9126 §6, `--require-par`), its token requests with a DPoP proof
// (RFC 9449 §5.2, `--require-dpop`). openid-client is the client.
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPortcullis, type TestPortcullis } from '../support/portcullis.js';
import { allow, authorizationRequest, discover, pageKind, REDIRECT_URI, signIn, useAnotherAccount, visit } from '../support/relying-party.js';
import { UserAgent } from '../support/user-agent.js';

const frank = { email: 'frank@example.com', password: 'franks password' };
const grace = { email: 'grace@example.com', password: 'graces password' };

let pc: TestPortcullis;

beforeAll(async () => {
  pc = await startPortcullis();
  await pc.createUser(frank.email, frank.password);
  await pc.createUser(grace.email, grace.password);
});

afterAll(async () => {
  expect(pc?.errors ?? []).toEqual([]);
  await pc?.close();
});

/** `client create` with these options; its JSON. */
async function register(...options: string[]): Promise<Record<string, unknown> & { client_id: string; client_secret: string }> {
  const created = await pc.cli(['client', 'create', '--json', ...options]);
  expect(created.stderr).toBe('');
  return JSON.parse(created.stdout);
}

/** From the authorization URL to the callback, signing in and allowing on the way. */
async function signInThrough(url: URL): Promise<URL> {
  const ua = new UserAgent();
  let page = await visit(ua, url);
  if (pageKind(page) === 'login') page = await signIn(ua, page, frank.email, frank.password);
  if (pageKind(page) === 'consent') page = await allow(ua, page);
  expect(pageKind(page)).toBe('callback');
  return new URL(page.url);
}

describe('a client that must push its authorization requests (--require-par)', () => {
  it('is refused at /auth, signs in through PAR, and can be let off with --no-require-par', async () => {
    const bank = await register('--name', 'Bank', '--redirect-uri', REDIRECT_URI, '--scope', 'openid offline_access', '--require-par');
    expect(bank).toMatchObject({ require_pushed_authorization_requests: true, dpop_bound_access_tokens: false });
    const rp = await discover(pc.issuer, bank.client_id, bank.client_secret);

    // Straight to /auth: refused, back at the app (its redirect URI is registered), before anyone signs in.
    const direct = await authorizationRequest(rp, 'openid');
    const refused = await visit(new UserAgent(), direct.url);
    const error = new URL(refused.url);
    expect([pageKind(refused), error.searchParams.get('error'), error.searchParams.get('state')]).toEqual(['callback', 'invalid_request', direct.state]);
    expect(error.searchParams.get('error_description')).toMatch(/Pushed Authorization Request must be used/);

    // Pushed: the whole sign-in, and tokens.
    const verifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const pushed = await oidc.buildAuthorizationUrlWithPAR(rp, {
      redirect_uri: REDIRECT_URI,
      scope: 'openid',
      state,
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
    });
    expect([...pushed.searchParams.keys()].sort()).toEqual(['client_id', 'request_uri']);
    const tokens = await oidc.authorizationCodeGrant(rp, await signInThrough(pushed), { pkceCodeVerifier: verifier, expectedState: state });
    expect(tokens.claims()?.sub).toBeTruthy();

    // Shown as required, then dropped: /auth takes the request again.
    expect((await pc.cli(['client', 'show', bank.client_id])).stdout).toMatch(/^requires: +pushed requests \(PAR\)$/m);
    const dropped = await pc.cli(['client', 'update', bank.client_id, '--no-require-par', '--json']);
    expect(JSON.parse(dropped.stdout)).toMatchObject({ require_pushed_authorization_requests: false });
    expect((await pc.cli(['client', 'show', bank.client_id])).stdout).not.toMatch(/^requires:/m);
    expect(pageKind(await visit(new UserAgent(), (await authorizationRequest(rp, 'openid')).url))).toBe('login');
  });

  it('is refused for a client with no authorization requests to push, and the two flags together', async () => {
    const robot = await pc.cli(['client', 'create', '--name', 'Robot', '--grant-type', 'client_credentials', '--scope', 'openid', '--require-par']);
    expect([robot.code, robot.stderr]).toEqual([1, expect.stringContaining('--require-par is for a client that signs people in with authorization_code')]);
    const bank = await register('--name', 'Bank 2', '--redirect-uri', REDIRECT_URI, '--require-par');
    // Taking its code flow away keeps nothing to require PAR of: refused, and the registration stays.
    const narrowed = await pc.cli(['client', 'update', bank.client_id, '--grant-type', 'client_credentials']);
    expect([narrowed.code, narrowed.stderr]).toEqual([1, expect.stringContaining('--no-require-par')]);
    const both = await pc.cli(['client', 'update', bank.client_id, '--require-par', '--no-require-par']);
    expect([both.code, both.stderr]).toEqual([2, expect.stringContaining('--require-par and --no-require-par exclude each other')]);
    const create = await pc.cli(['client', 'create', '--name', 'Bank 3', '--redirect-uri', REDIRECT_URI, '--no-require-par']);
    expect(create.code).toBe(2);
    const shown = JSON.parse((await pc.cli(['client', 'show', bank.client_id, '--json'])).stdout);
    expect(shown).toMatchObject({ grant_types: ['authorization_code', 'refresh_token'], require_pushed_authorization_requests: true });
  });

  it('"Use another account" on the consent and choice-of-account pages of a pushed request leads to a sign-in, not to invalid_request at the app', async () => {
    const bank = await register('--name', 'Bank 4', '--redirect-uri', REDIRECT_URI, '--scope', 'openid', '--require-par');
    const rp = await discover(pc.issuer, bank.client_id, bank.client_secret);
    const pushed = async (extra: Record<string, string> = {}) => {
      const verifier = oidc.randomPKCECodeVerifier();
      const state = oidc.randomState();
      const url = await oidc.buildAuthorizationUrlWithPAR(rp, {
        redirect_uri: REDIRECT_URI, scope: 'openid', state, code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256', ...extra,
      });
      return { url, verifier, state };
    };
    const ua = new UserAgent();
    let page = await visit(ua, (await pushed()).url);
    page = await signIn(ua, page, frank.email, frank.password);
    if (pageKind(page) === 'consent') page = await allow(ua, page);
    expect(pageKind(page)).toBe('callback');
    const subOf = async (callback: URL, request: { verifier: string; state: string }) =>
      (await oidc.authorizationCodeGrant(rp, callback, { pkceCodeVerifier: request.verifier, expectedState: request.state })).claims()!.sub;
    const subs = new Set<string>();
    for (const prompt of ['consent', 'select_account']) {
      const request = await pushed({ prompt });
      const shown = await visit(ua, request.url);
      expect([prompt, shown.html.includes('Use another account')]).toEqual([prompt, true]);
      const next = await useAnotherAccount(ua, shown);
      expect([prompt, pageKind(next), new URL(next.url).searchParams.get('error')]).toEqual([prompt, 'login', null]);
      // …and the sign-in goes on for whoever signs in there: the code is theirs.
      const other = prompt === 'consent' ? grace : frank;
      let page = await signIn(ua, next, other.email, other.password);
      // The one signed in before is signed out first (the page a browser submits by itself).
      if (page.html.includes('<h1>Switching accounts…</h1>')) page = await ua.post(page, UserAgent.formAction(page, '/session/end/confirm'), UserAgent.hiddenFields(page), REDIRECT_URI);
      if (pageKind(page) === 'consent') page = await allow(ua, page);
      expect([prompt, pageKind(page)]).toEqual([prompt, 'callback']);
      subs.add(await subOf(new URL(page.url), request));
    }
    expect(subs.size).toBe(2);
  });

  it('holds a sign-in in progress to the requirement once registered: one begun straight at /auth before --require-par gets no code', async () => {
    // README, client update: "Sign-ins in progress are held to the registration as it is now".
    const shop = await register('--name', 'Shop', '--redirect-uri', REDIRECT_URI, '--scope', 'openid');
    const rp = await discover(pc.issuer, shop.client_id, shop.client_secret);
    const ua = new UserAgent();
    const request = await authorizationRequest(rp, 'openid');
    const login = await visit(ua, request.url);
    expect(pageKind(login)).toBe('login');
    expect((await pc.cli(['client', 'update', shop.client_id, '--require-par'])).code).toBe(0);
    let page = await signIn(ua, login, frank.email, frank.password);
    if (pageKind(page) === 'consent') page = await allow(ua, page);
    const callback = new URL(page.url);
    expect([pageKind(page), callback.searchParams.get('code'), callback.searchParams.get('error'), callback.searchParams.get('state')]).toEqual(['callback', null, 'invalid_request', request.state]);
  });
});

describe('a client whose tokens must be DPoP-bound (--require-dpop)', () => {
  it('gets a code exchange, a refresh and client credentials only with a proof; without one, invalid_request, and the code or refresh token stays good', async () => {
    const app = await register(
      '--name', 'Wallet', '--redirect-uri', REDIRECT_URI, '--scope', 'openid offline_access',
      '--grant-type', 'authorization_code', '--grant-type', 'refresh_token', '--grant-type', 'client_credentials', '--require-dpop',
    );
    expect(app).toMatchObject({ require_pushed_authorization_requests: false, dpop_bound_access_tokens: true });
    const rp = await discover(pc.issuer, app.client_id, app.client_secret);
    const DPoP = oidc.getDPoPHandle(rp, await oidc.randomDPoPKeyPair('ES256'));
    const missing = { error: 'invalid_request', error_description: expect.stringContaining('send a DPoP proof') };

    const request = await authorizationRequest(rp, 'openid offline_access', { prompt: 'consent' });
    const callback = await signInThrough(request.url);
    const checks = { pkceCodeVerifier: request.verifier, expectedState: request.state, expectedNonce: request.nonce };
    await expect(oidc.authorizationCodeGrant(rp, callback, checks)).rejects.toMatchObject(missing);
    const tokens = await oidc.authorizationCodeGrant(rp, callback, checks, undefined, { DPoP });
    expect([tokens.token_type.toLowerCase(), Boolean(tokens.refresh_token)]).toEqual(['dpop', true]);

    await expect(oidc.refreshTokenGrant(rp, tokens.refresh_token!)).rejects.toMatchObject(missing);
    const refreshed = await oidc.refreshTokenGrant(rp, tokens.refresh_token!, undefined, { DPoP });
    expect(refreshed.token_type.toLowerCase()).toBe('dpop');

    await expect(oidc.clientCredentialsGrant(rp, { scope: 'openid' })).rejects.toMatchObject(missing);
    expect((await oidc.clientCredentialsGrant(rp, { scope: 'openid' }, { DPoP })).token_type.toLowerCase()).toBe('dpop');

    // Dropped: a Bearer token again.
    await pc.cli(['client', 'update', app.client_id, '--no-require-dpop']);
    expect((await oidc.clientCredentialsGrant(rp, { scope: 'openid' })).token_type.toLowerCase()).toBe('bearer');
  });
});
