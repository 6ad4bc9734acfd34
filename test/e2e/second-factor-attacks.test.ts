// The TOTP second factor (second-factor.test.ts) attacked by someone who
// knows the person's password: what they must not be able to do without the
// person's authenticator app. Each test here failed when written (review BN).
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPortcullis, type TestPortcullis } from '../support/portcullis.js';
import { authorizationRequest, discover, pageKind, REDIRECT_URI, signIn, visit, type AuthorizationRequest } from '../support/relying-party.js';
import { alertOn, codeAt, CodeClock, ENTER_HEADING, enterCode, isCodePage, keyOn, passwordStep as passwordStepOf, SET_UP_HEADING, setUpTotp, toApp as toAppOf, totpPerson, WRONG_CODE, wrongCode } from '../support/totp.js';
import { UserAgent, type Page } from '../support/user-agent.js';

const PASSWORD = 'a long enough password';
const MAX_FAILURES = 3;
const SCOPE = 'openid email';

let pc: TestPortcullis;
let rp: oidc.Configuration;

beforeAll(async () => {
  // A window longer than any test here, and an address limit out of the way: the email's count is the one under test.
  pc = await startPortcullis({ SIGN_IN_MAX_FAILURES: String(MAX_FAILURES), SIGN_IN_MAX_FAILURES_PER_ADDRESS: '1000', SIGN_IN_FAILURE_WINDOW: '10m' });
  const app = await pc.createClient({ name: 'Second factor app', redirectUris: [REDIRECT_URI] });
  rp = await discover(pc.issuer, app.client_id, app.client_secret);
});

afterAll(async () => {
  expect(pc?.errors ?? []).toEqual([]);
  await pc?.close();
});

const person = (name: string, totp = true) => totpPerson(pc, name, PASSWORD, totp);

async function cliOk(args: string[]): Promise<void> {
  const result = await pc.cli(args);
  expect(result.code, result.stderr).toBe(0);
}

async function totpState(email: string): Promise<string> {
  const shown = await pc.cli(['user', 'show', email, '--json']);
  expect(shown.code, shown.stderr).toBe(0);
  return (JSON.parse(shown.stdout) as { totp: string }).totp;
}

const clock = new CodeClock();
const freshStep = (email: string) => clock.freshStep(email);

async function open(ua: UserAgent, extra: Record<string, string> = {}) {
  const request = await authorizationRequest(rp, SCOPE, extra);
  return { request, page: await visit(ua, request.url) };
}

const passwordStep = (ua: UserAgent, email: string, extra: Record<string, string> = {}) => passwordStepOf(ua, rp, email, PASSWORD, { scope: SCOPE, extra });

const toApp = (ua: UserAgent, page: Page, request: AuthorizationRequest) => toAppOf(ua, page, request, rp);

/** A person's first sign-in in `ua`: password, set-up page, a code of the key shown; the key. */
const setUp = async (ua: UserAgent, email: string) => (await setUpTotp(ua, rp, email, PASSWORD, clock, SCOPE)).key;

describe('guessing codes', () => {
  it('a right password does not give the guesser of codes a new SIGN_IN_MAX_FAILURES: no more wrong codes of one person are checked in a window', async () => {
    const email = await person('guessed');
    const key = await setUp(new UserAgent(), email);
    const answers: Array<string | undefined> = [];
    // Each round a browser without a device cookie (the password is then
    // counted on the email, as the code is): the password, then wrong codes
    // while the email has failures left.
    for (let round = 0; round < 3; round++) {
      const ua = new UserAgent();
      const { page } = await passwordStep(ua, email);
      if (!isCodePage(page)) break; // the email refused: the guesser is stopped
      let current = page;
      for (let i = 0; i < MAX_FAILURES - 1; i++) {
        current = await enterCode(ua, current, wrongCode(key.totp, round * MAX_FAILURES + i));
        answers.push(alertOn(current));
      }
    }
    // Codes checked (and found wrong): at most the email's limit in the window, as for passwords.
    expect(answers.filter((answer) => answer === WRONG_CODE).length).toBeLessThanOrEqual(MAX_FAILURES);
  });
});

describe('guessing passwords', () => {
  it("someone else's wrong passwords for the email do not lock its owner's browser out at the code step (device cookies)", async () => {
    const email = await person('owner');
    const owner = new UserAgent();
    const key = await setUp(owner, email); // the owner's browser has signed in: it holds a device cookie
    for (let i = 0; i <= MAX_FAILURES; i++) {
      const stranger = new UserAgent();
      const { page } = await open(stranger);
      await signIn(stranger, page, email, `not the password ${i}`);
    }
    // The owner's browser still signs in: the password (counted on its own)...
    const { request, page } = await passwordStep(owner, email, { prompt: 'login' });
    expect(page.html).toContain(ENTER_HEADING);
    // ...and the code.
    const answer = await enterCode(owner, page, codeAt(key.totp, await freshStep(email)));
    expect(alertOn(answer)).toBeUndefined();
    await toApp(owner, answer, request);
  });
});

describe('setting up', () => {
  it('a key shown to another browser before the person set up (someone with the password) makes no codes once the person has set up', async () => {
    const email = await person('preread');
    const attacker = new UserAgent();
    const seen = await passwordStep(attacker, email);
    expect(seen.page.html).toContain(SET_UP_HEADING);
    const stolen = keyOn(seen.page);

    // Later the person signs in on their own browser and sets up what their page shows.
    await setUp(new UserAgent(), email);
    expect(await totpState(email)).toBe('set_up');

    // A code of the key the other browser was shown: refused.
    const later = new UserAgent();
    const again = await passwordStep(later, email);
    expect(again.page.html).toContain(ENTER_HEADING);
    const answer = await enterCode(later, again.page, codeAt(stolen.totp, await freshStep(email)));
    expect(pageKind(answer)).not.toBe('callback');
    expect(pageKind(answer)).not.toBe('consent');
    expect([isCodePage(answer), alertOn(answer)]).toEqual([true, WRONG_CODE]);
  });

  it('--totp off while a code page is open: the page opened again sets up no key, and required again asks for a new one', async () => {
    const email = await person('stale');
    const ua = new UserAgent();
    const { page } = await passwordStep(ua, email);
    expect(page.html).toContain(SET_UP_HEADING);
    await cliOk(['user', 'update', email, '--totp', 'off']);

    const reopened = await ua.open(page.url, {}, REDIRECT_URI);
    if (reopened.html.includes('otpauth://')) {
      const key = keyOn(reopened);
      await enterCode(ua, reopened, codeAt(key.totp, await freshStep(email)));
    }
    // "off: none, the app forgotten" (usage): no key set up behind the operator's back.
    expect(await totpState(email)).toBe('off');
    await cliOk(['user', 'update', email, '--totp', 'required']);
    const { page: next } = await passwordStep(new UserAgent(), email);
    expect(next.html).toContain(SET_UP_HEADING);
  });
});

describe('the operator', () => {
  it('reset-totp (a lost phone): a browser signed in with a code of the forgotten key is no longer signed in without a new one', async () => {
    const email = await person('lost-phone');
    const ua = new UserAgent();
    await setUp(ua, email);
    await cliOk(['user', 'reset-totp', email]);
    const silent = await open(ua, { prompt: 'none' });
    expect(pageKind(silent.page)).toBe('callback');
    const answer = new URL(silent.page.url).searchParams;
    expect(answer.get('code')).toBeNull();
    expect(['interaction_required', 'login_required']).toContain(answer.get('error'));
  });
});
