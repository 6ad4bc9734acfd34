// The claims parameter (OpenID Connect Core §5.5): an app asks for single
// claims, for the ID token or for UserInfo, beside or instead of the scopes
// that release them. oidc-provider parses it, asks consent for the claims no
// grant holds yet (the consent page lists them, interactions/routes.ts) and
// releases only what was granted; this module is what it leaves to us.
import { errors, type ClaimsParameter, type Client, type KoaContextWithOIDC } from 'oidc-provider';
import { OIDC_CLAIMS } from '../oidc-scopes.js';

const CONTAINERS = ['userinfo', 'id_token'] as const;

/** Claims about the sign-in itself, which every OpenID request may ask for (the library never asks consent for them). */
const SIGN_IN_CLAIMS = ['sub', 'sid', 'auth_time', 'acr', 'amr', 'iss'];

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * The library's `assertClaimsParameter`, run at the authorization, PAR and
 * device authorization endpoints once it has checked the parameter is a JSON
 * object with `userinfo` or `id_token` objects in it. Refuses what would
 * otherwise fail later or silently; narrows the request to what this client
 * may be given (rewriting `claims`, which is what the library reads from
 * here on, and what a pushed request stores).
 */
export async function assertClaimsParameter(ctx: KoaContextWithOIDC, claims: ClaimsParameter, client: Client): Promise<void> {
  for (const container of CONTAINERS) {
    for (const [name, request] of Object.entries(claims[container] ?? {})) {
      checkClaimRequest(`claims.${container}.${name}`, request);
    }
  }
  // Compared with the account id, a string: any other value could never be met.
  const sub = claims.id_token?.sub;
  if (isObject(sub) && 'value' in sub && typeof sub.value !== 'string') throw new errors.InvalidRequest('claims.id_token.sub.value must be a string');
  // §5.5.1.1: an essential acr with the values wanted MUST be answered with
  // one of them, or the sign-in fails. Portcullis has no authentication
  // context classes (a password is all there is), so it fails now rather
  // than after the person signed in; the library would otherwise ask them to
  // sign in again and again, its check never met.
  const acr = claims.id_token?.acr;
  if (isObject(acr) && acr.essential === true && ('value' in acr || 'values' in acr)) {
    throw new errors.UnmetAuthenticationRequirements('no authentication context class (acr) is supported, so an essential acr cannot be met');
  }
  // (A request without the openid scope was refused before: the library's checkOpenidScope.)
  // A client registered for `openid profile` may not have the email address
  // by asking for the claim instead of the scope: claims beyond its scopes'
  // are left out, as claims this server does not have are (§5.5: a claim
  // requested need not be returned).
  const allowed = claimsReleasableTo(client);
  const narrowed: ClaimsParameter = {};
  let dropped = false;
  for (const container of CONTAINERS) {
    const requested = claims[container];
    if (requested === undefined) continue;
    const kept = Object.entries(requested).filter(([name]) => allowed.has(name));
    dropped ||= kept.length < Object.keys(requested).length;
    narrowed[container] = Object.fromEntries(kept);
  }
  if (dropped) (ctx.oidc.params as Record<string, unknown>).claims = JSON.stringify(narrowed);
}

/** The claims a client's registered OpenID Connect scopes release, and those of the sign-in. */
function claimsReleasableTo(client: { scope?: string }): Set<string> {
  // No `scope` registered: the library lets such a client ask for every scope.
  const scopes = client.scope === undefined ? Object.keys(OIDC_CLAIMS) : client.scope.split(' ');
  const allowed = new Set(SIGN_IN_CLAIMS);
  for (const scope of scopes) {
    for (const claim of OIDC_CLAIMS[scope as keyof typeof OIDC_CLAIMS] ?? []) allowed.add(claim);
  }
  return allowed;
}

/**
 * One member's request (§5.5.1): null, or an object whose `essential` is a
 * boolean and whose `values` is an array. Anything else is a malformed
 * request, refused as such rather than read one way or another.
 */
function checkClaimRequest(where: string, request: unknown): void {
  if (request === null) return;
  if (!isObject(request)) throw new errors.InvalidRequest(`${where} must be null or an object`);
  if ('essential' in request && typeof request.essential !== 'boolean') throw new errors.InvalidRequest(`${where}.essential must be a boolean`);
  if ('values' in request && !Array.isArray(request.values)) throw new errors.InvalidRequest(`${where}.values must be an array`);
}

/** The claims about the person an authorization request's claims parameter names, as far as this server has them (for the consent page). */
export function claimsRequestedIn(params: Record<string, unknown>): string[] {
  if (typeof params.claims !== 'string') return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(params.claims);
  } catch {
    return []; // refused when the request was taken: not one of a sign-in in progress
  }
  if (!isObject(parsed)) return [];
  const known = new Set(Object.values(OIDC_CLAIMS).flat().filter((claim) => !SIGN_IN_CLAIMS.includes(claim)));
  const names = CONTAINERS.flatMap((container) => (isObject(parsed[container]) ? Object.keys(parsed[container]) : []));
  return [...new Set(names)].filter((name) => known.has(name));
}

/**
 * The subject the request's claims parameter requires of the ID token
 * (`"sub": {"value": …}`, §3.1.2.1 and §5.5.1): only that person may sign in
 * for it, as for an id_token_hint.
 */
export function subjectRequiredBy(params: Record<string, unknown>): string | undefined {
  if (typeof params.claims !== 'string') return undefined;
  try {
    const sub = (JSON.parse(params.claims) as ClaimsParameter).id_token?.sub;
    return isObject(sub) && typeof sub.value === 'string' ? sub.value : undefined;
  } catch {
    return undefined;
  }
}
