// What the artifact adapter (adapter.ts) checks of a pushed authorization
// request (RFC 9126) as it is stored and presented.
import type { AdapterPayload } from 'oidc-provider';
import { Provider } from 'oidc-provider';
import { jsonHoldsNul, unstorableParameters } from '../persistence/nul.js';

/**
 * A pushed request keeps its parameters as a JWT, where a NUL is base64url
 * like the rest: stored, it would be refused only when used at /auth. Refused
 * at the push instead (RFC 9126 §2.1: validated as an authorization request).
 * The JWT's JSON is the client's own writing (a request object), where a
 * surrogate pair may be escaped too: written again first.
 */
export function pushedParamsUnstorable(payload: AdapterPayload): string | undefined {
  const claims = pushedClaims(payload);
  if (claims === undefined) return undefined;
  if (jsonHoldsNul(claims)) return unstorableParameters(claims);
  if (!claims.includes('\\u')) return undefined;
  try {
    return unstorableParameters(JSON.stringify(JSON.parse(claims)));
  } catch {
    return undefined;
  }
}

/** The JSON of a pushed request's parameters (the claims of its JWT: unsecured, or a signed request object). */
function pushedClaims(payload: AdapterPayload): string | undefined {
  const claims = typeof payload.request === 'string' ? payload.request.split('.')[1] : undefined;
  return claims === undefined ? undefined : Buffer.from(claims, 'base64url').toString('utf8');
}

/**
 * Whether the authorization request presenting a pushed request is made by
 * the client that pushed it (RFC 9126 §4: the request_uri is bound to that
 * client). The library checks it only after it has taken the pushed
 * request's `state` and `response_mode` for its own, so another client's
 * request_uri was refused at that other client's redirect URI carrying the
 * pusher's `state`. Found for nobody else, it is `invalid_request_uri`
 * answered with the presenter's own parameters, and stays usable by its
 * client. The pusher is the parameters' client_id, or the issuer of the JWT
 * the library wrote (client authentication may have named the client alone).
 */
export function presentedByPusher(payload: AdapterPayload): boolean {
  const request = Provider.ctx;
  const presenter = request?.oidc?.route === 'authorization' ? request.oidc.params?.client_id : undefined;
  if (typeof presenter !== 'string') return true;
  try {
    const claims = JSON.parse(pushedClaims(payload) ?? '{}') as { client_id?: unknown; iss?: unknown };
    return (claims.client_id ?? claims.iss) === presenter;
  } catch {
    return false;
  }
}
