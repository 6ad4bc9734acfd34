// The library reads at most 56 KiB of a request body (its
// lib/shared/selective_body.js) and answers anything longer, announced or
// chunked, as 400 "failed to parse the request body". It is 413 Content Too
// Large (RFC 9110 §15.5.14), and says so.
import type { KoaContextWithOIDC } from 'oidc-provider';
import { errors } from 'oidc-provider';

export const BODY_LIMIT = 56 * 1024;
export const BODY_TOO_LARGE = `the request body is larger than ${BODY_LIMIT / 1024} KiB`;

/** Whether the library refused `error`'s request for the length of its body. */
export function isBodyTooLarge(error: unknown): boolean {
  return error instanceof errors.InvalidRequest && (error.cause as Error | undefined)?.message === 'request entity too large';
}

/**
 * Turns the library's 400 into 413; the caller replaces the body. The rest of
 * the body is left unread, so the connection cannot carry another request.
 * A challenge (UserInfo's) gets the same description as the body.
 */
export function answerBodyTooLarge(ctx: KoaContextWithOIDC): void {
  ctx.status = 413;
  ctx.set('Connection', 'close');
  const challenge = ctx.response.get('WWW-Authenticate');
  if (challenge) ctx.set('WWW-Authenticate', challenge.replace(/error_description="[^"]*"/, `error_description="${BODY_TOO_LARGE}"`));
}
