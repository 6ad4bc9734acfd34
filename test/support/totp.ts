// The TOTP second step's pages (views/second-factor.eta) as tests read and
// drive them, and codes from `otpauth`, an implementation of RFC 6238 of its
// own, reading the key from the page's otpauth:// URI as an authenticator app
// scanning the QR code would.
import { setTimeout as sleep } from 'node:timers/promises';
import * as oidc from 'openid-client';
import * as OTPAuth from 'otpauth';
import type { TestPortcullis } from './portcullis.js';
import { allow, authorizationRequest, pageKind, REDIRECT_URI, signIn, visit, type AuthorizationRequest } from './relying-party.js';
import { UserAgent, type Page } from './user-agent.js';

export const SET_UP_HEADING = '<h1>Set up two-step verification</h1>';
export const ENTER_HEADING = '<h1>Enter your verification code</h1>';
export const WRONG_CODE = 'That code is not right, or was used already. Enter the code your authenticator app shows now.';
export const EMPTY_CODE = 'Enter the 6-digit code from your authenticator app.';
export const LOCKED = 'Too many wrong codes. Ask whoever runs this service to reset your two-step verification.';
/** The ID token's amr after a code (RFC 8176). */
export const OTP_AMR = ['pwd', 'otp', 'mfa'];

const STEP_MS = 30_000;

/** Whether `page` is the second step's (setup or code): its form posts to /totp. */
export const isCodePage = (page: Page) => /<form[^>]*action="\/interaction\/[^"]+\/totp"/.test(page.html);

/** The text of the page's alert (role="alert"), if it has one. */
export const alertOn = (page: Page) => /<[^>]*role="alert"[^>]*>([^<]*)</.exec(page.html)?.[1]?.trim();

/** The key on a setup page: its otpauth:// URI, the base32 secret in it, the key as the page shows it, and codes of it. */
export function keyOn(page: Page): { uri: string; secret: string; shown: string | undefined; totp: OTPAuth.TOTP } {
  const href = /<a[^>]*href="(otpauth:\/\/totp\/[^"]+)"/.exec(page.html)?.[1];
  if (!href) throw new Error(`no otpauth:// link on ${page.url}:\n${page.html.slice(0, 3000)}`);
  const uri = href.replace(/&amp;/g, '&');
  const totp = OTPAuth.URI.parse(uri);
  if (!(totp instanceof OTPAuth.TOTP)) throw new Error(`not a TOTP URI: ${uri}`);
  const shown = /<code[^>]*id="totp-key"[^>]*>([^<]*)<\/code>/.exec(page.html)?.[1]?.trim();
  return { uri, secret: new URL(uri).searchParams.get('secret') ?? '', shown, totp };
}

/** Posts `code` in the page's /totp form; follows redirects up to `stopAt` (the app's redirect URI). */
export function enterCode(ua: UserAgent, page: Page, code: string, stopAt = REDIRECT_URI): Promise<Page> {
  return ua.post(page, UserAgent.formAction(page, '/totp'), { ...UserAgent.formFields(page, '/totp'), code }, stopAt);
}

export const stepNow = () => Math.floor(Date.now() / STEP_MS);
export const codeAt = (totp: OTPAuth.TOTP, step: number) => totp.generate({ timestamp: step * STEP_MS });

/**
 * The steps whose codes each person was given: a code is taken once per
 * person, so each sign-in uses a later step than the last, the current one
 * or the next (both are taken), waiting for the clock where needed.
 */
export class CodeClock {
  private readonly last = new Map<string, number>();

  /** Notes that `person` was given the code of `step` (picked by the test itself). */
  taken(person: string, step: number): void {
    this.last.set(person, step);
  }

  /** The step freshStep would give now, not taken (for a code that must be refused for another reason). */
  unusedStep(person: string): number {
    return Math.max(stepNow(), (this.last.get(person) ?? -Infinity) + 1);
  }

  async freshStep(person: string): Promise<number> {
    for (;;) {
      const now = stepNow();
      const step = Math.max(now, (this.last.get(person) ?? -Infinity) + 1);
      if (step <= now + 1) {
        this.last.set(person, step);
        return step;
      }
      await sleep((now + 1) * STEP_MS - Date.now() + 100);
    }
  }

  async freshCode(person: string, totp: OTPAuth.TOTP): Promise<string> {
    return codeAt(totp, await this.freshStep(person));
  }
}

/** A 6-digit code, the `nth` of several, that is none of the key's codes around now. */
export function wrongCode(totp: OTPAuth.TOTP, nth = 0): string {
  const near = new Set([-3, -2, -1, 0, 1, 2, 3].map((delta) => codeAt(totp, stepNow() + delta)));
  const candidates = ['000000', '111111', '222222', '333333', '444444', '555555', '666666', '777777', '888888', '999999', '123456', '424242'];
  return candidates.filter((code) => !near.has(code))[nth % 8]!;
}

/** A person made with the CLI (`--totp required` unless `totp` is false): their email, `NAME@example.com`. */
export async function totpPerson(pc: TestPortcullis, name: string, password: string, totp = true): Promise<string> {
  const email = `${name}@example.com`;
  const made = await pc.cli(['user', 'create', '--email', email, '--password-stdin', ...(totp ? ['--totp', 'required'] : [])], `${password}\n`);
  if (made.code !== 0) throw new Error(`user create ${email}: ${made.stderr}`);
  return email;
}

/** An authorization request of `rp` opened in `ua`, and its sign-in page posted with the password: the request, and the page that follows. */
export async function passwordStep(ua: UserAgent, rp: oidc.Configuration, email: string, password: string, { scope = 'openid', extra = {} }: { scope?: string; extra?: Record<string, string> } = {}): Promise<{ request: AuthorizationRequest; page: Page }> {
  const request = await authorizationRequest(rp, scope, extra);
  const page = await visit(ua, request.url);
  if (pageKind(page) !== 'login') throw new Error(`not the sign-in page: ${page.url}\n${page.html.slice(0, 1500)}`);
  return { request, page: await signIn(ua, page, email, password) };
}

/** From `page`, consent where asked, to the app's callback, and the tokens `rp` gets there. */
export async function toApp(ua: UserAgent, page: Page, request: AuthorizationRequest, rp: oidc.Configuration) {
  const current = pageKind(page) === 'consent' ? await allow(ua, page) : page;
  if (pageKind(current) !== 'callback') throw new Error(`not back at the app (${current.status} ${current.url}): ${alertOn(current) ?? current.html.slice(0, 1500)}`);
  return oidc.authorizationCodeGrant(rp, new URL(current.url), { pkceCodeVerifier: request.verifier, expectedState: request.state, expectedNonce: request.nonce });
}

/** A person's first sign-in in `ua`: the password, the setup page, a fresh code of the key it shows, the app: the key and the tokens. */
export async function setUpTotp(ua: UserAgent, rp: oidc.Configuration, email: string, password: string, clock: CodeClock, scope = 'openid') {
  const { request, page } = await passwordStep(ua, rp, email, password, { scope });
  if (!page.html.includes(SET_UP_HEADING)) throw new Error(`not the setup page: ${page.url}\n${page.html.slice(0, 1500)}`);
  const key = keyOn(page);
  const tokens = await toApp(ua, await enterCode(ua, page, codeAt(key.totp, await clock.freshStep(email))), request, rp);
  return { key, tokens };
}
