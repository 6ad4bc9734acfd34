// A sign-in in progress belongs to the browser that started it.
//
// The library ties an interaction to a browser only by its cookies
// (`_interaction`, `_interaction_resume`), which name the interaction and
// carry our signature, nothing of the browser. Scoped to the interaction's
// path, they cannot be __Host- cookies, so a page on a sibling subdomain (or
// a network attacker through any plain-http one) can plant them: a victim
// sent to the real sign-in page with an attacker's interaction cookies signs
// in for the attacker's browser, which then resumes with the victim's session
// (RFC 9700 §4.7; the mirror image signs the victim in as the attacker).
//
// So each browser that starts a sign-in gets a random value in a cookie of its
// own, a __Host- cookie on an https issuer (RFC 6265bis §4.1.3.2: Secure,
// Path=/, set by this host only, so no related domain can plant or replace
// it), and every interaction stores the value's digest when it is made
// (adapter.ts, a row of its own beside the interaction's, found by the same
// lookup). The interaction pages and the resume answer only the browser that
// holds it. An http issuer (local development) can set no __Host- cookie, so
// its binding is a plain cookie, which guards against interaction cookies
// moved between browsers, not against a planted pair.
import { randomBytes } from 'node:crypto';
import type Koa from 'koa';
import { sha256 } from '../persistence/hash.js';

/** The artifact kind of the row holding an interaction's browser (its id is the interaction's digest). */
export const BROWSER_BINDING_KIND = 'InteractionBrowser';

/**
 * How long a browser keeps its value, renewed at each sign-in it starts: as
 * the device cookie (accounts/device-cookies.ts). A browser without one gets
 * a new one, and two sign-ins it starts at once would each make their own,
 * of which it keeps one: the other tab's sign-in would be refused. So the
 * value is made once and kept, not made per sign-in.
 */
const LIFETIME_MS = 180 * 24 * 3600 * 1000;

export class BrowserBinding {
  readonly cookieName: string;
  private readonly options = { signed: false, httpOnly: true, path: '/', sameSite: 'none', maxAge: LIFETIME_MS, overwrite: true } as const;

  constructor(issuer: string) {
    // SameSite=None (options), as the session cookie: an authorization
    // request another site's page POSTs here must see the browser's value, or
    // it would make a new one and strand the sign-ins of the browser's other
    // tabs. An http issuer's is sent as Lax (issuer-origin.ts). Unsigned: a
    // random value nobody else knows needs no signature, and outlives cookie
    // key rotation.
    this.cookieName = new URL(issuer).protocol === 'https:' ? '__Host-browser' : '_browser';
  }

  /**
   * The digest of this browser's value, for an interaction saved in this
   * request. A browser without one is given one; either way its cookie is
   * renewed.
   */
  establish(ctx: Koa.Context): string {
    let value = this.valueOf(ctx);
    if (!value) value = randomBytes(32).toString('base64url');
    ctx.cookies.set(this.cookieName, value, this.options);
    return sha256(value);
  }

  /** The digest of this browser's value, or undefined if it has none. */
  of(ctx: Koa.Context): string | undefined {
    const value = this.valueOf(ctx);
    return value ? sha256(value) : undefined;
  }

  private valueOf(ctx: Koa.Context): string | undefined {
    const value = ctx.cookies.get(this.cookieName, { signed: false });
    return value && VALUE.test(value) ? value : undefined;
  }
}

/** What establish() makes: 32 random bytes, base64url. */
const VALUE = /^[A-Za-z0-9_-]{43}$/;
