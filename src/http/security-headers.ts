// Security headers for every response, ours and the provider's. Pages carry
// only nonce'd inline CSS and no script of ours; oidc-provider adds a hash to
// script-src for the one script it writes itself (the auto-submit of its self-submitting pages: form_post, a sign-out passed on, /device?user_code=…).
// The nonce is made only for pages (see views.ts): API responses, the bulk of
// the traffic, do not pay for random bytes they never use.
import { randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import type { Middleware } from 'koa';

// No form-action: Chrome applies it to the redirect back to the client after a post.
const policy = (styleSource: string) =>
  [
    "default-src 'none'",
    `style-src ${styleSource}`,
    "script-src 'self'",
    // http on a loopback host: a logo a client may register for development
    // (safe-url.ts). An IPv6 literal cannot be written here (CSP host-source),
    // so a logo at http://[::1] is left off the page (logoUrl in safe-url.ts).
    "img-src 'self' https: data: http://localhost:* http://127.0.0.1:*",
    "frame-ancestors 'none'",
    "base-uri 'none'",
  ].join('; ');

const BASE_POLICY = policy("'none'");

const newNonce = () => randomBytes(16).toString('base64');

/** Allows this response's inline <style> with a fresh nonce, which it returns. */
export function allowInlineStyle(res: ServerResponse): string {
  const nonce = newNonce();
  res.setHeader('Content-Security-Policy', policy(`'nonce-${nonce}'`));
  return nonce;
}

/**
 * As allowInlineStyle, in the policy the response already has: on the page
 * the library writes, script-src holds the hash of its script, which the
 * library re-joins with ';' alone. The policy is always there (set below, for
 * every response); were it not, or without style-src, the style would be
 * refused and the page merely unstyled, never the script's hash lost.
 */
export function allowInlineStyleToo(res: ServerResponse): string {
  const nonce = newNonce();
  const current = res.getHeader('Content-Security-Policy');
  if (typeof current === 'string') res.setHeader('Content-Security-Policy', current.replace(/style-src [^;]*/, `style-src 'nonce-${nonce}'`));
  return nonce;
}

const COMMON_HEADERS = {
  'Content-Security-Policy': BASE_POLICY,
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'X-Frame-Options': 'DENY',
  // No Cross-Origin-Opener-Policy: an app may open the sign-in in a popup
  // (oidc-client-ts signinPopup, MSAL loginPopup) and wait for the popup,
  // back at its callback, to message it; `same-origin` here cut that link
  // for good. Framing is refused above, and the pages hold nothing another
  // window could read through the link.
};

/**
 * Headers for every response, the app's and those refused before it. An https issuer also gets HSTS (RFC 6797): a
 * browser then never tries plain http for it, whatever a link or a network
 * says; sent even when TLS ends at a proxy in front, since the browser sees
 * the issuer's scheme. No includeSubDomains: the issuer's parent domain may
 * serve other things.
 */
export function securityHeadersFor(issuer: string): Record<string, string> {
  return issuer.startsWith('https:') ? { ...COMMON_HEADERS, 'Strict-Transport-Security': 'max-age=31536000' } : COMMON_HEADERS;
}

/** Sets securityHeadersFor(issuer) on every response the app makes (the refusals made before it: client-errors.ts). */
export function securityHeaders(issuer: string): Middleware {
  const headers = Object.entries(securityHeadersFor(issuer));
  return (ctx, next) => {
    // Straight onto the response: Koa's ctx.set(object) lower-cases and copies
    // every name on every request, and these are fixed, valid and unsent yet.
    for (const [name, value] of headers) ctx.res.setHeader(name, value);
    return next();
  };
}
