// Parameters that are not UTF-8. Node's query string parser (the library's,
// for query and form alike) turns each byte sequence that is not UTF-8 into
// U+FFFD, so a state or nonce would come back to the client other than it was
// sent (RFC 6749 §4.1.2: "the exact value received"), and the client would
// refuse the answer after the person had signed in for nothing. The
// authorization and PAR endpoints refuse such a request instead, and so does
// the logout endpoint, whose state goes back to the client too. The bytes
// are read from the request: a U+FFFD that was sent as such is kept. The
// check follows the library's own (see extraParams): a request that fails
// one of those first is answered as before, its state changed (it fails
// either way).
import type Koa from 'koa';
import { errors, type KoaContextWithOIDC, type Provider } from 'oidc-provider';
import { routePattern } from '../http/methods.js';

export const NOT_UTF8_PARAMETERS = 'request parameters must be UTF-8 (percent-encoded bytes included)';

/** An invalid_request answered with an error page, never sent to the client's redirect URI. */
export function invalidRequestPage(description: string): InstanceType<typeof errors.InvalidRequest> {
  const error = new errors.InvalidRequest(description);
  error.allow_redirect = false;
  return error;
}

const bodies = new WeakMap<object, Buffer[]>();
const STRICT = new TextDecoder('utf-8', { fatal: true });

/**
 * Keeps the chunks of a form posted to the authorization, PAR or logout
 * endpoint as the library reads them (it reads the body itself, so nothing
 * else may).
 */
export function keepRequestForms(provider: Provider): Koa.Middleware {
  const routes = [routePattern(provider, 'authorization'), routePattern(provider, 'pushed_authorization_request'), routePattern(provider, 'end_session')];
  return (ctx, next) => {
    if (ctx.method !== 'POST' || !routes.some((route) => route.test(ctx.path))) return next();
    const req = ctx.req;
    const chunks: Buffer[] = [];
    bodies.set(ctx.req, chunks);
    const iterator = req.iterator.bind(req);
    req.iterator = (options) => tee(iterator(options), chunks);
    return next();
  };
}

async function* tee(source: AsyncIterableIterator<unknown>, chunks: Buffer[]): AsyncGenerator<unknown> {
  for await (const chunk of source) {
    chunks.push(chunk as Buffer);
    yield chunk;
  }
}

/**
 * Whether the request's parameters, as sent, are UTF-8 once
 * percent-decoded. Only looked into when the library's parse made a U+FFFD,
 * which every invalid sequence becomes.
 */
export function parametersAreUtf8(ctx: KoaContextWithOIDC): boolean {
  const params = ctx.oidc.params ?? {};
  const replaced = (value: unknown): boolean => (typeof value === 'string' ? value.includes('\uFFFD') : Array.isArray(value) && value.some(replaced));
  if (!Object.values(params).some(replaced)) return true;
  if (ctx.method !== 'POST') return percentDecodesToUtf8(ctx.querystring);
  // Not kept: not for the reader to judge, so not taken.
  const chunks = bodies.get(ctx.req);
  if (!chunks) return false;
  try {
    return percentDecodesToUtf8(STRICT.decode(Buffer.concat(chunks)));
  } catch {
    return false;
  }
}

/**
 * Whether `text` (a query string or form body) is UTF-8 with each `%XX`
 * replaced by its byte. A `%` not followed by two hex digits stays as it is,
 * as the parser keeps it.
 */
export function percentDecodesToUtf8(text: string): boolean {
  if (!text.includes('%')) return true;
  const parts = text.match(/%[0-9a-fA-F]{2}|[^%]+|%/g) ?? [];
  const bytes = Buffer.concat(parts.map((part) => (part.length === 3 && part[0] === '%' ? Buffer.from([Number.parseInt(part.slice(1), 16)]) : Buffer.from(part, 'utf8'))));
  try {
    STRICT.decode(bytes);
    return true;
  } catch {
    return false;
  }
}

/**
 * Refuses what the logout endpoint answered (its page, or with nobody signed
 * in the form on to the confirmation) to a request whose parameters are not
 * UTF-8: its state would go back to the client with the sign-out
 * (RP-Initiated Logout §3) changed. Checked once the library has read the
 * parameters, which it does inside the route, where no option reaches; the
 * page it wrote is replaced by the error page (see provider.ts).
 */
export function refuseGarbledLogout(ctx: KoaContextWithOIDC): void {
  if (ctx.oidc?.route !== 'end_session' || ctx.status !== 200 || parametersAreUtf8(ctx)) return;
  throw invalidRequestPage(NOT_UTF8_PARAMETERS);
}
