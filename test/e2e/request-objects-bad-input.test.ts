// Request objects (OpenID Connect Core §6.1, RFC 9101) as an attacker and a
// careless RP send them (review BG): what the object carries gets the treatment
// the same parameter sent plainly gets (no 500 for what a form cannot carry),
// an empty `request` is no request (RFC 6749 §3.1), and what the pages send
// again is what the application sent.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CompactSign, exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPortcullis, type TestPortcullis } from '../support/portcullis.js';
import { pageKind, REDIRECT_URI, visit } from '../support/relying-party.js';
import { UserAgent } from '../support/user-agent.js';

const DEVICE_CODE = 'urn:ietf:params:oauth:grant-type:device_code';
const API = 'https://api.example.com';

let pc: TestPortcullis;
let dir: string;
let key: { privateKey: CryptoKey; kid: string; publicJwk: JWK };
let clientId: string;
let rp: oidc.Configuration;

beforeAll(async () => {
  pc = await startPortcullis();
  await pc.createUser('erin@example.com', 'erin has a long password', 'Erin Example');
  dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-request-objects-attacked-'));
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  key = { privateKey, kid: 'jar-attacked', publicJwk: { ...(await exportJWK(publicKey)), kid: 'jar-attacked' } };
  const file = path.join(dir, 'keys.json');
  writeFileSync(file, JSON.stringify({ keys: [key.publicJwk] }));
  const api = await pc.cli(['api', 'create', '--identifier', API, '--name', 'Reports', '--scope', 'reports:read', '--json']);
  expect(api.code, api.stderr).toBe(0);
  const created = await pc.cli([
    'client', 'create', '--name', 'Signs requests', '--redirect-uri', REDIRECT_URI, '--scope', 'openid email profile',
    '--grant-type', 'authorization_code', '--grant-type', DEVICE_CODE, '--jwks-file', file, '--json',
  ]);
  expect(created.code, created.stderr).toBe(0);
  clientId = (JSON.parse(created.stdout) as { client_id: string }).client_id;
  rp = await oidc.discovery(new URL(pc.issuer), clientId, undefined, oidc.PrivateKeyJwt({ key: key.privateKey, kid: key.kid }), {
    execute: [oidc.allowInsecureRequests],
  });
});

afterAll(async () => {
  expect(pc?.errors ?? []).toEqual([]);
  await pc?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A code request's parameters with PKCE, as the client would sign them. */
function objectClaims(parameters: Record<string, unknown> = {}): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000);
  return {
    client_id: clientId, response_type: 'code', iss: clientId, aud: pc.issuer, iat: now, nbf: now, exp: now + 60, jti: randomUUID(),
    redirect_uri: REDIRECT_URI, scope: 'openid', state: 'signed-state', nonce: 'n',
    code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGMSstw-cM', code_challenge_method: 'S256',
    ...parameters,
  };
}

const signed = (claims: Record<string, unknown>) => new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid: key.kid }).sign(key.privateKey);

/** A device authorization request's object: no front-channel parameters. */
function deviceClaims(parameters: Record<string, unknown> = {}): Record<string, unknown> {
  const { response_type: _r, redirect_uri: _u, state: _s, code_challenge: _c, code_challenge_method: _m, nonce: _n, ...rest } = objectClaims(parameters);
  return rest;
}

/** What a request answered: status, and where it sent the browser (not followed). */
async function answered(response: Response) {
  const location = response.headers.get('location');
  const back = location ? new URL(location, pc.issuer) : undefined;
  const body = await response.text();
  return { status: response.status, back, body };
}

const get = async (query: Record<string, string> | URLSearchParams) => answered(await fetch(`${pc.issuer}/auth?${new URLSearchParams(query)}`, { redirect: 'manual' }));
const post = async (form: Record<string, string> | URLSearchParams) => answered(await fetch(`${pc.issuer}/auth`, { method: 'POST', redirect: 'manual', body: new URLSearchParams(form) }));

/** A client assertion of this client (private_key_jwt), for the PAR and device endpoints. */
async function clientAuthentication(): Promise<[string, string][]> {
  const now = Math.floor(Date.now() / 1000);
  const assertion = await new SignJWT({ iss: clientId, sub: clientId, aud: pc.issuer, iat: now, exp: now + 60, jti: randomUUID() })
    .setProtectedHeader({ alg: 'ES256', kid: key.kid })
    .sign(key.privateKey);
  return [['client_id', clientId], ['client_assertion_type', 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'], ['client_assertion', assertion]];
}

async function push(pairs: [string, string][]) {
  const response = await fetch(`${pc.issuer}/request`, { method: 'POST', body: new URLSearchParams([...pairs, ...(await clientAuthentication())]) });
  return { status: response.status, body: (await response.json()) as Record<string, string> };
}

async function deviceAuthorization(pairs: [string, string][]) {
  const response = await fetch(`${pc.issuer}/device/auth`, { method: 'POST', body: new URLSearchParams([...pairs, ...(await clientAuthentication())]) });
  return { status: response.status, body: (await response.json()) as Record<string, string> };
}

describe('what a request object carries is treated as the same parameter sent plainly', () => {
  // JSON (RFC 8259 §8.2) lets a string hold a lone surrogate, `"\ud800"`; a query or
  // form cannot (its bytes are UTF-8, an invalid sequence becomes U+FFFD). The
  // database's JSON refuses one: the interaction (or device code) holding it is
  // never stored, and the request was a 500 with an error line.
  it('a lone surrogate in a signed object is refused as a NUL is, not a 500 (/auth by GET and POST, PAR, /device/auth)', async () => {
    for (const parameters of [{ state: 'a\ud800b' }, { nonce: '\udfff' }, { login_hint: '\ud800@example.com' }, { claims: { id_token: { '\ud800': null } } }]) {
      const request = await signed(objectClaims(parameters));
      for (const sent of [await get({ client_id: clientId, request }), await post({ client_id: clientId, request })]) {
        expect(sent.status, JSON.stringify(parameters)).toBeLessThan(500);
      }
      const pushed = await push([['request', request]]);
      if (pushed.status === 201) {
        const used = await get({ client_id: clientId, request_uri: pushed.body.request_uri! });
        expect(used.status, `pushed ${JSON.stringify(parameters)}`).toBeLessThan(500);
      }
    }
    const device = await deviceAuthorization([['request', await signed(deviceClaims({ login_hint: '\ud800' }))]]);
    expect(device.status).toBeLessThan(500);
  });

  // RFC 8707 `resource` may repeat, so the library keeps an array from the object as
  // it is, arrays inside it too; a plain request can only send strings. A nested
  // array reached the API lookup, which the database client refused: a 500.
  it('a resource indicator that is no string (an array inside the array) is invalid_target, not a 500, at /auth, PAR and /device/auth', async () => {
    const parameters = { scope: 'openid reports:read', resource: [[API]] };
    const sent = await get({ client_id: clientId, request: await signed(objectClaims(parameters)) });
    expect(sent.status).toBe(303);
    expect(sent.back?.searchParams.get('error')).toBe('invalid_target');
    const pushed = await push([['request', await signed(objectClaims(parameters))]]);
    expect([pushed.status, pushed.body.error]).toEqual([400, 'invalid_target']);
    const device = await deviceAuthorization([['request', await signed(deviceClaims(parameters))]]);
    expect([device.status, device.body.error]).toEqual([400, 'invalid_target']);
  });

  // Anyone may send one: the object is parsed, and its claims copied and written out
  // again, before its signature is checked. The claims parameter sent plainly is held
  // to 6 levels (claims-parameter.ts) for the same overflow.
  it('an object nested thousands deep, signed by nobody the server knows, is refused without a 500', async () => {
    const { privateKey: strangers } = await generateKeyPair('ES256');
    const forged = async (depth: number, member: string) => {
      const nested = '['.repeat(depth) + ']'.repeat(depth);
      const value = member === 'claims' ? `{"id_token":{"email":{"values":${nested}}}}` : nested;
      const json = JSON.stringify(objectClaims());
      return new CompactSign(new TextEncoder().encode(`${json.slice(0, -1)},"${member}":${value}}`)).setProtectedHeader({ alg: 'ES256', kid: key.kid }).sign(strangers);
    };
    for (const member of ['claims', 'unknown_member']) {
      const byGet = await get({ client_id: clientId, redirect_uri: REDIRECT_URI, request: await forged(4000, member) });
      expect([member, byGet.status]).toEqual([member, 303]);
      expect(byGet.back?.searchParams.get('error')).toBe('invalid_request_object');
      const byPost = await post({ client_id: clientId, redirect_uri: REDIRECT_URI, request: await forged(15000, member) });
      expect([member, byPost.status]).toEqual([member, 303]);
      expect(byPost.back?.searchParams.get('error')).toBe('invalid_request_object');
    }
  });
});

describe('an object nested thousands deep is refused however the query or form writes it (review BH)', () => {
  // A JWT nested deeper than any parameter needs, signed by nobody the server knows.
  const forged = async (depth: number, claims: Record<string, unknown> = objectClaims()) => {
    const { privateKey: strangers } = await generateKeyPair('ES256');
    const nested = '['.repeat(depth) + ']'.repeat(depth);
    const json = JSON.stringify(claims);
    return new CompactSign(new TextEncoder().encode(`${json.slice(0, -1)},"unknown_member":${nested}}`)).setProtectedHeader({ alg: 'ES256', kid: key.kid }).sign(strangers);
  };
  const form = { 'content-type': 'application/x-www-form-urlencoded' };
  const sentBack = async (response: Response) => {
    const { status, back } = await answered(response);
    return [status, back?.searchParams.get('error')];
  };

  // Node's parser keeps a `%` that no two hex digits follow as it is, and the library
  // reads the object's header and claims alone: a stray `%zz` in the signature leaves
  // the object as readable as before. It was passed on unchecked: a 500 for anyone.
  it('with a percent sign that escapes nothing in its signature (GET and POST /auth)', async () => {
    const errorsBefore = pc.errors.length;
    const [head, claims] = (await forged(4000)).split('.');
    const query = `client_id=${clientId}&redirect_uri=${encodeURIComponent(REDIRECT_URI)}&request=${head}.${claims}.%zz`;
    expect(await sentBack(await fetch(`${pc.issuer}/auth?${query}`, { redirect: 'manual' }))).toEqual([303, 'invalid_request_object']);
    const [head2, claims2] = (await forged(15000)).split('.');
    const body = `client_id=${clientId}&redirect_uri=${encodeURIComponent(REDIRECT_URI)}&request=${head2}.${claims2}.%zz`;
    expect(await sentBack(await fetch(`${pc.issuer}/auth`, { method: 'POST', redirect: 'manual', headers: form, body }))).toEqual([303, 'invalid_request_object']);
    expect(pc.errors.slice(errorsBefore)).toEqual([]);
  });

  // The parser decodes names as it decodes values: `r%65quest` is `request`.
  it('sent in a form under a percent-encoded name (POST /auth)', async () => {
    const errorsBefore = pc.errors.length;
    const body = `client_id=${clientId}&redirect_uri=${encodeURIComponent(REDIRECT_URI)}&r%65quest=${await forged(15000)}`;
    expect(await sentBack(await fetch(`${pc.issuer}/auth`, { method: 'POST', redirect: 'manual', headers: form, body }))).toEqual([303, 'invalid_request_object']);
    expect(pc.errors.slice(errorsBefore)).toEqual([]);
  });

  // A public client pushes without authenticating (RFC 9126 §2.1): the PAR endpoint is open to anyone who knows its id.
  it('pushed in a public client’s name, either way', async () => {
    const errorsBefore = pc.errors.length;
    const created = await pc.cli(['client', 'create', '--name', 'Public', '--public', '--redirect-uri', REDIRECT_URI, '--json']);
    expect(created.code, created.stderr).toBe(0);
    const publicId = (JSON.parse(created.stdout) as { client_id: string }).client_id;
    const object = await forged(15000, objectClaims({ client_id: publicId, iss: publicId }));
    const [head, claims] = object.split('.');
    for (const body of [`client_id=${publicId}&request=${head}.${claims}.%zz`, `client_id=${publicId}&r%65quest=${object}`]) {
      const response = await fetch(`${pc.issuer}/request`, { method: 'POST', headers: form, body });
      expect([response.status, ((await response.json()) as { error?: string }).error]).toEqual([400, 'invalid_request_object']);
    }
    expect(pc.errors.slice(errorsBefore)).toEqual([]);
  });
});

describe('an empty `request` is no request (RFC 6749 §3.1: "treated as if they were omitted")', () => {
  const plain = () => ({
    client_id: clientId, response_type: 'code', scope: 'openid', redirect_uri: REDIRECT_URI, state: 'plain', nonce: 'n',
    code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGMSstw-cM', code_challenge_method: 'S256',
  });

  it('a plain request with `request=` begins the sign-in, by GET, POST and PAR (it was "missing required parameter \'redirect_uri\'")', async () => {
    for (const sent of [await get({ ...plain(), request: '' }), await post({ ...plain(), request: '' })]) {
      expect([sent.status, sent.back?.pathname]).toEqual([303, expect.stringMatching(/^\/interaction\//)]);
    }
    const { client_id: _id, ...parameters } = plain();
    const pushed = await push([...Object.entries(parameters), ['request', '']]);
    expect([pushed.status, pushed.body.error_description]).toEqual([201, undefined]);
    // Sent twice empty: none either (the library's PAR response read the two as an object: a 500).
    const twice = await push([...Object.entries(parameters), ['request', ''], ['request', '']]);
    expect([twice.status, twice.body.error_description]).toEqual([201, undefined]);
  });

  it('`request=&request=<object>` is the object alone: its redirect_uri counts, not one beside it, and PAR answers no 500', async () => {
    // Refused alone: an OpenID request names its redirect_uri (OIDC Core §3.1.2.1) in the object.
    const withoutRedirectUri = { ...objectClaims(), redirect_uri: undefined };
    const alone = await get({ client_id: clientId, request: await signed(withoutRedirectUri) });
    expect(alone.status).toBe(400);
    const repeated = new URLSearchParams([['client_id', clientId], ['redirect_uri', REDIRECT_URI], ['request', ''], ['request', await signed(withoutRedirectUri)]]);
    const sent = await get(repeated);
    expect([sent.status, sent.back?.pathname]).toEqual([400, undefined]);

    // At PAR: the object names its redirect_uri; the empty value beside it changes nothing.
    const pushed = await push([['request', ''], ['request', await signed(objectClaims())]]);
    expect(pushed.status).toBe(201);
    const besideRedirectUri = await push([['request', ''], ['request', await signed(objectClaims())], ['redirect_uri', REDIRECT_URI]]);
    expect(besideRedirectUri.status).toBe(201);
  });
});

describe('what the pages send to /auth again', () => {
  // README: the expired page's "Start again" posts the application's request "to /auth again,
  // as the application sent it". A request object's parameters were signed; an unsigned copy
  // of them is not what it sent (and outlives the object's `exp`).
  it('a sign-in begun with a request object does not carry its parameters, unsigned, in the restart field', async () => {
    const ua = new UserAgent();
    const request = await signed(objectClaims({ scope: 'openid email', login_hint: 'erin@example.com' }));
    const page = await visit(ua, `${pc.issuer}/auth?${new URLSearchParams({ client_id: clientId, request })}`);
    expect(pageKind(page)).toBe('login');
    const restart = /name="restart" value="([^"]*)"/.exec(page.html)?.[1]?.replace(/&amp;/g, '&');
    if (restart !== undefined) expect(new URLSearchParams(restart).get('request')).toBe(request);
  });
});
