// The APIs (resource servers, RFC 8707) a token may be for: what a request's
// `resource` names, checked against the registered APIs, the client's
// registration and the person's consent, with the scopes, format and
// lifetime of the token the library then issues for it.
import type { Client, KoaContextWithOIDC, ResourceServer } from 'oidc-provider';
import { errors } from 'oidc-provider';
import type { Apis } from '../apis/apis.js';
import type { Config } from '../config.js';
import { grantableApiScopes } from './client-model.js';

/** The most `resource` values one request may name (see resourceServers). */
const MAX_RESOURCES = 20;
const NOT_AN_API_FOR_THE_CLIENT = 'resource is not a registered API that this client may use';

/** The library's getResourceServerInfo (features.resourceIndicators), signing JWT access tokens with `signingAlg`. */
export function resourceServers(apis: Pick<Apis, 'find'>, signingAlg: Config['signingAlg']): (ctx: KoaContextWithOIDC, indicator: string, client: Client) => Promise<ResourceServer> {
  const resolvedResources = new WeakMap<KoaContextWithOIDC, Map<string, Promise<ResourceServer>>>();
  return (ctx: KoaContextWithOIDC, indicator: string, client: Client): Promise<ResourceServer> => {
    // RFC 8707 lets `resource` repeat, and the library resolves every
    // value it is given: a request naming one API 1,400 times cost 1.2 s
    // of CPU. So a request names at most MAX_RESOURCES, and each is
    // resolved once per request.
    const named = ctx.oidc.params?.resource;
    if (Array.isArray(named) && named.length > MAX_RESOURCES) {
      throw new errors.InvalidTarget(`at most ${MAX_RESOURCES} resource indicators may be requested at once`);
    }
    // A query or form sends strings only; a request object's JSON (which the
    // library takes as it is) may hold anything, an array inside the array.
    if (typeof indicator !== 'string') throw new errors.InvalidTarget('each resource indicator must be a string (an absolute URI)');
    const key = `${client.clientId} ${indicator}`;
    let resolved = resolvedResources.get(ctx)?.get(key);
    if (!resolved) {
      resolved = resourceServerInfo(apis, signingAlg, ctx, indicator, client);
      if (!resolvedResources.has(ctx)) resolvedResources.set(ctx, new Map());
      resolvedResources.get(ctx)!.set(key, resolved);
    }
    return resolved;
  };
}

/** What `resource` names: a registered API this client may have tokens for, with their scopes, format and lifetime. */
async function resourceServerInfo(apis: Pick<Apis, 'find'>, signingAlg: Config['signingAlg'], ctx: KoaContextWithOIDC, indicator: string, client: Client): Promise<ResourceServer> {
  const api = await apis.find(indicator);
  // One answer for an unknown API and one the client may not use, which
  // names neither: the value is the client's, and need not be printable
  // (RFC 6749 §5.2 limits error_description to printable ASCII).
  if (!api) throw new errors.InvalidTarget(NOT_AN_API_FOR_THE_CLIENT);
  const requested = String(ctx.oidc.params?.scope ?? '').split(' ');
  const apiScopes = api.scopes.map((scope) => scope.name);
  const grantable = grantableApiScopes(client, api.identifier, apiScopes);
  // RFC 8707 §2: a client registered for none of this API's scopes gets no token for it.
  if (grantable.length === 0) throw new errors.InvalidTarget(NOT_AN_API_FOR_THE_CLIENT);
  const refused = requested.filter((scope) => apiScopes.includes(scope) && !grantable.includes(scope));
  if (refused.length) throw new errors.InvalidScope('requested scope is not allowed for this client', refused.join(' '));
  // Where the request itself names the scopes, it must name one of this
  // API's: a token would otherwise carry the API's audience, and the
  // person's subject, with nothing asked for or consented to there
  // (RFC 6749 §3.3: fail the request rather than assume a default).
  if (requestNamesScopes(ctx) && !requested.some((scope) => grantable.includes(scope))) {
    throw new errors.InvalidScope(`request at least one scope of ${api.identifier}`, undefined as unknown as string);
  }
  // A code or refresh token names the API it was issued for, but what the
  // person consented to there is the consent's (the Grant): the API deleted
  // and made again, or its scopes taken away since (api update, client
  // update), can leave nothing of what the code or token asked for. The
  // library would issue a token for the API with no scope at all, the
  // person's subject in it, and an API that goes by audience would take it.
  // RFC 8707 §2: refused. Checked as the library scopes the token: what the
  // code or token asked for, of this API's scopes the client may have, that
  // the consent still holds; not whether the consent holds anything of the
  // API, which one built up over several sign-ins may while this token's own
  // scopes are gone. (A refresh naming its own `scope` is answered
  // invalid_scope when nothing of it is granted: refuseWhenNoScopeIsGranted
  // in standards.ts. Only a refresh reads `scope`: a code exchange sending
  // one is scoped by its code.)
  const consent = ctx.oidc.route === 'token' ? ctx.oidc.entities.Grant : undefined;
  const narrowed = ctx.oidc.params?.grant_type === 'refresh_token' && Boolean(ctx.oidc.params.scope);
  if (consent && !narrowed) {
    const issuedUnder = ctx.oidc.entities.RefreshToken ?? ctx.oidc.entities.AuthorizationCode ?? ctx.oidc.entities.DeviceCode;
    const asked = String(issuedUnder?.scope ?? '').split(' ').filter((scope) => grantable.includes(scope));
    if (!consent.getResourceScopeFiltered(api.identifier, asked)) {
      throw new errors.InvalidTarget('the consent holds none of the requested scopes of this resource; ask the person again');
    }
  }
  return {
    scope: grantable.join(' '),
    audience: api.identifier,
    accessTokenTTL: api.accessTokenTtl,
    accessTokenFormat: api.tokenFormat,
    ...(api.tokenFormat === 'jwt' ? { jwt: { sign: { alg: signingAlg } } } : {}),
  };
}

/**
 * Whether the scopes of the token being asked for come from this request: an
 * authorization request (directly, pushed, or a device's) and a client-credentials grant.
 * A code exchange or a refresh takes them from the grant the person consented to.
 */
function requestNamesScopes(ctx: KoaContextWithOIDC): boolean {
  const route = ctx.oidc?.route;
  if (route === 'authorization' || route === 'pushed_authorization_request' || route === 'device_authorization') return true;
  return route === 'token' && ctx.oidc.params?.grant_type === 'client_credentials';
}
