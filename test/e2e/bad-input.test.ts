// Bad input gets the standard OAuth error, never a 500 and never a redirect to
// an address the client did not register.
import http from 'node:http';
import net from 'node:net';
import { gzipSync } from 'node:zlib';
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPortcullis, type TestPortcullis } from '../support/portcullis.js';
import { allow, authorizationRequest, basicAuth, discover, pageKind, REDIRECT_URI, signIn, signInRefusal, visit } from '../support/relying-party.js';
import { UserAgent } from '../support/user-agent.js';

const carol = { email: 'carol@example.com', password: 'carols password' };

let pc: TestPortcullis;
let client: { client_id: string; client_secret?: string };
let rp: oidc.Configuration;

beforeAll(async () => {
  pc = await startPortcullis({ AUTHORIZATION_CODE_TTL: '3s' });
  await pc.createUser(carol.email, carol.password);
  client = await pc.createClient({ name: 'Shop', redirectUris: [REDIRECT_URI] });
  rp = await discover(pc.issuer, client.client_id, client.client_secret);
});

afterAll(async () => {
  expect(pc?.errors ?? []).toEqual([]);
  await pc?.close();
});

async function codeFor(ua = new UserAgent(), extra: Record<string, string> = {}) {
  const request = await authorizationRequest(rp, 'openid', extra);
  const consentOrBack = await signIn(ua, await visit(ua, request.url), carol.email, carol.password);
  const back = consentOrBack.url.startsWith(REDIRECT_URI) ? consentOrBack : await allow(ua, consentOrBack);
  return { request, callback: new URL(back.url) };
}

/** The token request form that redeems the code of `codeFor()`. */
function exchangeOf({ request, callback }: Awaited<ReturnType<typeof codeFor>>) {
  return {
    grant_type: 'authorization_code',
    code: callback.searchParams.get('code')!,
    redirect_uri: REDIRECT_URI,
    code_verifier: request.verifier,
  };
}

/** Everything the server sends back to `bytes`, written on a connection of their own, until it closes the connection. */
function rawExchange(issuer: string, bytes: string): Promise<string> {
  const { hostname, port } = new URL(issuer);
  return new Promise<string>((resolve, reject) => {
    const socket = net.connect(Number(port), hostname);
    let received = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (received += chunk));
    socket.on('error', reject);
    socket.on('close', () => resolve(received));
    socket.write(bytes);
  });
}


async function token(body: Record<string, string>, auth = basicAuth(client.client_id, client.client_secret!)) {
  return tokenRaw(new URLSearchParams(body).toString(), auth);
}

/** A form body as it is, repeated parameters included. */
async function tokenRaw(form: string, auth = basicAuth(client.client_id, client.client_secret!)) {
  const response = await fetch(`${pc.issuer}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...(auth ? { authorization: auth } : {}) },
    body: form,
  });
  return { status: response.status, type: response.headers.get('content-type'), body: (await response.json()) as { error?: string } };
}

describe('the authorization endpoint', () => {
  it('shows an error page, not a redirect, for an unknown client', async () => {
    const url = `${pc.issuer}/auth?client_id=nope&response_type=code&scope=openid&redirect_uri=${encodeURIComponent(REDIRECT_URI)}`;
    const response = await fetch(url, { redirect: 'manual' });
    expect(response.status).toBe(400);
    expect(response.headers.get('location')).toBeNull();
    const html = await response.text();
    expect(html).toContain('Unknown application');
    expect(html).not.toMatch(/at .*\.(js|ts):\d+/); // no stack trace
    // The protocol's words are for the developer, beside the alert a screen reader announces, not in it.
    expect(/<div class="alert" role="alert">([^<]*)<\/div>/.exec(html)![1]).toBe('The application that sent you here is not registered.');
    expect(html).toContain("For the application's developer: <code>client is invalid</code>");
  });

  it('shows an error page, not a redirect, for an unregistered redirect_uri', async () => {
    const request = await authorizationRequest(rp, 'openid', { redirect_uri: 'https://evil.example/steal' });
    const response = await fetch(request.url, { redirect: 'manual' });
    expect(response.status).toBe(400);
    expect(response.headers.get('location')).toBeNull();
    expect(await response.text()).toContain('Unexpected return address');
  });

  it('shows an error page, not a redirect, when redirect_uri is missing, even for a client with one (OIDC Core §3.1.2.1)', async () => {
    const request = await authorizationRequest(rp, 'openid');
    request.url.searchParams.delete('redirect_uri');
    const response = await fetch(request.url, { redirect: 'manual' });
    expect(response.status).toBe(400);
    expect(response.headers.get('location')).toBeNull();
    expect(await response.text()).toContain('redirect_uri');
  });

  it('rejects PKCE methods other than S256', async () => {
    const request = await authorizationRequest(rp, 'openid', { code_challenge_method: 'plain' });
    const page = await visit(new UserAgent(), request.url);
    expect(new URL(page.url).searchParams.get('error')).toBe('invalid_request');
  });

  it('rejects an unsupported response_type with a redirect to the registered URI', async () => {
    const request = await authorizationRequest(rp, 'openid', { response_type: 'token' });
    const page = await visit(new UserAgent(), request.url);
    expect(page.url.startsWith(REDIRECT_URI), page.url).toBe(true);
    // The implicit response type answers in the fragment (OAuth 2.0 Multiple Response Types §5).
    const answer = new URLSearchParams(new URL(page.url).hash.slice(1) || new URL(page.url).search);
    expect(answer.get('error')).toBe('unsupported_response_type');
  });

  it('refuses a request for no scope, or only unknown ones, with invalid_scope before anyone signs in (RFC 6749 §3.3)', async () => {
    for (const scope of [undefined, 'photos', 'openid-ish profile-ish', 'offline_access']) {
      const request = await authorizationRequest(rp, 'openid', { state: 'nothing' });
      request.url.searchParams.delete('nonce'); // an OpenID Connect parameter: without openid, invalid_request
      if (scope === undefined) request.url.searchParams.delete('scope');
      else request.url.searchParams.set('scope', scope);
      const page = await visit(new UserAgent(), request.url); // straight back: no sign-in page on the way
      const answer = new URL(page.url);
      expect([scope, answer.origin + answer.pathname]).toEqual([scope, REDIRECT_URI]);
      expect(Object.fromEntries(answer.searchParams)).toMatchObject({ error: 'invalid_scope', state: 'nothing', iss: pc.issuer });
      expect(answer.searchParams.has('scope')).toBe(false);
      expect(answer.searchParams.get('error_description')).not.toContain('offline_access');
    }
    // Pushed (RFC 9126): refused when pushed.
    const pushed = await fetch(`${pc.issuer}/request`, {
      method: 'POST',
      headers: { authorization: basicAuth(client.client_id, client.client_secret!), 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ client_id: client.client_id, response_type: 'code', redirect_uri: REDIRECT_URI, scope: 'photos', code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256' }),
    });
    expect([pushed.status, ((await pushed.json()) as { error: string }).error]).toEqual([400, 'invalid_scope']);
  });

  it('answers a client that may not use the code flow with unauthorized_client at its redirect URI (RFC 6749 §4.1.2.1)', async () => {
    const robot = await pc.createClient({ name: 'Robot', redirectUris: [REDIRECT_URI], grantTypes: ['client_credentials'] });
    const robotRp = await discover(pc.issuer, robot.client_id, robot.client_secret);
    const request = await authorizationRequest(robotRp, 'openid', { state: 'robot' });
    const page = await visit(new UserAgent(), request.url);
    const answer = new URL(page.url);
    expect(answer.origin + answer.pathname).toBe(REDIRECT_URI);
    expect(Object.fromEntries(answer.searchParams)).toMatchObject({ error: 'unauthorized_client', state: 'robot', iss: pc.issuer });
  });

  // PostgreSQL's text and jsonb cannot hold U+0000; the parameters end up in
  // the stored interaction, where the database would refuse them (a 500).
  it.each(['state', 'nonce', 'login_hint', 'ui_locales'])('refuses a %s with a NUL character with invalid_request at the client', async (name) => {
    const request = await authorizationRequest(rp, 'openid', { [name]: 'before\u0000after' });
    const page = await visit(new UserAgent(), request.url);
    expect(page.url.startsWith(REDIRECT_URI), page.url).toBe(true);
    const answer = new URL(page.url).searchParams;
    expect(answer.get('error')).toBe('invalid_request');
    expect(answer.get('error_description')).toMatch(/NUL/);
  });

  it('refuses a pushed request holding a NUL character at the push, not when it is used (RFC 9126 §2.1)', async () => {
    const push = (extra: Record<string, string>) =>
      fetch(`${pc.issuer}/request`, {
        method: 'POST',
        headers: { authorization: basicAuth(client.client_id, client.client_secret!) },
        body: new URLSearchParams({ client_id: client.client_id, response_type: 'code', scope: 'openid', redirect_uri: REDIRECT_URI, code_challenge: 'x'.repeat(43), code_challenge_method: 'S256', ...extra }),
      });
    for (const name of ['state', 'nonce', 'login_hint']) {
      const response = await push({ [name]: 'before\u0000after' });
      expect([name, response.status]).toEqual([name, 400]);
      expect(await response.json()).toMatchObject({ error: 'invalid_request', error_description: expect.stringMatching(/NUL/) });
    }
    expect((await push({ state: 'x\\u0000y' })).status).toBe(201); // a backslash and "u0000": text
  });

  it('refuses a pushed request that names a request_uri with invalid_request (RFC 9126 §2.1)', async () => {
    const push = (requestUri: string) =>
      fetch(`${pc.issuer}/request`, {
        method: 'POST',
        headers: { authorization: basicAuth(client.client_id, client.client_secret!) },
        body: new URLSearchParams({ client_id: client.client_id, response_type: 'code', scope: 'openid', redirect_uri: REDIRECT_URI, code_challenge: 'x'.repeat(43), code_challenge_method: 'S256', request_uri: requestUri }),
      });
    expect((await push('')).status).toBe(201); // an empty value is none, as the library reads it
    for (const requestUri of ['urn:ietf:params:oauth:request_uri:abc', 'https://client.example/request.jwt']) {
      const response = await push(requestUri);
      expect([requestUri, response.status]).toEqual([requestUri, 400]);
      expect(await response.json()).toEqual({ error: 'invalid_request', error_description: expect.stringContaining('request_uri') });
    }
    // At the authorization endpoint a request_uri that is not a pushed request's stays request_uri_not_supported (OpenID Connect Core §3.1.2.6).
    const request = await authorizationRequest(rp, 'openid', { state: 'by-reference' });
    request.url.searchParams.set('request_uri', 'https://client.example/request.jwt');
    const page = await visit(new UserAgent(), request.url);
    expect(Object.fromEntries(new URL(page.url).searchParams)).toMatchObject({ error: 'request_uri_not_supported', state: 'by-reference' });
  });

  it('accepts a state holding a backslash followed by u0000 (text, not the character)', async () => {
    const state = 'x\\u0000y';
    const { request, callback } = await codeFor(new UserAgent(), { state });
    expect(callback.searchParams.get('error')).toBeNull();
    expect(callback.searchParams.get('state')).toBe(state);
    const tokens = await oidc.authorizationCodeGrant(rp, callback, { pkceCodeVerifier: request.verifier, expectedState: state, expectedNonce: request.nonce });
    expect(tokens.access_token).toBeTruthy();
  });

  // Node's parser makes U+FFFD of each byte sequence that is not UTF-8: the
  // state would go back to the client other than it was sent (RFC 6749 §4.1.2).
  it.each([['state', 'x%C3%28y'], ['nonce', 'ab%FFcd'], ['login_hint', '%ED%A0%80']])('refuses a %s that is not UTF-8 once decoded with an error page, by GET, by POST and when pushed', async (name, raw) => {
    const request = await authorizationRequest(rp, 'openid');
    request.url.searchParams.delete(name);
    const query = `${request.url.search.slice(1)}&${name}=${raw}`;
    const got = await fetch(`${pc.issuer}/auth?${query}`, { redirect: 'manual' });
    const post = (path: string) => fetch(`${pc.issuer}${path}`, { method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: query });
    // The routes take any case of their path, with or without a trailing slash.
    for (const response of [got, await post('/auth'), await post('/AUTH/')]) {
      expect(response.status).toBe(400);
      expect(response.headers.get('location')).toBeNull();
      expect(await response.text()).toContain('UTF-8');
    }
    const pushed = await fetch(`${pc.issuer}/request`, {
      method: 'POST',
      headers: { authorization: basicAuth(client.client_id, client.client_secret!), 'content-type': 'application/x-www-form-urlencoded' },
      body: query,
    });
    expect(pushed.status).toBe(400);
    expect(await pushed.json()).toMatchObject({ error: 'invalid_request', error_description: expect.stringContaining('UTF-8') });
  });

  it('refuses a logout request whose state is not UTF-8 once decoded, by GET and by POST, with an error page, not the sign-out page', async () => {
    const query = `client_id=${encodeURIComponent(client.client_id)}&state=x%C3%28y`;
    const got = await fetch(`${pc.issuer}/session/end?${query}`, { redirect: 'manual' });
    const posted = await fetch(`${pc.issuer}/session/end`, { method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: query });
    for (const response of [got, posted]) {
      expect(response.status).toBe(400);
      const html = await response.text();
      expect(html).toContain('UTF-8');
      expect(html).not.toContain('/session/end/confirm');
    }
    // A state that is UTF-8 gets the page.
    const good = await fetch(`${pc.issuer}/session/end?client_id=${encodeURIComponent(client.client_id)}&state=x%C3%A9y`, { redirect: 'manual' });
    expect(good.status).toBe(200);
    expect(await good.text()).toContain('/session/end/confirm');
  });

  it('refuses a posted authorization request whose raw bytes are not UTF-8', async () => {
    const request = await authorizationRequest(rp, 'openid');
    request.url.searchParams.delete('state');
    const body = Buffer.concat([Buffer.from(`${request.url.search.slice(1)}&state=a`), Buffer.from([0xff]), Buffer.from('b')]);
    const response = await fetch(`${pc.issuer}/auth`, { method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body });
    expect(response.status).toBe(400);
    expect(await response.text()).toContain('UTF-8');
  });

  it('keeps a state holding U+FFFD sent as such, a lone % and a %zz, as the parser reads them', async () => {
    for (const [raw, state] of [['a%EF%BF%BDb', 'a\uFFFDb'], ['100%', '100%'], ['%zz', '%zz']] as const) {
      const request = await authorizationRequest(rp, 'openid');
      request.url.searchParams.delete('state');
      const ua = new UserAgent();
      const consentOrBack = await signIn(ua, await visit(ua, `${request.url}&state=${raw}`), carol.email, carol.password);
      const back = consentOrBack.url.startsWith(REDIRECT_URI) ? consentOrBack : await allow(ua, consentOrBack);
      const callback = new URL(back.url);
      expect([raw, callback.searchParams.get('state')]).toEqual([raw, state]);
      await oidc.authorizationCodeGrant(rp, callback, { pkceCodeVerifier: request.verifier, expectedState: state, expectedNonce: request.nonce });
    }
  });

  it('shows the unknown-application page for a client_id with a NUL character', async () => {
    const url = `${pc.issuer}/auth?client_id=${encodeURIComponent(`${client.client_id}\u0000`)}&response_type=code&scope=openid`;
    const response = await fetch(url, { redirect: 'manual' });
    expect(response.status).toBe(400);
    expect(await response.text()).toContain('Unknown application');
  });

  it('shows a friendly page for an interaction that does not exist in this browser', async () => {
    const response = await fetch(`${pc.issuer}/interaction/does-not-exist`);
    expect(response.status).toBe(400);
    expect(response.headers.get('cache-control')).toBe('no-store');
    expect(await response.text()).toContain('Your sign-in expired');
  });

  it('the resume address, with a registered client_id in its query, is the sign-in-expired page, not a 500', async () => {
    const cookieless = new UserAgent();
    for (const query of [`client_id=${client.client_id}`, `client_id=${client.client_id}&state=s&response_type=code`]) {
      const page = await visit(cookieless, `${pc.issuer}/auth/anything?${query}`);
      expect([query, page.status, page.url.startsWith(pc.issuer), page.html.includes('Your sign-in expired')]).toEqual([query, 400, true, true]);
    }
    // (afterAll: and no error line: the 500 logged one.)
  });

  it('HEAD at the resume address, with a registered client_id in its query, is answered as GET is, not a 500 (RFC 9110 §9.3.2)', async () => {
    // The library's router answers HEAD wherever it answers GET: the resume too.
    const errorsBefore = pc.errors.length;
    for (const query of [`client_id=${client.client_id}`, `client_id=${client.client_id}&state=s&response_type=code`]) {
      const get = await fetch(`${pc.issuer}/auth/anything?${query}`, { redirect: 'manual' });
      const head = await fetch(`${pc.issuer}/auth/anything?${query}`, { method: 'HEAD', redirect: 'manual' });
      expect([query, head.status, await head.text()]).toEqual([query, get.status, '']);
    }
    expect(pc.errors.slice(errorsBefore)).toEqual([]);
  });
});

describe('the token endpoint', () => {
  it('answers a malformed request with invalid_request JSON', async () => {
    const result = await token({ grant_type: 'authorization_code' });
    expect(result.status).toBe(400);
    expect(result.type).toMatch(/application\/json/);
    expect(result.body.error).toBe('invalid_request');
  });

  it('a body sent without Content-Type is refused naming the content type, not a parameter it holds', async () => {
    const auth = basicAuth(client.client_id, client.client_secret!);
    const answers = [];
    for (const path of ['/token', '/token/introspection']) {
      // A byte body: fetch sends it without a Content-Type.
      const untyped = await fetch(`${pc.issuer}${path}`, { method: 'POST', headers: { authorization: auth }, body: new TextEncoder().encode('grant_type=client_credentials&token=x') });
      answers.push([path, untyped.status, await untyped.json()]);
    }
    expect(answers).toEqual([
      ['/token', 400, { error: 'invalid_request', error_description: 'only application/x-www-form-urlencoded content-type bodies are supported on POST /token' }],
      ['/token/introspection', 400, { error: 'invalid_request', error_description: 'only application/x-www-form-urlencoded content-type bodies are supported on POST /token/introspection' }],
    ]);
    // Without a body, the parameter is what is missing.
    const empty = await fetch(`${pc.issuer}/token`, { method: 'POST', headers: { authorization: auth } });
    expect(await empty.json()).toEqual({ error: 'invalid_request', error_description: "missing required parameter 'grant_type'" });
  });

  it('answers an unknown grant type with unsupported_grant_type', async () => {
    const result = await token({ grant_type: 'password', username: 'x', password: 'y' });
    expect(result.body.error).toBe('unsupported_grant_type');
  });

  it('answers a grant type the client may not use with unauthorized_client (RFC 6749 §5.2)', async () => {
    // The shop is registered for authorization_code and refresh_token only.
    const result = await token({ grant_type: 'client_credentials' });
    expect(result.status).toBe(400);
    expect(result.body).toEqual({ error: 'unauthorized_client', error_description: 'requested grant type is not allowed for this client' });
  });

  it('answers a repeated grant_type with invalid_request, not unauthorized_client', async () => {
    const result = await tokenRaw('grant_type=client_credentials&grant_type=client_credentials');
    expect(result.status).toBe(400);
    expect(result.body.error).toBe('invalid_request');
  });

  it('answers a wrong client secret with invalid_client', async () => {
    const result = await token({ grant_type: 'client_credentials' }, basicAuth(client.client_id, 'wrong'));
    expect(result.status).toBe(401);
    expect(result.body.error).toBe('invalid_client');
  });

  it('a compressed request body is refused with 415 and Accept-Encoding: identity, never read as a form', async () => {
    const form = new URLSearchParams({ grant_type: 'client_credentials' }).toString();
    const send = (path: string, coding: string, body: BodyInit, accept = '*/*') =>
      fetch(`${pc.issuer}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-encoding': coding, authorization: basicAuth(client.client_id, client.client_secret!), accept },
        body,
      });
    for (const [coding, body] of [['gzip', gzipSync(form)], ['gzip', form], ['br', form], ['x-unknown', form]] as const) {
      const response = await send('/token', coding, body);
      expect([coding, response.status, response.headers.get('accept-encoding')]).toEqual([coding, 415, 'identity']);
      expect(await response.json()).toMatchObject({ error: 'invalid_request', error_description: expect.stringContaining('Content-Encoding') });
    }
    // A single-page app calling from its origin can read why, as it can the provider's own errors.
    const fromApp = await fetch(`${pc.issuer}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-encoding': 'gzip', origin: 'https://spa.example' },
      body: gzipSync(form),
    });
    expect([fromApp.status, fromApp.headers.get('access-control-allow-origin'), fromApp.headers.get('vary')]).toEqual([415, 'https://spa.example', 'Origin']);
    // Where a browser is sent, a page.
    const page = await send('/interaction/some-uid/login', 'gzip', gzipSync('email=a&password=b'), 'text/html');
    expect([page.status, page.headers.get('content-type')]).toEqual([415, 'text/html; charset=utf-8']);
    // A page is no API: another origin's script is not let read the refusal.
    const fromElsewhere = await fetch(`${pc.issuer}/interaction/some-uid/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-encoding': 'gzip', origin: 'https://evil.example', accept: 'text/html' },
      body: gzipSync('email=a&password=b'),
    });
    expect([fromElsewhere.status, fromElsewhere.headers.get('access-control-allow-origin')]).toEqual([415, null]);
    // An address nothing serves, or not by this method, is answered as such first.
    expect((await send('/tokens', 'gzip', gzipSync(form))).status).toBe(404);
    expect((await send('/jwks', 'gzip', gzipSync(form))).status).toBe(405);
    // identity is no coding at all: the form is read (this client may not use the grant it names).
    const plain = await send('/token', 'identity', form);
    expect([plain.status, await plain.json()]).toEqual([400, expect.objectContaining({ error: 'unauthorized_client' })]);
  });

  it('a body in a transfer coding besides chunked is refused with 501 (RFC 9112 §6.1), never read as a form', async () => {
    const { host } = new URL(pc.issuer);
    const form = 'grant_type=client_credentials';
    const chunked = `${form.length.toString(16)}\r\n${form}\r\n0\r\n\r\n`;
    const send = (codings: string) =>
      rawExchange(pc.issuer, [
        'POST /token HTTP/1.1', `Host: ${host}`, 'Content-Type: application/x-www-form-urlencoded',
        `Authorization: ${basicAuth(client.client_id, client.client_secret!)}`, `Transfer-Encoding: ${codings}`, 'Connection: close', '', chunked,
      ].join('\r\n'));
    for (const codings of ['gzip, chunked', 'x-unknown,chunked']) {
      const answer = await send(codings);
      expect(answer).toMatch(/^HTTP\/1\.1 501 /);
      expect(answer).toContain('"error_description":"the request body must not be sent in a transfer coding other than chunked (Transfer-Encoding)"');
    }
    // Chunked alone is read: this client may not use the grant it names.
    expect(await send('chunked')).toContain('"error":"unauthorized_client"');
  });

  it('answers an Authorization header that is not a client id and secret with 401 invalid_client and a challenge (RFC 6749 §5.2)', async () => {
    const b64 = (text: string) => Buffer.from(text).toString('base64');
    const headers = [
      'Basic !!!!',
      'Basic ',
      `Basic ${b64('no colon')}`,
      'Bearer some-token',
      `Basic ${b64(`${client.client_id}:`)}`, // no secret
      `Basic ${b64(':secret')}`, // no id
      `Basic ${b64('%zz:secret')}`, // not form-urlencoded
      `Basic  ${b64(`${client.client_id}:x`)}`, // two spaces, read as one: a wrong secret
      `Basic ${b64('ab:c').replace(/==$/, '=')}`, // padding cut short (YWI6Yw=)
      `Basic ${b64('cli%C3%A9nt:secret')}`, // an id outside printable ASCII
    ];
    for (const header of headers) {
      for (const path of ['/token', '/token/introspection']) {
        const response = await fetch(`${pc.issuer}${path}`, {
          method: 'POST',
          headers: { authorization: header, 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ grant_type: 'client_credentials', token: 'x' }),
        });
        expect([header, path, response.status]).toEqual([header, path, 401]);
        expect(response.headers.get('www-authenticate')).toMatch(/^Basic realm=/);
        expect(await response.json()).toMatchObject({ error: 'invalid_client' });
      }
    }
    // Well-formed credentials with something else wrong keep their own error.
    const repeated = await tokenRaw('grant_type=client_credentials&grant_type=client_credentials');
    expect([repeated.status, repeated.body.error]).toEqual([400, 'invalid_request']);
    // And unusual but valid ones work: percent-encoding, '+' for a space, unpadded base64.
    const odd = await pc.createClient({ name: 'Odd', grantTypes: ['client_credentials'], scope: 'openid' });
    const unpadded = Buffer.from(`${encodeURIComponent(odd.client_id)}:${encodeURIComponent(odd.client_secret!)}`).toString('base64').replace(/=+$/, '');
    expect((await token({ grant_type: 'client_credentials' }, `Basic ${unpadded}`)).status).toBe(200);
  });

  it('a client_id or client_secret sent twice in the body is invalid_request naming it (RFC 6749 §3.2), not a missing authentication', async () => {
    const id = encodeURIComponent(client.client_id);
    const secret = encodeURIComponent(client.client_secret!);
    for (const [path, form] of [
      ['/token', `grant_type=client_credentials&client_id=${id}&client_id=${id}&client_secret=${secret}`],
      ['/token', `grant_type=client_credentials&client_id=${id}&client_secret=${secret}&client_secret=${secret}`],
      ['/token/introspection', `token=x&client_id=${id}&client_id=${id}&client_secret=${secret}`],
      ['/token/revocation', `token=x&client_id=${id}&client_id=${id}&client_secret=${secret}`],
    ] as const) {
      const response = await fetch(`${pc.issuer}${path}`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form });
      const body = (await response.json()) as { error: string; error_description: string };
      expect([path, response.status, body.error, response.headers.get('www-authenticate')]).toEqual([path, 400, 'invalid_request', null]);
      expect(body.error_description).toMatch(/client_(id|secret).*twice/);
    }
    // An empty one names no client at all: authentication is missing (RFC 6749 §5.2).
    for (const form of ['grant_type=client_credentials&client_id=', 'grant_type=client_credentials&client_assertion=']) {
      const response = await fetch(`${pc.issuer}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form });
      expect([form, response.status, ((await response.json()) as { error: string }).error]).toEqual([form, 401, 'invalid_client']);
    }
  });

  it('a parameter sent again without a value is as if omitted (RFC 6749 §3.1); two values are still refused', async () => {
    const request = await authorizationRequest(rp, 'openid');
    const ua = new UserAgent();
    const login = await visit(ua, `${request.url.href}&scope=&state=&nonce`);
    expect(pageKind(login)).toBe('login');
    const consentOrBack = await signIn(ua, login, carol.email, carol.password);
    const back = new URL((consentOrBack.url.startsWith(REDIRECT_URI) ? consentOrBack : await allow(ua, consentOrBack)).url);
    expect(back.searchParams.get('state')).toBe(request.state);
    const code = encodeURIComponent(back.searchParams.get('code')!);
    const redirect = encodeURIComponent(REDIRECT_URI);
    const exchanged = await tokenRaw(`grant_type=authorization_code&code=${code}&redirect_uri=${redirect}&redirect_uri=&code_verifier=&code_verifier=${request.verifier}`);
    expect([exchanged.status, Object.keys(exchanged.body)]).toEqual([200, expect.arrayContaining(['access_token', 'id_token'])]);

    const twoScopes = await visit(new UserAgent(), `${(await authorizationRequest(rp, 'openid')).url.href}&scope=email`);
    expect(new URL(twoScopes.url).searchParams.get('error_description')).toBe("'scope' parameter must not be provided twice");
    const twoVerifiers = await tokenRaw(`grant_type=authorization_code&code=x&code_verifier=${request.verifier}&code_verifier=${request.verifier}`);
    expect([twoVerifiers.status, twoVerifiers.body.error]).toEqual([400, 'invalid_request']);
  });

  it('answers a client_id with a NUL character with invalid_client', async () => {
    const response = await tokenRaw(`grant_type=client_credentials&client_id=${client.client_id}%00&client_secret=${client.client_secret}`, '');
    expect(response.status).toBe(401);
    expect(response.body.error).toBe('invalid_client');
  });

  it('answers a resource indicator with a NUL character with invalid_target', async () => {
    const machine = await pc.createClient({ name: 'Batch job', grantTypes: ['client_credentials'] });
    const response = await token({ grant_type: 'client_credentials', resource: 'https://api.example/\u0000' }, basicAuth(machine.client_id, machine.client_secret!));
    expect(response.status).toBe(400);
    expect(response.body.error).toBe('invalid_target');
  });

  it('answers an unknown code with invalid_grant', async () => {
    const result = await token({ grant_type: 'authorization_code', code: 'nope', redirect_uri: REDIRECT_URI, code_verifier: 'x'.repeat(43) });
    expect(result.body.error).toBe('invalid_grant');
  });

  it('answers a wrong PKCE verifier with invalid_grant', async () => {
    const { callback } = await codeFor();
    const result = await token({
      grant_type: 'authorization_code',
      code: callback.searchParams.get('code')!,
      redirect_uri: REDIRECT_URI,
      code_verifier: oidc.randomPKCECodeVerifier(),
    });
    expect(result.body.error).toBe('invalid_grant');
  });

  it('a reused code is refused and revokes the tokens it gave', async () => {
    const { request, callback } = await codeFor();
    const tokens = await oidc.authorizationCodeGrant(rp, callback, { pkceCodeVerifier: request.verifier, expectedState: request.state, expectedNonce: request.nonce });
    const again = await token({
      grant_type: 'authorization_code',
      code: callback.searchParams.get('code')!,
      redirect_uri: REDIRECT_URI,
      code_verifier: request.verifier,
    });
    expect(again.body.error).toBe('invalid_grant');
    expect((await oidc.tokenIntrospection(rp, tokens.access_token)).active).toBe(false);
  });

  it('a code exchange refused for its resource leaves the code usable', async () => {
    const { request, callback } = await codeFor();
    const refused = await token({ ...exchangeOf({ request, callback }), resource: 'https://unregistered.example/' });
    expect(refused.status).toBe(400);
    expect(refused.body.error).toBe('invalid_target');
    const tokens = await oidc.authorizationCodeGrant(rp, callback, { pkceCodeVerifier: request.verifier, expectedState: request.state, expectedNonce: request.nonce });
    expect((await oidc.tokenIntrospection(rp, tokens.access_token)).active).toBe(true);
  });

  it('two concurrent redemptions of one code give tokens at most once', async () => {
    const body = exchangeOf(await codeFor());
    const results = await Promise.all(Array.from({ length: 8 }, () => token(body)));
    expect(results.filter((result) => result.status === 200).length).toBeLessThanOrEqual(1);
    for (const result of results.filter((r) => r.status !== 200)) expect(result.body.error).toBe('invalid_grant');
  });

  it('an expired code is refused', async () => {
    const { request, callback } = await codeFor();
    await new Promise((resolve) => setTimeout(resolve, 4100));
    const result = await token({
      grant_type: 'authorization_code',
      code: callback.searchParams.get('code')!,
      redirect_uri: REDIRECT_URI,
      code_verifier: request.verifier,
    });
    expect(result.body.error).toBe('invalid_grant');
  });

  it('a client cannot introspect or revoke another client\'s tokens', async () => {
    const { request, callback } = await codeFor();
    const tokens = await oidc.authorizationCodeGrant(rp, callback, { pkceCodeVerifier: request.verifier, expectedState: request.state, expectedNonce: request.nonce });
    const other = await pc.createClient({ name: 'Other', redirectUris: [REDIRECT_URI] });
    const otherRp = await discover(pc.issuer, other.client_id, other.client_secret);
    expect((await oidc.tokenIntrospection(otherRp, tokens.access_token)).active).toBe(false);
    // RFC 7009 §2.1: refused, and the client is told.
    await expect(oidc.tokenRevocation(otherRp, tokens.access_token)).rejects.toMatchObject({ error: 'invalid_request' });
    // A public client, which anyone can name, gets the answer for a token that does
    // not exist (§2.2): it learns nothing of other clients' tokens, and revokes nothing.
    const spa = await pc.createClient({ name: 'Other SPA', redirectUris: [REDIRECT_URI], public: true });
    const revokeAsSpa = async (token: string) => {
      const response = await fetch(`${pc.issuer}/token/revocation`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ client_id: spa.client_id, token }).toString(),
      });
      return { status: response.status, body: await response.text() };
    };
    const [theirs, none] = [await revokeAsSpa(tokens.access_token), await revokeAsSpa('no-such-token')];
    expect(theirs.status).toBe(200);
    expect(theirs).toEqual(none);
    expect((await oidc.tokenIntrospection(rp, tokens.access_token)).active).toBe(true);
  });

  it('a public client is refused at introspection, even for its own tokens, as discovery offers only client secrets there (RFC 7662 §2.1, RFC 8414 §2)', async () => {
    const spa = await pc.createClient({ name: 'SPA', redirectUris: [REDIRECT_URI], public: true });
    const spaRp = await discover(pc.issuer, spa.client_id);
    const request = await authorizationRequest(spaRp, 'openid');
    const ua = new UserAgent();
    const consentOrBack = await signIn(ua, await visit(ua, request.url), carol.email, carol.password);
    const back = consentOrBack.url.startsWith(REDIRECT_URI) ? consentOrBack : await allow(ua, consentOrBack);
    const tokens = await oidc.authorizationCodeGrant(spaRp, new URL(back.url), { pkceCodeVerifier: request.verifier, expectedState: request.state, expectedNonce: request.nonce });
    // openid-client reads the 401's challenge.
    await expect(oidc.tokenIntrospection(spaRp, tokens.access_token)).rejects.toMatchObject({ status: 401 });
    // The same answer whether or not the token exists: it tells nothing about it.
    const answers = await Promise.all(
      [tokens.access_token, 'no-such-token'].map(async (token) => {
        const response = await fetch(`${pc.issuer}/token/introspection`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ client_id: spa.client_id, token }).toString(),
        });
        return { status: response.status, challenge: response.headers.get('www-authenticate'), body: await response.json() };
      }),
    );
    expect(answers[0]).toMatchObject({ status: 401, challenge: expect.stringMatching(/^Basic realm=/), body: { error: 'invalid_client' } });
    expect(answers[1]).toEqual(answers[0]);
    // It still works where it is meant to: at userinfo.
    expect((await oidc.fetchUserInfo(spaRp, tokens.access_token, tokens.claims()!.sub)).sub).toBe(tokens.claims()!.sub);
  });

  it('token responses carry Pragma: no-cache besides Cache-Control: no-store (RFC 6749 §5.1)', async () => {
    const response = await fetch(`${pc.issuer}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(client.client_id, client.client_secret!) },
      body: new URLSearchParams(exchangeOf(await codeFor())).toString(),
    });
    expect(response.status).toBe(200);
    expect(response.headers.get('cache-control')).toBe('no-store');
    expect(response.headers.get('pragma')).toBe('no-cache');
  });
});

describe('the sign-in form', () => {
  it('answers an email with a NUL character as a wrong email or password', async () => {
    const ua = new UserAgent();
    const login = await visit(ua, (await authorizationRequest(rp, 'openid')).url);
    const page = await signIn(ua, login, `${carol.email}\u0000`, carol.password);
    expect(signInRefusal(page)).toBe('wrong_credentials');
  });

  it('a field sent twice counts as first sent: the sign-in is the first email\'s, not the last one\'s', async () => {
    const ua = new UserAgent();
    const login = await visit(ua, (await authorizationRequest(rp, 'openid')).url);
    const form = new URLSearchParams({ ...UserAgent.formFields(login, '/login'), email: carol.email });
    form.append('email', 'mallory@example.com');
    form.append('password', carol.password);
    const page = await ua.open(new URL(UserAgent.formAction(login, '/login'), login.url).href, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: form.toString(),
    }, REDIRECT_URI);
    expect(['consent', 'callback']).toContain(pageKind(page));
  });

  // Checked with the length announced and without (chunked): both are refused
  // with a page, not dropped, and the sign-in can go on afterwards.
  it.each([
    ['with Content-Length', (body: string) => body],
    ['chunked', (body: string) => new Blob([body]).stream()],
  ])('refuses an oversized form post %s with 413 and a page', async (_how, asBody) => {
    const ua = new UserAgent();
    const login = await visit(ua, (await authorizationRequest(rp, 'openid')).url);
    const action = new URL(UserAgent.formAction(login, '/login'), login.url).href;
    const body = new URLSearchParams({ email: carol.email, password: carol.password, filler: 'a'.repeat(40_000) }).toString();
    const page = await ua.open(action, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: asBody(body),
      duplex: 'half',
    } as RequestInit);
    expect(page.status).toBe(413);
    // The person typed it: the page says so, not that the application erred.
    expect(page.html).toContain('What you sent is too long');
    expect(page.html).not.toContain('The application sent');
    // The sign-in goes on: the page leads back to its form.
    const link = /<a class="button" href="([^"]+)">Back to signing in<\/a>/.exec(page.html)?.[1];
    expect(link).toBe(new URL(login.url).pathname);
    expect(pageKind(await ua.open(new URL(link!, login.url).href))).toBe('login');
    const back = await signIn(ua, login, carol.email, carol.password);
    expect(['consent', 'callback']).toContain(pageKind(back));
  });
});

describe('the consent form', () => {
  it('Allow and Deny refuse an oversized body as the sign-in form does (413 and a page), and the consent goes on', async () => {
    const ua = new UserAgent();
    const consent = await signIn(ua, await visit(ua, (await authorizationRequest(rp, 'openid', { prompt: 'consent' })).url), carol.email, carol.password);
    expect(pageKind(consent)).toBe('consent');
    for (const suffix of ['/confirm', '/abort']) {
      const page = await ua.open(new URL(UserAgent.formAction(consent, suffix), consent.url).href, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: `filler=${'a'.repeat(40_000)}`,
      });
      expect([suffix, page.status]).toEqual([suffix, 413]);
      expect(page.html).toContain('What you sent is too long');
    }
    expect(pageKind(await allow(ua, consent))).toBe('callback');
  });
});

describe('other endpoints', () => {
  it('endpoints for clients and APIs answer OAuth error JSON even to an Accept that ranks HTML first', async () => {
    // What Java's HttpURLConnection sends by default.
    const accept = 'text/html, image/gif, image/jpeg, *; q=.2, */*; q=.2';
    const wrong = basicAuth(client.client_id, 'not the secret');
    const calls: [string, RequestInit, number, string][] = [
      ['/token', { method: 'POST', headers: { authorization: wrong }, body: new URLSearchParams({ grant_type: 'client_credentials' }) }, 401, 'invalid_client'],
      ['/token', { method: 'POST', body: new URLSearchParams({ grant_type: 'nonsense', client_id: client.client_id }) }, 401, 'invalid_client'],
      ['/token/introspection', { method: 'POST', headers: { authorization: wrong }, body: new URLSearchParams({ token: 'x' }) }, 401, 'invalid_client'],
      ['/token/revocation', { method: 'POST', headers: { authorization: wrong }, body: new URLSearchParams({ token: 'x' }) }, 401, 'invalid_client'],
      ['/request', { method: 'POST', headers: { authorization: wrong }, body: new URLSearchParams({ response_type: 'code' }) }, 401, 'invalid_client'],
      ['/me', { headers: { authorization: 'Bearer not-a-token' } }, 401, 'invalid_token'],
    ];
    for (const [path, init, status, error] of calls) {
      const response = await fetch(`${pc.issuer}${path}`, { ...init, headers: { ...init.headers, accept } });
      expect([path, response.status, response.headers.get('content-type')]).toEqual([path, status, expect.stringContaining('application/json')]);
      expect([path, response.headers.get('cache-control')]).toEqual([path, 'no-store']);
      expect(await response.json()).toMatchObject({ error });
    }
    // A revocation that succeeds is not for caches either (an unknown token is revoked as well, RFC 7009 §2.2).
    const revoked = await fetch(`${pc.issuer}/token/revocation`, { method: 'POST', headers: { authorization: basicAuth(client.client_id, client.client_secret!) }, body: new URLSearchParams({ token: 'x' }) });
    expect([revoked.status, revoked.headers.get('cache-control')]).toEqual([200, 'no-store']);
    // Where a browser is sent, a page still.
    const page = await fetch(`${pc.issuer}/auth?client_id=nobody&response_type=code&scope=openid`, { headers: { accept } });
    expect(page.headers.get('content-type')).toContain('text/html');
  });

  it('a method an address does not take is 405 with Allow (RFC 9110 §15.5.6), as JSON or a page', async () => {
    const cases: [string, string, string][] = [
      ['GET', '/token', 'POST, OPTIONS'],
      ['GET', '/token/introspection', 'POST, OPTIONS'],
      ['DELETE', '/me', 'GET, POST, HEAD, OPTIONS'],
      ['POST', '/jwks', 'GET, HEAD, OPTIONS'],
      ['PUT', '/auth', 'GET, POST, HEAD, OPTIONS'],
      ['POST', '/.well-known/openid-configuration', 'GET, HEAD, OPTIONS'],
      ['GET', '/session/end/confirm', 'POST, OPTIONS'],
    ];
    // The health probes answer in the same shape.
    cases.push(['POST', '/readyz', 'GET, HEAD, OPTIONS']);
    // JSON at a client's or an API's address even when Accept prefers HTML, as a browser's does;
    // a page where a browser is sent (/auth, /session/end/…), if preferred.
    const pages = new Set(['/auth', '/session/end/confirm']);
    for (const accept of ['*/*', 'text/html,application/xhtml+xml,*/*;q=0.8']) {
      for (const [method, path, allow] of cases) {
        const response = await fetch(`${pc.issuer}${path}`, { method, headers: { accept } });
        expect([method, path, response.status, response.headers.get('allow')]).toEqual([method, path, 405, allow]);
        if (pages.has(path) && accept.startsWith('text/html')) {
          const html = await response.text();
          expect(html).toContain('<title>This page cannot be opened this way');
          // Said as the address is used: by links (PUT /auth), or only by our forms (GET of /session/end/confirm).
          expect([path, html.includes('opened by following a link'), html.includes('takes only the forms')]).toEqual([path, allow.includes('GET'), !allow.includes('GET')]);
        } else expect(await response.json()).toMatchObject({ error: 'method_not_allowed' });
      }
    }
    // Where a browser is sent, a page; the path's case does not matter, as to the routers.
    for (const path of ['/interaction/some-uid/select', '/interaction/some-uid/ABORT', '/Interaction/some-uid/Confirm/']) {
      const page = await fetch(`${pc.issuer}${path}`, { headers: { accept: 'text/html' } });
      expect([path, page.status, page.headers.get('allow')]).toEqual([path, 405, 'POST, OPTIONS']);
      expect(await page.text()).toContain('<title>This page cannot be opened this way');
      // …and the method it allows reaches the page's handler (here: no such sign-in), not a 404.
      const posted = await fetch(`${pc.issuer}${path}`, { method: 'POST', headers: { accept: 'text/html' }, body: new URLSearchParams({ email: 'a@example.com' }) });
      expect([path, posted.status]).toEqual([path, 400]);
    }
    // The sign-in form's address, where a failed sign-in's page left the address bar before
    // 0.5.13 (history, bookmarks), leads back to the sign-in in progress when opened again,
    // whatever its case.
    for (const path of ['/interaction/some-uid/login', '/interaction/some-uid/LOGIN/']) {
      const again = await fetch(`${pc.issuer}${path}`, { headers: { accept: 'text/html' }, redirect: 'manual' });
      expect([path, again.status, again.headers.get('location')]).toEqual([path, 303, '/interaction/some-uid']);
    }
    // HEAD is GET without the body, and an address nothing serves stays a 404.
    expect((await fetch(`${pc.issuer}/jwks`, { method: 'HEAD' })).status).toBe(200);
    expect((await fetch(`${pc.issuer}/tokens`, { method: 'POST' })).status).toBe(404);
    // A method no router knows (WebDAV's, say) is answered as any other: 405 where something
    // is served, 404 where nothing is, under /interaction/ as elsewhere (was 501, Allow empty).
    const unknownMethod: [string, number, string | null][] = [
      ['/interaction/some-uid/nothing', 404, null],
      ['/interaction/some-uid', 405, 'GET, HEAD, OPTIONS'],
      ['/interaction/some-uid/login', 405, 'GET, POST, HEAD, OPTIONS'],
      ['/token', 405, 'POST, OPTIONS'],
      ['/nothing', 404, null],
    ];
    for (const method of ['PROPFIND', 'PURGE']) {
      for (const [path, status, allow] of unknownMethod) {
        const response = await fetch(`${pc.issuer}${path}`, { method });
        expect([method, path, response.status, response.headers.get('allow')]).toEqual([method, path, status, allow]);
      }
    }
  });

  it('OPTIONS that is not a CORS preflight says what the address takes (RFC 9110 §9.3.7); preflights stay CORS', async () => {
    const cases: [string, string][] = [
      ['/token', 'POST, OPTIONS'],
      ['/token/introspection', 'POST, OPTIONS'],
      ['/me', 'GET, POST, HEAD, OPTIONS'],
      ['/jwks', 'GET, HEAD, OPTIONS'],
      ['/.well-known/openid-configuration', 'GET, HEAD, OPTIONS'],
      ['/auth', 'GET, POST, HEAD, OPTIONS'],
      ['/session/end/confirm', 'POST, OPTIONS'],
      ['/interaction/some-uid/login', 'GET, POST, HEAD, OPTIONS'],
      ['/interaction/some-uid/confirm', 'POST, OPTIONS'],
      ['/healthz', 'GET, HEAD, OPTIONS'],
    ];
    for (const [path, allow] of cases) {
      for (const headers of [{}, { origin: 'https://app.example' }] as Record<string, string>[]) {
        const response = await fetch(`${pc.issuer}${path}`, { method: 'OPTIONS', headers });
        expect([path, response.status, response.headers.get('allow')]).toEqual([path, 204, allow]);
      }
    }
    // `OPTIONS *`: the server as a whole.
    const { hostname } = new URL(pc.issuer);
    const asterisk = await rawExchange(pc.issuer, `OPTIONS * HTTP/1.1\r\nHost: ${hostname}\r\nConnection: close\r\n\r\n`);
    expect(asterisk).toMatch(/^HTTP\/1\.1 204 /);
    expect(asterisk).toMatch(/\r\nAllow: GET, HEAD, POST, OPTIONS\r\n/i);
    const preflight = await fetch(`${pc.issuer}/token`, {
      method: 'OPTIONS',
      headers: { origin: 'https://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'dpop' },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe('https://app.example');
    // The answer echoes what was asked for, so caches must keep one per question.
    expect(preflight.headers.get('access-control-allow-headers')).toBe('dpop');
    expect(preflight.headers.get('vary')).toBe('Origin, Access-Control-Request-Headers, Access-Control-Request-Method');
    // Where the provider answers no CORS, a preflight gets what the address
    // takes and no Access-Control-* header (a refusal to the browser), not a
    // 405 contradicting its own Allow.
    for (const [path, allow] of cases.filter(([path]) => /^\/(auth|session|interaction|healthz)/.test(path))) {
      const refused = await fetch(`${pc.issuer}${path}`, {
        method: 'OPTIONS',
        headers: { origin: 'https://app.example', 'access-control-request-method': 'POST' },
      });
      expect([path, refused.status, refused.headers.get('allow')]).toEqual([path, 204, allow]);
      expect([...refused.headers.keys()].filter((name) => name.startsWith('access-control-'))).toEqual([]);
    }
    expect((await fetch(`${pc.issuer}/tokens`, { method: 'OPTIONS' })).status).toBe(404);
  });

  it('userinfo without a token is 401 with WWW-Authenticate', async () => {
    const response = await fetch(`${pc.issuer}/me`);
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toMatch(/^Bearer/);
  });

  it('userinfo reads another Authorization scheme as no token: the 401 challenge without an error code (RFC 6750 §3.1), and a token in the body still counts', async () => {
    for (const authorization of [basicAuth(client.client_id, client.client_secret!), 'Basic', 'Negotiate abc', 'token x']) {
      const response = await fetch(`${pc.issuer}/me`, { headers: { authorization } });
      expect(response.status, authorization).toBe(401);
      const challenge = response.headers.get('www-authenticate')!;
      expect(challenge, authorization).toMatch(/^Bearer realm="[^"]+"/);
      expect(challenge, authorization).not.toContain('error=');
    }
    // A malformed Bearer header stays a malformed request.
    expect((await fetch(`${pc.issuer}/me`, { headers: { authorization: 'Bearer a b' } })).status).toBe(400);
    const { request, callback } = await codeFor();
    const tokens = await oidc.authorizationCodeGrant(rp, callback, { pkceCodeVerifier: request.verifier, expectedState: request.state, expectedNonce: request.nonce });
    const response = await fetch(`${pc.issuer}/me`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth('someone', 'something') },
      body: new URLSearchParams({ access_token: tokens.access_token }).toString(),
    });
    expect(response.status).toBe(200);
    expect((await response.json()).sub).toBe(tokens.claims()!.sub);
  });

  it('an Origin a client may not be called from is refused with a description in printable ASCII, in the body and the challenge (RFC 6749 §5.2, RFC 6750 §3)', async () => {
    const { request, callback } = await codeFor();
    const tokens = await oidc.authorizationCodeGrant(rp, callback, { pkceCodeVerifier: request.verifier, expectedState: request.state, expectedNonce: request.nonce });
    const origin = 'http://a"b\\c.example';
    const userinfo = await fetch(`${pc.issuer}/me`, { headers: { authorization: `Bearer ${tokens.access_token}`, origin } });
    const grant = await fetch(`${pc.issuer}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(client.client_id, client.client_secret!), origin },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: 'whatever' }).toString(),
    });
    const { host } = new URL(pc.issuer);
    const raw = await rawExchange(pc.issuer, `GET /me HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer ${tokens.access_token}\r\nOrigin: http://caf\u00e9.example\r\nConnection: close\r\n\r\n`);
    const [rawHead, rawBody] = raw.split('\r\n\r\n', 2) as [string, string];
    const answers = [
      { status: userinfo.status, challenge: userinfo.headers.get('www-authenticate'), body: (await userinfo.json()) as { error: string; error_description: string } },
      { status: grant.status, challenge: grant.headers.get('www-authenticate'), body: (await grant.json()) as { error: string; error_description: string } },
      { status: Number(rawHead.split(' ')[1]), challenge: /^www-authenticate: (.*)$/im.exec(rawHead)?.[1] ?? null, body: JSON.parse(rawBody) as { error: string; error_description: string } },
    ];
    for (const { status, challenge, body } of answers) {
      expect([status, body.error]).toEqual([400, 'invalid_request']);
      expect(body.error_description).toMatch(/^origin .* not allowed/);
      expect(body.error_description).toMatch(/^[\x20-\x21\x23-\x5b\x5d-\x7e]+$/);
      // The challenge, where there is one (UserInfo's), says the same, as one quoted string.
      if (challenge !== null) expect(challenge).toContain(`error_description="${body.error_description}"`);
    }
    expect(answers.map(({ challenge }) => challenge !== null)).toEqual([true, false, true]);
  });

  it('an Authorization header with several spaces after its scheme is read as with one (RFC 9110 §11.4, RFC 6750 §2.1: 1*SP)', async () => {
    const robot = await pc.createClient({ name: 'Spaced robot', grantTypes: ['client_credentials'] });
    const credentials = basicAuth(robot.client_id, robot.client_secret!).slice('Basic '.length);
    for (const authorization of [`Basic  ${credentials}`, `basic   ${credentials}`]) {
      const response = await fetch(`${pc.issuer}/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization },
        body: 'grant_type=client_credentials',
      });
      expect(response.status, authorization).toBe(200);
    }
    const { request, callback } = await codeFor();
    const tokens = await oidc.authorizationCodeGrant(rp, callback, { pkceCodeVerifier: request.verifier, expectedState: request.state, expectedNonce: request.nonce });
    const userinfo = await fetch(`${pc.issuer}/me`, { headers: { authorization: `Bearer   ${tokens.access_token}` } });
    expect(userinfo.status).toBe(200);
    expect((await userinfo.json()).sub).toBe(tokens.claims()!.sub);
  });

  it('an unknown path is a 404 page for a browser and JSON otherwise, not a 500', async () => {
    const response = await fetch(`${pc.issuer}/nope`);
    expect(response.status).toBe(404);
    expect(await response.json()).toMatchObject({ error: 'not_found' });
    const page = await fetch(`${pc.issuer}/nope/deeper?x=1`, { headers: { accept: 'text/html' } });
    expect(page.status).toBe(404);
    expect(page.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
    const html = await page.text();
    expect(html).toContain('<title>Page not found · ');
    expect(html).toContain('There is nothing at this address.');
    // No sign-in was under way: nothing to start again.
    expect(html).toContain('Check the address, or go back to the application you came from.');
  });

  it('the issuer\'s own address is a page saying what the service is, for people and for developers; it takes GET only', async () => {
    for (const accept of ['text/html', '*/*']) {
      const page = await fetch(`${pc.issuer}/`, { headers: { accept } });
      expect([page.status, page.headers.get('content-type')]).toEqual([200, expect.stringContaining('text/html')]);
      expect(page.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
      const html = await page.text();
      expect(html).toContain('<title>Signing in · ');
      expect(html).toContain('open the application you want to use');
      expect(html).toContain('<a href="/.well-known/openid-configuration">');
      expect(html).toContain('<a href="/account">your account page</a>');
    }
    expect((await fetch(`${pc.issuer}/`, { method: 'HEAD' })).status).toBe(200);
    const posted = await fetch(`${pc.issuer}/`, { method: 'POST', headers: { accept: 'text/html' } });
    expect([posted.status, posted.headers.get('allow')]).toEqual([405, 'GET, HEAD, OPTIONS']);
    await posted.arrayBuffer();
  });

  it('an https issuer gets Strict-Transport-Security and Secure cookies; a plain http one does not', async () => {
    expect((await fetch(`${pc.issuer}/.well-known/openid-configuration`)).headers.get('strict-transport-security')).toBeNull();
    // The default: no proxy trusted, no X-Forwarded-Proto from one.
    const secure = await startPortcullis({ ISSUER: 'https://id.example.test' });
    try {
      // TLS ends in front of the server; the browser sees the issuer's scheme.
      const response = await fetch(`http://127.0.0.1:${secure.env.PORT}/.well-known/openid-configuration`);
      expect(response.headers.get('strict-transport-security')).toBe('max-age=31536000');
      expect(((await response.json()) as { issuer: string }).issuer).toBe('https://id.example.test');
      // An https issuer implies a proxy in front: without TRUST_PROXY the start says what that costs.
      expect(secure.log.some((line) => line.includes('ISSUER is https but TRUST_PROXY is not set'))).toBe(true);
      expect(pc.log.some((line) => line.includes('TRUST_PROXY is not set'))).toBe(false);
      const app = await secure.createClient({ name: 'Behind TLS', redirectUris: ['http://127.0.0.1:9999/callback'], public: true });
      const authorize = new URL(`http://127.0.0.1:${secure.env.PORT}/auth`);
      authorize.search = new URLSearchParams({
        client_id: app.client_id, response_type: 'code', scope: 'openid', redirect_uri: 'http://127.0.0.1:9999/callback',
        code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256',
      }).toString();
      const started = await fetch(authorize, { redirect: 'manual' });
      expect(started.status).toBe(303);
      expect(started.headers.get('location')).toMatch(/^\/interaction\//);
      const cookies = started.headers.getSetCookie();
      expect(cookies.length).toBeGreaterThan(0);
      for (const cookie of cookies) expect(cookie.toLowerCase().split(/;\s*/)).toContain('secure');
    } finally {
      await secure.close();
    }
    const plain = await fetch(`${pc.issuer}/.well-known/openid-configuration`);
    expect(plain.status).toBe(200);
  });

  it('an http issuer on a host other than this machine is warned of at start; on localhost it is development, and https is the norm', async () => {
    const open = await startPortcullis({ ISSUER: 'http://id.example.test' });
    const secure = await startPortcullis({ ISSUER: 'https://id.example.test', TRUST_PROXY: 'true' });
    try {
      const said = (log: string[]) => log.filter((line) => line.includes('ISSUER is http on a host other than this machine')).map((line) => JSON.parse(line) as { level: string; issuer: string });
      expect(said(open.log)).toEqual([expect.objectContaining({ level: 'warn', issuer: 'http://id.example.test' })]);
      expect([said(pc.log), said(secure.log)]).toEqual([[], []]);
    } finally {
      await open.close();
      await secure.close();
    }
  });

  it("a trusted proxy's X-Request-Id names the request in the response and in the log; a client's own, or one of another shape, does not", async () => {
    const proxied = await startPortcullis({ TRUST_PROXY: 'true' });
    try {
      const robots = new Map<TestPortcullis, { client_id: string }>();
      for (const server of [proxied, pc]) robots.set(server, await server.createClient({ name: 'Named robot', grantTypes: ['client_credentials'] }));
      /** A wrong secret at the token endpoint: answered 401 and logged (client authentication failed) with the request's id. */
      const refused = async (server: TestPortcullis, requestId: string) => {
        const robot = robots.get(server)!;
        const response = await fetch(`${server.issuer}/token`, {
          method: 'POST',
          headers: { authorization: basicAuth(robot.client_id, 'not its secret'), 'x-request-id': requestId },
          body: new URLSearchParams({ grant_type: 'client_credentials' }),
        });
        expect(response.status).toBe(401);
        const sent = response.headers.get('x-request-id');
        const logged = server.log.filter((line) => line.includes('client authentication failed') && line.includes(robot.client_id)).map((line) => JSON.parse(line).request);
        expect(logged.at(-1)).toBe(sent);
        return sent;
      };
      const nginx = 'f3b4c0e1a2d94c5b8e7f6a1b2c3d4e5f';
      expect(await refused(proxied, nginx)).toBe(nginx);
      expect(await refused(proxied, 'Root=1-67891233-abcdef012345678912345678')).toBe('Root=1-67891233-abcdef012345678912345678');
      for (const odd of ['two words', 'x'.repeat(129), '"quoted"', 'a,b']) {
        expect(await refused(proxied, odd)).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      }
      expect(await refused(pc, nginx)).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    } finally {
      await proxied.close();
    }
  });

  it('every address the server names is on the issuer, whatever Host or X-Forwarded-Host a request carries', async () => {
    const proxied = await startPortcullis({ TRUST_PROXY: 'true' });
    try {
      const forged: Record<string, string>[] = [{ host: 'evil.example' }, { 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'https' }];
      for (const headers of forged) {
        for (const server of [pc, proxied]) {
          // node:http, which sends the Host header as given (fetch would replace it).
          const discovery = await new Promise<Record<string, unknown>>((resolve, reject) => {
            http
              .get({ host: '127.0.0.1', port: Number(server.env.PORT), path: '/.well-known/openid-configuration', headers }, (response) => {
                let body = '';
                response.setEncoding('utf8').on('data', (chunk: string) => (body += chunk)).on('end', () => resolve(JSON.parse(body)));
              })
              .on('error', reject);
          });
          const urls = Object.entries(discovery).filter(([key, value]) => key.endsWith('_endpoint') || key.endsWith('_uri') || key === 'issuer');
          expect(urls.length).toBeGreaterThan(5);
          for (const [, value] of urls) expect(String(value).startsWith(`${server.issuer}/`) || value === server.issuer).toBe(true);
        }
      }
      // A request target in absolute form names a host too: it counts no more than Host.
      const raw = await new Promise<string>((resolve, reject) => {
        const socket = net.connect(Number(pc.env.PORT), '127.0.0.1', () => {
          socket.write('GET http://evil.example/.well-known/openid-configuration HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n');
        });
        let received = '';
        socket.setEncoding('utf8').on('data', (chunk: string) => (received += chunk)).on('end', () => resolve(received)).on('error', reject);
      });
      expect(raw).toMatch(/^HTTP\/1\.1 200/);
      const body = JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4)) as Record<string, string>;
      expect(body.authorization_endpoint).toBe(`${pc.issuer}/auth`);
      expect(body.token_endpoint).toBe(`${pc.issuer}/token`);
      expect(raw).not.toContain('evil.example');
    } finally {
      await proxied.close();
    }
  });

  it('a logout request with a NUL character gets an error page or OAuth JSON, with the security headers', async () => {
    const page = await fetch(`${pc.issuer}/session/end?state=%00`, { headers: { accept: 'text/html' } });
    expect(page.status).toBe(400);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(page.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
    expect(await page.text()).toContain('The request could not be understood');
    const json = await fetch(`${pc.issuer}/session/end?state=%00`, { headers: { accept: 'application/json' } });
    expect(json.status).toBe(400);
    expect(await json.json()).toMatchObject({ error: 'invalid_request' });
  });

  it('a client that sends garbage after a request cannot write error lines to the log', async () => {
    const errorsBefore = pc.errors.length;
    const { host, port } = new URL(pc.issuer);
    const socket = net.connect(Number(port), host.split(':')[0]);
    socket.write('GET /jwks HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\r\n\r\n');
    socket.resume();
    await new Promise((resolve) => socket.on('close', resolve));
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(pc.errors.slice(errorsBefore)).toEqual([]);
  });

  it('requests the HTTP parser refuses get their status with an OAuth error body saying why, not an empty one', async () => {
    const { hostname } = new URL(pc.issuer);
    const exchange = (bytes: string) => rawExchange(pc.issuer, bytes);
    const parse = (raw: string) => {
      const [head, body] = raw.split('\r\n\r\n', 2) as [string, string];
      const type = /^content-type: (.*)$/im.exec(head)?.[1];
      return { status: Number(head.split(' ')[1]), type, body: JSON.parse(body) as { error: string; error_description: string } };
    };

    const garbage = parse(await exchange('HELLO THERE\r\n\r\n'));
    expect(garbage).toMatchObject({ status: 400, type: expect.stringContaining('application/json'), body: { error: 'invalid_request' } });
    expect(garbage.body.error_description).toContain('not valid HTTP');

    const longLine = `GET /auth?client_id=${client.client_id}&state=${'s'.repeat(20_000)} HTTP/1.1\r\nHost: ${hostname}\r\n\r\n`;
    const tooLong = parse(await exchange(longLine));
    expect(tooLong).toMatchObject({ status: 431, type: expect.stringContaining('application/json'), body: { error: 'invalid_request' } });
    expect(tooLong.body.error_description).toMatch(/larger than the server accepts \(16 KiB\).*POST/);

    // A well-formed request on the same server is unaffected.
    expect((await fetch(`${pc.issuer}/jwks`)).status).toBe(200);
  });

  it('requests HTTP/1.1 says a server must refuse (Host missing, repeated or malformed; Authorization or Content-Type repeated; an unmet Expect; CONNECT to a server that is no proxy) get 400, 417 or 501 with a body saying why', async () => {
    const { host } = new URL(pc.issuer);
    const parse = (raw: string) => {
      const [head, body] = raw.split('\r\n\r\n', 2) as [string, string];
      return { status: Number(head.split(' ')[1]), type: /^content-type: (.*)$/im.exec(head)?.[1], body: JSON.parse(body) as { error: string; error_description: string } };
    };
    const refusals: [string, number, string][] = [
      ['GET /jwks HTTP/1.1\r\n\r\n', 400, 'needs a Host header'],
      [`GET /jwks HTTP/1.1\r\nHost: ${host}\r\nHost: evil.example\r\n\r\n`, 400, 'more than one Host header'],
      ['GET /jwks HTTP/1.1\r\nHost: a b\r\n\r\n', 400, 'not a host name or address'],
      // A port is digits. (Connection: close: were it taken, the answer would not keep the connection open.)
      ['GET /jwks HTTP/1.1\r\nHost: localhost:abc\r\nConnection: close\r\n\r\n', 400, 'not a host name or address'],
      // Node would keep the first and drop the second; a proxy in front might act on the other.
      [`GET /me HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer a\r\nauthorization: Bearer b\r\n\r\n`, 400, 'more than one Authorization header'],
      [`POST /token HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Type: application/json\r\nContent-Length: 3\r\n\r\na=b`, 400, 'more than one Content-Type header'],
      // However many other headers come between (Node's parser drops every one past its count, 2000 by default).
      [`GET /me HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer a\r\n${'x:1\r\n'.repeat(2100)}authorization: Bearer b\r\n\r\n`, 400, 'more than one Authorization header'],
      [`GET /jwks HTTP/1.1\r\nHost: ${host}\r\n${'x:1\r\n'.repeat(2100)}Host: evil.example\r\n\r\n`, 400, 'more than one Host header'],
      [`POST /token HTTP/1.1\r\nHost: ${host}\r\nExpect: 200-ok\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 3\r\n\r\na=b`, 417, 'no expectation but 100-continue'],
      ['CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n', 501, 'this server is not a proxy'],
      // Trailer fields too large: not the request line's fault.
      [`POST /token HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n3\r\na=b\r\n0\r\nX-Trailer: ${'t'.repeat(20_000)}\r\n\r\n`, 431, 'the trailer fields after the request body are larger'],
      // Not asked for a body it would refuse (no 100 Continue first).
      [`POST /token HTTP/1.1\r\nHost: ${host}\r\nExpect: 100-continue\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 70000\r\n\r\n`, 413, 'larger than 56 KiB'],
    ];
    for (const [request, status, description] of refusals) {
      const answer = parse(await rawExchange(pc.issuer, request));
      expect(answer).toMatchObject({ status, type: expect.stringContaining('application/json'), body: { error: 'invalid_request' } });
      expect(answer.body.error_description).toContain(description);
      // RFC 6749 §5.2: an error_description holds printable ASCII only.
      expect(answer.body.error_description).toMatch(/^[\x20-\x21\x23-\x5b\x5d-\x7e]+$/);
    }
    // What HTTP allows still works: HTTP/1.0 needs no Host, a bracketed address is a host, and 100-continue is met,
    // up to a body of 56 KiB exactly.
    const largest = `grant_type=client_credentials&x=${'a'.repeat(56 * 1024 - 32)}`;
    const allowed = [
      'GET /jwks HTTP/1.0\r\n\r\n',
      `GET /jwks HTTP/1.1\r\nHost: [::1]:${new URL(pc.issuer).port}\r\nConnection: close\r\n\r\n`,
      `POST /token HTTP/1.1\r\nHost: ${host}\r\nExpect: 100-continue\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 29\r\nConnection: close\r\n\r\ngrant_type=client_credentials`,
      `POST /token HTTP/1.1\r\nHost: ${host}\r\nExpect: 100-continue\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${largest.length}\r\nConnection: close\r\n\r\n${largest}`,
    ];
    const statuses = await Promise.all(allowed.map(async (request) => (await rawExchange(pc.issuer, request)).match(/HTTP\/1\.[01] \d{3}/g)));
    expect(statuses).toEqual([['HTTP/1.1 200'], ['HTTP/1.1 200'], ['HTTP/1.1 100', 'HTTP/1.1 401'], ['HTTP/1.1 100', 'HTTP/1.1 401']]);
  });

  it('a request answered before its body arrived gets that one answer: the rest of its body, late or malformed, brings no second response', async () => {
    const { hostname, port } = new URL(pc.issuer);
    /** Everything received for `first`, and then for `then`, written after the first answer. */
    const conversation = (first: string, then: string) =>
      new Promise<string>((resolve, reject) => {
        const socket = net.connect(Number(port), hostname);
        let received = '';
        socket.setEncoding('utf8');
        socket.on('data', (chunk: string) => {
          const answeredBefore = received.includes('\r\n\r\n');
          received += chunk;
          // Once the first response has been written in full (a moment after its head arrives).
          if (!answeredBefore && received.includes('\r\n\r\n')) setTimeout(() => socket.write(then), 200);
        });
        socket.on('error', reject);
        socket.on('close', () => resolve(received));
        socket.write(first);
      });
    const statusLines = (raw: string) => raw.match(/HTTP\/1\.1 \d{3}/g);
    const errorsBefore = pc.errors.length;

    // PUT is refused (405) without its body being read; Node then reads on to discard it. Here that
    // chunked body turns malformed, which the parser refuses: the refusal is about the request
    // already answered (as is the 408 when a promised Content-Length never arrives).
    const put = `PUT /token HTTP/1.1\r\nHost: ${hostname}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n`;
    expect(statusLines(await conversation(put, 'ZZZ\r\nnot a chunk\r\n'))).toEqual(['HTTP/1.1 405']);
    expect(pc.errors.slice(errorsBefore)).toEqual([]);

    // A malformed request after one answered in full is a new request: refused, with a body.
    const get = `GET /jwks HTTP/1.1\r\nHost: ${hostname}\r\n\r\n`;
    expect(statusLines(await conversation(get, 'HELLO THERE\r\n\r\n'))).toEqual(['HTTP/1.1 200', 'HTTP/1.1 400']);
  });

  it('what follows a whole request on its connection (bytes that are not HTTP, a request after Connection: close) does not take the place of its answer', async () => {
    const { hostname } = new URL(pc.issuer);
    const statusLines = (raw: string) => raw.match(/HTTP\/1\.1 \d{3}/g);
    const form = 'grant_type=client_credentials';
    const grant = `POST /token HTTP/1.1\r\nHost: ${hostname}\r\nAuthorization: ${basicAuth(client.client_id, client.client_secret!)}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: ${form.length}\r\n\r\n${form}`;
    // The client credentials grant is not the client's; the answer is an error, but its own.
    const answered = await rawExchange(pc.issuer, `${grant}HELLO THERE\r\n\r\n`);
    expect(statusLines(answered)).toEqual(['HTTP/1.1 400']);
    expect(answered).toContain('"error":"unauthorized_client"');
    expect(answered).not.toContain('not valid HTTP');
    // RFC 9112 §9.6: the request saying close is answered, and nothing after it.
    const closing = `GET /jwks HTTP/1.1\r\nHost: ${hostname}\r\nConnection: close\r\n\r\n`;
    expect(statusLines(await rawExchange(pc.issuer, `${closing}GET /jwks HTTP/1.1\r\nHost: ${hostname}\r\n\r\n`))).toEqual(['HTTP/1.1 200']);
  });

  it('a query string of more than 100 parameters is refused before it is parsed (its parse takes time that grows with their square): a page for a browser, JSON for a client', async () => {
    const crowded = (count: number) => Array.from({ length: count }, (_, i) => `x${i}=1`).join('&');
    // Seven thousand, within the 16 KiB the request line and headers may take.
    const page = await fetch(`${pc.issuer}/auth?client_id=${client.client_id}&${'a&'.repeat(7_000)}`, { headers: { accept: 'text/html' } });
    expect(page.status).toBe(400);
    expect(page.headers.get('content-type')).toContain('text/html');
    expect(await page.text()).toContain('more than 100 parameters');
    for (const path of ['/me', '/session/end', '/.well-known/openid-configuration']) {
      const refused = await fetch(`${pc.issuer}${path}?${crowded(101)}`);
      expect([path, refused.status, await refused.json()]).toEqual([path, 400, { error: 'invalid_request', error_description: 'the query string holds more than 100 parameters' }]);
    }
    // The shortest query of 101 parameters (201 characters) is counted too.
    const shortest = await fetch(`${pc.issuer}/.well-known/openid-configuration?${'a&'.repeat(100)}a`);
    expect([shortest.status, await shortest.json()]).toEqual([400, { error: 'invalid_request', error_description: 'the query string holds more than 100 parameters' }]);
    // An authorization request with a hundred parameters in all is served.
    const request = new URL((await authorizationRequest(rp, 'openid')).url);
    const extra = 100 - [...request.searchParams.keys()].length;
    const served = await visit(new UserAgent(), `${request.href}&${crowded(extra)}`);
    expect(pageKind(served)).toBe('login');
  });

  it('pipelined requests are answered in order; a connection that sends hundreds without reading the answers is closed', async () => {
    const { hostname } = new URL(pc.issuer);
    const get = (path: string) => `GET ${path} HTTP/1.1\r\nHost: ${hostname}\r\n\r\n`;
    const few = await rawExchange(pc.issuer, `${get('/healthz')}${get('/jwks')}${get('/.well-known/openid-configuration')}${get('/healthz').replace('\r\n\r\n', '\r\nConnection: close\r\n\r\n')}`);
    expect(few.match(/HTTP\/1\.1 \d{3}/g)).toEqual(['HTTP/1.1 200', 'HTTP/1.1 200', 'HTTP/1.1 200', 'HTTP/1.1 200']);
    expect(few.indexOf('"keys"')).toBeLessThan(few.indexOf('"issuer"'));
    // Five hundred at once, in one write: closed once 32 are in hand, the rest never handled.
    const flood = await rawExchange(pc.issuer, get('/.well-known/openid-configuration').repeat(500));
    expect(flood.match(/HTTP\/1\.1 200/g)?.length ?? 0).toBeLessThanOrEqual(32);
    // The bound exactly: 32 in one write are all answered; a 33rd closes the connection before it is.
    const pipelined = (count: number) => `${get('/healthz').repeat(count - 1)}${get('/healthz').replace('\r\n\r\n', '\r\nConnection: close\r\n\r\n')}`;
    expect((await rawExchange(pc.issuer, pipelined(32))).match(/HTTP\/1\.1 200/g)?.length).toBe(32);
    expect((await rawExchange(pc.issuer, pipelined(33))).match(/HTTP\/1\.1 200/g)?.length ?? 0).toBeLessThan(33);
    expect((await fetch(`${pc.issuer}/healthz`)).status).toBe(200);
  });

  it('a request whose headers never finish arriving is answered 408 within seconds, not held for a minute (slowloris)', async () => {
    const { hostname } = new URL(pc.issuer);
    const started = Date.now();
    // Headers sent, but never the blank line that ends them.
    const answer = await rawExchange(pc.issuer, `POST /token HTTP/1.1\r\nHost: ${hostname}\r\nContent-Type: application/x-www-form-urlencoded\r\n`);
    // HEADERS_TIMEOUT_MS is 20 s, checked every second; Node's own default would be 60 s. The
    // margin is wide: a CI run on a loaded machine answered after 27.8 s (the server shares
    // this process's event loop).
    expect(Date.now() - started).toBeLessThan(45_000);
    expect(answer).toMatch(/^HTTP\/1\.1 408 /);
    expect(JSON.parse(answer.split('\r\n\r\n')[1]!)).toMatchObject({ error: 'invalid_request', error_description: 'the request did not arrive in time' });
  }, 75_000);

  it('a huge form body is refused as 413 Content Too Large, saying so, announced or chunked, as JSON or a page', async () => {
    const form = `grant_type=client_credentials&token=x&x=${'a'.repeat(200_000)}`;
    // With Content-Length, and chunked (no length known until the library has read past its limit).
    const bodies: [string, () => RequestInit][] = [
      ['announced', () => ({ body: form })],
      ['chunked', () => ({ body: new Blob([form]).stream(), duplex: 'half' } as RequestInit)],
    ];
    const send = (path: string, how: () => RequestInit, accept = '*/*') =>
      fetch(`${pc.issuer}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(client.client_id, client.client_secret!), accept },
        ...how(),
      });
    for (const [kind, how] of bodies) {
      for (const path of ['/token', '/token/introspection', '/token/revocation', '/request', '/me', '/session/end']) {
        const response = await send(path, how);
        expect([kind, path, response.status]).toEqual([kind, path, 413]);
        expect(await response.json()).toMatchObject({ error: 'invalid_request', error_description: expect.stringContaining('larger than 56 KiB') });
        if (path === '/me') expect(response.headers.get('www-authenticate')).toContain('error_description="the request body is larger than 56 KiB"');
      }
      // Where a browser is sent, a page that says so (always, at the authorization endpoint).
      for (const [path, accept] of [['/auth', 'text/html'], ['/auth', '*/*'], ['/session/end', 'text/html']]) {
        const response = await send(path!, how, accept);
        expect([kind, path, response.status]).toEqual([kind, path, 413]);
        expect(await response.text()).toContain('larger than 56 KiB');
      }
    }
  });
});
