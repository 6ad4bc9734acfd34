// Relying-party libraries other than the openid-client v6 the rest of the
// suite uses, configured as their READMEs show: with the discovery document
// and the client's credentials, nothing else. openid-client v5 (the previous
// major, still the most used) assumes what OpenID Connect Registration says a
// client that names nothing gets: RS256 ID tokens.
import { generators, Issuer, type Client } from 'openid-client-v5';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPortcullis, type TestPortcullis } from '../support/portcullis.js';
import { allow, pageKind, POST_LOGOUT_URI, REDIRECT_URI, signIn, visit } from '../support/relying-party.js';
import { UserAgent } from '../support/user-agent.js';

const gwen = { email: 'gwen@example.com', password: 'gwens password' };

let pc: TestPortcullis;
let issuer: Issuer<Client>;

beforeAll(async () => {
  pc = await startPortcullis();
  await pc.createUser(gwen.email, gwen.password, 'Gwen');
  issuer = await Issuer.discover(pc.issuer);
});

afterAll(async () => {
  expect(pc?.errors ?? []).toEqual([]);
  await pc?.close();
});

/** The whole login with openid-client v5: its authorization URL, the pages, its callback handling. */
async function signInWith(client: Client, scope: string) {
  const codeVerifier = generators.codeVerifier();
  const state = generators.state();
  const nonce = generators.nonce();
  const url = client.authorizationUrl({
    scope,
    prompt: 'consent',
    state,
    nonce,
    code_challenge: generators.codeChallenge(codeVerifier),
    code_challenge_method: 'S256',
  });
  const ua = new UserAgent();
  let page = await visit(ua, url);
  if (pageKind(page) === 'login') page = await signIn(ua, page, gwen.email, gwen.password);
  if (pageKind(page) === 'consent') page = await allow(ua, page);
  expect(pageKind(page)).toBe('callback');
  return client.callback(REDIRECT_URI, client.callbackParams(page.url), { code_verifier: codeVerifier, state, nonce });
}

describe('openid-client v5, told nothing but discovery and the credentials', () => {
  it('a confidential client: ID token, profile, UserInfo, refresh, revocation and logout', async () => {
    const registered = await pc.createClient({
      name: 'Classic app',
      redirectUris: [REDIRECT_URI],
      postLogoutRedirectUris: [POST_LOGOUT_URI],
      scope: 'openid profile email offline_access',
    });
    const client = new issuer.Client({ client_id: registered.client_id, client_secret: registered.client_secret, redirect_uris: [REDIRECT_URI] });

    const tokens = await signInWith(client, 'openid profile email offline_access');
    // The library checked the ID token (RS256, issuer, audience, nonce) and the code's hash.
    const claims = tokens.claims();
    // The person's profile is in the ID token too, where libraries built on this one look for it.
    expect(claims).toMatchObject({ iss: pc.issuer, aud: registered.client_id, name: 'Gwen', email: gwen.email });
    expect(await client.userinfo(tokens)).toMatchObject({ sub: claims.sub, name: 'Gwen', email: gwen.email });

    const refreshed = await client.refresh(tokens.refresh_token!);
    expect(refreshed.refresh_token).not.toBe(tokens.refresh_token);
    expect(refreshed.claims().sub).toBe(claims.sub);
    expect(await client.introspect(refreshed.access_token!)).toMatchObject({ active: true, sub: claims.sub });
    await client.revoke(tokens.access_token!, 'access_token');
    expect(await client.introspect(tokens.access_token!)).toMatchObject({ active: false });
    // The old refresh token again: refused, and everything issued in that sign-in is revoked.
    await expect(client.refresh(tokens.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant' });
    expect(await client.introspect(refreshed.access_token!)).toMatchObject({ active: false });

    // Logout with the ID token as hint: the server checks it, its algorithm included (a hint it
    // refuses is an error page). This browser has no session, so there is no one to ask: the
    // page goes on to the confirmation by itself.
    const logout = new URL(client.endSessionUrl({ id_token_hint: tokens.id_token, post_logout_redirect_uri: POST_LOGOUT_URI, state: 'bye' }));
    expect(logout.origin + logout.pathname).toBe(`${pc.issuer}/session/end`);
    const page = await new UserAgent().open(logout.href);
    expect(page.status).toBe(200);
    expect(page.html).toMatch(/<form[^>]*action="[^"]*\/session\/end\/confirm"/);
  });

  it('a public client with PKCE', async () => {
    const registered = await pc.createClient({ name: 'Classic SPA', public: true, redirectUris: [REDIRECT_URI], scope: 'openid email' });
    const client = new issuer.Client({ client_id: registered.client_id, token_endpoint_auth_method: 'none', redirect_uris: [REDIRECT_URI] });
    const tokens = await signInWith(client, 'openid email');
    expect(tokens.claims()).toMatchObject({ email: gwen.email });
    expect(tokens.claims().name).toBeUndefined(); // profile was not asked for
    await client.revoke(tokens.access_token!);
  });

  it('a client registered for ES256 is served ES256, which the library then accepts when told', async () => {
    const registered = await pc.createClient({ name: 'Modern app', redirectUris: [REDIRECT_URI], scope: 'openid', idTokenAlg: 'ES256' });
    const told = new issuer.Client({
      client_id: registered.client_id,
      client_secret: registered.client_secret,
      redirect_uris: [REDIRECT_URI],
      id_token_signed_response_alg: 'ES256',
    });
    const tokens = await signInWith(told, 'openid');
    expect(JSON.parse(Buffer.from(tokens.id_token!.split('.')[0]!, 'base64url').toString())).toMatchObject({ alg: 'ES256' });
  });
});
