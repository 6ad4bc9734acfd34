// Private signing keys, cookie keys, TOTP keys and the secret of pairwise identifiers are sealed in the database: what a dump
// of it holds signs nothing, the server still signs with them, rows stored in
// the plain by earlier versions are sealed in place, and a wrong encryption key
// stops the server and the CLI before they change anything.
import { createHmac } from 'node:crypto';
import { connect } from 'node:net';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { calculateJwkThumbprint, createRemoteJWKSet, decodeProtectedHeader, exportJWK, generateKeyPair, jwtVerify, type JWK } from 'jose';
import * as oidc from 'openid-client';
import * as OTPAuth from 'otpauth';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { startServer, type RunningServer } from '../../src/server.js';
import { freePort, runCli, startPortcullis, type TestPortcullis } from '../support/portcullis.js';
import { allow, authorizationRequest, discover, pageKind, REDIRECT_URI, signIn, signInRefusal, visit } from '../support/relying-party.js';
import { UserAgent } from '../support/user-agent.js';

const API = 'https://sealed.example.com';
const SEALED = /^v1\.[\w-]{8}\.[\w-]{40,}$/;
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k'];

let pc: TestPortcullis;
let server: RunningServer;
let robot: { client_id: string; client_secret?: string };
let web: { client_id: string; client_secret?: string };
let pairwise: { client_id: string };

interface KeyRow {
  kid: string;
  jwk: JWK;
  private_jwk: string | null;
}

async function query<T>(text: string, values: unknown[] = []): Promise<T[]> {
  const db = pc.outsideConnection();
  await db.connect();
  try {
    return (await db.query(text, values)).rows as T[];
  } finally {
    await db.end();
  }
}

const signingKeys = () => query<KeyRow>('SELECT kid, jwk, private_jwk FROM signing_keys ORDER BY kid');
const cookieKeys = () => query<{ id: string; secret: string }>('SELECT id, secret FROM cookie_keys ORDER BY created_at DESC');
const serverSecrets = () => query<{ name: string; secret: string }>('SELECT name, secret FROM server_secrets ORDER BY name');

/** The sub a pairwise client knows Pat by, as the CLI (under `env`) derives it. */
async function patsPairwiseSub(env: Record<string, string>): Promise<string> {
  const shown = await runCli(['user', 'show', 'pat@example.com', '--client', pairwise.client_id, '--json'], env);
  expect(shown.code, shown.stderr).toBe(0);
  return (JSON.parse(shown.stdout) as { subject: { sub: string } }).subject.sub;
}

/** A JWT access token for the API, and the kid that signed it, verified against the served JWKS. */
async function signedToken(): Promise<string> {
  const rp = await oidc.discovery(new URL(pc.issuer), robot.client_id, robot.client_secret, undefined, { execute: [oidc.allowInsecureRequests] });
  const { access_token } = await oidc.clientCredentialsGrant(rp, { resource: API, scope: 'read' });
  await jwtVerify(access_token, createRemoteJWKSet(new URL(`${pc.issuer}/jwks`)), { issuer: pc.issuer, audience: API });
  return decodeProtectedHeader(access_token).kid!;
}

async function restart(env: Record<string, string> = pc.env, log?: (line: string) => void, level: 'warn' | 'debug' = 'warn'): Promise<RunningServer> {
  return startServer(loadConfig(env), log ? createLogger(level, log) : createLogger('silent'));
}

beforeAll(async () => {
  pc = await startPortcullis();
  server = pc.server;
  const api = await pc.cli(['api', 'create', '--identifier', API, '--scope', 'read', '--token-format', 'jwt']);
  if (api.code !== 0) throw new Error(api.stderr);
  robot = await pc.createClient({ name: 'Sealed robot', grantTypes: ['client_credentials'], scope: 'read' });
  web = await pc.createClient({ name: 'Sealed web app', redirectUris: [REDIRECT_URI] });
  const made = await pc.cli(['client', 'create', '--name', 'Pairwise app', '--redirect-uri', 'https://pairwise.example.com/cb', '--subject-type', 'pairwise', '--json']);
  if (made.code !== 0) throw new Error(made.stderr);
  pairwise = JSON.parse(made.stdout) as { client_id: string };
  await pc.createUser('pat@example.com', 'pats long password');
  const tess = await pc.cli(['user', 'create', '--email', 'tess@example.com', '--password-stdin', '--totp', 'required'], 'tess has a long password\n');
  if (tess.code !== 0) throw new Error(tess.stderr);
});

const totpSecrets = () => query<{ secret: string }>('SELECT secret FROM totp_secrets');

/**
 * Tess signs in to the web app with her password and a TOTP code (`totp`'s,
 * of the step `step`), setting up the key her setup page shows if she has
 * none yet: that key. Refused if the code is.
 */
async function tessSignsIn(step: number, totp?: OTPAuth.TOTP): Promise<OTPAuth.TOTP> {
  const ua = new UserAgent();
  const login = await visit(ua, (await authorizationRequest(await discover(pc.issuer, web.client_id, web.client_secret), 'openid')).url);
  const page = await signIn(ua, login, 'tess@example.com', 'tess has a long password');
  const shown = /<code[^>]*id="totp-key"[^>]*>([^<]*)</.exec(page.html)?.[1];
  const key = totp ?? new OTPAuth.TOTP({ secret: OTPAuth.Secret.fromBase32(shown!.replace(/ /g, '')) });
  let next = await ua.post(page, UserAgent.formAction(page, '/totp'), { ...UserAgent.formFields(page, '/totp'), code: key.generate({ timestamp: step * 30_000 }) }, REDIRECT_URI);
  if (pageKind(next) === 'consent') next = await allow(ua, next);
  expect(pageKind(next), next.html.slice(0, 500)).toBe('callback');
  return key;
}

afterAll(async () => {
  await server?.close();
  await pc?.database.drop();
});

it('debug request lines name the route of a sign-in in progress, never its id (ids are stored only as digests)', async () => {
  const lines: string[] = [];
  await server.close();
  server = await restart(pc.env, (line) => lines.push(line), 'debug');
  const rp = await discover(pc.issuer, web.client_id, web.client_secret);
  const ua = new UserAgent();
  const login = await visit(ua, (await authorizationRequest(rp, 'openid')).url);
  const uid = /\/interaction\/([^/?#]+)/.exec(login.url)![1]!;
  // A failed sign-in is logged at info level, with a reference to the sign-in rather than its id.
  expect(signInRefusal(await signIn(ua, login, 'nobody@example.com', 'a wrong password'))).toBe('wrong_credentials');
  // The routers match any case: so does the redaction.
  for (const path of [`/INTERACTION/${uid}`, `/Auth/${uid}`, `//interaction/${uid}/login`]) await (await fetch(`${pc.issuer}${path}`)).arrayBuffer();
  // A status is logged as sent: the library's 200 for a token of no scope is answered invalid_scope.
  const refused = await fetch(`${pc.issuer}/token`, {
    method: 'POST',
    headers: { authorization: `Basic ${Buffer.from(`${robot.client_id}:${robot.client_secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: 'grant_type=client_credentials&scope=nothing-known',
  });
  expect(refused.status).toBe(400);
  const id = refused.headers.get('x-request-id')!;
  // A client with a wrong base URL may put a token in the path: an address nothing serves is not logged as it was asked.
  const misdirected = await fetch(`${pc.issuer}/oauth/userinfo/${robot.client_secret}`);
  expect(misdirected.status).toBe(404);
  await new Promise((resolve) => setTimeout(resolve, 100)); // logged once the response is done
  const requests = lines.filter((line) => line.includes('"message":"request"'));
  expect(requests.find((line) => line.includes(id))).toMatch(/"path":"\/token","status":400,/);
  // A client that goes away before the answer: no status the route did not send.
  const { hostname, port } = new URL(pc.issuer);
  await new Promise<void>((resolve) => {
    const socket = connect(Number(port), hostname, () => {
      socket.write(`POST /token/introspection HTTP/1.1\r\nHost: ${hostname}:${port}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ntoken=`);
      setTimeout(() => socket.destroy(), 100);
    });
    socket.on('close', () => resolve());
  });
  await new Promise((resolve) => setTimeout(resolve, 100));
  const gone = lines.filter((line) => line.includes('"message":"request"') && line.includes('"path":"/token/introspection"'));
  expect(gone).toHaveLength(1);
  expect(gone[0]).toMatch(/"status":null,"aborted":true,/);
  expect(requests.some((line) => line.includes('"path":"/interaction/:uid"'))).toBe(true);
  expect(lines.some((line) => line.includes('"message":"login failed"') && /"interaction":"[\w-]{12}"/.test(line) && line.includes(`"client":"${web.client_id}"`))).toBe(true);
  expect(lines.join('\n')).not.toContain(uid);
  expect(lines.join('\n')).not.toContain(robot.client_secret);
  expect(requests.find((line) => line.includes(misdirected.headers.get('x-request-id')!))).toMatch(/"path":"\(an address nothing serves\)","status":404,/);
});

it('stored sign-ins in progress name neither their own id nor the session cookie of the browser', async () => {
  await pc.createUser('sam@example.com', 'sams long password');
  const rp = await discover(pc.issuer, web.client_id, web.client_secret);
  const ua = new UserAgent();
  const request = await authorizationRequest(rp, 'openid');
  const consent = await signIn(ua, await visit(ua, request.url), 'sam@example.com', 'sams long password');
  expect(pageKind(consent)).toBe('consent');
  // The consent step's interaction started from a session: the library records the session in it.
  const uid = /\/interaction\/([^/?#]+)/.exec(consent.url)![1]!;
  const session = ua.cookie('_session')!;
  expect(session).toBeTruthy();
  const rows = await query<{ kind: string; id: string; payload: string }>('SELECT kind, id, payload::text AS payload FROM provider_artifacts');
  const interaction = rows.filter((row) => row.kind === 'Interaction' && row.payload.includes('"accountId"'));
  expect(interaction.length).toBeGreaterThan(0);
  // Neither as a row's key (ids are kept as digests) nor inside any row.
  const dump = rows.map((row) => `${row.id} ${row.payload}`).join('\n');
  expect(dump).not.toContain(uid);
  expect(dump).not.toContain(session);
  // And the sign-in still goes on: the library reads back what it stored.
  const done = await allow(ua, consent);
  expect(pageKind(done)).toBe('callback');
});

it('a sign-in from a pushed request stores the request id only sealed, and still uses the request up', async () => {
  await pc.createUser('pia@example.com', 'pias long password');
  const rp = await discover(pc.issuer, web.client_id, web.client_secret);
  const verifier = oidc.randomPKCECodeVerifier();
  const url = await oidc.buildAuthorizationUrlWithPAR(rp, {
    redirect_uri: REDIRECT_URI,
    scope: 'openid',
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
  });
  const requestId = url.searchParams.get('request_uri')!.split(':').at(-1)!;
  const ua = new UserAgent();
  const consent = await signIn(ua, await visit(ua, url), 'pia@example.com', 'pias long password');
  expect(pageKind(consent)).toBe('consent');
  const rows = await query<{ payload: string }>("SELECT payload::text AS payload FROM provider_artifacts WHERE kind = 'Interaction'");
  expect(rows.some((row) => row.payload.includes('"parJti"'))).toBe(true);
  expect(rows.map((row) => row.payload).join('\n')).not.toContain(requestId);
  const done = await allow(ua, consent);
  expect(pageKind(done)).toBe('callback');
  // Used up on the way: the same request_uri starts nothing now (RFC 9126 §4);
  // the client registered one redirect URI, so the error goes back to it.
  const again = await visit(new UserAgent(), url);
  expect(pageKind(again)).toBe('callback');
  expect(new URL(again.url).searchParams.get('error')).toBe('invalid_request_uri');
  expect(new URL(again.url).searchParams.get('code')).toBeNull();
});

it('stores only public JWKs and sealed private keys and cookie keys, and signs with the keys it unseals', async () => {
  const rows = await signingKeys();
  expect(rows.map((row) => row.jwk.alg).sort()).toEqual(['ES256', 'RS256']);
  for (const row of rows) {
    for (const member of PRIVATE_MEMBERS) expect(row.jwk).not.toHaveProperty(member);
    expect(row.private_jwk).toMatch(SEALED);
  }
  const served = (await (await fetch(`${pc.issuer}/jwks`)).json()) as { keys: JWK[] };
  expect(served.keys.map((key) => key.kid).sort()).toEqual(rows.map((row) => row.kid));

  const cookies = await cookieKeys();
  expect(cookies.length).toBeGreaterThan(0);
  for (const row of cookies) expect(row.secret).toMatch(SEALED);
  // The secrets of pairwise identifiers and of TOTP keys, made by the server's start.
  const secrets = await serverSecrets();
  expect(secrets.map((row) => row.name)).toEqual(['pairwise subjects', 'totp keys']);
  for (const row of secrets) expect(row.secret).toMatch(SEALED);

  expect(rows.map((row) => row.kid)).toContain(await signedToken());

  // Without ENCRYPTION_KEYS the key was generated into a file only its owner can read.
  const { encryption } = loadConfig(pc.env);
  expect(encryption.kind).toBe('file');
  const file = await stat((encryption as { path: string }).path);
  expect(file.mode & 0o077).toBe(0);
});

it('seals signing and cookie keys an earlier version stored in the plain, and keeps using them', async () => {
  // An ES256 key as earlier versions stored it: the whole private JWK in `jwk`.
  const { privateKey } = await generateKeyPair('ES256', { extractable: true });
  const exported = await exportJWK(privateKey);
  const kid = await calculateJwkThumbprint(exported);
  const legacyJwk = { ...exported, kid, alg: 'ES256', use: 'sig' };
  const legacyCookieSecret = 'an-earlier-versions-cookie-key-kept-in-the-plain';
  await query(`UPDATE signing_keys SET rotated_at = now(), publish_until = now() + interval '1 day' WHERE alg = 'ES256'`);
  await query(`INSERT INTO signing_keys (kid, alg, jwk, activates_at) VALUES ($1, 'ES256', $2, now())`, [kid, JSON.stringify(legacyJwk)]);
  await query(`INSERT INTO cookie_keys (id, secret, created_at) VALUES ('legacy', $1, now() + interval '1 minute')`, [legacyCookieSecret]);

  await server.close();
  server = await restart();

  const legacy = (await signingKeys()).find((row) => row.kid === kid)!;
  for (const member of PRIVATE_MEMBERS) expect(legacy.jwk).not.toHaveProperty(member);
  expect(legacy.jwk).toMatchObject({ kid, x: exported.x, y: exported.y });
  expect(legacy.private_jwk).toMatch(SEALED);
  expect(JSON.stringify(await signingKeys())).not.toContain(exported.d);
  expect(await signedToken()).toBe(kid);

  const [newest] = await cookieKeys();
  expect(newest!.id).toBe('legacy');
  expect(newest!.secret).toMatch(SEALED);
  expect(newest!.secret).not.toContain(legacyCookieSecret);
  // The newest cookie key still signs cookies: the unsealed secret is the one stored before.
  const authorize = new URL(`${pc.issuer}/auth`);
  authorize.search = new URLSearchParams({ client_id: web.client_id, response_type: 'code', scope: 'openid', redirect_uri: REDIRECT_URI, code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256' }).toString();
  const response = await fetch(authorize, { redirect: 'manual' });
  expect(response.status).toBe(303);
  const set = response.headers.getSetCookie();
  const cookie = set.map((line) => line.split(';')[0]!).find((pair) => pair.startsWith('_interaction='));
  const signature = set.map((line) => line.split(';')[0]!).find((pair) => pair.startsWith('_interaction.sig='))?.split('=')[1];
  expect(cookie && signature).toBeTruthy();
  const expected = createHmac('sha1', legacyCookieSecret).update(cookie!).digest('base64').replace(/\//g, '_').replace(/\+/g, '-').replace(/=+$/, '');
  expect(signature).toBe(expected);
});

it("a sealed key copied into another row does not open there: each is sealed to its own row", async () => {
  const [one, other] = (await signingKeys()).filter((row) => row.private_jwk !== null);
  expect(one && other).toBeTruthy();
  // Someone with write access to the database (not the encryption key) swaps a key in.
  await query('UPDATE signing_keys SET private_jwk = $1 WHERE kid = $2', [one!.private_jwk, other!.kid]);
  try {
    const listed = await runCli(['keys', 'list'], pc.env);
    expect(listed.code).toBe(1);
    expect(listed.stderr).toContain(`failed authentication: it was altered, or belongs to another row`);
  } finally {
    await query('UPDATE signing_keys SET private_jwk = $1 WHERE kid = $2', [other!.private_jwk, other!.kid]);
  }
  expect((await runCli(['keys', 'list'], pc.env)).code).toBe(0);
});

it('refuses a wrong encryption key, in the CLI and at start, and changes nothing', async () => {
  const before = { keys: await signingKeys(), cookies: await cookieKeys() };
  const wrong = { ...pc.env, ENCRYPTION_KEYS: 'a-different-encryption-key-of-more-than-32-characters' };

  const rotate = await runCli(['keys', 'rotate'], wrong);
  expect(rotate.code).toBe(1);
  expect(rotate.stderr).toMatch(/^portcullis: signing key \S+ was sealed with encryption key [\w-]{8}, which is not configured/);

  await server.close();
  await expect(restart(wrong)).rejects.toThrow(/was sealed with encryption key [\w-]{8}, which is not configured/);
  server = await restart();
  expect(await signingKeys()).toEqual(before.keys);
  expect(await cookieKeys()).toEqual(before.cookies);
  expect(before.keys.map((row) => row.kid)).toContain(await signedToken());
});

it('given no key where a database holds sealed keys, writes no new key and says what to set', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'portcullis-key-'));
  try {
    const missing = join(dir, 'elsewhere', 'encryption.key');
    const result = await runCli(['keys', 'list'], { ...pc.env, ENCRYPTION_KEY_FILE: missing });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`the encryption key file ${missing} does not exist, and the database holds keys sealed with an encryption key`);
    // A key made now could never open what is stored: none is made.
    expect(existsSync(missing)).toBe(false);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

it('upgrading a database from before keys were sealed, with no key file yet, makes a key and seals the stored keys with it', async () => {
  const other = await startPortcullis();
  const dir = await mkdtemp(join(tmpdir(), 'portcullis-key-'));
  let upgraded: RunningServer | undefined;
  try {
    // As a version before sealing left its database: private keys and cookie keys in the plain, and no key file.
    // The running server keeps what it loaded in memory, and writes no keys as it stops.
    const { privateKey } = await generateKeyPair('ES256', { extractable: true });
    const exported = await exportJWK(privateKey);
    const kid = await calculateJwkThumbprint(exported);
    const db = other.outsideConnection();
    await db.connect();
    try {
      await db.query('DELETE FROM signing_keys');
      await db.query('DELETE FROM cookie_keys');
      // (Releases before sealing had no secret kept for good.)
      await db.query('DELETE FROM server_secrets');
      await db.query(`INSERT INTO signing_keys (kid, alg, jwk, activates_at) VALUES ($1, 'ES256', $2, now())`, [kid, JSON.stringify({ ...exported, kid, alg: 'ES256', use: 'sig' })]);
      await db.query(`INSERT INTO cookie_keys (id, secret) VALUES ('legacy', 'an-earlier-versions-cookie-key-kept-in-the-plain')`);
    } finally {
      await db.end();
    }
    // (Changed with the server running: the embedded database's socket is the server's.)
    await other.server.close();
    const keyFile = join(dir, 'encryption.key');
    upgraded = await restart({ ...other.env, ENCRYPTION_KEY_FILE: keyFile });
    expect((await stat(keyFile)).mode & 0o777).toBe(0o600);
    expect((await readFile(keyFile, 'utf8')).trim()).toMatch(/^[\w-]{43}$/);
    const check = other.outsideConnection();
    await check.connect();
    try {
      const [legacy] = (await check.query<KeyRow>('SELECT kid, jwk, private_jwk FROM signing_keys WHERE kid = $1', [kid])).rows;
      expect(legacy!.private_jwk).toMatch(SEALED);
      for (const member of PRIVATE_MEMBERS) expect(legacy!.jwk).not.toHaveProperty(member);
      expect((await check.query<{ secret: string }>(`SELECT secret FROM cookie_keys WHERE id = 'legacy'`)).rows[0]!.secret).toMatch(SEALED);
    } finally {
      await check.end();
    }
  } finally {
    if (upgraded) await upgraded.close();
    else await other.server.close().catch(() => undefined);
    await other.database.drop();
    await rm(dir, { recursive: true, force: true });
  }
});

it('warns at start when the key file can be read by others than its owner', async () => {
  const { path } = loadConfig(pc.env).encryption as { path: string };
  const lines: string[] = [];
  await server.close();
  await chmod(path, 0o644);
  try {
    server = await restart(pc.env, (line) => lines.push(line));
  } finally {
    await chmod(path, 0o600);
  }
  expect(lines.filter((line) => line.includes('can be read by others than its owner'))).toHaveLength(1);
  await server.close();
  lines.length = 0;
  server = await restart(pc.env, (line) => lines.push(line));
  expect(lines.filter((line) => line.includes('can be read by others than its owner'))).toHaveLength(0);
});

it('moves every sealed secret to a new encryption key listed first, after which the old key can go', async () => {
  const { encryption } = loadConfig(pc.env);
  const oldKey = (await readFile((encryption as { path: string }).path, 'utf8')).trim();
  const newKey = 'the-new-encryption-key-of-this-deployment-0123456789';
  const keyIdOf = (sealed: string) => sealed.split('.')[1];
  const before = await signingKeys();
  const oldId = keyIdOf(before[0]!.private_jwk!);
  for (const row of before) expect(keyIdOf(row.private_jwk!)).toBe(oldId);
  const sub = await patsPairwiseSub(pc.env);
  const step = Math.floor(Date.now() / 30_000);
  const totp = await tessSignsIn(step);
  // TOTP keys are sealed under a server secret (itself sealed under the encryption key), not the encryption key.
  const totpRows = await totpSecrets();
  expect(totpRows.map((row) => [SEALED.test(row.secret), keyIdOf(row.secret) === oldId])).toEqual([[true, false]]);
  // A CLI command run with the new list seals nothing again (only a server's start does): the
  // running servers, on the old key alone, could not start again.
  const tried = await runCli(['keys', 'list'], { ...pc.env, ENCRYPTION_KEYS: `${newKey},${oldKey}` });
  expect(tried.code, tried.stderr).toBe(0);
  expect(await patsPairwiseSub({ ...pc.env, ENCRYPTION_KEYS: `${newKey},${oldKey}` })).toBe(sub);
  for (const row of await signingKeys()) expect(keyIdOf(row.private_jwk!)).toBe(oldId);
  for (const row of await serverSecrets()) expect(keyIdOf(row.secret)).toBe(oldId);

  // A device's user code issued under the old key (kept as a keyed digest) is still found under the new list.
  const tv = await pc.createClient({ name: 'Rotating TV', public: true, grantTypes: ['device_code'], scope: 'openid' });
  const asked = await fetch(`${pc.issuer}/device/auth`, { method: 'POST', body: new URLSearchParams({ client_id: tv.client_id, scope: 'openid' }) });
  const { user_code: userCode } = (await asked.json()) as { user_code: string };
  // A sign-in refused under the old key: the page that explains it is opened under the new list.
  const person = new UserAgent();
  const login = await visit(person, (await authorizationRequest(await discover(pc.issuer, web.client_id, web.client_secret), 'openid')).url);
  const refused = await person.post(login, UserAgent.formAction(login, '/login'), { ...UserAgent.formFields(login, '/login'), email: 'nobody@example.com', password: 'a wrong password' }, login.url);
  expect(refused.status).toBe(303);

  await server.close();
  server = await restart({ ...pc.env, ENCRYPTION_KEYS: `${newKey},${oldKey}` });
  expect(signInRefusal(await person.open(login.url))).toBe('wrong_credentials');
  const ua = new UserAgent();
  const entry = await ua.open(`${pc.issuer}/device`);
  const confirmation = await ua.post(entry, '/device', { ...UserAgent.formFields(entry, '/device'), user_code: userCode });
  expect(confirmation.html).toContain('<h1>Connect <bdi>Rotating TV</bdi>?</h1>');
  const moved = await signingKeys();
  expect(moved.map((row) => row.kid)).toEqual(before.map((row) => row.kid));
  const newId = keyIdOf(moved[0]!.private_jwk!);
  expect(newId).not.toBe(oldId);
  for (const row of moved) expect(keyIdOf(row.private_jwk!)).toBe(newId);
  for (const row of await cookieKeys()) expect(keyIdOf(row.secret)).toBe(newId);
  for (const row of await serverSecrets()) expect(keyIdOf(row.secret)).toBe(newId);
  // The server secret sealed again, the TOTP keys under it stay as they were: an instance still
  // on the old list, which opened the secret at its start, goes on reading them.
  expect(await totpSecrets()).toEqual(totpRows);

  await server.close();
  server = await restart({ ...pc.env, ENCRYPTION_KEYS: newKey });
  // Sealed again, the secret is the same: every pairwise sub stays what the apps know.
  expect(await patsPairwiseSub({ ...pc.env, ENCRYPTION_KEYS: newKey })).toBe(sub);
  // And a person's TOTP key opens under it: her app goes on working.
  await tessSignsIn(step + 1, totp);
  expect(before.map((row) => row.kid)).toContain(await signedToken());
  const withOldKey = await runCli(['keys', 'list'], { ...pc.env, ENCRYPTION_KEYS: oldKey });
  expect(withOldKey.code).toBe(1);
  expect(withOldKey.stderr).toContain(`was sealed with encryption key ${newId}, which is not configured`);
});

it.skipIf(process.env.TEST_DATABASE !== 'postgres')('a server that cannot open signing keys another one resealed is not ready once the keys change, and serves nothing with the old ones, until it is given the key', async () => {
  const current = 'the-new-encryption-key-of-this-deployment-0123456789'; // the running server's, from the test above
  const next = 'the-next-encryption-key-of-this-deployment-987654321';
  const both = { ...pc.env, ENCRYPTION_KEYS: `${next},${current}` };
  const readiness = async () => {
    const response = await fetch(`${pc.issuer}/readyz`);
    return { status: response.status, body: await response.json() };
  };
  expect(await readiness()).toEqual({ status: 200, body: { status: 'ready' } });
  // Another instance, started with the next key first, reseals every stored key with it.
  const other = await restart({ ...both, PORT: String(await freePort()) });
  try {
    // Keys change: this server cannot open them, and would go on signing with the replaced ones.
    const rotated = await runCli(['keys', 'rotate', '--now'], both);
    expect(rotated.code, rotated.stderr).toBe(0);
    const deadline = Date.now() + 20_000;
    while ((await readiness()).status === 200 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
    expect(await readiness()).toEqual({ status: 503, body: { status: 'unavailable', reason: 'the signing keys changed and this server cannot open them (see ENCRYPTION_KEYS)' } });
    // Nor does it serve on with the keys it holds: no token signed with a
    // replaced key, no JWKS that still lists it (one retired as compromised
    // would stay trusted by every API fetching it here). Retried elsewhere.
    for (const [path, init] of [
      ['/jwks', {}],
      ['/.well-known/openid-configuration', {}],
      ['/token', { method: 'POST', headers: { authorization: `Basic ${Buffer.from(`${robot.client_id}:${robot.client_secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' }, body: `grant_type=client_credentials&resource=${encodeURIComponent(API)}&scope=read` }],
    ] as const) {
      const response = await fetch(`${pc.issuer}${path}`, init);
      expect([path, response.status, response.headers.get('retry-after'), await response.json()]).toEqual([path, 503, '5', { error: 'temporarily_unavailable', error_description: 'the service is temporarily unavailable; try again shortly' }]);
    }
    const signIn = await fetch(`${pc.issuer}/auth?client_id=${robot.client_id}&response_type=code&scope=openid`, { headers: { accept: 'text/html' } });
    expect([signIn.status, signIn.headers.get('content-type')]).toEqual([503, 'text/html; charset=utf-8']);
    expect((await fetch(`${pc.issuer}/healthz`)).status).toBe(200);
  } finally {
    await other.close();
  }
  await server.close();
  server = await restart(both);
  expect(await readiness()).toEqual({ status: 200, body: { status: 'ready' } });
  expect((await signingKeys()).map((row) => row.kid)).toContain(await signedToken());
});
