// Request objects (OpenID Connect Core §6.1, RFC 9101): a client made with
// its keys sends an authorization request's parameters as a JWT it signed,
// with openid-client as an app would (buildAuthorizationUrlWithJAR), straight
// to /auth or pushed (RFC 9126), and only those parameters count.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { decodeJwt, exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPortcullis, type TestPortcullis } from '../support/portcullis.js';
import { allow, pageKind, REDIRECT_URI, signIn, visit } from '../support/relying-party.js';
import { UserAgent, type Page } from '../support/user-agent.js';

const erin = { email: 'erin@example.com', password: 'erin has a long password' };

let pc: TestPortcullis;
let dir: string;

beforeAll(async () => {
  pc = await startPortcullis();
  await pc.createUser(erin.email, erin.password, 'Erin Example');
  dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-request-objects-'));
});

afterAll(async () => {
  expect(pc?.errors ?? []).toEqual([]);
  await pc?.close();
  rmSync(dir, { recursive: true, force: true });
});

type Key = { privateKey: CryptoKey; kid: string; alg: string; publicJwk: JWK };

async function keyPair(alg: 'ES256' | 'RS256' | 'EdDSA', kid: string): Promise<Key> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return { privateKey, kid, alg, publicJwk: { ...(await exportJWK(publicKey)), kid } };
}

/** A client made with `key`'s public half (--jwks-file), allowed email and profile. */
async function clientWithKey(name: string, key: Key, extra: string[] = []) {
  const file = path.join(dir, `${randomUUID()}.json`);
  writeFileSync(file, JSON.stringify({ keys: [key.publicJwk] }));
  const created = await pc.cli([
    'client', 'create', '--name', name, '--redirect-uri', REDIRECT_URI, '--scope', 'openid email profile',
    '--grant-type', 'authorization_code', '--jwks-file', file, ...extra, '--json',
  ]);
  expect(created.code, created.stderr).toBe(0);
  const { client_id: clientId } = JSON.parse(created.stdout) as { client_id: string };
  const rp = await oidc.discovery(new URL(pc.issuer), clientId, undefined, oidc.PrivateKeyJwt({ key: key.privateKey, kid: key.kid }), {
    execute: [oidc.allowInsecureRequests],
  });
  return { clientId, rp };
}

/** The parameters of a code flow with PKCE, and what the callback is checked against. */
async function codeRequest(extra: Record<string, string> = {}) {
  const verifier = oidc.randomPKCECodeVerifier();
  const checks = { pkceCodeVerifier: verifier, expectedState: oidc.randomState(), expectedNonce: oidc.randomNonce() };
  const parameters: Record<string, string> = {
    redirect_uri: REDIRECT_URI,
    scope: 'openid',
    state: checks.expectedState,
    nonce: checks.expectedNonce,
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    ...extra,
  };
  return { parameters, checks };
}

/** Signs in and consents until the callback. */
async function throughPages(ua: UserAgent, first: Page): Promise<{ page: Page; seen: string[] }> {
  let page = first;
  const seen: string[] = [];
  for (let step = 0; step < 4 && pageKind(page) !== 'callback'; step++) {
    seen.push(pageKind(page));
    if (pageKind(page) === 'login') page = await signIn(ua, page, erin.email, erin.password);
    else if (pageKind(page) === 'consent') page = await allow(ua, page);
    else throw new Error(`unexpected page ${page.url} (${page.status}):\n${page.html.replace(/<style[\s\S]*?<\/style>/, '').slice(0, 3000)}`);
  }
  return { page, seen };
}

/** A request object made by hand: `claims` signed with `key` under `header`, as given. */
function signed(key: { privateKey: CryptoKey; alg: string; kid: string }, claims: Record<string, unknown>, header: Record<string, unknown> = {}): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: key.alg, kid: key.kid, ...header }).sign(key.privateKey);
}

/** What a request object holds for `clientId`, as openid-client writes it (oauth4webapi's issueRequestObject). */
function objectClaims(clientId: string, parameters: Record<string, unknown>): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000);
  return { ...parameters, client_id: clientId, response_type: 'code', iss: clientId, aud: pc.issuer, iat: now, nbf: now, exp: now + 60, jti: randomUUID() };
}

/** GET /auth with these query parameters; the redirect or the page, not followed. */
async function authorize(query: Record<string, string>) {
  const response = await fetch(`${pc.issuer}/auth?${new URLSearchParams(query)}`, { redirect: 'manual' });
  const location = response.headers.get('location');
  return { status: response.status, back: location ? new URL(location, pc.issuer) : undefined, html: location ? '' : await response.text() };
}

describe('request objects', () => {
  it('discovery takes them signed with a client key’s algorithms, not unsigned or with a secret, and not by reference', async () => {
    const metadata = (await (await fetch(`${pc.issuer}/.well-known/openid-configuration`)).json()) as Record<string, unknown>;
    expect(metadata).toMatchObject({
      request_parameter_supported: true,
      request_uri_parameter_supported: false,
      request_object_signing_alg_values_supported: ['ES256', 'Ed25519', 'EdDSA', 'PS256', 'RS256'],
    });
    expect(metadata).not.toHaveProperty('require_signed_request_object');
  });

  it('a client with keys signs people in with its parameters signed (openid-client), and only the signed ones count', async () => {
    const key = await keyPair('ES256', 'jar-1');
    const { clientId, rp } = await clientWithKey('Signs requests', key);
    const { parameters, checks } = await codeRequest({ scope: 'openid profile', claims: JSON.stringify({ id_token: { email: { essential: true } } }) });
    const url = await oidc.buildAuthorizationUrlWithJAR(rp, parameters, { key: key.privateKey, kid: key.kid });
    expect([...url.searchParams.keys()].sort()).toEqual(['client_id', 'request']);
    expect(decodeJwt(url.searchParams.get('request')!)).toMatchObject({ iss: clientId, aud: pc.issuer, redirect_uri: REDIRECT_URI });
    // Beside it, parameters of another request: a page that rewrote the URL, say. RFC 9101 §6.3: only the object's are used.
    url.searchParams.set('scope', 'openid email profile');
    url.searchParams.set('state', 'rewritten');
    url.searchParams.set('prompt', 'none');
    url.searchParams.set('claims', JSON.stringify({ userinfo: { name: null } }));

    const ua = new UserAgent();
    const { page, seen } = await throughPages(ua, await visit(ua, url));
    expect(seen).toEqual(['login', 'consent']);
    const tokens = await oidc.authorizationCodeGrant(rp, new URL(page.url), checks);
    expect(tokens.scope).toBe('openid profile');
    expect(tokens.claims()).toMatchObject({ sub: expect.any(String), name: 'Erin Example', email: erin.email });
    const userinfo = await oidc.fetchUserInfo(rp, tokens.access_token, tokens.claims()!.sub);
    expect(userinfo).not.toHaveProperty('email');
  });

  it('pushed as a request object (RFC 9126 §3): checked when pushed, and the sign-in uses it', async () => {
    const key = await keyPair('RS256', 'jar-par');
    const { rp } = await clientWithKey('Pushes signed requests', key);
    const { parameters, checks } = await codeRequest({ scope: 'openid email' });
    const signedUrl = await oidc.buildAuthorizationUrlWithJAR(rp, parameters, { key: key.privateKey, kid: key.kid });
    const pushed = await oidc.buildAuthorizationUrlWithPAR(rp, signedUrl.searchParams);
    expect(pushed.searchParams.get('request_uri')).toMatch(/^urn:ietf:params:oauth:request_uri:/);
    const ua = new UserAgent();
    const { page } = await throughPages(ua, await visit(ua, pushed));
    const tokens = await oidc.authorizationCodeGrant(rp, new URL(page.url), checks);
    expect(tokens.scope).toBe('openid email');

    // A stranger's signature is refused at the PAR endpoint, before anything is stored.
    const stranger = await keyPair('RS256', 'jar-par');
    const forged = await oidc.buildAuthorizationUrlWithJAR(rp, (await codeRequest()).parameters, { key: stranger.privateKey, kid: stranger.kid });
    await expect(oidc.buildAuthorizationUrlWithPAR(rp, forged.searchParams)).rejects.toMatchObject({ error: 'invalid_request_object' });
  });

  it('refuses an object not signed by one of the client’s keys, or not made for this server and client, with invalid_request_object', async () => {
    const key = await keyPair('ES256', 'jar-2');
    const { clientId } = await clientWithKey('Checked objects', key);
    const { parameters } = await codeRequest();
    const good = objectClaims(clientId, parameters);
    // Sent with the outer redirect_uri a client would send: the refusal goes back to it, with
    // the object's state (the library's choice: the client's own, where it put it).
    const send = async (request: string) => {
      const { status, back } = await authorize({ client_id: clientId, response_type: 'code', scope: 'openid', redirect_uri: REDIRECT_URI, state: 'outer', request });
      expect(status).toBe(303);
      return [back!.origin + back!.pathname, back!.searchParams.get('error'), back!.searchParams.get('state')];
    };
    const refused = [REDIRECT_URI, 'invalid_request_object', parameters.state];

    const stranger = await keyPair('ES256', 'jar-2');
    expect(await send(await signed(stranger, good))).toEqual(refused);
    const [head, , signature] = (await signed(key, good)).split('.');
    const tampered = Buffer.from(JSON.stringify({ ...good, scope: 'openid email' })).toString('base64url');
    expect(await send(`${head}.${tampered}.${signature}`)).toEqual(refused);
    const none = [{ alg: 'none' }, good].map((part) => Buffer.from(JSON.stringify(part)).toString('base64url')).join('.');
    expect(await send(`${none}.`)).toEqual(refused);
    const hmac = await new SignJWT(good).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(JSON.stringify(key.publicJwk)));
    expect(await send(hmac)).toEqual(refused);
    expect(await send(await signed(key, { ...good, aud: 'https://elsewhere.example' }))).toEqual(refused);
    expect(await send(await signed(key, { ...good, iss: 'someone-else' }))).toEqual(refused);
    const { aud: _aud, ...withoutAudience } = good;
    expect(await send(await signed(key, withoutAudience))).toEqual(refused);
    expect(await send(await signed(key, { ...good, exp: Math.floor(Date.now() / 1000) - 120 }))).toEqual(refused);
    expect(await send(await signed(key, { ...good, nbf: Math.floor(Date.now() / 1000) + 3600 }))).toEqual(refused);
    expect(await send(await signed(key, { ...good, request_uri: 'https://elsewhere.example/object' }))).toEqual(refused);
    // Typed as another kind of JWT the client's key signs (RFC 9101 §10.8).
    expect(await send(await signed(key, good, { typ: 'dpop+jwt' }))).toEqual(refused);
    expect(await send(await signed(key, good, { typ: 'logout+jwt' }))).toEqual(refused);

    // The same object untouched, typed as a request object or not at all, is taken: the sign-in begins.
    for (const header of [{}, { typ: 'oauth-authz-req+jwt' }, { typ: 'JWT' }]) {
      const { status, back } = await authorize({ client_id: clientId, request: await signed(key, { ...good, jti: randomUUID() }, header) });
      expect([status, back?.pathname]).toEqual([303, expect.stringMatching(/^\/interaction\//)]);
    }
  });

  it('a client without keys is told it has none to sign with; one for another client is refused', async () => {
    const key = await keyPair('ES256', 'jar-3');
    const { clientId: keyed } = await clientWithKey('Has keys', key);
    const secret = await pc.createClient({ name: 'Has a secret', redirectUris: [REDIRECT_URI] });
    const { parameters } = await codeRequest();
    const { status, back } = await authorize({ client_id: secret.client_id, redirect_uri: REDIRECT_URI, response_type: 'code', scope: 'openid', state: 's', request: await signed(key, objectClaims(secret.client_id, parameters)) });
    expect([status, back?.searchParams.get('error'), back?.searchParams.get('error_description')]).toEqual([
      303,
      'invalid_request_object',
      "this client has no keys registered to check a request object's signature with (a client made with --jwks-file has): send the parameters themselves",
    ]);
    // Another client's object, sent under this one's client_id: its own signature does not make it
    // this client's. Refused at this client's only redirect URI, which a request may leave out.
    const theirs = await authorize({ client_id: secret.client_id, request: await signed(key, objectClaims(keyed, parameters)) });
    expect([theirs.status, theirs.back?.searchParams.get('error'), theirs.back?.searchParams.get('error_description')]).toEqual([
      303,
      'invalid_request_object',
      'request client_id must equal the one in request parameters',
    ]);
  });

  it('--require-jar: only signed requests, at /auth and PAR; made only for a client with keys that signs people in; dropped with --no-require-jar', async () => {
    const key = await keyPair('ES256', 'jar-4');
    const { clientId, rp } = await clientWithKey('Signs every request', key, ['--require-jar']);
    const shown = await pc.cli(['client', 'show', clientId]);
    expect(shown.stdout).toMatch(/^requires: +signed requests \(JAR\)$/m);
    expect(JSON.parse((await pc.cli(['client', 'show', clientId, '--json'])).stdout)).toMatchObject({ require_signed_request_object: true, require_pushed_authorization_requests: false });

    // Plain parameters: refused at the redirect URI before anyone signs in, and at the PAR endpoint.
    const { parameters, checks } = await codeRequest();
    const plain = await authorize({ client_id: clientId, response_type: 'code', ...parameters });
    expect([plain.status, plain.back?.searchParams.get('error'), plain.back?.searchParams.get('error_description'), plain.back?.searchParams.get('state')]).toEqual([
      303, 'invalid_request', 'Request Object must be used by this client', parameters.state,
    ]);
    await expect(oidc.buildAuthorizationUrlWithPAR(rp, parameters)).rejects.toMatchObject({ error: 'invalid_request' });

    // Signed, straight or pushed: taken.
    const ua = new UserAgent();
    const { page } = await throughPages(ua, await visit(ua, await oidc.buildAuthorizationUrlWithJAR(rp, parameters, { key: key.privateKey, kid: key.kid })));
    expect((await oidc.authorizationCodeGrant(rp, new URL(page.url), checks)).access_token).toBeTruthy();
    const again = await codeRequest();
    const pushed = await oidc.buildAuthorizationUrlWithPAR(rp, (await oidc.buildAuthorizationUrlWithJAR(rp, again.parameters, { key: key.privateKey, kid: key.kid })).searchParams);
    const { page: pushedPage } = await throughPages(ua, await visit(ua, pushed));
    expect((await oidc.authorizationCodeGrant(rp, new URL(pushedPage.url), again.checks)).access_token).toBeTruthy();

    // Not for a client with a secret or none, nor one that signs nobody in.
    const refusals = [
      [['client', 'create', '--name', 'Secret', '--redirect-uri', REDIRECT_URI, '--require-jar'], '--require-jar is for a client made with keys (--jwks-file): its request objects are signed with one'],
      [['client', 'create', '--name', 'Public', '--public', '--redirect-uri', REDIRECT_URI, '--require-jar'], '--require-jar is for a client made with keys (--jwks-file): its request objects are signed with one'],
      [['client', 'update', clientId, '--grant-type', 'client_credentials'], '--require-jar is for a client that signs people in (authorization_code or device_code): only authorization requests are signed (client update --no-require-jar drops the requirement)'],
    ] as const;
    for (const [args, message] of refusals) {
      const result = await pc.cli([...args]);
      expect([result.code, result.stderr]).toEqual([1, `portcullis: ${message}\n`]);
    }
    const dropped = await pc.cli(['client', 'update', clientId, '--no-require-jar', '--json']);
    expect(JSON.parse(dropped.stdout)).toMatchObject({ require_signed_request_object: false });
    const next = await codeRequest();
    expect((await authorize({ client_id: clientId, response_type: 'code', ...next.parameters })).back?.pathname).toMatch(/^\/interaction\//);
  });

  it('a sign-in begun with plain parameters before --require-jar was registered ends in invalid_request; a signed one goes on', async () => {
    const key = await keyPair('ES256', 'jar-5');
    const { clientId, rp } = await clientWithKey('Tightened', key);
    const ua = new UserAgent();
    const plain = await codeRequest();
    const plainPage = await visit(ua, oidc.buildAuthorizationUrl(rp, plain.parameters));
    expect(pageKind(plainPage)).toBe('login');
    const signedRequest = await codeRequest();
    const otherUa = new UserAgent();
    const signedPage = await visit(otherUa, await oidc.buildAuthorizationUrlWithJAR(rp, signedRequest.parameters, { key: key.privateKey, kid: key.kid }));
    expect(pageKind(signedPage)).toBe('login');

    expect((await pc.cli(['client', 'update', clientId, '--require-jar'])).code).toBe(0);
    const refused = await signIn(ua, plainPage, erin.email, erin.password);
    const back = new URL(refused.url);
    expect([back.origin + back.pathname, back.searchParams.get('error'), back.searchParams.get('error_description')]).toEqual([
      REDIRECT_URI, 'invalid_request', 'the client must now sign its authorization requests (request objects, RFC 9101)',
    ]);
    const { page } = await throughPages(otherUa, signedPage);
    expect((await oidc.authorizationCodeGrant(rp, new URL(page.url), signedRequest.checks)).access_token).toBeTruthy();
  });

  // README (Requirements): "so does a sign-in begun with plain parameters and still in
  // progress when the requirement was registered (not a device's ...)". A pushed request's
  // parameters are plain too (oidc-client's buildAuthorizationUrlWithPAR without JAR).
  it('a sign-in begun with plain parameters pushed (PAR) before --require-jar was registered ends in invalid_request (review BH)', async () => {
    const key = await keyPair('ES256', 'jar-bh-1');
    const { clientId, rp } = await clientWithKey('Tightened after a push', key);
    const ua = new UserAgent();
    const plain = await codeRequest();
    const page = await visit(ua, await oidc.buildAuthorizationUrlWithPAR(rp, plain.parameters));
    expect(pageKind(page)).toBe('login');
    expect((await pc.cli(['client', 'update', clientId, '--require-jar'])).code).toBe(0);
    const refused = await signIn(ua, page, erin.email, erin.password);
    expect(pageKind(refused)).toBe('callback');
    expect(new URL(refused.url).searchParams.get('error')).toBe('invalid_request');
  });

  // README (Requirements): with --require-jar "plain parameters get invalid_request ... at the
  // redirect URI from /auth": a plain pushed request, pushed a moment before, is plain parameters.
  it('a plain pushed request used at /auth after --require-jar was registered is refused (review BH)', async () => {
    const key = await keyPair('ES256', 'jar-bh-2');
    const { clientId, rp } = await clientWithKey('Tightened before use', key);
    const plain = await codeRequest();
    const pushed = await oidc.buildAuthorizationUrlWithPAR(rp, plain.parameters);
    expect((await pc.cli(['client', 'update', clientId, '--require-jar'])).code).toBe(0);
    const { status, back } = await authorize(Object.fromEntries(pushed.searchParams));
    expect([status, back?.searchParams.get('error')]).toEqual([303, 'invalid_request']);
  });

  it('a signed request’s pages do not send its parameters again unsigned: no restart field, and "Use another account" stays in the sign-in', async () => {
    const key = await keyPair('ES256', 'jar-6');
    const { rp } = await clientWithKey('Kept signed', key, ['--require-jar']);
    const ua = new UserAgent();
    const first = await codeRequest();
    const login = await visit(ua, await oidc.buildAuthorizationUrlWithJAR(rp, first.parameters, { key: key.privateKey, kid: key.kid }));
    expect(pageKind(login)).toBe('login');
    expect(login.html).not.toContain('name="restart"');
    const { page } = await throughPages(ua, login);
    await oidc.authorizationCodeGrant(rp, new URL(page.url), first.checks);

    // Signed in already: the consent page for a new scope offers another account within this sign-in.
    const second = await codeRequest({ scope: 'openid email' });
    const consent = await visit(ua, await oidc.buildAuthorizationUrlWithJAR(rp, second.parameters, { key: key.privateKey, kid: key.kid }));
    expect(pageKind(consent)).toBe('consent');
    expect(consent.html).not.toContain('name="restart"');
    const other = /<a href="([^"]+)">(?:Not you\? )?Use another account<\/a>/.exec(consent.html);
    expect(other?.[1]).toMatch(/^\/interaction\/[^?]+\?account=other$/);
  });

  it('a device authorization request (RFC 8628) takes one too, and --require-jar holds there', async () => {
    const key = await keyPair('EdDSA', 'jar-7');
    const { clientId, rp } = await clientWithKey('Television', key, ['--grant-type', 'urn:ietf:params:oauth:grant-type:device_code', '--require-jar']);
    const now = Math.floor(Date.now() / 1000);
    const request = await signed(key, { client_id: clientId, scope: 'openid email', iss: clientId, aud: pc.issuer, iat: now, exp: now + 60 });
    const started = await oidc.initiateDeviceAuthorization(rp, { request });
    expect(started).toMatchObject({ device_code: expect.any(String), user_code: expect.stringMatching(/^[A-Z]{4}-[A-Z]{4}$/) });
    await expect(oidc.initiateDeviceAuthorization(rp, { scope: 'openid email' })).rejects.toMatchObject({ error: 'invalid_request' });
  });
});
