// Failure paths no other test reaches: what was sealed for a sign-in or a
// device under an encryption key dropped since (ENCRYPTION_KEYS moved on, see
// README "Secrets at rest"), a client that resets its connection while its
// request is read, and a database failing while a password is checked.
import { connect } from 'node:net';
import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { startServer, type RunningServer } from '../../src/server.js';
import { basicAuth, pageKind, REDIRECT_URI, signIn, signInRefusal, visit } from '../support/relying-party.js';
import { startPortcullis, type TestPortcullis } from '../support/portcullis.js';
import { UserAgent } from '../support/user-agent.js';

const KEY_A = 'the-first-encryption-key-of-this-deployment-0123456';
const KEY_B = 'the-second-encryption-key-of-this-deployment-654321';
const alice = { email: 'alice@example.com', password: 'alices long password' };

let pc: TestPortcullis;
let server: RunningServer;
let web: { client_id: string; client_secret?: string };
let tv: { client_id: string };
/** Every line the running server logged (debug included), and its error lines. */
const lines: string[] = [];
const errors = () => lines.filter((line) => line.includes('"level":"error"'));

async function restart(keys: string): Promise<void> {
  await server.close();
  server = await startServer(loadConfig({ ...pc.env, ENCRYPTION_KEYS: keys }), createLogger('debug', (line) => lines.push(line)));
}

const query = (text: string, values: unknown[] = []) => pc.outsideQuery(text, values);

beforeAll(async () => {
  pc = await startPortcullis({ ENCRYPTION_KEYS: KEY_A, SIGN_IN_MAX_FAILURES: '2' });
  server = pc.server;
  await restart(KEY_A); // the same server, its debug lines kept
  await pc.createUser(alice.email, alice.password);
  web = await pc.createClient({ name: 'Pushing app', redirectUris: [REDIRECT_URI] });
  tv = await pc.createClient({ name: 'Sealed TV', public: true, grantTypes: ['urn:ietf:params:oauth:grant-type:device_code'], scope: 'openid' });
});

beforeEach(() => {
  lines.length = 0;
});

afterAll(async () => {
  await server?.close();
  await pc?.database.drop();
});

it('a client that resets its connection while its form is read is a debug line, not an error', async () => {
  const from = lines.length;
  const socket = connect(Number(pc.env.PORT), '127.0.0.1');
  socket.on('error', () => {});
  await new Promise((resolve) => socket.once('connect', resolve));
  // Half a form: the server waits for the rest, which never comes.
  socket.write('POST /token HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant_type');
  // Time for the server to be reading the body (a busy machine's too), then the reset.
  await new Promise((resolve) => setTimeout(resolve, 500));
  socket.resetAndDestroy();
  const deadline = Date.now() + 5_000;
  while (!lines.slice(from).some((line) => line.includes('"message":"request"')) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  const logged = lines.slice(from).map((line) => JSON.parse(line) as { level: string; message: string; error?: string; path?: string; aborted?: boolean });
  expect(logged.filter((line) => line.message === 'request failed on the client side')).toEqual([
    expect.objectContaining({ level: 'debug', error: expect.stringContaining('ECONNRESET') }),
  ]);
  expect(logged.find((line) => line.message === 'request')).toMatchObject({ path: '/token', aborted: true });
  expect(errors()).toEqual([]);
});

it('a password check the database fails gives its turn back: once the database answers, the email signs in', async () => {
  // With SIGN_IN_MAX_FAILURES 2, a turn kept by each failed check would leave none after two.
  await query('ALTER TABLE passwords RENAME TO passwords_away');
  try {
    for (let failed = 0; failed < 2; failed++) {
      const ua = new UserAgent();
      const page = await signIn(ua, await visit(ua, authorizationUrl()), alice.email, alice.password);
      expect(page.status).toBe(503);
    }
  } finally {
    await query('ALTER TABLE passwords_away RENAME TO passwords');
  }
  // One line for the spell (the database's trouble, not a request's).
  expect(errors().map((line) => JSON.parse(line).message)).toEqual(['database without its tables']);
  lines.length = 0;
  const ua = new UserAgent();
  const page = await signIn(ua, await visit(ua, authorizationUrl()), alice.email, alice.password);
  expect(signInRefusal(page)).toBeUndefined();
  expect(pageKind(page)).toBe('consent');
});

it('a user code whose device code was sealed with a key no longer configured is as good as gone: not right, no error', async () => {
  const asked = await fetch(`${pc.issuer}/device/auth`, { method: 'POST', body: new URLSearchParams({ client_id: tv.client_id, scope: 'openid' }) });
  const { user_code: userCode } = (await asked.json()) as { user_code: string };
  // The row as an instance with another first key would have sealed it (the key id is not one of ours).
  const { rowCount } = await query(
    `UPDATE provider_artifacts SET payload = jsonb_set(payload, '{sealedJti}', to_jsonb('v1.AAAAAAAA.' || split_part(payload->>'sealedJti', '.', 3)))
     WHERE kind = 'DeviceCode' AND payload->>'clientId' = $1`,
    [tv.client_id],
  );
  expect(rowCount).toBe(1);
  const ua = new UserAgent();
  const entry = await ua.open(`${pc.issuer}/device`);
  const page = await ua.post(entry, '/device', { ...UserAgent.formFields(entry, '/device'), user_code: userCode });
  expect(page.status).toBe(200); // as for any wrong code (device-flow.test.ts)
  expect(page.html).toContain('That code is not right.');
  expect(errors()).toEqual([]);
});

it('a pushed request whose sign-in was left open while the encryption key moved on (A, then B and A, then B) still ends in a code', async () => {
  const pushed = await fetch(`${pc.issuer}/request`, {
    method: 'POST',
    headers: { authorization: basicAuth(web.client_id, web.client_secret!) },
    body: new URLSearchParams({
      response_type: 'code',
      client_id: web.client_id,
      redirect_uri: REDIRECT_URI,
      scope: 'openid',
      state: 'pushed-state',
      code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
      code_challenge_method: 'S256',
    }),
  });
  expect(pushed.status).toBe(201);
  const { request_uri: requestUri } = (await pushed.json()) as { request_uri: string };
  const ua = new UserAgent();
  const login = await visit(ua, `${pc.issuer}/auth?client_id=${web.client_id}&request_uri=${encodeURIComponent(requestUri)}`);
  expect(pageKind(login)).toBe('login');

  // The README's move: the new key first, the old after it; then the new one alone.
  await restart(`${KEY_B},${KEY_A}`);
  await restart(KEY_B);
  let page = await signIn(ua, login, alice.email, alice.password);
  if (pageKind(page) === 'consent') page = await ua.post(page, UserAgent.formAction(page, '/confirm'), UserAgent.formFields(page, '/confirm'), REDIRECT_URI);
  expect(pageKind(page)).toBe('callback');
  const callback = new URL(page.url);
  expect(callback.searchParams.get('state')).toBe('pushed-state');
  expect(callback.searchParams.get('code')).toBeTruthy();
  expect(errors()).toEqual([]);
});

it('a device\'s sign-in left open while the encryption key moved on ends as one whose code expired, not as a changed registration', async () => {
  const KEY_C = 'the-third-encryption-key-of-this-deployment-0246813';
  const asked = await fetch(`${pc.issuer}/device/auth`, { method: 'POST', body: new URLSearchParams({ client_id: tv.client_id, scope: 'openid' }) });
  const { user_code: userCode, device_code: deviceCode } = (await asked.json()) as { user_code: string; device_code: string };
  const ua = new UserAgent();
  const entry = await ua.open(`${pc.issuer}/device`);
  const confirmation = await ua.post(entry, '/device', { ...UserAgent.formFields(entry, '/device'), user_code: userCode });
  const login = await ua.post(confirmation, UserAgent.formAction(confirmation, '/device'), UserAgent.formFields(confirmation, '/device'));
  expect(pageKind(login)).toBe('login');
  await restart(`${KEY_C},${KEY_B}`);
  await restart(KEY_C);
  const page = await signIn(ua, login, alice.email, alice.password);
  expect(page.html).not.toContain('The application changed its settings');
  expect(page.html).toContain('This sign-in has ended.');
  expect(lines.some((line) => line.includes('registration changed meanwhile'))).toBe(false);
  const polled = await fetch(`${pc.issuer}/token`, { method: 'POST', body: new URLSearchParams({ client_id: tv.client_id, grant_type: 'urn:ietf:params:oauth:grant-type:device_code', device_code: deviceCode }) });
  expect(polled.status).toBe(400); // authorization_pending until the code expires, then expired_token
  expect(errors()).toEqual([]);
});

function authorizationUrl(): string {
  const params = new URLSearchParams({
    response_type: 'code',
    client_id: web.client_id,
    redirect_uri: REDIRECT_URI,
    scope: 'openid',
    state: 'st',
    code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
    code_challenge_method: 'S256',
  });
  return `${pc.issuer}/auth?${params}`;
}
