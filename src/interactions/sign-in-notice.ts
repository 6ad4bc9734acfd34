// Why a sign-in was refused, carried from the form's POST to the page it
// redirects to (Post/Redirect/Get). Answering the POST with the page itself
// left a page that Back could not return to without the browser asking to
// send the form again, and whose Reload sent the password again, counting
// one more failure towards the throttle. The redirect's page is a GET:
// reloading it shows the form, and sends nothing.
//
// The notice rides in a cookie for that one interaction, read once. It is
// MACed with a key only this service holds, bound to the interaction, so that
// no other site that can set cookies here (a sibling subdomain) can put words
// on the sign-in page; and it holds nothing the person did not type
// themselves: the email, never the password.

import type { KeyedMac } from '../keys/sealed-secrets.js';

/** What a page says of a sign-in the throttle refuses for `seconds` more (the sign-in page's, the account page's). */
export function tooManyFailures(seconds: number): string {
  const minutes = Math.ceil(seconds / 60);
  return `Too many failed sign-ins. Try again in ${minutes === 1 ? 'a minute' : `${minutes} minutes`}.`;
}

export type Refusal =
  /** A field left empty (a browser checks `required` first; not every one, nor every autofill, does). */
  | { reason: 'incomplete' }
  | { reason: 'wrong_credentials' }
  | { reason: 'disabled' }
  /** The second step's (a TOTP code): none entered, or not one of the person's (wrong, or used already). */
  | { reason: 'no_code' }
  | { reason: 'wrong_code' }
  /** Too many wrong codes in a row: locked until an operator resets the person's TOTP. */
  | { reason: 'locked' }
  /** `until`: when the throttle lets this email and address try again (seconds since the epoch). */
  | { reason: 'throttled'; until: number };

export interface SignInNotice {
  refusal: Refusal;
  email: string;
}

export const SIGN_IN_NOTICE_COOKIE = '_sign_in_notice';

/** Long enough for the redirect to be followed; a notice never read expires unseen. */
const NOTICE_MAX_AGE_MS = 5 * 60 * 1000;

/** The longest address RFC 5321 lets through; a longer one is not kept (a cookie holds about 4 KiB). */
const MAX_EMAIL_LENGTH = 320;

const REASONS = new Set(['incomplete', 'wrong_credentials', 'disabled', 'no_code', 'wrong_code', 'locked', 'throttled']);

export class SignInNotices {
  constructor(private readonly mac: KeyedMac) {}

  /** The cookie's options for interaction `uid`: sent to its pages only, never to another site's form post. */
  static cookieOptions(uid: string, secure: boolean) {
    // (Not signed by Koa as well, with a second cookie: the value carries its own MAC.)
    return { httpOnly: true, sameSite: 'strict', secure, signed: false, path: `/interaction/${encodeURIComponent(uid)}`, maxAge: NOTICE_MAX_AGE_MS, overwrite: true } as const;
  }

  seal(uid: string, notice: SignInNotice): string {
    const email = notice.email.length <= MAX_EMAIL_LENGTH ? notice.email : '';
    const payload = Buffer.from(JSON.stringify({ ...notice.refusal, email })).toString('base64url');
    return `${payload}.${this.mac.make(`${uid} ${payload}`)}`;
  }

  /** The notice sealed for interaction `uid`, or undefined for anything else. */
  open(uid: string, cookie: string | undefined): SignInNotice | undefined {
    if (!cookie) return undefined;
    const [payload, mac, extra] = cookie.split('.');
    // Under any encryption key: sealed by an instance still on the list before a new key was put first.
    if (!payload || !mac || extra !== undefined || !this.mac.check(`${uid} ${payload}`, mac)) return undefined;
    let parsed: unknown;
    try {
      parsed = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
    } catch {
      return undefined;
    }
    const { reason, until, email } = parsed as { reason?: unknown; until?: unknown; email?: unknown };
    if (typeof reason !== 'string' || !REASONS.has(reason) || typeof email !== 'string') return undefined;
    if (reason === 'throttled') return typeof until === 'number' ? { refusal: { reason, until }, email } : undefined;
    return { refusal: { reason } as Refusal, email };
  }

}
