// A confidential client that proves who it is with a JWT signed by its own
// key (private_key_jwt, RFC 7523 §2.2, OIDC Core §9) rather than a shared
// secret: registered with its public keys, used by openid-client as an app
// would.
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, generatePrimeSync, randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { exportJWK, generateKeyPair, importJWK, SignJWT, type JWK } from 'jose';
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPortcullis, type TestPortcullis } from '../support/portcullis.js';
import { basicAuth, logIn, REDIRECT_URI } from '../support/relying-party.js';
import { UserAgent } from '../support/user-agent.js';

const erin = { email: 'erin@example.com', password: 'erin has a long password' };
const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

let pc: TestPortcullis;
let dir: string;

beforeAll(async () => {
  pc = await startPortcullis();
  await pc.createUser(erin.email, erin.password);
  dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-keys-'));
});

afterAll(async () => {
  expect(pc?.errors ?? []).toEqual([]);
  await pc?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A key pair, its public half as a JWK with `kid`. */
async function keyPair(alg: 'ES256' | 'RS256' | 'EdDSA', kid: string) {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return { privateKey, kid, alg, publicJwk: { ...(await exportJWK(publicKey)), kid } as JWK };
}

/** A big number as a JWK holds it (RFC 7518 §2: big-endian, base64url). */
function bigBase64url(n: bigint): string {
  const hex = n.toString(16);
  return Buffer.from(hex.length % 2 ? `0${hex}` : hex, 'hex').toString('base64url');
}

/** A file holding `content` as JSON, for --jwks-file. */
function jsonFile(content: unknown): string {
  const file = path.join(dir, `${randomUUID()}.json`);
  writeFileSync(file, JSON.stringify(content));
  return file;
}

async function createWithKeys(name: string, keys: string[]) {
  const created = await pc.cli([
    'client', 'create', '--name', name, '--redirect-uri', REDIRECT_URI, '--scope', 'openid offline_access',
    '--grant-type', 'authorization_code', '--grant-type', 'refresh_token', '--grant-type', 'client_credentials', ...keys, '--json',
  ]);
  expect(created.code, created.stderr).toBe(0);
  return JSON.parse(created.stdout) as Record<string, unknown> & { client_id: string };
}

/** openid-client configured to authenticate with `key`. */
function relyingParty(clientId: string, key: { privateKey: CryptoKey; kid: string }) {
  return oidc.discovery(new URL(pc.issuer), clientId, undefined, oidc.PrivateKeyJwt({ key: key.privateKey, kid: key.kid }), {
    execute: [oidc.allowInsecureRequests],
  });
}

/** A client assertion made by hand (RFC 7523 §3), to send as it is, twice if need be. */
function assertion(
  clientId: string,
  key: { privateKey: CryptoKey | Uint8Array; kid: string; alg: string },
  { audience = pc.issuer as string | string[], expiresIn = '1m', withoutJti = false, header = {} as Record<string, unknown>, issuedAt = undefined as number | undefined } = {},
) {
  return new SignJWT(withoutJti ? {} : { jti: randomUUID() })
    .setProtectedHeader({ alg: key.alg, kid: key.kid, ...header })
    .setIssuer(clientId)
    .setSubject(clientId)
    .setAudience(audience)
    .setIssuedAt(issuedAt)
    .setExpirationTime(expiresIn)
    .sign(key.privateKey);
}

/** An unsigned JWT (alg none), which jose does not make. */
function unsigned(claims: Record<string, unknown>): string {
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${part({ alg: 'none' })}.${part(claims)}.`;
}

function clientCredentialsWith(clientAssertion: string, headers: Record<string, string> = {}) {
  return fetch(`${pc.issuer}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams({ grant_type: 'client_credentials', client_assertion_type: ASSERTION_TYPE, client_assertion: clientAssertion }),
  }).then(async (response) => ({ status: response.status, body: (await response.json()) as Record<string, unknown> }));
}

describe('private_key_jwt', () => {
  it('discovery offers it, with the algorithms an assertion may be signed with, at the token, introspection and revocation endpoints', async () => {
    const metadata = (await (await fetch(`${pc.issuer}/.well-known/openid-configuration`)).json()) as Record<string, unknown>;
    const algorithms = ['ES256', 'Ed25519', 'EdDSA', 'PS256', 'RS256']; // sorted, as every list there
    expect(metadata).toMatchObject({
      token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'none'],
      token_endpoint_auth_signing_alg_values_supported: algorithms,
      introspection_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'private_key_jwt'],
      introspection_endpoint_auth_signing_alg_values_supported: algorithms,
      revocation_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'none'],
      revocation_endpoint_auth_signing_alg_values_supported: algorithms,
    });
  });

  it('a client made with its public keys signs in people, refreshes, gets its own tokens and introspects them; it has no secret', async () => {
    const key = await keyPair('ES256', 'ledger-2026');
    const created = await createWithKeys('Ledger', ['--jwks-file', jsonFile({ keys: [key.publicJwk] })]);
    expect(created.client_secret).toBeUndefined();
    expect(created).toMatchObject({ public: false, token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [key.publicJwk] } });
    const shown = await pc.cli(['client', 'show', created.client_id]);
    expect(shown.stdout).toMatch(/^authenticates: +with a JWT signed by one of its keys \(private_key_jwt\)$/m);
    expect(shown.stdout).toMatch(/^keys: +ledger-2026$/m);

    const rp = await relyingParty(created.client_id, key);
    const { tokens } = await logIn(new UserAgent(), rp, 'openid offline_access', erin, { prompt: 'consent' });
    expect(tokens.id_token).toBeTruthy();
    const refreshed = await oidc.refreshTokenGrant(rp, tokens.refresh_token!);
    expect(refreshed.access_token).toBeTruthy();
    // A pushed authorization request authenticates the same way (RFC 9126 §2.1).
    const pushed = await oidc.buildAuthorizationUrlWithPAR(rp, { redirect_uri: REDIRECT_URI, scope: 'openid', code_challenge: await oidc.calculatePKCECodeChallenge(oidc.randomPKCECodeVerifier()), code_challenge_method: 'S256' });
    expect(pushed.searchParams.get('request_uri')).toMatch(/^urn:ietf:params:oauth:request_uri:/);
    const own = await oidc.clientCredentialsGrant(rp);
    expect(await oidc.tokenIntrospection(rp, own.access_token)).toMatchObject({ active: true, client_id: created.client_id });
    await oidc.tokenRevocation(rp, refreshed.refresh_token!);
    await expect(oidc.refreshTokenGrant(rp, refreshed.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant' });

    // Nothing else proves it is this client: no secret, another key, an assertion used before.
    const guessed = await fetch(`${pc.issuer}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(created.client_id, 'a guessed secret') },
      body: 'grant_type=client_credentials',
    });
    expect([guessed.status, ((await guessed.json()) as { error: string }).error]).toEqual([401, 'invalid_client']);
    const stranger = await keyPair('ES256', 'ledger-2026');
    expect(await clientCredentialsWith(await assertion(created.client_id, stranger))).toMatchObject({ status: 401, body: { error: 'invalid_client' } });
    const once = await assertion(created.client_id, key);
    expect((await clientCredentialsWith(once)).status).toBe(200);
    expect(await clientCredentialsWith(once)).toMatchObject({ status: 401, body: { error: 'invalid_client' } });
    // Nor one meant for another server.
    expect(await clientCredentialsWith(await assertion(created.client_id, key, { audience: 'https://elsewhere.example' }))).toMatchObject({ status: 401, body: { error: 'invalid_client' } });

    // The sole audience is this server's issuer identifier (RFC 7523bis): not an endpoint's
    // address, nor a list that holds one, which another server could have named as its own
    // and had the client sign for it (audience injection).
    for (const audience of [`${pc.issuer}/token`, [pc.issuer, `${pc.issuer}/token`], ['https://elsewhere.example', pc.issuer]]) {
      // Told why: only the holder of the client's key gets this far.
      expect(await clientCredentialsWith(await assertion(created.client_id, key, { audience }))).toEqual({
        status: 401,
        body: { error: 'invalid_client', error_description: `the client assertion's audience (aud) must be the issuer identifier, ${pc.issuer}, alone` },
      });
    }
    expect((await clientCredentialsWith(await assertion(created.client_id, key, { audience: [pc.issuer] }))).status).toBe(200);
    // Made for the request: not valid for hours, and not without a jti to use it once by.
    expect(await clientCredentialsWith(await assertion(created.client_id, key, { expiresIn: '2h' }))).toMatchObject({
      status: 401,
      body: { error: 'invalid_client', error_description: 'the client assertion expires more than an hour from now (exp): make one for each request' },
    });
    expect(await clientCredentialsWith(await assertion(created.client_id, key, { withoutJti: true }))).toMatchObject({ status: 401, body: { error: 'invalid_client' } });
    expect(await clientCredentialsWith(await assertion(created.client_id, key, { issuedAt: Math.floor(Date.now() / 1000) + 3600 }))).toMatchObject({
      status: 401,
      body: { error: 'invalid_client', error_description: 'the client assertion was issued in the future (iat)' },
    });
    // A stranger's key, the wrong audience: the library's words, which say nothing of why.
    expect(await clientCredentialsWith(await assertion(created.client_id, stranger, { audience: `${pc.issuer}/token` }))).toEqual({
      status: 401,
      body: { error: 'invalid_client', error_description: 'client authentication failed' },
    });
    // No key but the registered ones: not one the assertion carries, nor the public key used as an HMAC secret, nor none.
    expect(await clientCredentialsWith(await assertion(created.client_id, stranger, { header: { jwk: stranger.publicJwk } }))).toMatchObject({ status: 401, body: { error: 'invalid_client' } });
    const publicAsSecret = new TextEncoder().encode(JSON.stringify(key.publicJwk));
    expect(await clientCredentialsWith(await assertion(created.client_id, { privateKey: publicAsSecret, kid: key.kid, alg: 'HS256' }))).toMatchObject({ status: 401, body: { error: 'invalid_client' } });
    // Not even a JWT: invalid_client too (RFC 7523 §3.2), not invalid_request.
    expect(await clientCredentialsWith('not-a-jwt')).toEqual({ status: 401, body: { error: 'invalid_client', error_description: 'the client_assertion is not a JWT' } });
    const now = Math.floor(Date.now() / 1000);
    const none = unsigned({ iss: created.client_id, sub: created.client_id, aud: pc.issuer, jti: randomUUID(), iat: now, exp: now + 60 });
    expect(await clientCredentialsWith(none)).toMatchObject({ status: 401, body: { error: 'invalid_client' } });

    // Other changes to the registration keep how it authenticates.
    const renamed = await pc.cli(['client', 'update', created.client_id, '--name', 'Ledger 2', '--json']);
    expect(JSON.parse(renamed.stdout)).toMatchObject({ client_name: 'Ledger 2', token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [key.publicJwk] } });
    expect((await clientCredentialsWith(await assertion(created.client_id, key))).status).toBe(200);

    const rotate = await pc.cli(['client', 'rotate-secret', created.client_id]);
    expect([rotate.code, rotate.stderr]).toEqual([1, `portcullis: client ${created.client_id} authenticates with its keys: it has no secret (client update --jwks-file replaces its keys)\n`]);
  });

  it('an Ed25519 key registered as EdDSA takes assertions signed as Ed25519 (openid-client v6), and the other way round: one algorithm (RFC 9864)', async () => {
    const key = await keyPair('EdDSA', 'ed');
    for (const [registered, signed] of [['EdDSA', 'Ed25519'], ['Ed25519', 'EdDSA'], ['EdDSA', 'EdDSA']]) {
      const created = await createWithKeys(`Signs as ${signed}`, ['--jwks-file', jsonFile({ ...key.publicJwk, alg: registered })]);
      expect((await clientCredentialsWith(await assertion(created.client_id, { ...key, alg: signed! }))).status, `${registered} / ${signed}`).toBe(200);
      // The registration keeps the key as given.
      const shown = await pc.cli(['client', 'show', created.client_id, '--json']);
      expect(JSON.parse(shown.stdout).jwks.keys[0].alg).toBe(registered);
    }
    // An RSA key's alg still holds: PS256 and RS256 are two algorithms.
    const rsa = await keyPair('RS256', 'rsa');
    const created = await createWithKeys('RS256 only', ['--jwks-file', jsonFile({ ...rsa.publicJwk, alg: 'RS256' })]);
    const asPss = await importJWK(await exportJWK(rsa.privateKey), 'PS256');
    expect((await clientCredentialsWith(await assertion(created.client_id, { ...rsa, privateKey: asPss, alg: 'PS256' }))).status).toBe(401);
    expect((await clientCredentialsWith(await assertion(created.client_id, rsa))).status).toBe(200);
  });

  it('update replaces the keys: the new one works at once, the old one no longer does', async () => {
    const first = await keyPair('RS256', 'first');
    const second = await keyPair('EdDSA', 'second');
    const created = await createWithKeys('Payroll', ['--jwks-file', jsonFile(first.publicJwk)]);
    expect((await clientCredentialsWith(await assertion(created.client_id, first))).status).toBe(200);
    const updated = await pc.cli(['client', 'update', created.client_id, '--jwks-file', jsonFile({ keys: [second.publicJwk] }), '--json']);
    expect(updated.code, updated.stderr).toBe(0);
    expect(JSON.parse(updated.stdout)).toMatchObject({ token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [second.publicJwk] } });
    // The server hears of the change from the database (a notification on PostgreSQL): within moments.
    const deadline = Date.now() + 5000;
    while ((await clientCredentialsWith(await assertion(created.client_id, second))).status !== 200) {
      expect(Date.now()).toBeLessThan(deadline);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    for (let i = 0; i < 3; i++) {
      expect((await clientCredentialsWith(await assertion(created.client_id, second))).status).toBe(200);
      expect(await clientCredentialsWith(await assertion(created.client_id, first))).toMatchObject({ status: 401, body: { error: 'invalid_client' } });
    }

    // A client made with a secret keeps it: keys are another registration.
    const secretive = await pc.createClient({ name: 'Secretive', redirectUris: [REDIRECT_URI] });
    const refused = await pc.cli(['client', 'update', secretive.client_id, '--jwks-file', jsonFile(second.publicJwk)]);
    expect([refused.code, refused.stderr]).toEqual([
      1, `portcullis: client ${secretive.client_id} authenticates with a secret: keys are for a client made with them (client create --jwks-file)\n`,
    ]);
  });

  it('refuses keys that could not prove anything, or that should never have left the client', async () => {
    const ec = await keyPair('ES256', 'ec');
    // (jose makes no RSA key that short.)
    const short = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ format: 'jwk' });
    const cases: [string[], string][] = [
      [['--jwks-file', jsonFile({ keys: [{ ...ec.publicJwk, d: 'c2VjcmV0' }] })], 'key 1 (kid "ec") holds private key material (d): register the public key only, and treat this private key as exposed'],
      [['--jwks-file', jsonFile({ keys: [] })], 'the JWK Set holds no key'],
      [['--jwks-file', jsonFile({ keys: [{ kty: 'oct', k: 'c2VjcmV0' }] })], 'key 1 holds private key material (k): register the public key only, and treat this private key as exposed'],
      [['--jwks-file', jsonFile({ keys: [{ ...ec.publicJwk, use: 'enc' }] })], 'key 1 (kid "ec") is not for signatures ("use" must be "sig" or absent)'],
      [['--jwks-file', jsonFile({ keys: [{ ...ec.publicJwk, alg: 'RS256' }] })], 'key 1 (kid "ec") is an EC key, which does not sign with RS256'],
      [['--jwks-file', jsonFile({ keys: [ec.publicJwk, ec.publicJwk] })], 'key 2 (kid "ec"): two keys have that kid'],
      [['--jwks-file', jsonFile({ keys: [{ ...ec.publicJwk, x: 'AAAA' }] })], 'key 1 (kid "ec") is not a valid public key'],
      [['--jwks-file', jsonFile({ keys: [short] })], 'key 1 is an RSA key of 1024 bits; use 2048 to 8192'],
      [['--jwks-file', jsonFile([ec.publicJwk])], 'the keys must be a JWK Set ({"keys": [...]}) or one JWK'],
      // Keys that verify signatures nobody made: an RSA exponent of 1, an Ed25519 point of small order (here the identity).
      // A modulus with a small factor (3 × a 2046-bit prime): its private exponent follows from it.
      [['--jwks-file', jsonFile({ kty: 'RSA', e: 'AQAB', n: bigBase64url(3n * generatePrimeSync(2046, { bigint: true })) })], 'key 1 is not a usable RSA public key (its modulus is prime, a square or has a small factor: anyone could sign with it)'],
      [['--jwks-file', jsonFile({ ...ec.publicJwk, x: `${ec.publicJwk.x!.replace(/-/g, '+')}=` })], 'key 1 (kid "ec") has a "x" that is not base64url (RFC 7518: A-Z, a-z, 0-9, - and _, no padding)'],
      // Base64url in its one spelling: "AQB" decodes as "AQA" does (unused bits set), and would be stored so.
      [['--jwks-file', jsonFile({ ...(await keyPair('RS256', 'spelt')).publicJwk, e: 'AQB' })], 'key 1 (kid "spelt") has a "e" that is not base64url (RFC 7518: A-Z, a-z, 0-9, - and _, no padding)'],
      [['--jwks-file', jsonFile({ kty: 'OKP', crv: 'Ed25519', x: Buffer.alloc(32, 0xff).toString('base64url') })], 'key 1 is not a valid Ed25519 public key (no point of the curve, or not in its one encoding)'],
      [['--jwks-file', jsonFile({ ...(await keyPair('RS256', 'e1')).publicJwk, e: 'AQ' })], 'key 1 (kid "e1") is an RSA key whose public exponent is not an odd number from 65537 to 2^32 (use 65537)'],
      // Small odd exponents too (3, and 65535 just under the floor): no signer uses them.
      [['--jwks-file', jsonFile({ ...(await keyPair('RS256', 'e3')).publicJwk, e: 'Aw' })], 'key 1 (kid "e3") is an RSA key whose public exponent is not an odd number from 65537 to 2^32 (use 65537)'],
      [['--jwks-file', jsonFile({ ...(await keyPair('RS256', 'e65535')).publicJwk, e: '__8' })], 'key 1 (kid "e65535") is an RSA key whose public exponent is not an odd number from 65537 to 2^32 (use 65537)'],
      [['--jwks-file', jsonFile({ kty: 'OKP', crv: 'Ed25519', x: Buffer.from([1, ...new Array<number>(31).fill(0)]).toString('base64url') })], 'key 1 is not a usable Ed25519 public key (a point of small order, which verifies forged signatures)'],
      [['--jwks-file', jsonFile(ec.publicJwk), '--public'], 'a public client has no credentials: keys (--jwks-file) are for a confidential one'],
    ];
    for (const [options, message] of cases) {
      const result = await pc.cli(['client', 'create', '--name', 'Refused', '--redirect-uri', REDIRECT_URI, ...options.filter((option) => option !== '--public'), ...(options.includes('--public') ? ['--public'] : [])]);
      expect([result.code, result.stderr], options.join(' ')).toEqual([1, `portcullis: ${message}\n`]);
    }
    // A file that is none, or not a key set: one line each, nothing read that could not be one.
    const big = path.join(dir, 'big.json');
    writeFileSync(big, JSON.stringify({ keys: [], padding: 'x'.repeat(70_000) }));
    const truncated = path.join(dir, 'truncated.json');
    writeFileSync(truncated, '{"keys": [');
    for (const [file, message] of [
      [path.join(dir, 'missing.json'), 'cannot be read (ENOENT)'],
      [dir, 'a directory, not a file'],
      [big, `${statSync(big).size} bytes; a JWK Set of public keys takes far less than 65536`],
      [truncated, 'not JSON in UTF-8 (a JWK Set, {"keys": [...]}, or one JWK)'],
    ] as const) {
      const result = await pc.cli(['client', 'create', '--name', 'Refused', '--redirect-uri', REDIRECT_URI, '--jwks-file', file]);
      expect([result.code, result.stderr]).toEqual([1, `portcullis: --jwks-file ${file}: ${message}\n`]);
    }
    // A pipe is read as a file is (bash's <(...) is one).
    const fifo = path.join(dir, 'keys.fifo');
    execFileSync('mkfifo', [fifo]);
    const [piped] = await Promise.all([
      pc.cli(['client', 'create', '--name', 'Piped', '--redirect-uri', REDIRECT_URI, '--jwks-file', fifo, '--json']),
      writeFile(fifo, JSON.stringify(ec.publicJwk)),
    ]);
    expect(piped.code, piped.stderr).toBe(0);
    expect(JSON.parse(piped.stdout)).toMatchObject({ jwks: { keys: [ec.publicJwk] } });
    // A byte order mark (PowerShell writes one) is not the file's content.
    const marked = path.join(dir, 'marked.json');
    writeFileSync(marked, `\ufeff${JSON.stringify(ec.publicJwk)}`);
    expect((await pc.cli(['client', 'create', '--name', 'Marked', '--redirect-uri', REDIRECT_URI, '--jwks-file', marked])).code).toBe(0);
    const clients = JSON.parse((await pc.cli(['client', 'list', '--json'])).stdout) as { client_name: string }[];
    expect(clients.map((client) => client.client_name)).not.toContain('Refused');
  });
});
