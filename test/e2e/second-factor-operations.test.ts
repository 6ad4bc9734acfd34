// The second factor (TOTP) as operators run it: the sign-in throttle's device
// exemption, auth_time and max_age across a slow second step, and a rolling
// ENCRYPTION_KEYS change on several instances, wrong codes in a row, and the
// server secret the keys are sealed under. (From review BO.)
import { setTimeout as sleep } from 'node:timers/promises';
import * as oidc from 'openid-client';
import * as OTPAuth from 'otpauth';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { startServer } from '../../src/server.js';
import { freshDatabase } from '../support/database.js';
import { freePort, startPortcullis, type TestPortcullis } from '../support/portcullis.js';
import { authorizationRequest, discover, REDIRECT_URI, signIn, signInRefusal, visit, type AuthorizationRequest } from '../support/relying-party.js';
import { alertOn, CodeClock, enterCode, isCodePage, keyOn, LOCKED, OTP_AMR, toApp as toAppOf, totpPerson, WRONG_CODE, wrongCode } from '../support/totp.js';
import { UserAgent, type Page } from '../support/user-agent.js';

const PASSWORD = 'a long enough password';
const OLD_KEY = 'the-old-encryption-key-of-this-deployment-0123456789';
const NEW_KEY = 'the-new-encryption-key-of-this-deployment-9876543210';

let pc: TestPortcullis;
let app: { client_id: string; client_secret?: string };
let rp: oidc.Configuration;

beforeAll(async () => {
  pc = await startPortcullis({ SIGN_IN_MAX_FAILURES: '3', SIGN_IN_FAILURE_WINDOW: '60s', ENCRYPTION_KEYS: OLD_KEY });
  app = await pc.createClient({ name: 'Second factor operations', redirectUris: [REDIRECT_URI] });
  rp = await discover(pc.issuer, app.client_id, app.client_secret);
});

afterAll(async () => {
  await pc?.close();
});

const person = (name: string) => totpPerson(pc, name, PASSWORD);


const clock = new CodeClock();
const freshCode = (email: string, totp: OTPAuth.TOTP) => clock.freshCode(email, totp);

const toApp = (ua: UserAgent, page: Page, request: AuthorizationRequest, config = rp) => toAppOf(ua, page, request, config);


describe('the sign-in throttle', () => {
  it("someone else's wrong passwords, which leave the owner's own browser signing in, do not lock that browser out at the code step either", async () => {
    const email = await person('owner');
    const mine = new UserAgent();
    // The owner's first sign-in: their browser now has its device cookie.
    let request = await authorizationRequest(rp, 'openid');
    let page = await signIn(mine, await visit(mine, request.url), email, PASSWORD);
    const totp = keyOn(page).totp;
    await toApp(mine, await enterCode(mine, page, await freshCode(email, totp)), request);

    // Someone who knows only the email fails until the email is locked for every other browser.
    const stranger = new UserAgent();
    let refusal: string | undefined;
    for (let i = 0; i < 4 && refusal !== 'throttled'; i++) {
      const tried = await authorizationRequest(rp, 'openid');
      refusal = signInRefusal(await signIn(stranger, await visit(stranger, tried.url), email, 'not the password at all'));
    }
    expect(refusal).toBe('throttled');

    // The owner's browser is counted on its own: its password goes through (sign-in-throttle.ts)...
    request = await authorizationRequest(rp, 'openid', { prompt: 'login' });
    page = await signIn(mine, await visit(mine, request.url), email, PASSWORD);
    expect(isCodePage(page)).toBe(true);
    // ...and so should its right code: the stranger never got past the password.
    const after = await enterCode(mine, page, await freshCode(email, totp));
    expect(alertOn(after)).toBeUndefined();
    expect((await toApp(mine, after, request)).claims()!.amr).toEqual(OTP_AMR);
  });
});

describe('auth_time', () => {
  it('is when the sign-in was complete (the code taken), so an app that asked max_age accepts the ID token of someone slow at setting up their app', async () => {
    const email = await person('slow');
    const ua = new UserAgent();
    const request = await authorizationRequest(rp, 'openid', { max_age: '10' });
    const setUp = await signIn(ua, await visit(ua, request.url), email, PASSWORD);
    expect(isCodePage(setUp)).toBe(true);
    const totp = keyOn(setUp).totp;
    // Installing the app and scanning the QR code: longer than max_age.
    await sleep(12_000);
    const code = await freshCode(email, totp);
    const takenAt = Math.floor(Date.now() / 1000);
    const claims = (await toApp(ua, await enterCode(ua, setUp, code), request)).claims()!;
    expect(claims.amr).toEqual(OTP_AMR);
    // OpenID Connect Core §3.1.3.7 (13): an app that sent max_age checks auth_time + max_age against now.
    expect(claims.auth_time).toBeGreaterThanOrEqual(takenAt - 1);
  });
});

describe.skipIf(process.env.TEST_DATABASE !== 'postgres')('a rolling ENCRYPTION_KEYS change', () => {
  it('an instance not yet given the new key goes on taking codes after another one started with new,old (as it goes on signing)', async () => {
    const email = await person('rolling');
    const ua = new UserAgent();
    let request = await authorizationRequest(rp, 'openid');
    let page = await signIn(ua, await visit(ua, request.url), email, PASSWORD);
    const totp = keyOn(page).totp;
    await toApp(ua, await enterCode(ua, page, await freshCode(email, totp)), request);

    // The first instance restarted in a rolling change of ENCRYPTION_KEYS: new key first, old after.
    const port = await freePort();
    const other = await startServer(loadConfig({ ...pc.env, ENCRYPTION_KEYS: `${NEW_KEY},${OLD_KEY}`, PORT: String(port), ISSUER: pc.issuer }), createLogger('silent'));
    try {
      // This instance, still on the old key alone (its turn to restart comes next), is ready...
      expect((await fetch(`${pc.issuer}/readyz`)).status).toBe(200);
      // ...and signs the person in.
      const browser = new UserAgent();
      request = await authorizationRequest(rp, 'openid');
      page = await signIn(browser, await visit(browser, request.url), email, PASSWORD);
      expect(isCodePage(page)).toBe(true);
      const after = await enterCode(browser, page, await freshCode(email, totp));
      expect(after.status).not.toBe(500);
      expect((await toApp(browser, after, request)).claims()!.amr).toEqual(OTP_AMR);
    } finally {
      await other.close();
      pc.errors.length = 0;
    }
  });
});

describe('the otpauth:// URI', () => {
  it('names the account apart from an ISSUER_NAME with a colon in it (Key Uri Format: neither issuer nor account name may contain one)', async () => {
    const named = await startPortcullis({ ISSUER_NAME: 'Acme: Staff sign-in' });
    try {
      const made = await named.cli(['user', 'create', '--email', 'colon@example.com', '--password-stdin', '--totp', 'required'], `${PASSWORD}\n`);
      expect(made.code, made.stderr).toBe(0);
      const client = await named.createClient({ name: 'Colon app', redirectUris: [REDIRECT_URI] });
      const config = await discover(named.issuer, client.client_id, client.client_secret);
      const ua = new UserAgent();
      const page = await signIn(ua, await visit(ua, (await authorizationRequest(config, 'openid')).url), 'colon@example.com', PASSWORD);
      // As an authenticator app reads the label: issuer prefix, colon, account name.
      const totp = keyOn(page).totp;
      expect(totp.label).toBe('colon@example.com');
    } finally {
      await named.close();
    }
  });
});

describe('wrong codes in a row', () => {
  it(`lock the code step after 100 (NIST SP 800-63B §5.2.2), whatever the throttle's window, until user reset-totp`, async () => {
    // A throttle that would let them all through: the lock is what stops them.
    const patient = await startPortcullis({ SIGN_IN_MAX_FAILURES: '10000', SIGN_IN_MAX_FAILURES_PER_ADDRESS: '1000000', METRICS_PORT: String(await freePort()) });
    /** The count of portcullis_second_factor_codes_total for `outcome`. */
    const counted = async (outcome: string) => {
      const text = await (await fetch(patient.server.metricsUrl!)).text();
      return Number(new RegExp(`^portcullis_second_factor_codes_total\\{outcome="${outcome}"\\} (\\d+)$`, 'm').exec(text)?.[1]);
    };
    try {
      const made = await patient.cli(['user', 'create', '--email', 'guessed@example.com', '--password-stdin', '--totp', 'required'], `${PASSWORD}\n`);
      expect(made.code, made.stderr).toBe(0);
      const client = await patient.createClient({ name: 'Guessed app', redirectUris: [REDIRECT_URI] });
      const config = await discover(patient.issuer, client.client_id, client.client_secret);
      const signInOnce = async () => {
        const ua = new UserAgent();
        const request = await authorizationRequest(config, 'openid');
        return { ua, request, page: await signIn(ua, await visit(ua, request.url), 'guessed@example.com', PASSWORD) };
      };
      const first = await signInOnce();
      const totp = keyOn(first.page).totp;
      await toApp(first.ua, await enterCode(first.ua, first.page, await freshCode('guessed@example.com', totp)), first.request, config);

      const { ua, page } = await signInOnce();
      const wrong = wrongCode(totp);
      let current = page;
      for (let i = 0; i < 99; i++) current = await enterCode(ua, current, wrong);
      expect(alertOn(current)).toBe(WRONG_CODE);
      // The hundredth wrong one, then a right one: refused, and `user show` says why.
      current = await enterCode(ua, current, wrong);
      const right = await freshCode('guessed@example.com', totp);
      current = await enterCode(ua, current, right);
      expect(alertOn(current)).toBe(LOCKED);
      const shown = JSON.parse((await patient.cli(['user', 'show', 'guessed@example.com', '--json'])).stdout) as { totp: string; totp_locked: boolean };
      expect(shown).toMatchObject({ totp: 'set_up', totp_locked: true });
      expect((await patient.cli(['user', 'show', 'guessed@example.com'])).stdout).toMatch(/^totp: +set up \S+; locked after 100 wrong codes in a row, until user reset-totp$/m);
      // Still refused later in the same sign-in (the code not taken by the refusal).
      expect(alertOn(await enterCode(ua, current, right))).toBe(LOCKED);
      // Each refusal logged at warn (review BQ).
      expect(patient.log.filter((line) => line.includes('"level":"warn"') && line.includes('verification code refused: locked'))).toHaveLength(2);

      // The operator resets it: a new app, and the person signs in.
      expect((await patient.cli(['user', 'reset-totp', 'guessed@example.com'])).code).toBe(0);
      const again = await signInOnce();
      const fresh = keyOn(again.page).totp;
      const tokens = await toApp(again.ua, await enterCode(again.ua, again.page, await freshCode('guessed@example.com', fresh)), again.request, config);
      expect(tokens.claims()!.amr).toEqual(OTP_AMR);
      // Each code counted once, by what became of it.
      expect([await counted('taken'), await counted('wrong'), await counted('locked'), await counted('throttled')]).toEqual([2, 100, 2, 0]);
    } finally {
      await patient.close();
    }
  });
});

describe('the server secret TOTP keys are sealed under', () => {
  it('lost from the database while keys use it, stops the start, saying to restore it: a new one would open none of them', async () => {
    const database = await freshDatabase();
    const keys = { ENCRYPTION_KEYS: OLD_KEY };
    const lone = await startPortcullis(keys, database);
    try {
      expect((await lone.cli(['user', 'create', '--email', 'kept@example.com', '--password-stdin', '--totp', 'required'], `${PASSWORD}\n`)).code).toBe(0);
      const client = await lone.createClient({ name: 'Kept app', redirectUris: [REDIRECT_URI] });
      const ua = new UserAgent();
      const page = await signIn(ua, await visit(ua, (await authorizationRequest(await discover(lone.issuer, client.client_id, client.client_secret), 'openid')).url), 'kept@example.com', PASSWORD);
      expect(isCodePage(page)).toBe(true);
      await lone.outsideQuery("DELETE FROM server_secrets WHERE name = 'totp keys'");
    } finally {
      await lone.close();
    }
    await expect(startPortcullis(keys, database)).rejects.toThrow(
      "the database holds 1 people's TOTP key(s) but not the server secret 'totp keys' (table server_secrets), which they are made from: restore that row from a backup of this database; a new secret would open none of them, and each of those people would need `portcullis user reset-totp`",
    );
    await database.drop();
  });
});
