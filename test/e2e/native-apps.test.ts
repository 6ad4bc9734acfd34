// A desktop or mobile app (RFC 8252) logs a person in with openid-client as a
// public client: the browser comes back to a private-use scheme, or to a
// loopback port the app opened for this one login.
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPortcullis, type TestPortcullis } from '../support/portcullis.js';
import { discover } from '../support/relying-party.js';
import { UserAgent, type Page } from '../support/user-agent.js';

const dana = { email: 'dana@example.com', password: 'dana has a long password' };
const APP_SCHEME = 'com.example.notes:/oauth/callback';
const LOOPBACK = 'http://127.0.0.1/oauth/callback';

let pc: TestPortcullis;
let app: { client_id: string; client_secret?: string };
let rp: oidc.Configuration;

beforeAll(async () => {
  pc = await startPortcullis();
  await pc.createUser(dana.email, dana.password);
  app = await pc.createClient({ name: 'Notes for desktop', native: true, redirectUris: [APP_SCHEME, LOOPBACK], scope: 'openid offline_access' });
  rp = await discover(pc.issuer, app.client_id);
});

afterAll(async () => {
  expect(pc?.errors ?? []).toEqual([]);
  await pc?.close();
});

/** Login and consent in the browser until it is sent to `redirectUri` (which a test browser cannot open). */
async function authorize(redirectUri: string, extra: Record<string, string> = {}, ua = new UserAgent()) {
  const verifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const url = oidc.buildAuthorizationUrl(rp, {
    redirect_uri: redirectUri,
    scope: 'openid offline_access',
    prompt: 'consent',
    state,
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    ...extra,
  });
  let page: Page = await ua.open(url.href, {}, redirectUri);
  const seen: { kind: string; html: string }[] = [];
  for (let step = 0; step < 3 && !page.url.startsWith(redirectUri); step++) {
    const action = /action="([^"]+\/(login|confirm))"/.exec(page.html);
    if (!action) break;
    seen.push({ kind: action[2]!, html: page.html });
    const fields: Record<string, string> = action[2] === 'login' ? { email: dana.email, password: dana.password } : {};
    page = await ua.post(page, action[1]!, fields, redirectUri);
  }
  return { page, verifier, state, seen, ua };
}

describe('a native app', () => {
  it('is made without a secret and listed as native', async () => {
    expect(app.client_secret).toBeUndefined();
    const listed = JSON.parse((await pc.cli(['client', 'list', '--json'])).stdout) as { client_id: string; application_type: string; public: boolean }[];
    expect(listed.find((client) => client.client_id === app.client_id)).toMatchObject({ application_type: 'native', public: true });
  });

  it('gets its code at its private-use scheme and exchanges it with PKCE, without a secret', async () => {
    const { page, verifier, state } = await authorize(APP_SCHEME);
    expect(page.url.startsWith(`${APP_SCHEME}?`), page.url).toBe(true);
    const tokens = await oidc.authorizationCodeGrant(rp, new URL(page.url), { pkceCodeVerifier: verifier, expectedState: state }, { redirect_uri: APP_SCHEME });
    expect(tokens.claims()?.aud).toBe(app.client_id);
    expect(tokens.refresh_token).toBeTruthy();
    const refreshed = await oidc.refreshTokenGrant(rp, tokens.refresh_token!);
    expect(refreshed.access_token).toBeTruthy();
  });

  it('may come back on whatever loopback port it opened (RFC 8252 §7.3)', async () => {
    const onPort = 'http://127.0.0.1:49213/oauth/callback';
    const { page, verifier, state } = await authorize(onPort);
    expect(page.url.startsWith(`${onPort}?`), page.url).toBe(true);
    const tokens = await oidc.authorizationCodeGrant(rp, new URL(page.url), { pkceCodeVerifier: verifier, expectedState: state }, { redirect_uri: onPort });
    expect(tokens.access_token).toBeTruthy();
  });

  // RFC 8252 §8.6: another app can claim the same scheme or loopback port, so
  // an earlier consent does not let a new request through unseen.
  it('asks for consent at every login, listing what it gets, though the person already agreed', async () => {
    // prompt=consent too: without it the provider drops offline_access (OIDC Core §11).
    const first = await authorize(APP_SCHEME, { prompt: 'login consent' });
    const again = await authorize(APP_SCHEME, { prompt: 'login' });
    for (const { seen, page } of [first, again]) {
      expect(seen.map((step) => step.kind)).toEqual(['login', 'confirm']);
      expect(seen[1]!.html).toContain('Notes for desktop');
      expect(page.url.startsWith(`${APP_SCHEME}?code=`), page.url).toBe(true);
    }
    // What the app is given is listed even when nothing is new to the grant.
    expect(first.seen[1]!.html).toContain('Keep access while you are not using it');
    expect(again.seen[1]!.html).toContain('Confirm that it is you when you sign in');
    expect(again.seen[1]!.html).toContain('you are asked each time it signs you in');
    expect(again.seen[1]!.html).not.toContain('you are not asked again');
    // The page names where the answer goes: the app's own scheme.
    expect(again.seen[1]!.html).toContain('you then go back to <strong class="destination">com.example.notes</strong>');
  });

  it('cannot sign in silently (prompt=none), even in a browser signed in that has agreed', async () => {
    const first = await authorize(APP_SCHEME, { prompt: 'login consent' });
    expect(first.page.url.startsWith(`${APP_SCHEME}?code=`), first.page.url).toBe(true);
    const silent = await authorize(APP_SCHEME, { prompt: 'none' }, first.ua);
    expect(silent.seen).toEqual([]);
    const answer = new URL(silent.page.url);
    expect(`${answer.protocol}${answer.pathname}`).toBe(APP_SCHEME);
    expect([answer.searchParams.get('error'), answer.searchParams.get('state')]).toEqual(['interaction_required', silent.state]);
  });

  it("names its private-use scheme on the consent page, not what follows it (a scheme's authority is the app's to read)", async () => {
    const lookalike = 'com.example.evil://accounts.example.com/cb';
    const other = await pc.createClient({ name: 'Notes', native: true, redirectUris: [lookalike], scope: 'openid' });
    const query = new URLSearchParams({
      client_id: other.client_id, response_type: 'code', scope: 'openid', redirect_uri: lookalike,
      code_challenge: await oidc.calculatePKCECodeChallenge(oidc.randomPKCECodeVerifier()), code_challenge_method: 'S256',
    });
    const ua = new UserAgent();
    const login = await ua.open(`${pc.issuer}/auth?${query}`, {}, lookalike);
    const consent = await ua.post(login, UserAgent.formAction(login, '/login'), dana, lookalike);
    expect(/you then go back to <strong class="destination">([^<]*)<\/strong>/.exec(consent.html)?.[1]).toBe('com.example.evil');
  });

  it('is refused another path or host, port 0, and a request without PKCE', async () => {
    // Port 0 is none an app can listen on (RFC 6335 §6).
    for (const uri of ['http://127.0.0.1:49213/elsewhere', 'com.example.notes:/other', 'http://127.0.0.1:0/oauth/callback']) {
      const response = await fetch(oidc.buildAuthorizationUrl(rp, { redirect_uri: uri, scope: 'openid', code_challenge: 'x'.repeat(43), code_challenge_method: 'S256' }), { redirect: 'manual' });
      expect(response.status, uri).toBe(400);
      expect(await response.text()).toContain('Unexpected return address');
    }
    const withoutPkce = await fetch(oidc.buildAuthorizationUrl(rp, { redirect_uri: APP_SCHEME, scope: 'openid' }), { redirect: 'manual' });
    expect(withoutPkce.status).toBe(303);
    const answer = new URL(withoutPkce.headers.get('location')!);
    expect(answer.href.startsWith(APP_SCHEME)).toBe(true);
    expect(answer.searchParams.get('error')).toBe('invalid_request');
  });
});
