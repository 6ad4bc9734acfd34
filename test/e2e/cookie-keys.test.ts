// Cookie keys given in COOKIE_KEYS rotate without signing anyone out: the first
// key signs, every listed key verifies, and a cookie verified by a later key is
// signed again with the first. A signature altered, or made with a key no
// longer listed, is no session.
import * as oidc from 'openid-client';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { startServer, type RunningServer } from '../../src/server.js';
import { startPortcullis, type TestPortcullis } from '../support/portcullis.js';
import { discover, logIn, REDIRECT_URI } from '../support/relying-party.js';
import { UserAgent } from '../support/user-agent.js';

const FIRST = 'the-cookie-key-this-deployment-started-with-0123456789';
const NEXT = 'the-cookie-key-that-replaces-it-0123456789-abcdefghijk';
const carol = { email: 'carol@example.com', password: 'a long enough password' };

let pc: TestPortcullis;
let server: RunningServer;
let app: oidc.Configuration;

beforeAll(async () => {
  pc = await startPortcullis({ COOKIE_KEYS: FIRST });
  server = pc.server;
  await pc.createUser(carol.email, carol.password);
  const client = await pc.createClient({ name: 'Rotating', redirectUris: [REDIRECT_URI] });
  app = await discover(pc.issuer, client.client_id, client.client_secret);
});

afterAll(async () => {
  expect(pc?.errors ?? []).toEqual([]);
  await server?.close();
  await pc?.database.drop();
});

async function restartWith(cookieKeys: string): Promise<void> {
  await server.close();
  server = await startServer(loadConfig({ ...pc.env, COOKIE_KEYS: cookieKeys }), createLogger('silent'));
}

/** The pages a sign-in through `app` showed: none when the session carried it. */
async function signInShows(ua: UserAgent): Promise<string[]> {
  return (await logIn(ua, app, 'openid', carol)).seen;
}

it('a session signed with a key listed after the first still holds, and is signed again with the first', async () => {
  const ua = new UserAgent();
  expect(await signInShows(ua)).toEqual(['login', 'consent']);
  const signedWithFirst = ua.cookie('_session.sig');
  expect(signedWithFirst).toBeTruthy();

  await restartWith(`${NEXT},${FIRST}`);
  expect(await signInShows(ua)).toEqual([]);
  const signedAgain = ua.cookie('_session.sig');
  expect(signedAgain).toBeTruthy();
  expect(signedAgain).not.toBe(signedWithFirst);

  // The first key can go: the session was signed again with the next one.
  await restartWith(NEXT);
  expect(await signInShows(ua)).toEqual([]);
});

it('a session cookie whose signature was altered, or made with a key no longer listed, is no session', async () => {
  const altered = new UserAgent();
  expect(await signInShows(altered)).toContain('login');
  expect(await signInShows(altered)).toEqual([]);
  altered.alterCookie('_session.sig', (value) => `${value[0] === 'A' ? 'B' : 'A'}${value.slice(1)}`);
  expect(await signInShows(altered)).toContain('login');

  const dropped = new UserAgent();
  expect(await signInShows(dropped)).toContain('login');
  await restartWith('a-cookie-key-listed-for-the-first-time-0123456789');
  expect(await signInShows(dropped)).toContain('login');
});
