// What discovery advertises for authorization requests works as a client
// would use it: pushed authorization requests (RFC 9126), every response
// mode (query, fragment, form_post), and POST at the authorization and logout
// endpoints.
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256 } from '../support/digest.js';
import { startPortcullis, type TestPortcullis } from '../support/portcullis.js';
import { allow, authorizationRequest, discover, pageKind, POST_LOGOUT_URI, REDIRECT_URI, signIn, visit } from '../support/relying-party.js';
import { UserAgent, type Page } from '../support/user-agent.js';

const finn = { email: 'finn@example.com', password: 'finns password' };

let pc: TestPortcullis;
let web: oidc.Configuration;
let spa: oidc.Configuration;

beforeAll(async () => {
  pc = await startPortcullis();
  await pc.createUser(finn.email, finn.password, 'Finn');
  const webClient = await pc.createClient({ name: 'Web', redirectUris: [REDIRECT_URI], scope: 'openid profile' });
  web = await discover(pc.issuer, webClient.client_id, webClient.client_secret);
  const spaClient = await pc.createClient({ name: 'SPA', public: true, redirectUris: [REDIRECT_URI], scope: 'openid profile' });
  spa = await discover(pc.issuer, spaClient.client_id);
});

afterAll(async () => {
  expect(pc?.errors ?? []).toEqual([]);
  await pc?.close();
});

/** Signs in and consents, from the authorization URL to whatever page comes after consent. */
async function through(ua: UserAgent, url: URL | string): Promise<Page> {
  let page = await visit(ua, url);
  if (pageKind(page) === 'login') page = await signIn(ua, page, finn.email, finn.password);
  if (pageKind(page) === 'consent') page = await allow(ua, page);
  return page;
}

async function pkce() {
  const verifier = oidc.randomPKCECodeVerifier();
  return { verifier, params: { code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256' } };
}

describe('redirect URIs with a query (RFC 6749 §3.1.2, OIDC Core §3.1.2.5)', () => {
  it('the registered query comes back as it was written, the response\'s parameters after it, for a code and for an error', async () => {
    const registered = `${REDIRECT_URI}?v=a~b&flag&x=a%20b`;
    const client = await pc.createClient({ name: 'Query', redirectUris: [registered], scope: 'openid' });
    const { verifier, params } = await pkce();
    const request = (state: string) =>
      `${pc.issuer}/auth?${new URLSearchParams({ client_id: client.client_id, response_type: 'code', scope: 'openid', redirect_uri: registered, state, ...params })}`;
    const callback = await through(new UserAgent(), request('s1'));
    expect(pageKind(callback)).toBe('callback');
    expect(callback.url).toMatch(new RegExp(`^${registered.replace(/[?.]/g, '\\$&')}&code=[^&]+&state=s1&iss=`));
    // The client exchanges the code with the redirect_uri it registered, byte for byte.
    const code = new URL(callback.url).searchParams.get('code')!;
    const exchanged = await fetch(`${pc.issuer}/token`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`${client.client_id}:${client.client_secret}`).toString('base64')}` },
      body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: registered, code_verifier: verifier }),
    });
    expect(exchanged.status).toBe(200);
    // An error goes back the same way.
    const refused = await visit(new UserAgent(), `${request('s2')}&prompt=none`);
    expect(refused.url).toMatch(new RegExp(`^${registered.replace(/[?.]/g, '\\$&')}&error=login_required&`));
  });

  it('a post_logout_redirect_uri gets its query back as it was written, with state after it (RP-Initiated Logout §3)', async () => {
    const short = `${POST_LOGOUT_URI}?v=a~b&flag`;
    // Registered too: a longer query that begins like the short one must not be taken for it.
    const long = `${short}&x=a%20b`;
    const client = await pc.createClient({ name: 'Leaving', redirectUris: [REDIRECT_URI], postLogoutRedirectUris: [long, short], scope: 'openid' });
    const rp = await discover(pc.issuer, client.client_id, client.client_secret);
    const ua = new UserAgent();
    const { verifier, params } = await pkce();
    const request = `${pc.issuer}/auth?${new URLSearchParams({ client_id: client.client_id, response_type: 'code', scope: 'openid', redirect_uri: REDIRECT_URI, state: 's', ...params })}`;
    const callback = await through(ua, request);
    const tokens = await oidc.authorizationCodeGrant(rp, new URL(callback.url), { pkceCodeVerifier: verifier, expectedState: 's' });

    const signOut = async (idToken: string, uri: string, state?: string) => {
      const end = `${pc.issuer}/session/end?${new URLSearchParams({ id_token_hint: idToken, post_logout_redirect_uri: uri, ...(state ? { state } : {}) })}`;
      const confirm = await ua.open(end, {}, POST_LOGOUT_URI);
      const action = /<form[^>]*id="op.logoutForm"[^>]*action="([^"]+)"/.exec(confirm.html)![1]!;
      return (await ua.post(confirm, action, { ...UserAgent.hiddenFields(confirm), logout: 'yes' }, POST_LOGOUT_URI)).url;
    };
    expect(await signOut(tokens.id_token!, short, 'bye')).toBe(`${short}&state=bye`);
    // Without state the library leaves the URI as it is, and so do we: the shorter
    // registered query, which begins the same way, does not take it apart.
    const again = await pkce();
    const second = await through(ua, `${pc.issuer}/auth?${new URLSearchParams({ client_id: client.client_id, response_type: 'code', scope: 'openid', redirect_uri: REDIRECT_URI, state: 's', ...again.params })}`);
    const more = await oidc.authorizationCodeGrant(rp, new URL(second.url), { pkceCodeVerifier: again.verifier, expectedState: 's' });
    expect(await signOut(more.id_token!, long)).toBe(long);
  });
});

describe('pushed authorization requests (RFC 9126)', () => {
  it.each([
    ['a confidential client', () => web],
    ['a public client', () => spa],
  ])('%s pushes its request and signs the person in with the request_uri alone', async (_, config) => {
    const { verifier, params } = await pkce();
    const state = oidc.randomState();
    const nonce = oidc.randomNonce();
    const url = await oidc.buildAuthorizationUrlWithPAR(config(), { redirect_uri: REDIRECT_URI, scope: 'openid profile', state, nonce, ...params });
    // The browser carries only the client and the reference, never the request itself.
    expect([...url.searchParams.keys()].sort()).toEqual(['client_id', 'request_uri']);
    expect(url.searchParams.get('request_uri')).toMatch(/^urn:ietf:params:oauth:request_uri:/);

    const callback = await through(new UserAgent(), url);
    expect(pageKind(callback)).toBe('callback');
    const tokens = await oidc.authorizationCodeGrant(config(), new URL(callback.url), { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce });
    expect(tokens.claims()).toMatchObject({ iss: pc.issuer, nonce });
    // Nor do the pages carry it, to start again once it expired (a plain request's forms do).
    const pushed = await oidc.buildAuthorizationUrlWithPAR(config(), { redirect_uri: REDIRECT_URI, scope: 'openid profile', state, nonce, ...params });
    const login = await visit(new UserAgent(), pushed);
    expect(pageKind(login)).toBe('login');
    expect(login.html).not.toContain('name="restart"');
    expect((await visit(new UserAgent(), (await authorizationRequest(config(), 'openid')).url)).html).toContain('name="restart"');
  });

  it('a request_uri is good for one authorization request', async () => {
    const { params } = await pkce();
    const url = await oidc.buildAuthorizationUrlWithPAR(web, { redirect_uri: REDIRECT_URI, scope: 'openid', state: oidc.randomState(), ...params });
    const ua = new UserAgent();
    expect(pageKind(await through(ua, url))).toBe('callback');
    // Used: the second visit gets an error, never a code. The client registered
    // one redirect URI, so the error goes back to it (RFC 6749 §4.1.2.1).
    const again = await visit(new UserAgent(), url);
    expect(pageKind(again)).toBe('callback');
    const answer = new URL(again.url).searchParams;
    expect(answer.get('error')).toBe('invalid_request_uri');
    expect(answer.get('code')).toBeNull();
  });

  it('a request_uri opened in several browsers gives one code, however many sign-ins finish at once', async () => {
    const racing = await pc.createClient({ name: 'Racing', redirectUris: [REDIRECT_URI], scope: 'openid' });
    const racingRp = await discover(pc.issuer, racing.client_id, racing.client_secret);
    const { params } = await pkce();
    const url = await oidc.buildAuthorizationUrlWithPAR(racingRp, { redirect_uri: REDIRECT_URI, scope: 'openid', state: 'one', ...params });
    // Each browser signs in and is asked for consent (before any consent is
    // stored, which would answer the next one at once), then consents and
    // stops before the last step: the resume that answers the request.
    const resume = `${pc.issuer}/auth/`;
    const consents: { ua: UserAgent; consent: Page }[] = [];
    for (let browser = 0; browser < 6; browser++) {
      const ua = new UserAgent();
      const login = await visit(ua, url);
      expect(pageKind(login)).toBe('login');
      const signedIn = await ua.post(login, UserAgent.formAction(login, '/login'), { email: finn.email, password: finn.password }, resume);
      const consent = await ua.open(signedIn.url, {}, resume);
      expect(pageKind(consent)).toBe('consent');
      consents.push({ ua, consent });
    }
    const browsers: { ua: UserAgent; last: string }[] = [];
    for (const { ua, consent } of consents) {
      const consented = await ua.post(consent, UserAgent.formAction(consent, '/confirm'), {}, resume);
      expect(consented.url.startsWith(resume)).toBe(true);
      browsers.push({ ua, last: consented.url });
    }
    // A minute on, the pushed request itself has expired (it lives 60 s): the
    // sign-ins begun with it still share its one use.
    const db = pc.outsideConnection();
    await db.connect();
    try {
      await db.query(`UPDATE provider_artifacts SET expires_at = expires_at - interval '61 seconds',
        payload = jsonb_set(payload, '{exp}', to_jsonb((payload->>'exp')::bigint - 61)) WHERE kind = 'PushedAuthorizationRequest'`);
    } finally {
      await db.end();
    }
    const answers = await Promise.all(browsers.map(({ ua, last }) => ua.open(last, {}, REDIRECT_URI)));
    const sent = answers.map((answer) => new URL(answer.url).searchParams);
    expect(sent.filter((answer) => answer.has('code'))).toHaveLength(1);
    expect(sent.filter((answer) => answer.get('error') === 'invalid_request_uri')).toHaveLength(5);
  });

  it('a pushed request nobody uses is stored for its own 60 s; one a sign-in began with, for as long as each step of the sign-in may last', async () => {
    const { params: pkceParams } = await pkce();
    const push = () => oidc.buildAuthorizationUrlWithPAR(web, { redirect_uri: REDIRECT_URI, scope: 'openid', prompt: 'consent', state: oidc.randomState(), ...pkceParams });
    const used = await push();
    const unused = await push();
    const digestOf = (url: URL) => sha256(url.searchParams.get('request_uri')!.replace('urn:ietf:params:oauth:request_uri:', ''));
    const db = pc.outsideConnection();
    await db.connect();
    const secondsLeft = async (url: URL) => {
      const { rows } = await db.query<{ left: number }>(
        `SELECT EXTRACT(EPOCH FROM expires_at - now())::int AS left FROM provider_artifacts WHERE kind = 'PushedAuthorizationRequest' AND id = $1`,
        [digestOf(url)],
      );
      return rows[0]?.left;
    };
    try {
      for (const url of [used, unused]) expect(await secondsLeft(url)).toBeLessThanOrEqual(60);
      const ua = new UserAgent();
      const login = await visit(ua, used);
      expect(pageKind(login)).toBe('login');
      expect(await secondsLeft(used)).toBeGreaterThan(3600 - 30); // INTERACTION_TTL
      expect(await secondsLeft(unused)).toBeLessThanOrEqual(60);
      // Each later step of the sign-in (the consent after the login, its own
      // INTERACTION_TTL from then) keeps it as long again: as if the login had
      // taken nearly the whole hour, the row has seconds left when it is done.
      await db.query(`UPDATE provider_artifacts SET expires_at = now() + interval '5 seconds' WHERE kind = 'PushedAuthorizationRequest' AND id = $1`, [digestOf(used)]);
      const consent = await signIn(ua, login, finn.email, finn.password);
      expect(pageKind(consent)).toBe('consent');
      expect(await secondsLeft(used)).toBeGreaterThan(3600 - 30);
    } finally {
      await db.end();
    }
  });

  it('a request_uri is bound to the client that pushed it: another client presenting it gets invalid_request_uri with its own state, and the pusher can still use it', async () => {
    const { verifier, params } = await pkce();
    const pushersState = oidc.randomState();
    const url = await oidc.buildAuthorizationUrlWithPAR(web, { redirect_uri: REDIRECT_URI, scope: 'openid', state: pushersState, ...params });
    const requestUri = url.searchParams.get('request_uri')!;

    const other = new URL(url);
    other.search = new URLSearchParams({ client_id: spa.clientMetadata().client_id, request_uri: requestUri, state: 'the presenters state' }).toString();
    const refused = await visit(new UserAgent(), other);
    expect(pageKind(refused)).toBe('callback');
    const answer = new URL(refused.url).searchParams;
    expect(answer.get('error')).toBe('invalid_request_uri');
    // Never the pushing client's state, which the library took from the pushed request before its client check.
    expect(answer.get('state')).toBe('the presenters state');
    expect(refused.url).not.toContain(pushersState);

    const callback = await through(new UserAgent(), url);
    expect(pageKind(callback)).toBe('callback');
    const tokens = await oidc.authorizationCodeGrant(web, new URL(callback.url), { pkceCodeVerifier: verifier, expectedState: pushersState });
    expect(tokens.access_token).toBeTruthy();
  });

  it('a used request_uri of a client with two redirect URIs is an error page: its redirect_uri is not known without the request', async () => {
    const client = await pc.createClient({ name: 'Two URIs', redirectUris: [REDIRECT_URI, `${REDIRECT_URI}/other`], scope: 'openid' });
    const twoUris = await discover(pc.issuer, client.client_id, client.client_secret);
    const url = await oidc.buildAuthorizationUrlWithPAR(twoUris, { redirect_uri: REDIRECT_URI, scope: 'openid', state: oidc.randomState(), ...(await pkce()).params });
    expect(pageKind(await through(new UserAgent(), url))).toBe('callback');
    const again = await visit(new UserAgent(), url);
    expect(pageKind(again)).toBe('other');
    expect(again.status).toBe(400);
    expect(again.html).not.toContain('code=');
  });

  it('a pushed request is checked when it is pushed: an unregistered redirect_uri is refused there', async () => {
    await expect(
      oidc.buildAuthorizationUrlWithPAR(web, { redirect_uri: 'https://attacker.example/callback', scope: 'openid', ...(await pkce()).params }),
    ).rejects.toMatchObject({ error: 'invalid_request', error_description: expect.stringContaining('redirect_uri') });
  });

  it('pushing needs client authentication from a confidential client', async () => {
    const response = await fetch(`${pc.issuer}/request`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ client_id: web.clientMetadata().client_id, response_type: 'code', redirect_uri: REDIRECT_URI, scope: 'openid' }),
    });
    expect(response.status).toBe(401);
    expect(await response.json()).toMatchObject({ error: 'invalid_client' });
  });
});

describe('response modes', () => {
  it('fragment: the code comes back in the fragment', async () => {
    const { verifier, params } = await pkce();
    const request = await authorizationRequest(web, 'openid', { response_mode: 'fragment', ...params });
    const callback = await through(new UserAgent(), request.url);
    expect(pageKind(callback)).toBe('callback');
    const url = new URL(callback.url);
    expect(url.search).toBe('');
    const fragment = new URLSearchParams(url.hash.slice(1));
    expect(fragment.get('state')).toBe(request.state);
    expect(fragment.get('iss')).toBe(pc.issuer);
    // The client moves the fragment into the query it hands its library.
    const tokens = await oidc.authorizationCodeGrant(web, new URL(`${REDIRECT_URI}?${fragment}`), {
      pkceCodeVerifier: verifier,
      expectedState: request.state,
      expectedNonce: request.nonce,
    });
    expect(tokens.access_token).toBeTruthy();
  });

  it('form_post: a page posts the code to the client, allowed by its Content-Security-Policy', async () => {
    const { verifier, params } = await pkce();
    const request = await authorizationRequest(web, 'openid', { response_mode: 'form_post', ...params });
    const page = await through(new UserAgent(), request.url);
    expect(page.status).toBe(200);
    const form = /<form[^>]*method="post"[^>]*action="([^"]+)"/i.exec(page.html) ?? /<form[^>]*action="([^"]+)"[^>]*method="post"/i.exec(page.html);
    expect(form?.[1]).toBe(REDIRECT_URI);
    const fields = Object.fromEntries([...page.html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    expect(fields).toMatchObject({ state: request.state, iss: pc.issuer });
    expect(fields.code).toBeTruthy();
    // Our language and colour schemes, as every page of ours (src/provider/form-post-page.ts).
    expect(page.html).toContain('<html lang="en">');
    expect(page.html).toContain('<meta name="color-scheme" content="light dark">');
    // Without JavaScript: our words, saying where Continue leads, and our primary button.
    expect(page.html).toContain(`<noscript>\n      <p>Choose Continue to go on to <strong class="destination">${new URL(REDIRECT_URI).host}</strong>.</p>`);
    expect(page.html).toContain('<div class="actions"><button class="primary" type="submit">Continue</button></div>');
    expect(page.html).not.toContain('disabled it');
    // The page submits itself with the one inline script the policy allows by its hash.
    const script = /<script>([\s\S]*?)<\/script>/.exec(page.html)?.[1];
    expect(script).toBeTruthy();
    const { createHash } = await import('node:crypto');
    expect(page.headers?.get('content-security-policy')).toContain(`'sha256-${createHash('sha256').update(script!).digest('base64')}'`);

    // What the client's callback receives: a POST with the fields.
    const posted = new Request(REDIRECT_URI, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(fields as Record<string, string>),
    });
    const tokens = await oidc.authorizationCodeGrant(web, posted, { pkceCodeVerifier: verifier, expectedState: request.state, expectedNonce: request.nonce });
    expect(tokens.access_token).toBeTruthy();
  });
});

describe('browsers at the token endpoint (CORS)', () => {
  const REDIRECT_ORIGIN = new URL(REDIRECT_URI).origin;
  /** A real code for `config`, from a sign-in and consent, with its PKCE verifier. */
  async function codeFor(config: oidc.Configuration): Promise<{ code: string; verifier: string }> {
    const { verifier, params } = await pkce();
    const url = oidc.buildAuthorizationUrl(config, { redirect_uri: REDIRECT_URI, scope: 'openid', ...params });
    const callback = await through(new UserAgent(), url);
    expect(pageKind(callback)).toBe('callback');
    return { code: new URL(callback.url).searchParams.get('code')!, verifier };
  }
  const exchange = (config: oidc.Configuration, origin: string, grant: { code: string; verifier: string }, secret?: string) =>
    fetch(`${pc.issuer}/token`, {
      method: 'POST',
      headers: { origin, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'authorization_code',
        code: grant.code,
        redirect_uri: REDIRECT_URI,
        code_verifier: grant.verifier,
        client_id: config.clientMetadata().client_id,
        ...(secret ? { client_secret: secret } : {}),
      }),
    });

  it('a public client may be called from the origin of its redirect URIs, and from no other', async () => {
    const grant = await codeFor(spa);
    // Refused before the code is looked at: the browser learns nothing, and the code stays usable.
    const elsewhere = await exchange(spa, 'https://elsewhere.example', grant);
    expect(elsewhere.status).toBe(400);
    expect(elsewhere.headers.get('access-control-allow-origin')).toBeNull();
    expect(await elsewhere.json()).toMatchObject({ error: 'invalid_request', error_description: expect.stringContaining('origin') });

    const allowed = await exchange(spa, REDIRECT_ORIGIN, grant);
    expect(allowed.headers.get('access-control-allow-origin')).toBe(REDIRECT_ORIGIN);
    expect(allowed.status).toBe(200);
    expect(await allowed.json()).toMatchObject({ token_type: 'Bearer', access_token: expect.any(String), id_token: expect.any(String) });
  });

  it("no browser call is taken from the opaque origin `null`, though a native app's private-use redirect URI has that origin", async () => {
    // A sandboxed frame, a file: or data: page all send Origin: null (RFC 6454 §7.3): it names no one.
    const native = await pc.createClient({ name: 'Phone app', redirectUris: ['com.example.app:/cb'], native: true });
    const grant = { code: 'not-looked-at', verifier: oidc.randomPKCECodeVerifier() };
    const nativeConfig = await discover(pc.issuer, native.client_id);
    const response = await exchange(nativeConfig, 'null', grant);
    expect(response.status).toBe(400);
    expect(response.headers.get('access-control-allow-origin')).toBeNull();
    expect(await response.json()).toMatchObject({ error: 'invalid_request', error_description: expect.stringContaining('origin') });
  });

  it('a confidential client is never called from a browser', async () => {
    const secret = web.clientMetadata().client_secret as string;
    const grant = await codeFor(web);
    const response = await exchange(web, REDIRECT_ORIGIN, grant, secret);
    expect(response.status).toBe(400);
    expect(response.headers.get('access-control-allow-origin')).toBeNull();
    expect(await response.json()).toMatchObject({ error: 'invalid_request' });
    // The same request without an Origin (a server, not a browser) redeems the code.
    const tokens = await oidc.authorizationCodeGrant(web, new URL(`${REDIRECT_URI}?code=${grant.code}&iss=${encodeURIComponent(pc.issuer)}`), {
      pkceCodeVerifier: grant.verifier,
    });
    expect(tokens.access_token).toBeTruthy();
  });
});

describe('POST at the authorization and logout endpoints (Core §3.1.2.1, RP-Initiated Logout §2)', () => {
  const form = (fields: Record<string, string>): RequestInit => ({
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(fields).toString(),
  });
  /** The session cookie as set: its attributes, lower-cased. */
  const sessionCookie = (ua: UserAgent, name = '_session') =>
    ua.setCookieHeaders.filter((header) => header.startsWith(`${name}=`)).map((header) => header.toLowerCase().split(/;\s*/).slice(1));

  it('sign-in, single sign-on with prompt=none and sign-out, each requested by POST', async () => {
    const app = await pc.createClient({ name: 'Poster', redirectUris: [REDIRECT_URI], postLogoutRedirectUris: [POST_LOGOUT_URI], scope: 'openid profile' });
    const rp = await discover(pc.issuer, app.client_id, app.client_secret);
    const ua = new UserAgent();
    const authorize = async (extra: Record<string, string> = {}) => {
      const { verifier, params } = await pkce();
      const state = oidc.randomState();
      const fields = { client_id: app.client_id, response_type: 'code', scope: 'openid profile', redirect_uri: REDIRECT_URI, state, ...params, ...extra };
      return { verifier, state, page: await ua.open(`${pc.issuer}/auth`, form(fields), REDIRECT_URI) };
    };

    const first = await authorize();
    expect(pageKind(first.page)).toBe('login');
    const callback = await allow(ua, await signIn(ua, first.page, finn.email, finn.password));
    const tokens = await oidc.authorizationCodeGrant(rp, new URL(callback.url), { pkceCodeVerifier: first.verifier, expectedState: first.state });
    expect(tokens.claims()).toMatchObject({ iss: pc.issuer, name: 'Finn' });
    // An http issuer's session cookie cannot be Secure, so it is not SameSite=None, which browsers would drop.
    expect(sessionCookie(ua).at(-1)).toEqual(expect.arrayContaining(['samesite=lax', 'httponly']));
    // So are the cookies of a sign-in in progress, which no script reads either (RFC 6265 §4.1.2.6).
    const interaction = ua.setCookieHeaders.filter((header) => header.startsWith('_interaction'));
    expect(interaction.length).toBeGreaterThan(0);
    for (const header of interaction) expect(header.toLowerCase().split(';').map((part) => part.trim())).toEqual(expect.arrayContaining(['httponly', 'samesite=lax']));

    // The session is found by a POSTed request: no page, straight back with a code.
    const again = await authorize({ prompt: 'none' });
    const code = new URL(again.page.url);
    expect(code.origin + code.pathname).toBe(REDIRECT_URI);
    expect(code.searchParams.get('error')).toBeNull();
    expect(code.searchParams.get('state')).toBe(again.state);
    await oidc.authorizationCodeGrant(rp, code, { pkceCodeVerifier: again.verifier, expectedState: again.state });

    const confirm = await ua.open(`${pc.issuer}/session/end`, form({ id_token_hint: tokens.id_token!, post_logout_redirect_uri: POST_LOGOUT_URI, state: 'bye' }), POST_LOGOUT_URI);
    expect(confirm.status).toBe(200);
    expect(confirm.html).toContain('Sign out');
    const action = /<form[^>]*id="op.logoutForm"[^>]*action="([^"]+)"/.exec(confirm.html)![1]!;
    const done = await ua.post(confirm, action, { ...UserAgent.hiddenFields(confirm), logout: 'yes' }, POST_LOGOUT_URI);
    expect(new URL(done.url).searchParams.get('state')).toBe('bye');
    const signedOut = new URL((await authorize({ prompt: 'none' })).page.url);
    expect(signedOut.searchParams.get('error')).toBe('login_required');
  });

  it('an https issuer sends the session cookie as a __Host- cookie, SameSite=None and Secure, so that another site\'s POST carries it and no sibling subdomain can plant one', async () => {
    const secure = await startPortcullis({ ISSUER: 'https://id.example.test' });
    try {
      const app = await secure.createClient({ name: 'Behind TLS', redirectUris: [REDIRECT_URI], scope: 'openid' });
      await secure.createUser(finn.email, finn.password, 'Finn');
      // TLS ends in front of the server: the browser sees https://id.example.test.
      const local = `http://127.0.0.1:${secure.env.PORT}`;
      const ua = new UserAgent({}, (url) => (url.origin === secure.issuer ? new URL(url.pathname + url.search, local) : url));
      const { params } = await pkce();
      const fields = { client_id: app.client_id, response_type: 'code', scope: 'openid', redirect_uri: REDIRECT_URI, ...params };
      const login = await ua.open(`${secure.issuer}/auth`, form(fields), REDIRECT_URI);
      expect(pageKind(login)).toBe('login');
      const consent = await signIn(ua, login, finn.email, finn.password);
      expect(pageKind(consent)).toBe('consent');
      // A __Host- cookie (RFC 6265bis §4.1.3.2): Secure, Path=/, no Domain, so no
      // sibling subdomain can plant one; its signature cookie is one too.
      for (const name of ['__Host-session', '__Host-session.sig']) {
        const attributes = sessionCookie(ua, name).at(-1);
        expect(attributes).toEqual(expect.arrayContaining(['samesite=none', 'secure', 'httponly', 'path=/']));
        expect(attributes!.some((attribute) => attribute.startsWith('domain='))).toBe(false);
      }
      expect(sessionCookie(ua)).toEqual([]);
      // The browser sends it back: the session holds (single sign-on, with prompt=none).
      const { params: again } = await pkce();
      const silent = await ua.open(`${secure.issuer}/auth`, form({ ...fields, ...again, prompt: 'none' }), REDIRECT_URI);
      expect(new URL(silent.url).searchParams.get('error')).toBe('consent_required');
      // The browser's binding to its sign-ins (src/provider/browser-binding.ts) is
      // a __Host- cookie too, so no sibling subdomain can plant its own; it is
      // kept 180 days, renewed at each sign-in.
      const binding = ua.setCookieHeaders.filter((header) => header.startsWith('__Host-browser='));
      expect(binding.length).toBeGreaterThan(0);
      for (const header of binding) {
        const attributes = header.toLowerCase().split(';').map((part) => part.trim());
        expect(attributes).toEqual(expect.arrayContaining(['samesite=none', 'secure', 'httponly', 'path=/']));
        expect(attributes.some((attribute) => attribute.startsWith('domain='))).toBe(false);
        const expires = Date.parse(attributes.find((attribute) => attribute.startsWith('expires='))!.slice('expires='.length));
        expect(Math.abs(expires - (Date.now() + 180 * 24 * 3600_000))).toBeLessThan(60_000);
      }
      expect(ua.setCookieHeaders.some((header) => header.startsWith('_browser='))).toBe(false);
      // Interaction cookies only ever go to our own pages: still Lax.
      const interaction = ua.setCookieHeaders.filter((header) => header.startsWith('_interaction='));
      expect(interaction.length).toBeGreaterThan(0);
      for (const header of interaction) expect(header.toLowerCase()).toContain('samesite=lax');
    } finally {
      await secure.close();
    }
  });
});

describe('PKCE (RFC 9700 §2.1.1)', () => {
  /** An authorization request of a confidential client without code_challenge, answered by `server` (no sign-in needed to be refused). */
  async function withoutPkce(server: TestPortcullis) {
    const client = await server.createClient({ name: 'Server-side app', redirectUris: [REDIRECT_URI], scope: 'openid' });
    const query = new URLSearchParams({ client_id: client.client_id, response_type: 'code', scope: 'openid', redirect_uri: REDIRECT_URI, state: 'st' });
    return visit(new UserAgent(), `${server.issuer}/auth?${query}`);
  }

  it('is optional for a confidential client by default, and required of every client with PKCE_REQUIRED=all', async () => {
    expect(pageKind(await withoutPkce(pc))).toBe('login');
    const strict = await startPortcullis({ PKCE_REQUIRED: 'all' });
    try {
      const refused = new URL((await withoutPkce(strict)).url);
      expect(refused.origin + refused.pathname).toBe(REDIRECT_URI);
      expect(refused.searchParams.get('error')).toBe('invalid_request');
      expect(refused.searchParams.get('error_description')).toMatch(/PKCE/);
      expect(refused.searchParams.get('state')).toBe('st');
      // With PKCE, the same client signs in as before.
      const app = await strict.createClient({ name: 'With PKCE', redirectUris: [REDIRECT_URI], scope: 'openid' });
      await strict.createUser(finn.email, finn.password, 'Finn');
      const rp = await discover(strict.issuer, app.client_id, app.client_secret);
      const login = await visit(new UserAgent(), (await authorizationRequest(rp, 'openid')).url);
      expect(pageKind(login)).toBe('login');
    } finally {
      await strict.close();
    }
  });
});
