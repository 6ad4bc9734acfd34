// The claims parameter (OpenID Connect Core §5.5): an app asks for single
// claims, for the ID token or for UserInfo, beside or instead of the scopes
// that release them. oidc-provider parses it, asks consent for the claims no
// grant holds yet (the consent page lists them, interactions/routes.ts) and
// releases only what was granted; this module is what it leaves to us.
import { errors, interactionPolicy, type ClaimsParameter, type Client, type KoaContextWithOIDC } from 'oidc-provider';
import { claimsReleasedBy, OIDC_CLAIMS, SIGN_IN_CLAIMS } from '../oidc-scopes.js';

const CONTAINERS = ['userinfo', 'id_token'] as const;

/**
 * How deep objects and arrays may nest in the parameter: claims, a
 * container, a member's request, its `values`, and room for a member's
 * extensions. Far deeper (thousands of levels, in a form body under its
 * limit) overflowed the stack when the parameter was written out again, here
 * or when its code was stored: a 500.
 */
const MAX_DEPTH = 6;

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
  if (deeperThan(claims, MAX_DEPTH)) throw new errors.InvalidRequest(`the claims parameter nests objects and arrays more than ${MAX_DEPTH} deep`);
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
  const allowed = new Set([...SIGN_IN_CLAIMS, ...claimsReleasedTo(client)]);
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

/** The claims about the person a client's registered OpenID Connect scopes release (a registration without scopes holds a blank list: client-model.ts). */
export function claimsReleasedTo(client: Pick<Client, 'scope'>): Set<string> {
  return claimsReleasedBy(String(client.scope ?? '').split(' '));
}

/** Whether objects and arrays nest in `value` more than `levels` deep (looking no deeper). */
function deeperThan(value: unknown, levels: number): boolean {
  if (typeof value !== 'object' || value === null) return false;
  if (levels === 0) return true;
  return Object.values(value).some((member) => deeperThan(member, levels - 1));
}

/**
 * The library's consent check of the claims asked for (op_claims_missing),
 * counting as given the claims of the scopes consented to that the request
 * asks for too: it counts only claims consented to one by one, so an app
 * that asked for the email scope and marked `email` essential was asked
 * again, and its prompt=none sign-in got consent_required. Those claims are
 * released by their scope all the same (the ID token and UserInfo carry the
 * claims of the scopes asked for and consented to).
 */
export function claimsOfConsentedScopesGiven(policy: interactionPolicy.Prompt[]): interactionPolicy.Prompt[] {
  const consent = policy.find((prompt) => prompt.name === 'consent');
  const at = consent?.checks.findIndex((check) => check.reason === 'op_claims_missing') ?? -1;
  if (!consent || at < 0) throw new Error("oidc-provider's consent policy has no op_claims_missing check to replace");
  const missing = (ctx: KoaContextWithOIDC): string[] => {
    const { grant } = ctx.oidc;
    if (!grant) return [];
    // Only the scopes this request asks for (and the consent holds): the
    // library releases a scope's claims for those alone, and a claim asked
    // for by name only where the consent holds the claim itself.
    const scopesGiven = grant.getOIDCScopeFiltered(ctx.oidc.requestParamOIDCScopes as Set<string>);
    const given = new Set([...grant.getOIDCClaimsEncountered(), ...claimsReleasedBy(scopesGiven.split(' '))]);
    const requested = (ctx.oidc as unknown as { requestParamClaims: Set<string> }).requestParamClaims;
    return [...requested].filter((claim) => !given.has(claim) && !SIGN_IN_CLAIMS.includes(claim));
  };
  const { Check } = interactionPolicy;
  // Its error too (consent_required, for prompt=none): the prompt gave it
  // to the checks it was made with, not to one added after.
  const { error } = consent.checks[at]!;
  consent.checks.remove('op_claims_missing');
  consent.checks.add(
    new Check('op_claims_missing', 'requested claims not granted', error!, (ctx) => missing(ctx).length > 0, (ctx) => ({ missingOIDCClaims: missing(ctx) })),
    at,
  );
  return policy;
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
  const known = claimsReleasedBy(Object.keys(OIDC_CLAIMS));
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
