// Request objects (OpenID Connect Core §6.1, RFC 9101): an authorization
// request's parameters sent as a JWT the client signed, so that nothing on
// the way (the browser, an extension, a proxy's log) can change them. The
// library parses the object, checks that it names the client (`iss`,
// `client_id`) and this server (`aud`), its time claims, and its signature
// with the client's registered keys, and then uses its parameters alone
// (RFC 9101 §6.3). This module is what it leaves to us.
import querystring from 'node:querystring';
import { decodeJwt } from 'jose';
import type Koa from 'koa';
import { errors, type Client, type KoaContextWithOIDC, type Provider } from 'oidc-provider';
import { CLIENT_ASSERTION_ALGS } from '../clients/client-keys.js';
import { rewriteFormForTheLibrary } from '../http/form-body.js';
import { routePattern } from '../http/methods.js';
import { BODY_LIMIT } from './body-limit.js';

/**
 * The algorithms a request object may be signed with: those of the keys a
 * client registers (clients/client-keys.ts), as for its client assertions.
 * Not `none`: an unsigned object proves nothing the parameters themselves do
 * not, and would let a page's script rewrite what it seems to vouch for. Not
 * HS256: a client secret is kept only as a digest, which cannot check an HMAC.
 */
export const REQUEST_OBJECT_ALGS = CLIENT_ASSERTION_ALGS;

/**
 * The media types an object may declare (RFC 9101 §10.8, explicit typing;
 * RFC 7515 §4.1.9 lets `application/` be left out). None at all is taken,
 * as the RFC and OpenID Connect allow; another type is a JWT made for
 * something else (a DPoP proof, a logout token) that the client's key signed.
 */
const TYPES = new Set(['oauth-authz-req+jwt', 'jwt']);

/**
 * The library's `assertJwtClaimsAndHeader`, run on every request object once
 * its claims are checked and before its signature is (and on the one a
 * pushed request stored, which was checked when it was pushed).
 */
export async function assertRequestObject(ctx: KoaContextWithOIDC, _claims: Record<string, unknown>, header: Record<string, unknown>, client: Client): Promise<void> {
  if ('PushedAuthorizationRequest' in ctx.oidc.entities) {
    // Plain parameters pushed (the library stores them as an unsecured JWT)
    // before the client was registered with --require-jar: refused as the
    // push would be now. The library takes any pushed request at /auth.
    if (header.alg === 'none' && client.requireSignedRequestObject) throw new errors.InvalidRequest('Request Object must be used by this client');
    return;
  }
  // Said outright: the library would try the object against no keys and
  // answer only that it could not be validated.
  if (client.clientAuthMethod !== 'private_key_jwt') {
    throw new errors.InvalidRequestObject(
      `this client has no keys registered to check a request object's signature with (a client made with --jwks-file has): send the parameters themselves`,
    );
  }
  const type = header.typ;
  if (type !== undefined && (typeof type !== 'string' || !TYPES.has(type.toLowerCase().replace(/^application\//, '')))) {
    throw new errors.InvalidRequestObject('the request object is typed as something else (typ): oauth-authz-req+jwt is a request object');
  }
}

/**
 * The parameters the request sent as such: the request object's where it
 * carried one (by now the library has checked it, and uses its parameters
 * alone), else the query or form. Undefined where neither is a JSON object.
 */
export function parametersSent(ctx: KoaContextWithOIDC): Record<string, unknown> | undefined {
  const sent = (ctx.method === 'POST' ? ctx.oidc.body : ctx.query) as Record<string, unknown> | undefined;
  if ('PushedAuthorizationRequest' in ctx.oidc.entities) return sent;
  // As the library reads it (omitEmptyParameters, standards.ts): an empty
  // value is none, and one left beside it is the object.
  const objects = [sent?.request].flat().filter((value) => typeof value === 'string' && value !== '') as string[];
  if (objects.length !== 1) return sent;
  try {
    return decodeJwt(objects[0]!);
  } catch {
    return undefined;
  }
}

/**
 * How deep a request object's header or claims may nest objects and arrays:
 * far more than any parameter needs (claims-parameter.ts allows 6 within
 * `claims`), far less than the few thousand levels at which the library,
 * copying the object before it checks the signature, overflowed the stack.
 */
const MAX_NESTING = 32;

/** Whether the JSON text `json` opens objects and arrays more than `max` deep (strings skipped). */
function nestsDeeper(json: string, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < json.length; i++) {
    const c = json.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}

/** Whether the header or claims of the JWT `jwt` nest deeper than MAX_NESTING. */
function nestedTooDeep(jwt: string): boolean {
  return jwt
    .split('.', 2)
    .some((part) => nestsDeeper(Buffer.from(part, 'base64url').toString('utf8'), MAX_NESTING));
}

/** As the library's parser (node:querystring) reads a name or value: a `%` that escapes nothing stays as it is. */
const decodeFormComponent = (text: string): string => querystring.unescape(text.replace(/\+/g, ' '));

/**
 * `form` (a query string or form body) with each `request` whose JWT nests
 * too deep replaced by as many `x`s: no JWT, which the library refuses as
 * invalid_request_object, answered as any other refusal (at the redirect
 * URI a request named). The same length, as a body must keep its
 * Content-Length. Undefined where nothing was replaced.
 */
function defused(form: string): string | undefined {
  let replaced = false;
  const parts = form.split('&').map((part) => {
    const equals = part.indexOf('=');
    if (equals < 0 || decodeFormComponent(part.slice(0, equals)) !== 'request') return part;
    const value = part.slice(equals + 1);
    if (!nestedTooDeep(decodeFormComponent(value))) return part;
    replaced = true;
    return `${part.slice(0, equals + 1)}${'x'.repeat(value.length)}`;
  });
  return replaced ? parts.join('&') : undefined;
}

/**
 * Refuses, before the library reads them, request objects nested deeper
 * than MAX_NESTING at the authorization, PAR and device authorization
 * endpoints: the library parses an object, then copies it (and writes its
 * `claims` out again) before checking whom it is from, so anyone knowing a
 * client_id could have it overflow the stack (a 500). A form is held until
 * it has all come (at most the library's limit: past it, passed on as it
 * comes, for the library to refuse), then passed on, defused if need be.
 */
export function defuseNestedRequestObjects(provider: Provider): Koa.Middleware {
  const routes = ['authorization', 'pushed_authorization_request', 'device_authorization'].map((route) => routePattern(provider, route));
  return (ctx, next) => {
    if (!routes.some((route) => route.test(ctx.path))) return next();
    if (ctx.method === 'GET' || ctx.method === 'HEAD') {
      if (ctx.querystring.includes('=')) {
        const query = defused(ctx.querystring);
        if (query !== undefined) ctx.querystring = query;
      }
    } else if (ctx.method === 'POST' && ctx.is('application/x-www-form-urlencoded')) {
      // Every form: the name may be written percent-encoded (`r%65quest`).
      rewriteFormForTheLibrary(ctx.req, BODY_LIMIT, (form) => defused(form) ?? form);
    }
    return next();
  };
}
