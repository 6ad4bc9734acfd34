// Security headers for every response, ours and the provider's. Pages carry only
// nonce'd inline CSS and no script of ours; oidc-provider adds a hash to
// script-src for the one script it writes itself (form_post auto-submit).
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Middleware } from 'koa';

const nonces = new WeakMap<IncomingMessage, string>();

/** The CSP nonce for this request's inline <style>. */
export function styleNonce(req: IncomingMessage): string {
  let nonce = nonces.get(req);
  if (!nonce) {
    nonce = randomBytes(16).toString('base64');
    nonces.set(req, nonce);
  }
  return nonce;
}

export const securityHeaders: Middleware = async (ctx, next) => {
  const nonce = styleNonce(ctx.req);
  ctx.set({
    // No form-action: Chrome applies it to the redirect back to the client after a post.
    'Content-Security-Policy': [
      "default-src 'none'",
      `style-src 'nonce-${nonce}'`,
      "script-src 'self'",
      "img-src 'self' https: data:",
      "frame-ancestors 'none'",
      "base-uri 'none'",
    ].join('; '),
    'X-Content-Type-Options': 'nosniff',
    'Referrer-Policy': 'no-referrer',
    'X-Frame-Options': 'DENY',
    'Cross-Origin-Opener-Policy': 'same-origin',
  });
  await next();
};
