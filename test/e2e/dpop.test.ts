// DPoP (RFC 9449): access tokens bound to a client's key, at Portcullis and at
// the example API. openid-client makes the proofs a real client makes; jose
// makes the bad ones.
import { createHash, randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import { calculateJwkThumbprint, decodeJwt, exportJWK, generateKeyPair, SignJWT } from 'jose';
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { startServer } from '../../src/server.js';
import { serveExampleApi } from '../support/example-api.js';
import { freePort, startPortcullis, type TestPortcullis } from '../support/portcullis.js';
import { discover, logIn, REDIRECT_URI } from '../support/relying-party.js';
import { UserAgent } from '../support/user-agent.js';

const ORDERS = 'https://orders.example.com';
const BILLING = 'https://billing.example.com';
const erin = { email: 'erin@example.com', password: 'erins password' };

let pc: TestPortcullis;
let machine: oidc.Configuration;
let machineCredentials: { client_id: string; client_secret?: string };
let spa: oidc.Configuration;
let ordersApi: string;
let billing: { client_id: string; client_secret: string };
let billingApi: string;
const servers: Server[] = [];

const now = () => Math.floor(Date.now() / 1000);
const digest = (token: string) => createHash('sha256').update(token).digest('base64url');

const serve = (options: Parameters<typeof serveExampleApi>[0]) => serveExampleApi(options, servers);

/** A proof signed with `key`, with these claims over sensible defaults (a fresh jti, iat now). */
async function proof(key: CryptoKeyPair, claims: Record<string, unknown>): Promise<string> {
  return new SignJWT({ jti: randomUUID(), iat: now(), ...claims })
    .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: await exportJWK(key.publicKey) })
    .sign(key.privateKey);
}

async function thumbprint(key: CryptoKeyPair): Promise<string> {
  return calculateJwkThumbprint(await exportJWK(key.publicKey));
}

function getOrders(base: string, headers: Record<string, string>): Promise<Response> {
  return fetch(`${base}/orders`, { headers });
}

/** A client-credentials token request with client_secret_basic and these headers, to `base` (an instance; by default the issuer). */
function tokenRequest(headers: Record<string, string>, resource = ORDERS, base = pc.issuer): Promise<Response> {
  const basic = Buffer.from(`${machineCredentials.client_id}:${machineCredentials.client_secret}`).toString('base64');
  return fetch(`${base}/token`, {
    method: 'POST',
    headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams({ grant_type: 'client_credentials', resource, scope: 'read:orders' }),
  });
}

beforeAll(async () => {
  pc = await startPortcullis();
  await pc.cli(['api', 'create', '--identifier', ORDERS, '--scope', 'read:orders', '--token-format', 'jwt', '--json']);
  const created = await pc.cli(['api', 'create', '--identifier', BILLING, '--scope', 'read:orders', '--token-format', 'opaque', '--json']);
  billing = JSON.parse(created.stdout);
  await pc.createUser(erin.email, erin.password, 'Erin');
  machineCredentials = await pc.createClient({ name: 'Robot', grantTypes: ['client_credentials'], scope: 'read:orders' });
  machine = await discover(pc.issuer, machineCredentials.client_id, machineCredentials.client_secret);
  const spaClient = await pc.createClient({ name: 'Single-page app', public: true, redirectUris: [REDIRECT_URI], scope: 'openid profile offline_access' });
  spa = await discover(pc.issuer, spaClient.client_id);
  ordersApi = await serve({ issuer: pc.issuer, audience: ORDERS });
  billingApi = await serve({ issuer: pc.issuer, audience: BILLING, introspection: { clientId: billing.client_id, clientSecret: billing.client_secret } });
});

afterAll(async () => {
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  expect(pc?.errors ?? []).toEqual([]);
  await pc?.close();
});

describe('DPoP-bound access tokens', () => {
  it('discovery names the proof algorithms', () => {
    expect(machine.serverMetadata().dpop_signing_alg_values_supported).toEqual(expect.arrayContaining(['ES256', 'EdDSA']));
  });

  it('a JWT access token is bound to the key, and the example API takes it only with a proof of that key', async () => {
    const key = await oidc.randomDPoPKeyPair('ES256');
    const DPoP = oidc.getDPoPHandle(machine, key);
    const tokens = await oidc.clientCredentialsGrant(machine, { resource: ORDERS, scope: 'read:orders' }, { DPoP });
    expect(tokens.token_type.toLowerCase()).toBe('dpop');
    expect(decodeJwt(tokens.access_token).cnf).toEqual({ jkt: await thumbprint(key) });

    const served = await oidc.fetchProtectedResource(machine, tokens.access_token, new URL(`${ordersApi}/orders`), 'GET', undefined, undefined, { DPoP });
    expect(served.status).toBe(200);
    expect(await served.json()).toMatchObject({ for: machineCredentials.client_id });

    // Stolen without the key, it is worth nothing: not as a Bearer token,
    const asBearer = await getOrders(ordersApi, { authorization: `Bearer ${tokens.access_token}` });
    expect(asBearer.status).toBe(401);
    expect(asBearer.headers.get('www-authenticate')).toMatch(/^Bearer realm="api", error="invalid_token", error_description="the token is DPoP-bound[^"]*", DPoP realm="api", algs="ES256 EdDSA Ed25519"$/);
    // nor with a proof of another key.
    const thief = oidc.getDPoPHandle(machine, await oidc.randomDPoPKeyPair('ES256'));
    type Challenged = { status: number; cause: { scheme: string; parameters: Record<string, string> }[] };
    const stolen = (await oidc
      .fetchProtectedResource(machine, tokens.access_token, new URL(`${ordersApi}/orders`), 'GET', undefined, undefined, { DPoP: thief })
      .then(
        () => undefined,
        (error: unknown) => error,
      )) as Challenged;
    expect(stolen).toMatchObject({ status: 401, cause: [{ scheme: 'dpop', parameters: { error: 'invalid_dpop_proof', algs: 'ES256 EdDSA Ed25519' } }] });
    expect(stolen.cause[0]!.parameters.error_description).toMatch(/key the token is bound to/);
  });

  it('the example API refuses proofs made for another request, token or time, and any proof twice', async () => {
    // Extractable: one proof below shows the private key in its header (refused for that alone).
    const key = await oidc.randomDPoPKeyPair('ES256', { extractable: true });
    const tokens = await oidc.clientCredentialsGrant(machine, { resource: ORDERS, scope: 'read:orders' }, { DPoP: oidc.getDPoPHandle(machine, key) });
    const other = await oidc.clientCredentialsGrant(machine, { resource: ORDERS, scope: 'read:orders' }, { DPoP: oidc.getDPoPHandle(machine, key) });
    const at = tokens.access_token;
    const good = { htm: 'GET', htu: `${ordersApi}/orders`, ath: digest(at) };
    const send = (dpop?: string | string[], scheme = 'DPoP') =>
      fetch(`${ordersApi}/orders`, { headers: [['authorization', `${scheme} ${at}`], ...[dpop ?? []].flat().map((value) => ['dpop', value] as [string, string])] });
    const refusal = async (response: Response) => ({
      status: response.status,
      error: /error="([^"]+)"/.exec(response.headers.get('www-authenticate') ?? '')?.[1],
    });

    const once = await proof(key, good);
    expect(await refusal(await send(once))).toEqual({ status: 200, error: undefined });
    expect(await refusal(await send(once))).toEqual({ status: 401, error: 'invalid_dpop_proof' });
    // A query string is not part of htu (RFC 9449 §4.2).
    expect((await send(await proof(key, { ...good, htu: `${ordersApi}/orders?page=2` }))).status).toBe(200);

    const refused = {
      'no proof': undefined,
      'two proofs': [await proof(key, good), await proof(key, good)],
      'another method': await proof(key, { ...good, htm: 'POST' }),
      'another URL': await proof(key, { ...good, htu: `${ordersApi}/invoices` }),
      'another token': await proof(key, { ...good, ath: digest(other.access_token) }),
      'no ath': await proof(key, { htm: 'GET', htu: good.htu }),
      'ten minutes old': await proof(key, { ...good, iat: now() - 600 }),
      'ten minutes ahead': await proof(key, { ...good, iat: now() + 600 }),
      'no jti': await proof(key, { ...good, jti: undefined }),
      'wrong typ': await new SignJWT({ ...good, jti: randomUUID(), iat: now() })
        .setProtectedHeader({ alg: 'ES256', typ: 'JWT', jwk: await exportJWK(key.publicKey) })
        .sign(key.privateKey),
      'a key off its curve': await new SignJWT({ ...good, jti: randomUUID(), iat: now() })
        .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: { kty: 'EC', crv: 'P-256', x: 'AAAA', y: 'AAAA' } })
        .sign(key.privateKey),
      'a private key in the header': await new SignJWT({ ...good, jti: randomUUID(), iat: now() })
        .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: await exportJWK(key.privateKey) })
        .sign(key.privateKey),
    };
    for (const [what, dpop] of Object.entries(refused)) {
      expect({ what, ...(await refusal(await send(dpop))) }).toEqual({ what, status: 401, error: 'invalid_dpop_proof' });
    }
    // An unbound token must not pretend to be bound, nor a bound one go without.
    const unbound = await oidc.clientCredentialsGrant(machine, { resource: ORDERS, scope: 'read:orders' });
    expect(decodeJwt(unbound.access_token).cnf).toBeUndefined();
    const asDpop = await getOrders(ordersApi, { authorization: `DPoP ${unbound.access_token}`, dpop: await proof(key, { ...good, ath: digest(unbound.access_token) }) });
    expect(await refusal(asDpop)).toEqual({ status: 401, error: 'invalid_token' });
    expect((await getOrders(ordersApi, { authorization: `Bearer ${unbound.access_token}` })).status).toBe(200);
  });

  it('an opaque token: introspection reports the binding, and the example API checks it', async () => {
    const key = await oidc.randomDPoPKeyPair('ES256');
    const DPoP = oidc.getDPoPHandle(machine, key);
    const tokens = await oidc.clientCredentialsGrant(machine, { resource: BILLING, scope: 'read:orders' }, { DPoP });
    const apiConfig = await discover(pc.issuer, billing.client_id, billing.client_secret);
    const introspected = await oidc.tokenIntrospection(apiConfig, tokens.access_token);
    expect(introspected).toMatchObject({ active: true, token_type: 'DPoP', cnf: { jkt: await thumbprint(key) } });

    const served = await oidc.fetchProtectedResource(machine, tokens.access_token, new URL(`${billingApi}/orders`), 'GET', undefined, undefined, { DPoP });
    expect(served.status).toBe(200);
    expect((await getOrders(billingApi, { authorization: `Bearer ${tokens.access_token}` })).status).toBe(401);
  });
});

describe('DPoP at Portcullis', () => {
  it('one proof sent in many token requests at once gets one token', async () => {
    const key = await oidc.randomDPoPKeyPair('ES256');
    const dpop = await proof(key, { htm: 'POST', htu: `${pc.issuer}/token` });
    const responses = await Promise.all(Array.from({ length: 12 }, () => tokenRequest({ dpop })));
    const statuses = responses.map((response) => response.status).sort();
    expect(statuses).toEqual([200, ...Array(11).fill(400)]);
    // The proof is what failed (RFC 9449 §5), not the grant.
    for (const response of responses.filter((r) => r.status === 400)) expect(await response.json()).toMatchObject({ error: 'invalid_dpop_proof' });
    // And later, one at a time, still once.
    expect((await tokenRequest({ dpop })).status).toBe(400);
    // The same at the PAR endpoint (RFC 9449 §10.1).
    const htu = `${pc.issuer}/request`;
    const pushed = await proof(key, { htm: 'POST', htu });
    const push = () =>
      fetch(htu, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', dpop: pushed },
        body: new URLSearchParams({
          client_id: spa.clientMetadata().client_id, response_type: 'code', scope: 'openid', redirect_uri: REDIRECT_URI,
          code_challenge: 'x'.repeat(43), code_challenge_method: 'S256',
        }),
      });
    expect((await push()).status).toBe(201);
    const second = await push();
    expect([second.status, await second.json()]).toEqual([400, expect.objectContaining({ error: 'invalid_dpop_proof' })]);
  });

  it('a proof that is not a DPoP JWT this server takes is refused saying why, in the characters an error description may hold', async () => {
    const answers: [string, string][] = [];
    const notJwt = await tokenRequest({ dpop: 'not-a-jwt' });
    answers.push([String(notJwt.status), JSON.stringify(await notJwt.json())]);
    // RS256 is not among the proof algorithms discovery names.
    const rsa = await generateKeyPair('RS256');
    const rs256 = await new SignJWT({ jti: randomUUID(), iat: now(), htm: 'POST', htu: `${pc.issuer}/token` })
      .setProtectedHeader({ alg: 'RS256', typ: 'dpop+jwt', jwk: await exportJWK(rsa.publicKey) })
      .sign(rsa.privateKey);
    const wrongAlg = await tokenRequest({ dpop: rs256 });
    answers.push([String(wrongAlg.status), JSON.stringify(await wrongAlg.json())]);
    expect(answers).toEqual([
      ['400', JSON.stringify({ error: 'invalid_dpop_proof', error_description: 'the DPoP proof is not a DPoP JWT this server takes: Invalid Compact JWS' })],
      ['400', JSON.stringify({ error: 'invalid_dpop_proof', error_description: "the DPoP proof is not a DPoP JWT this server takes: 'alg' (Algorithm) Header Parameter value not allowed" })],
    ]);
    // At UserInfo, the challenge says the same.
    const key = await oidc.randomDPoPKeyPair('ES256');
    const { tokens } = await logIn(new UserAgent(), spa, 'openid', erin, {}, { DPoP: oidc.getDPoPHandle(spa, key) });
    const userinfo = await fetch(`${pc.issuer}/me`, { headers: { authorization: `DPoP ${tokens.access_token}`, dpop: 'not-a-jwt' } });
    expect(userinfo.status).toBe(401);
    expect(userinfo.headers.get('www-authenticate')).toContain('error_description="the DPoP proof is not a DPoP JWT this server takes: Invalid Compact JWS"');
  });

  it('a proof made ahead of the clock is remembered for as long as it could be accepted', async () => {
    // Accepted while its iat is within 5 minutes either way: one made 5 minutes
    // ahead stays acceptable for 10, so it must be remembered for 10.
    const key = await oidc.randomDPoPKeyPair('ES256');
    const jti = randomUUID();
    const ahead = await proof(key, { htm: 'POST', htu: `${pc.issuer}/token`, jti, iat: now() + 295 });
    expect((await tokenRequest({ dpop: ahead })).status).toBe(200);
    expect((await tokenRequest({ dpop: ahead })).status).toBe(400);
    // The row (ids are stored as digests; the library's id is itself a digest of client and jti).
    const id = digest(digest(`${machineCredentials.client_id}${jti}`));
    const db = pc.outsideConnection();
    await db.connect();
    try {
      const { rows } = await db.query(`SELECT extract(epoch FROM expires_at) AS expires FROM provider_artifacts WHERE kind = 'ReplayDetection' AND id = '${id}'`);
      expect(rows).toHaveLength(1);
      expect(Number(rows[0].expires)).toBeGreaterThanOrEqual(now() + 295 + 295);
    } finally {
      await db.end();
    }
  });

  it('a client whose clock is off is told to use a nonce, and gets its token with it', async () => {
    const key = await oidc.randomDPoPKeyPair('ES256');
    const htu = `${pc.issuer}/token`;
    const stale = await tokenRequest({ dpop: await proof(key, { htm: 'POST', htu, iat: now() - 900 }) });
    expect(stale.status).toBe(400);
    expect(await stale.json()).toMatchObject({ error: 'use_dpop_nonce' });
    const nonce = stale.headers.get('dpop-nonce');
    expect(nonce).toBeTruthy();
    const withNonce = await tokenRequest({ dpop: await proof(key, { htm: 'POST', htu, iat: now() - 900, nonce }) });
    expect(withNonce.status).toBe(200);
    expect(await withNonce.json()).toMatchObject({ token_type: 'DPoP' });
    const madeUp = await tokenRequest({ dpop: await proof(key, { htm: 'POST', htu, nonce: 'x'.repeat(43) }) });
    expect(await madeUp.json()).toMatchObject({ error: 'use_dpop_nonce' });
  });

  it.skipIf(process.env.TEST_DATABASE !== 'postgres')('a nonce one instance gave is accepted by another', async () => {
    // A second instance of the same deployment: same database, same encryption key, same issuer, its own port.
    const port = await freePort();
    const second = await startServer(loadConfig({ ...pc.env, PORT: String(port) }), createLogger('silent'));
    try {
      const key = await oidc.randomDPoPKeyPair('ES256');
      const htu = `${pc.issuer}/token`;
      const stale = await tokenRequest({ dpop: await proof(key, { htm: 'POST', htu, iat: now() - 900 }) });
      const nonce = stale.headers.get('dpop-nonce');
      expect(nonce).toBeTruthy();
      const elsewhere = await tokenRequest({ dpop: await proof(key, { htm: 'POST', htu, iat: now() - 900, nonce }) }, ORDERS, `http://127.0.0.1:${port}`);
      expect(await elsewhere.json()).toMatchObject({ token_type: 'DPoP' });
    } finally {
      await second.close();
    }
  });

  it('a public client signs in with DPoP: its tokens and refresh token are bound to its key', async () => {
    const key = await oidc.randomDPoPKeyPair('ES256');
    const DPoP = oidc.getDPoPHandle(spa, key);
    const { tokens } = await logIn(new UserAgent(), spa, 'openid profile offline_access', erin, { prompt: 'consent' }, { DPoP });
    expect(tokens.token_type.toLowerCase()).toBe('dpop');
    expect(tokens.refresh_token).toBeTruthy();
    const sub = tokens.claims()!.sub;

    const me = await oidc.fetchUserInfo(spa, tokens.access_token, sub, { DPoP });
    expect(me).toMatchObject({ sub, name: 'Erin' });
    const asBearer = await fetch(`${pc.issuer}/me`, { headers: { authorization: `Bearer ${tokens.access_token}` } });
    expect(asBearer.status).toBe(401);
    // One proof, sent to UserInfo in several requests at once, is honoured once.
    const once = await proof(key, { htm: 'GET', htu: `${pc.issuer}/me`, ath: digest(tokens.access_token) });
    const all = await Promise.all(
      Array.from({ length: 8 }, () => fetch(`${pc.issuer}/me`, { headers: { authorization: `DPoP ${tokens.access_token}`, dpop: once } })),
    );
    expect(all.map((response) => response.status).sort()).toEqual([200, ...Array(7).fill(401)]);
    // Each refusal blames the proof (RFC 9449 §7.1), and the token stays good.
    for (const response of all.filter((r) => r.status === 401)) {
      expect(response.headers.get('www-authenticate')).toMatch(/^DPoP .*error="invalid_dpop_proof"/);
      expect(await response.json()).toMatchObject({ error: 'invalid_dpop_proof' });
    }

    // The refresh token is no use without the key (and the failed tries leave it usable).
    const thief = oidc.getDPoPHandle(spa, await oidc.randomDPoPKeyPair('ES256'));
    await expect(oidc.refreshTokenGrant(spa, tokens.refresh_token!, undefined, { DPoP: thief })).rejects.toMatchObject({ error: 'invalid_grant' });
    await expect(oidc.refreshTokenGrant(spa, tokens.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant' });
    // A refresh whose proof was used before is refused for the proof, and leaves the refresh token usable.
    const spent = await proof(key, { htm: 'POST', htu: `${pc.issuer}/token` });
    const refresh = (refreshToken: string) =>
      fetch(`${pc.issuer}/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', dpop: spent },
        body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken, client_id: spa.clientMetadata().client_id }),
      });
    const first = await refresh(tokens.refresh_token!);
    expect(first.status).toBe(200);
    const { refresh_token: rotated } = (await first.json()) as { refresh_token: string };
    const replayed = await refresh(rotated);
    expect([replayed.status, await replayed.json()]).toEqual([400, expect.objectContaining({ error: 'invalid_dpop_proof' })]);
    const refreshed = await oidc.refreshTokenGrant(spa, rotated, undefined, { DPoP });
    expect(refreshed.token_type.toLowerCase()).toBe('dpop');
    expect(await oidc.fetchUserInfo(spa, refreshed.access_token, sub, { DPoP })).toMatchObject({ sub });
  });

  it('a code bound to a key at the authorization request (dpop_jkt) is redeemed only with that key', async () => {
    const key = await oidc.randomDPoPKeyPair('ES256');
    const bound = { prompt: 'consent', dpop_jkt: await thumbprint(key) };
    const thief = oidc.getDPoPHandle(spa, await oidc.randomDPoPKeyPair('ES256'));
    await expect(logIn(new UserAgent(), spa, 'openid', erin, bound, { DPoP: thief })).rejects.toMatchObject({ error: 'invalid_grant' });
    const { tokens } = await logIn(new UserAgent(), spa, 'openid', erin, bound, { DPoP: oidc.getDPoPHandle(spa, key) });
    expect(tokens.token_type.toLowerCase()).toBe('dpop');
  });
});
