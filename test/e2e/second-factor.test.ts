// A second factor: TOTP (RFC 6238) after the password, for the people the
// operator requires it of (`user create|update --totp required`). Driven as a
// person's browser and an app would drive it (the pages, openid-client, the
// device flow), and the CLI; the codes come from `otpauth`, an implementation
// of RFC 6238 of its own, reading the key from the page's otpauth:// URI as an
// authenticator app scanning the QR code would.
import { setTimeout as sleep } from 'node:timers/promises';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import * as oidc from 'openid-client';
import * as OTPAuth from 'otpauth';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPortcullis, type TestPortcullis } from '../support/portcullis.js';
import { authorizationRequest, deny, discover, logIn, pageKind, REDIRECT_URI, signIn, visit, type AuthorizationRequest } from '../support/relying-party.js';
import { alertOn, codeAt, CodeClock, EMPTY_CODE, ENTER_HEADING, enterCode, isCodePage, keyOn, OTP_AMR, passwordStep as passwordStepOf, SET_UP_HEADING, setUpTotp, stepNow, toApp as toAppOf, totpPerson, WRONG_CODE, wrongCode } from '../support/totp.js';
import { UserAgent, type Page } from '../support/user-agent.js';

const PASSWORD = 'a long enough password';
const WINDOW_SECONDS = 5;
const STEP_MS = 30_000;
const SCOPE = 'openid email';

let pc: TestPortcullis;
let rp: oidc.Configuration;

beforeAll(async () => {
  pc = await startPortcullis({ SIGN_IN_MAX_FAILURES: '3', SIGN_IN_FAILURE_WINDOW: `${WINDOW_SECONDS}s` });
  const app = await pc.createClient({ name: 'Second factor app', redirectUris: [REDIRECT_URI] });
  rp = await discover(pc.issuer, app.client_id, app.client_secret);
});

afterAll(async () => {
  expect(pc?.errors ?? []).toEqual([]);
  await pc?.close();
});

// --- people and the CLI ---------------------------------------------------

const person = (name: string, totp = true) => totpPerson(pc, name, PASSWORD, totp);

interface Shown {
  id: string;
  totp: 'off' | 'required' | 'set_up';
  totp_set_up_at: string | null;
}

async function show(email: string): Promise<Shown> {
  const shown = await pc.cli(['user', 'show', email, '--json']);
  expect(shown.code, shown.stderr).toBe(0);
  return JSON.parse(shown.stdout) as Shown;
}

/** The `totp:` line of `user show` (its value, after the padding). */
async function totpLine(email: string): Promise<string | undefined> {
  const shown = await pc.cli(['user', 'show', email]);
  expect(shown.code, shown.stderr).toBe(0);
  return /^totp: +(.+)$/m.exec(shown.stdout)?.[1];
}

async function cliOk(args: string[]): Promise<void> {
  const result = await pc.cli(args);
  expect(result.code, result.stderr).toBe(0);
}

// --- codes ------------------------------------------------------------------

/** Waits, if needed, so that at least `marginMs` are left in the current 30-second step. */
async function awayFromStepEnd(marginMs: number): Promise<void> {
  const into = Date.now() % STEP_MS;
  if (into > STEP_MS - marginMs) await sleep(STEP_MS - into + 100);
}

const clock = new CodeClock();
const freshStep = (email: string) => clock.freshStep(email);

// --- pages --------------------------------------------------------------------

const uidOf = (page: Page) => /\/interaction\/([^/?#]+)/.exec(page.url)?.[1];

/** A fresh authorization request of the app, opened in `ua`, and the first page (or the callback). */
async function open(ua: UserAgent, extra: Record<string, string> = {}): Promise<{ request: AuthorizationRequest; page: Page }> {
  const request = await authorizationRequest(rp, SCOPE, extra);
  return { request, page: await visit(ua, request.url) };
}

/** From the app's sign-in page, the password: the page that follows (the code page for those TOTP is required of). */
const passwordStep = (ua: UserAgent, email: string, extra: Record<string, string> = {}) => passwordStepOf(ua, rp, email, PASSWORD, { scope: SCOPE, extra });

const toApp = (ua: UserAgent, page: Page, request: AuthorizationRequest) => toAppOf(ua, page, request, rp);

/** A person's first sign-in: password, set-up page, a code of the new key; the key and the tokens. */
const setUp = (ua: UserAgent, email: string) => setUpTotp(ua, rp, email, PASSWORD, clock, SCOPE);

/** A sign-in of someone who has set up TOTP, in `ua`: password, code page, a fresh code, the app. */
async function signInWithCode(ua: UserAgent, email: string, totp: OTPAuth.TOTP) {
  const { request, page } = await passwordStep(ua, email);
  expect(page.html).toContain(ENTER_HEADING);
  return toApp(ua, await enterCode(ua, page, codeAt(totp, await freshStep(email))), request);
}

// --- the tests --------------------------------------------------------------------

describe('the CLI', () => {
  it('requires TOTP of a person at create or update, shows where they are, and refuses what it cannot do', async () => {
    const ada = await person('ada');
    expect(await show(ada)).toMatchObject({ totp: 'required', totp_set_up_at: null });
    expect(await totpLine(ada)).toBe('required, not set up yet');

    const ben = await person('ben-plain', false);
    expect(await show(ben)).toMatchObject({ totp: 'off', totp_set_up_at: null });
    expect(await totpLine(ben)).toBe('off');
    // By id as by email.
    await cliOk(['user', 'update', (await show(ben)).id, '--totp', 'required']);
    expect(await totpLine(ben)).toBe('required, not set up yet');
    await cliOk(['user', 'update', ben, '--totp', 'off']);
    expect(await show(ben)).toMatchObject({ totp: 'off', totp_set_up_at: null });

    // Another value: a usage error.
    const typo = await pc.cli(['user', 'update', ben, '--totp', 'sometimes']);
    expect([typo.code, typo.stdout]).toEqual([2, '']);
    expect(typo.stderr).toContain('--totp');
    expect(await totpLine(ben)).toBe('off');

    // No authenticator to forget (TOTP off, or required but not set up yet): exit 1, one line.
    for (const who of [ben, ada]) {
      const reset = await pc.cli(['user', 'reset-totp', who]);
      expect([reset.code, reset.stdout]).toEqual([1, '']);
      expect(reset.stderr).toMatch(/^portcullis: [^\n]+\n$/);
    }
    expect(await totpLine(ada)).toBe('required, not set up yet');
  });
});

describe('the pages', () => {
  it('not set up yet: the set-up page shows the key (QR code, otpauth:// link, grouped key), the same on reload; a code of it confirms it, and the ID token says otp', async () => {
    const email = await person('cleo');
    const ua = new UserAgent();
    const { request, page } = await passwordStep(ua, email);
    const uid = uidOf(page)!;
    expect(page.html).toContain(SET_UP_HEADING);
    expect(page.html).toContain('<svg');
    // The code form and the Cancel form of this sign-in.
    expect(UserAgent.formAction(page, '/totp')).toBe(`/interaction/${uid}/totp`);
    expect(UserAgent.formAction(page, '/abort')).toBe(`/interaction/${uid}/abort`);
    const input = /<input[^>]*id="code"[^>]*>/.exec(page.html)?.[0] ?? '';
    for (const attribute of ['name="code"', 'autocomplete="one-time-code"', 'inputmode="numeric"']) expect(input).toContain(attribute);

    const key = keyOn(page);
    const params = new URL(key.uri).searchParams;
    expect(key.secret).toMatch(/^[A-Z2-7]+$/);
    // RFC 4226 §4 R6 (which RFC 6238 builds on): a shared secret of at least 128 bits.
    expect(key.secret.length * 5).toBeGreaterThanOrEqual(128);
    expect(params.get('issuer')).toBeTruthy();
    expect([params.get('algorithm'), params.get('digits'), params.get('period')]).toEqual(['SHA1', '6', '30']);
    expect([key.totp.algorithm, key.totp.digits, key.totp.period, key.totp.secret.base32]).toEqual(['SHA1', 6, 30, key.secret]);
    expect(key.shown).toBe(key.secret.match(/.{1,4}/g)!.join(' '));

    // Reloaded, and after a wrong code: the same key, until it is confirmed.
    expect(keyOn(await ua.open(page.url)).secret).toBe(key.secret);
    const refused = await enterCode(ua, page, wrongCode(key.totp));
    expect(alertOn(refused)).toBe(WRONG_CODE);
    expect(refused.html).toContain(SET_UP_HEADING);
    expect(keyOn(refused).secret).toBe(key.secret);
    expect(await show(email)).toMatchObject({ totp: 'required', totp_set_up_at: null });

    const before = Date.now() - 1000;
    const tokens = await toApp(ua, await enterCode(ua, refused, codeAt(key.totp, await freshStep(email))), request);
    expect(tokens.claims()!.amr).toEqual(OTP_AMR);
    const shown = await show(email);
    expect(shown.totp).toBe('set_up');
    expect(Date.parse(shown.totp_set_up_at!)).toBeGreaterThanOrEqual(before);
    expect(Date.parse(shown.totp_set_up_at!)).toBeLessThanOrEqual(Date.now() + 1000);
    expect(await totpLine(email)).toBe(`set up ${shown.totp_set_up_at}`);
  });

  it('set up: the code page shows no key; a wrong code and an empty one are sent back (303) to it with a message; the right code goes on', async () => {
    const email = await person('dora');
    const { key } = await setUp(new UserAgent(), email);

    const ua = new UserAgent();
    const { request, page } = await passwordStep(ua, email);
    const uid = uidOf(page)!;
    expect(page.url).toBe(`${pc.issuer}/interaction/${uid}`);
    expect(page.html).toContain(ENTER_HEADING);
    expect(page.html).not.toContain('<svg');
    expect(page.html).not.toContain('otpauth://');
    expect(page.html).not.toContain('totp-key');
    expect(page.html).not.toContain(key.secret);
    expect(UserAgent.formAction(page, '/totp')).toBe(`/interaction/${uid}/totp`);
    expect(alertOn(page)).toBeUndefined();

    const wrong = await enterCode(ua, page, wrongCode(key.totp), `${pc.issuer}/interaction/`);
    expect([wrong.status, wrong.url]).toEqual([303, page.url]);
    const afterWrong = await ua.open(wrong.url);
    expect([afterWrong.status, alertOn(afterWrong)]).toEqual([200, WRONG_CODE]);
    expect(afterWrong.html).toContain(ENTER_HEADING);

    const empty = await enterCode(ua, afterWrong, '', `${pc.issuer}/interaction/`);
    expect([empty.status, empty.url]).toEqual([303, page.url]);
    const afterEmpty = await ua.open(empty.url);
    expect(alertOn(afterEmpty)).toBe(EMPTY_CODE);

    const tokens = await toApp(ua, await enterCode(ua, afterEmpty, codeAt(key.totp, await freshStep(email))), request);
    expect(tokens.claims()!.amr).toEqual(OTP_AMR);
  });

  it('Cancel on the code page sends the app access_denied', async () => {
    const email = await person('eli');
    const ua = new UserAgent();
    const { request, page } = await passwordStep(ua, email);
    expect(isCodePage(page)).toBe(true);
    const back = await deny(ua, page);
    expect(pageKind(back)).toBe('callback');
    const answer = new URL(back.url).searchParams;
    expect([answer.get('error'), answer.get('state'), answer.get('code')]).toEqual(['access_denied', request.state, null]);
  });
});

describe('codes', () => {
  it('the code of the previous and of the next step is taken too, not one two steps away', async () => {
    const email = await person('finn');
    await awayFromStepEnd(8_000);
    const ua = new UserAgent();
    const { request, page } = await passwordStep(ua, email);
    const { totp } = keyOn(page);
    const now = stepNow();
    for (const step of [now + 2, now - 2]) expect(alertOn(await enterCode(ua, page, codeAt(totp, step)))).toBe(WRONG_CODE);
    clock.taken(email, now - 1);
    expect((await toApp(ua, await enterCode(ua, page, codeAt(totp, now - 1)), request)).claims()!.amr).toEqual(OTP_AMR);

    await awayFromStepEnd(8_000);
    const next = stepNow() + 1;
    clock.taken(email, next);
    const other = new UserAgent();
    const signingIn = await passwordStep(other, email);
    expect(signingIn.page.html).toContain(ENTER_HEADING);
    expect((await toApp(other, await enterCode(other, signingIn.page, codeAt(totp, next)), signingIn.request)).claims()!.amr).toEqual(OTP_AMR);
  });

  it('a code is taken once: the same one, or one of an earlier step, is refused afterwards, in another browser too', async () => {
    const email = await person('gia');
    await awayFromStepEnd(10_000);
    const first = stepNow();
    clock.taken(email, first);
    const setUpBrowser = new UserAgent();
    const started = await passwordStep(setUpBrowser, email);
    const key = keyOn(started.page);
    await toApp(setUpBrowser, await enterCode(setUpBrowser, started.page, codeAt(key.totp, first)), started.request);

    const ua = new UserAgent();
    clock.taken(email, first + 1);
    const used = codeAt(key.totp, first + 1);
    const signingIn = await passwordStep(ua, email);
    expect((await toApp(ua, await enterCode(ua, signingIn.page, used), signingIn.request)).claims()!.amr).toEqual(OTP_AMR);

    const elsewhere = new UserAgent();
    const again = await passwordStep(elsewhere, email);
    expect(again.page.html).toContain(ENTER_HEADING);
    const replayed = await enterCode(elsewhere, again.page, used);
    expect([isCodePage(replayed), alertOn(replayed)]).toEqual([true, WRONG_CODE]);
    const earlier = await enterCode(elsewhere, replayed, codeAt(key.totp, first));
    expect([isCodePage(earlier), alertOn(earlier)]).toEqual([true, WRONG_CODE]);
  });

  it('wrong codes count as failed sign-ins: past SIGN_IN_MAX_FAILURES even the right code is refused until the window ends', async () => {
    const email = await person('hugo');
    const { key } = await setUp(new UserAgent(), email);
    const ua = new UserAgent();
    const { request, page } = await passwordStep(ua, email);
    expect(page.html).toContain(ENTER_HEADING);
    let current = page;
    for (let i = 0; i < 3; i++) {
      current = await enterCode(ua, current, wrongCode(key.totp));
      expect(alertOn(current)).toBe(WRONG_CODE);
    }
    const right = codeAt(key.totp, await freshStep(email));
    const refused = await enterCode(ua, current, right);
    expect(isCodePage(refused)).toBe(true);
    expect(alertOn(refused)).toMatch(/^Too many failed sign-ins\. Try again in /);

    await sleep(WINDOW_SECONDS * 1000 + 500);
    // The refused code was not taken: it goes through once the window has ended.
    const tokens = await toApp(ua, await enterCode(ua, refused, right), request);
    expect(tokens.claims()!.amr).toEqual(OTP_AMR);
  });

  it('a right password does not clear the wrong codes: whoever guesses codes has the password, and would sign in again between guesses', async () => {
    const email = await person('hedy');
    const { key } = await setUp(new UserAgent(), email);
    const first = new UserAgent();
    let current = (await passwordStep(first, email)).page;
    for (let i = 0; i < 2; i++) current = await enterCode(first, current, wrongCode(key.totp));
    expect(alertOn(current)).toBe(WRONG_CODE);
    // The password again, in a browser without the device cookie (counted on the email, which it clears).
    const again = new UserAgent();
    const { page } = await passwordStep(again, email);
    expect(page.html).toContain(ENTER_HEADING);
    const third = await enterCode(again, page, wrongCode(key.totp));
    expect(alertOn(third)).toBe(WRONG_CODE);
    const refused = await enterCode(again, third, codeAt(key.totp, await freshStep(email)));
    expect(alertOn(refused)).toMatch(/^Too many failed sign-ins\. Try again in /);
    // `user reset-totp` lifts it: the new app's codes are taken at once.
    await cliOk(['user', 'reset-totp', email]);
    const ua = new UserAgent();
    const renewed = await passwordStep(ua, email);
    expect(renewed.page.html).toContain(SET_UP_HEADING);
    const newKey = keyOn(renewed.page);
    const tokens = await toApp(ua, await enterCode(ua, renewed.page, codeAt(newKey.totp, await freshStep(email))), renewed.request);
    expect(tokens.claims()!.amr).toEqual(OTP_AMR);
  });
});

describe('sessions', () => {
  it('a browser that passed only the password is not signed in: prompt=none gets interaction_required, and a new request goes to the code page', async () => {
    const email = await person('ines');
    const ua = new UserAgent();
    const { page } = await passwordStep(ua, email);
    expect(page.html).toContain(SET_UP_HEADING);

    const silent = await open(ua, { prompt: 'none' });
    expect(pageKind(silent.page)).toBe('callback');
    const answer = new URL(silent.page.url).searchParams;
    expect([answer.get('error'), answer.get('state'), answer.get('code')]).toEqual(['interaction_required', silent.request.state, null]);

    const again = await open(ua);
    expect(pageKind(again.page)).not.toBe('login');
    expect(isCodePage(again.page)).toBe(true);
    const { totp } = keyOn(again.page);
    const tokens = await toApp(ua, await enterCode(ua, again.page, codeAt(totp, await freshStep(email))), again.request);
    expect(tokens.claims()!.amr).toEqual(OTP_AMR);
  });

  it('someone signed in with the password before TOTP was required is sent to set it up at the next request, and gets a code only after it', async () => {
    const email = await person('jade', false);
    const ua = new UserAgent();
    const first = await logIn(ua, rp, SCOPE, { email, password: PASSWORD });
    expect(first.seen).toEqual(['login', 'consent']);
    expect(first.tokens.claims()!.amr).toEqual(['pwd']);

    await cliOk(['user', 'update', email, '--totp', 'required']);
    const silent = await open(ua, { prompt: 'none' });
    expect(pageKind(silent.page)).toBe('callback');
    const answer = new URL(silent.page.url).searchParams;
    expect(answer.get('code')).toBeNull();
    expect(['interaction_required', 'login_required']).toContain(answer.get('error'));

    const { request, page } = await open(ua);
    expect(pageKind(page)).not.toBe('login');
    expect(page.html).toContain(SET_UP_HEADING);
    const { totp } = keyOn(page);
    const tokens = await toApp(ua, await enterCode(ua, page, codeAt(totp, await freshStep(email))), request);
    expect(tokens.claims()!.amr).toEqual(OTP_AMR);
    expect(tokens.claims()!.sub).toBe(first.tokens.claims()!.sub);
  });
});

describe('the operator', () => {
  it('reset-totp forgets the authenticator: the next sign-in sets up a new key, and codes of the old one are refused', async () => {
    const email = await person('kai');
    const { key: old } = await setUp(new UserAgent(), email);
    expect((await show(email)).totp).toBe('set_up');

    const reset = await pc.cli(['user', 'reset-totp', (await show(email)).id]);
    expect(reset.code, reset.stderr).toBe(0);
    expect(await show(email)).toMatchObject({ totp: 'required', totp_set_up_at: null });

    const ua = new UserAgent();
    const { request, page } = await passwordStep(ua, email);
    expect(page.html).toContain(SET_UP_HEADING);
    const fresh = keyOn(page);
    expect(fresh.secret).not.toBe(old.secret);
    // A code of the old key, of a step not used yet: refused.
    const step = clock.unusedStep(email);
    const refused = await enterCode(ua, page, codeAt(old.totp, step));
    expect(alertOn(refused)).toBe(WRONG_CODE);
    expect(keyOn(refused).secret).toBe(fresh.secret);
    const tokens = await toApp(ua, await enterCode(ua, refused, codeAt(fresh.totp, await freshStep(email))), request);
    expect(tokens.claims()!.amr).toEqual(OTP_AMR);
    expect((await show(email)).totp).toBe('set_up');
  });

  it('--totp off: no code page and amr ["pwd"]; the authenticator is forgotten, so required again means a new key', async () => {
    const email = await person('lena');
    const { key } = await setUp(new UserAgent(), email);

    await cliOk(['user', 'update', email, '--totp', 'off']);
    expect(await show(email)).toMatchObject({ totp: 'off', totp_set_up_at: null });
    const plain = await logIn(new UserAgent(), rp, SCOPE, { email, password: PASSWORD });
    expect(plain.seen).toEqual(['login']);
    expect(plain.tokens.claims()!.amr).toEqual(['pwd']);

    await cliOk(['user', 'update', email, '--totp', 'required']);
    expect(await show(email)).toMatchObject({ totp: 'required', totp_set_up_at: null });
    const { page } = await passwordStep(new UserAgent(), email);
    expect(page.html).toContain(SET_UP_HEADING);
    expect(keyOn(page).secret).not.toBe(key.secret);
  });
});

describe('the device flow', () => {
  it('a device sign-in gets the same code step after the password, and its ID token says otp', async () => {
    const email = await person('milo');
    const { key } = await setUp(new UserAgent(), email);
    const made = await pc.cli(['client', 'create', '--name', 'Kitchen TV', '--public', '--grant-type', 'device_code', '--scope', 'openid email', '--json']);
    expect(made.code, made.stderr).toBe(0);
    const tv = JSON.parse(made.stdout) as { client_id: string };
    const tvApp = await discover(pc.issuer, tv.client_id);
    const started = await oidc.initiateDeviceAuthorization(tvApp, { scope: 'openid email' });

    const ua = new UserAgent();
    const device = await ua.open(`${pc.issuer}/device`);
    let page = await ua.post(device, '/device', { ...UserAgent.formFields(device, '/device'), user_code: started.user_code });
    const forms = [...page.html.matchAll(/<form[^>]*>[\s\S]*?<\/form>/g)].map((match) => ({ ...page, html: match[0] }));
    const confirmForm = forms.find((form) => form.html.includes('name="confirm"'))!;
    page = await ua.post(page, UserAgent.formAction(confirmForm, '/device'), UserAgent.hiddenFields(confirmForm));
    expect(pageKind(page)).toBe('login');
    page = await signIn(ua, page, email, PASSWORD);
    expect(page.html).toContain(ENTER_HEADING);
    expect(isCodePage(page)).toBe(true);
    page = await enterCode(ua, page, codeAt(key.totp, await freshStep(email)));
    if (pageKind(page) === 'consent') page = await ua.post(page, UserAgent.formAction(page, '/confirm'), UserAgent.formFields(page, '/confirm'));
    expect(page.html).toContain('<h1>Your device is connected</h1>');

    const response = await fetch(`${pc.issuer}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:device_code', device_code: started.device_code, client_id: tv.client_id }),
    });
    const body = (await response.json()) as { id_token?: string };
    expect(response.status, JSON.stringify(body)).toBe(200);
    const { payload } = await jwtVerify(body.id_token!, createRemoteJWKSet(new URL(`${pc.issuer}/jwks`)), { issuer: pc.issuer, audience: tv.client_id });
    expect(payload.amr).toEqual(OTP_AMR);
  });
});

describe('at rest', () => {
  it('the key is stored sealed in totp_secrets: no column holds it', async () => {
    const email = await person('nora');
    const { key } = await setUp(new UserAgent(), email);
    const secrets = (await pc.outsideQuery<{ secret: string }>('SELECT secret FROM totp_secrets')).rows;
    expect(secrets.length).toBeGreaterThan(0);
    for (const { secret } of secrets) expect(secret.startsWith('v1.'), secret).toBe(true);
    const rows = (await pc.outsideQuery<{ row: string }>('SELECT row_to_json(t)::text AS row FROM totp_secrets t')).rows.map(({ row }) => row);
    for (const row of rows) {
      expect(row).not.toContain(key.secret);
      expect(row.toLowerCase()).not.toContain(key.secret.toLowerCase());
    }
  });
});
