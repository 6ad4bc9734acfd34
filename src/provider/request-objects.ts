// Request objects (OpenID Connect Core §6.1, RFC 9101): an authorization
// request's parameters sent as a JWT the client signed, so that nothing on
// the way (the browser, an extension, a proxy's log) can change them. The
// library parses the object, checks that it names the client (`iss`,
// `client_id`) and this server (`aud`), its time claims, and its signature
// with the client's registered keys, and then uses its parameters alone
// (RFC 9101 §6.3). This module is what it leaves to us.
import { decodeJwt } from 'jose';
import { errors, type Client, type KoaContextWithOIDC } from 'oidc-provider';
import { CLIENT_ASSERTION_ALGS } from '../clients/client-keys.js';

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
  if ('PushedAuthorizationRequest' in ctx.oidc.entities) return;
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
  if (typeof sent?.request !== 'string' || 'PushedAuthorizationRequest' in ctx.oidc.entities) return sent;
  try {
    return decodeJwt(sent.request);
  } catch {
    return undefined;
  }
}
