// Where the library's answers depart from the RFCs, the answers they ask for.
import type { IncomingMessage } from 'node:http';
import type Provider from 'oidc-provider';
import { decodeProtectedHeader } from 'jose';
import { errors, type KoaContextWithOIDC } from 'oidc-provider';
import { DEVICE_CODE_GRANT } from '../clients/clients.js';
import { routePattern } from '../http/methods.js';
import { onlyOpenIdConnectScopes } from '../oidc-scopes.js';
import { answerBodyTooLarge, BODY_TOO_LARGE, isBodyTooLarge } from './body-limit.js';
import { POLLING_INTERVAL } from './device-flow.js';
import { signOutsToRegisteredAddresses } from './registration-changes.js';

/** The error events of the routes that read a request body (the library's lib/helpers/initialize_app.js). */
const REQUEST_ERROR_EVENTS = [
  'authorization.error',
  'grant.error',
  'userinfo.error',
  'introspection.error',
  'revocation.error',
  'pushed_authorization_request.error',
  'device_authorization.error',
  'end_session.error',
  'end_session_confirm.error',
] as const;

/**
 * Marks the requests whose errors are answered otherwise below. The library
 * emits these events with the error once it has answered it (as JSON, or a
 * page by renderError, which makes its own 413 page: configuration.ts); all
 * with the same arguments, whatever the typings' one overload per name.
 */
export function noteRequestErrors(provider: Provider): void {
  for (const event of REQUEST_ERROR_EVENTS) {
    provider.on(event as 'grant.error', (ctx: KoaContextWithOIDC, error: unknown) => {
      if (isBodyTooLarge(error)) bodiesTooLarge.add(ctx);
      else if (isDpopReplay(error)) dpopReplays.add(ctx);
      else if (isUnreadableDpopProof(error)) unreadableDpopProofs.set(ctx, (error as { error_detail: string }).error_detail);
      else if (isMissingRequiredDpop(error)) missingRequiredDpop.add(ctx);
      else if (error instanceof AssertionRefused) refusedAssertions.set(ctx, error.reason);
      else if (event === 'userinfo.error' && isApiTokenAtUserinfo(ctx, error)) apiTokensAtUserinfo.add(ctx);
      else if (event === 'pushed_authorization_request.error' && error instanceof errors.RequestUriNotSupported) requestUrisPushed.add(ctx);
    });
  }
}

/**
 * RFC 6750 §3.1: a request to a protected resource that lacks authentication
 * information, as one "attempted using an unsupported authentication method"
 * does (`Authorization: Basic …`, say), gets the 401 challenge without an
 * error code. The library refuses any scheme but Bearer and DPoP as a
 * malformed token request (400 invalid_request). Such a header carries no
 * access token, so UserInfo reads the request as if it were not there: a
 * token sent another way (RFC 6750 §2.2) is still taken, and without one
 * the library's own challenge for a missing token answers.
 */
export function challengeOtherSchemesAtUserinfo(provider: Provider): void {
  const userinfo = routePattern(provider, 'userinfo');
  provider.use((ctx, next) => {
    const authorization = ctx.req.headers.authorization;
    if (authorization !== undefined && userinfo.test(ctx.path)) {
      // The scheme as the library reads it (lib/helpers/oidc_context.js): up to the first space.
      const scheme = authorization.split(' ')[0]!.toLowerCase();
      if (scheme !== '' && scheme !== 'bearer' && scheme !== 'dpop') delete ctx.req.headers.authorization;
    }
    return next();
  });
}

/**
 * RFC 6749 §3.1: "Parameters sent without a value MUST be treated as if they
 * were omitted from the request." The library does so for a parameter sent
 * once (lib/helpers/params.js), but a parameter sent again without a value
 * (`scope=openid&scope=`) reaches its duplicate check as two and is refused
 * as "provided twice". Its parameters, query or body alike, are gathered in
 * one assignment (lib/shared/assemble_params.js): the empty values are
 * dropped there, before any check reads them.
 */
export function omitEmptyParameters(provider: Provider): void {
  onAssignment(provider, 'params', (params) => {
    for (const [name, sent] of Object.entries(params)) if (Array.isArray(sent)) params[name] = withoutEmpty(sent);
  });
  // The PAR endpoint reads `request` from the body itself, to store it
  // (`request=&request=…` was taken for an object: a 500): as in params.
  onAssignment(provider, 'body', (body) => {
    if (Array.isArray(body.request)) body.request = withoutEmpty(body.request);
  });
}

/** The values of a parameter sent several times, empty ones left out: one left is the value; none, no value. */
function withoutEmpty(sent: unknown[]): unknown {
  const given = sent.filter((one) => one !== '');
  return given.length > 1 ? given : given[0];
}

/** Has every assignment of `member` on the library's OIDCContext go through `normalize` first. */
function onAssignment(provider: Provider, member: 'params' | 'body', normalize: (value: Record<string, unknown>) => void): void {
  const slot = Symbol(member);
  Object.defineProperty(provider.OIDCContext.prototype, member, {
    configurable: true,
    get(this: Record<symbol, unknown>) {
      return this[slot];
    },
    set(this: Record<symbol, unknown>, value: Record<string, unknown> | undefined) {
      if (value) normalize(value);
      this[slot] = value;
    },
  });
}

/** The endpoints where a client authenticates. */
const CLIENT_AUTHENTICATED_ROUTES = new Set(['token', 'introspection', 'revocation', 'pushed_authorization_request', 'device_authorization']);

/**
 * RFC 9110 §11.4 (and RFC 6750 §2.1) allow one or more spaces between an
 * Authorization header's scheme and its credentials; the library's parsers
 * (client authentication, bearer tokens) take exactly one, and refused
 * `Basic  …` as invalid_client. Runs before the library reads the header.
 */
export function acceptSpacesAfterScheme(req: IncomingMessage): void {
  const header = req.headers.authorization;
  if (header !== undefined && header.includes('  ')) req.headers.authorization = header.replace(/^(\S+) +/, '$1 ');
}

/**
 * Where the library's answer departs from the RFCs, the answer they ask for.
 * Runs before the deferred writes are settled, so that an answer turned into
 * an error stores nothing.
 */
export function followTheStandards(ctx: KoaContextWithOIDC): void {
  const route = ctx.oidc?.route;
  if (route === undefined) return;
  useContentTooLarge(ctx);
  useInvalidDpopProofForReplays(ctx);
  sayWhyDpopProofsWereUnreadable(ctx);
  sayWhyUserinfoRefusedApiTokens(ctx);
  keepDescriptionsPrintable(ctx);
  if (route === 'authorization' || route === 'resume') keepRedirectUriQuery(ctx, [ctx.oidc.params?.redirect_uri]);
  // RP-Initiated Logout 1.0 §3: the post_logout_redirect_uri, with `state` added.
  else if (route === 'end_session_confirm') {
    signOutsToRegisteredAddresses(ctx);
    keepRedirectUriQuery(ctx, ctx.oidc.client?.postLogoutRedirectUris ?? []);
  }
  if (!CLIENT_AUTHENTICATED_ROUTES.has(route)) return;
  if (route === 'token') {
    // RFC 6749 §5.1 asks for both; the library sends only Cache-Control.
    ctx.set('Pragma', 'no-cache');
    sayDpopIsRequired(ctx);
    useUnauthorizedClient(ctx);
    refuseWhenNoScopeIsGranted(ctx);
  } else if (route === 'introspection') {
    inactiveForStructuredTokens(ctx);
    refusePublicClients(ctx);
  } else if (route === 'pushed_authorization_request') {
    refuseRequestUriWhenPushed(ctx);
  } else if (route === 'device_authorization') {
    useUnauthorizedClient(ctx, DEVICE_CODE_GRANT);
    namePollingInterval(ctx);
  } else if (route === 'revocation') {
    // As every other answer to a client's credentials: nothing for a cache to keep.
    ctx.set('Cache-Control', 'no-store');
    acceptStructuredTokens(ctx);
    // RFC 7009 §2.2: the client ignores the body of the 200. The library's
    // empty body went out as text/plain (Koa's type for a string), which
    // clients that take nothing but JSON refuse: oidc-client-ts's
    // revokeTokens (and with it its sign-out) and simple-oauth2's revoke().
    // An empty JSON object satisfies both, and any client that parses JSON.
    if (ctx.status === 200 && ctx.body === '') ctx.body = {};
  }
  useInvalidClientWithoutCredentials(ctx);
  useInvalidClientForUnreadableAssertions(ctx);
  sayWhyAssertionsWereRefused(ctx);
  sayWhenTheBodyHadNoType(ctx);
}

/**
 * RFC 8628 §3.2's `interval`, which the library leaves out: the default
 * a client told nothing uses, named, since the token endpoint holds devices
 * to it (device-flow.ts, DevicePolling).
 */
function namePollingInterval(ctx: KoaContextWithOIDC): void {
  const body = ctx.body as Record<string, unknown> | undefined;
  if (ctx.status !== 200 || typeof body?.device_code !== 'string') return;
  ctx.body = { ...body, interval: POLLING_INTERVAL };
}

/**
 * A body sent without Content-Type is not read (the library reads a form
 * only when the request says it is one), so the answer named the first
 * parameter it missed ("missing required parameter 'grant_type'") when the
 * client had sent it. It names the content type instead, as the library
 * does for a body of another type.
 */
function sayWhenTheBodyHadNoType(ctx: KoaContextWithOIDC): void {
  if (ctx.status !== 400 || ctx.method !== 'POST' || ctx.get('Content-Type') !== '') return;
  const sentABody = (ctx.request.length ?? 0) > 0 || ctx.get('Transfer-Encoding') !== '';
  const body = ctx.body as { error?: unknown; error_description?: unknown } | null;
  if (!sentABody || typeof body !== 'object' || body === null || body.error !== 'invalid_request') return;
  if (typeof body.error_description !== 'string' || !body.error_description.startsWith('missing required parameter')) return;
  ctx.body = { ...body, error_description: `only application/x-www-form-urlencoded content-type bodies are supported on POST ${ctx.path}` };
}

/**
 * A redirect URI's query "MUST be retained" when the response's parameters
 * are added (RFC 6749 §3.1.2, OIDC Core §3.1.2.5). The library adds them
 * through URLSearchParams, which writes the whole query anew: `?v=a~b`
 * comes back as `?v=a%7Eb`, `?flag` as `?flag=`, `%20` as `+`. The same for a
 * form decoder, but not the URI the client registered, which a client that
 * compares or reuses it does not recognise. The registered query is kept as
 * it was written, the response's parameters after it. (Where the response
 * names a parameter the registered query already has, the library's URI
 * stays: its value is replaced there, which appending could not do.)
 * `registered`: the URIs the Location may have been made from.
 */
function keepRedirectUriQuery(ctx: KoaContextWithOIDC, registered: readonly unknown[]): void {
  const location = ctx.response.get('Location');
  if (!location || (ctx.status !== 302 && ctx.status !== 303)) return;
  // Most registered URIs have no query: nothing to parse for them.
  const withQuery = registered.filter((uri): uri is string => typeof uri === 'string' && uri.includes('?'));
  if (withQuery.length === 0) return;
  // The URI was checked by the library; a Location of its own pages is relative (/interaction/…).
  const sent = new URL(location, ctx.oidc.issuer);
  const all = [...sent.searchParams];
  // Of several registered URIs that could have made this Location (a sign-out's, say), the one with the longest query.
  const candidates = withQuery
    .map((uri) => ({ uri, base: new URL(uri) }))
    .filter(({ base }) => sent.origin === base.origin && sent.pathname === base.pathname)
    .map(({ uri, base }) => ({ uri, own: [...base.searchParams] }))
    .sort((a, b) => b.own.length - a.own.length);
  // The library's URI holds the registered parameters, in order, then the response's.
  const made = candidates.find(({ own }) => own.length <= all.length && own.every(([name, value], i) => all[i]![0] === name && all[i]![1] === value));
  if (!made) return;
  const added = all.slice(made.own.length);
  const ownKeys = new Set(made.own.map(([name]) => name));
  // Nothing added (the library then leaves the URI as it is), or a value replaced in place.
  if (added.length === 0 || added.some(([name]) => ownKeys.has(name))) return;
  const separator = made.uri.endsWith('?') || made.uri.endsWith('&') ? '' : '&';
  ctx.redirect(`${made.uri}${separator}${new URLSearchParams(added)}${sent.hash}`);
}

/** The library's own words for a DPoP proof it has seen before (lib/helpers/validate_dpop.js). */
const DPOP_REPLAY = 'DPoP proof JWT Replay detected';

// In the error's detail (token endpoint, UserInfo) or, at the PAR endpoint, its description.
const isDpopReplay = (error: unknown) =>
  error instanceof errors.OIDCProviderError && ((error as { error_detail?: unknown }).error_detail ?? error.error_description) === DPOP_REPLAY;

/** Requests whose DPoP proof was a replay, marked by the library's error events. */
const dpopReplays = new WeakSet<object>();

/**
 * A proof used twice is an invalid proof: invalid_dpop_proof (RFC 9449 §5 at
 * the token endpoint, §7.1 with a 401 challenge at a resource). The library
 * answers invalid_grant at the token endpoint, invalid_request at the PAR
 * endpoint and invalid_token at UserInfo: the first and last tell a client its
 * refresh token, code or access token is dead when only the proof was, and it
 * would throw away a grant that still stands.
 */
function useInvalidDpopProofForReplays(ctx: KoaContextWithOIDC): void {
  if (!dpopReplays.has(ctx) || typeof ctx.body !== 'object' || ctx.body === null) return;
  const description = 'the DPoP proof was presented before; make a new one for every request';
  ctx.body = { error: 'invalid_dpop_proof', error_description: description };
  restateChallenge(ctx, description, 'invalid_dpop_proof');
}

/** The library's words for a token request without the DPoP proof its client's registration requires (lib/helpers/sender_constraints.js). */
const DPOP_MISSING = 'DPoP proof JWT not provided';

const isMissingRequiredDpop = (error: unknown) => error instanceof errors.InvalidGrant && (error as { error_detail?: unknown }).error_detail === DPOP_MISSING;

/** Token requests refused for want of the DPoP proof their client must send. */
const missingRequiredDpop = new WeakSet<object>();

/**
 * A client registered with --require-dpop (dpop_bound_access_tokens, RFC
 * 9449 §5.2) that sends no proof: the library answers invalid_grant, "grant
 * request is invalid", which tells a client its code or refresh token is dead
 * (it still stands: nothing was consumed) and not why. It is a missing
 * parameter: invalid_request, saying which.
 */
function sayDpopIsRequired(ctx: KoaContextWithOIDC): void {
  if (!missingRequiredDpop.has(ctx)) return;
  ctx.body = { error: 'invalid_request', error_description: "this client's tokens are DPoP-bound (its registration requires it: RFC 9449, section 5.2): send a DPoP proof with every token request" };
}

/** The library's words for any proof its JWT checks refused, whatever the reason (lib/helpers/validate_dpop.js). */
const DPOP_UNREADABLE = 'invalid DPoP key binding';

const isUnreadableDpopProof = (error: unknown) =>
  error instanceof errors.InvalidDpopProof && error.error_description === DPOP_UNREADABLE && typeof (error as { error_detail?: unknown }).error_detail === 'string';

/** Requests whose DPoP proof the library could not read or verify as a DPoP JWT, with jose's reason. */
const unreadableDpopProofs = new WeakMap<object, string>();

/**
 * A DPoP header that is not a JWT, is not signed with an algorithm offered,
 * has another `typ`, or does not verify with its own `jwk`, was answered
 * "invalid DPoP key binding", which names none of those: a client developer
 * could not tell a malformed proof from a wrong key. The reason (jose's
 * words, fixed strings) is given instead, in the characters RFC 6749 §5.2
 * allows (no double quote, so it also fits a challenge's quoted string).
 */
function sayWhyDpopProofsWereUnreadable(ctx: KoaContextWithOIDC): void {
  const reason = unreadableDpopProofs.get(ctx);
  if (reason === undefined || typeof ctx.body !== 'object' || ctx.body === null) return;
  const description = `the DPoP proof is not a DPoP JWT this server takes: ${printable(reason).slice(0, 200)}`;
  ctx.body = { ...(ctx.body as object), error_description: description };
  restateChallenge(ctx, description);
}

/** `text` in the characters RFC 6749 §5.2 allows in an error_description: a double quote becomes a single one, and what else is outside them (a backslash, a control character, anything but ASCII) is left out. */
function printable(text: string): string {
  return text.replace(/"/g, "'").replace(/[^\x20-\x21\x23-\x5b\x5d-\x7e]/g, '');
}

/**
 * The library copies what a request sent into some descriptions, as it was
 * sent: an Origin it refuses ("origin … not allowed for client", at the
 * token endpoint and UserInfo), quotes, backslashes and any byte included,
 * into the body and the challenge. RFC 6749 §5.2 and RFC 6750 §3 allow
 * printable ASCII only, without `"` and `\`.
 */
function keepDescriptionsPrintable(ctx: KoaContextWithOIDC): void {
  const body = ctx.body as { error?: unknown; error_description?: unknown } | null;
  if (typeof body !== 'object' || body === null || typeof body.error !== 'string' || typeof body.error_description !== 'string') return;
  const description = printable(body.error_description);
  if (description === body.error_description) return;
  ctx.body = { ...body, error_description: description };
  restateChallenge(ctx, description);
}

/** The WWW-Authenticate challenge the library sent, with this description (and error code, if given) instead of its own. */
function restateChallenge(ctx: KoaContextWithOIDC, description: string, error?: string): void {
  let challenge = ctx.response.get('WWW-Authenticate');
  if (!challenge) return;
  if (error) challenge = challenge.replace(/error="[^"]*"/, `error="${error}"`);
  // (A quoted string may hold escaped quotes: \" in the library's, from a request's words.)
  ctx.set('WWW-Authenticate', challenge.replace(/error_description="(?:[^"\\]|\\.)*"/, `error_description="${description}"`));
}

/**
 * UserInfo refuses an access token issued for an API, as it must: that token
 * is the API's to accept (RFC 8707, its audience). But the answer did not
 * say so: "invalid token provided" for a JWT access token (the library finds
 * none by its value; UserInfo's own tokens are opaque), "access token missing
 * openid scope" for an opaque one. A client that asked for an API with
 * `resource` and then called UserInfo with its token (openid-client,
 * passport's strategy and oidc-client-ts do by default) could not tell why.
 * The description now names the reason and the way to a token UserInfo
 * takes (README: a refresh naming only OpenID Connect scopes); the error and
 * status stay. Nothing is said of a JWT's validity: it is not checked here.
 */
const apiTokensAtUserinfo = new WeakSet<object>();

const API_TOKEN_AT_USERINFO =
  'the access token is for an API (its audience), not for UserInfo, which takes a token of a sign-in with the openid scope (a refresh naming OpenID Connect scopes only gets one)';

function isApiTokenAtUserinfo(ctx: KoaContextWithOIDC, error: unknown): boolean {
  const detail = (error as { error_detail?: unknown }).error_detail;
  if (error instanceof errors.InsufficientScope || detail === 'token audience prevents accessing the userinfo endpoint') {
    return (ctx.oidc.entities.AccessToken as { aud?: unknown } | undefined)?.aud !== undefined;
  }
  if (!(error instanceof errors.InvalidToken) || detail !== 'access token not found') return false;
  try {
    return decodeProtectedHeader(ctx.oidc.getAccessToken({ acceptDPoP: true })).typ?.toLowerCase() === 'at+jwt';
  } catch {
    return false; // not a JWT
  }
}

function sayWhyUserinfoRefusedApiTokens(ctx: KoaContextWithOIDC): void {
  if (!apiTokensAtUserinfo.has(ctx) || typeof ctx.body !== 'object' || ctx.body === null) return;
  ctx.body = { ...(ctx.body as object), error_description: API_TOKEN_AT_USERINFO };
  restateChallenge(ctx, API_TOKEN_AT_USERINFO);
}

/** Pushed requests that named a request_uri, marked by the library's error events. */
const requestUrisPushed = new WeakSet<object>();

/**
 * RFC 9126 §2.1: a pushed request takes every authorization parameter but
 * `request_uri`, which "MUST NOT be provided", and its absence is the
 * request's to get right: invalid_request. The library answers
 * request_uri_not_supported, which says this server does not take request
 * objects by reference at all (OpenID Connect Core §3.1.2.6), and names nothing
 * the client could fix.
 */
function refuseRequestUriWhenPushed(ctx: KoaContextWithOIDC): void {
  if (!requestUrisPushed.has(ctx) || ctx.status !== 400) return;
  ctx.body = { error: 'invalid_request', error_description: 'request_uri must not be sent to the pushed authorization request endpoint' };
}

/** Requests the library refused for the length of their body (see body-limit.ts), marked by its error events. */
const bodiesTooLarge = new WeakSet<object>();

/** Where such a refusal was answered as OAuth error JSON, 413 with a description that says so. */
function useContentTooLarge(ctx: KoaContextWithOIDC): void {
  if (!bodiesTooLarge.has(ctx) || ctx.status !== 400) return;
  answerBodyTooLarge(ctx);
  ctx.body = { error: 'invalid_request', error_description: BODY_TOO_LARGE };
}

/**
 * RFC 6749 §5.2 counts "no client authentication included" as invalid_client,
 * and a failed attempt through the Authorization header as a 401 with a
 * challenge; the library answers both invalid_request. Told apart by the
 * request, not the description: no client was found, and either the request
 * was read (params exist) and names no client in any way a client
 * authenticates (Authorization header, client_id, client_assertion,
 * attestation), or its Authorization header is not client_secret_basic's
 * form. The endpoints check nothing before client authentication that would
 * fail the first kind with invalid_request; a request of the second kind has
 * failed to authenticate whatever else is wrong with it.
 */
function useInvalidClientWithoutCredentials(ctx: KoaContextWithOIDC): void {
  const body = ctx.body as { error?: string } | undefined;
  if (ctx.status !== 400 || body?.error !== 'invalid_request' || ctx.oidc.client) return;
  const authorization = ctx.get('authorization');
  let description: string;
  if (authorization) {
    if (isBasicCredentials(authorization)) return;
    description = 'the Authorization header does not hold a client id and secret (client_secret_basic)';
  } else {
    const params = ctx.oidc.params;
    if (!params || params.client_id !== undefined || params.client_assertion !== undefined) return;
    // A parameter sent twice was refused, and left out of params: the request did name a client.
    const sent = ctx.oidc.body;
    if (Array.isArray(sent?.client_id) || Array.isArray(sent?.client_assertion)) return;
    if (ctx.get('oauth-client-attestation')) return;
    description = 'client authentication is required';
  }
  ctx.status = 401;
  ctx.body = { error: 'invalid_client', error_description: description };
  ctx.set('WWW-Authenticate', `Basic realm="${ctx.oidc.issuer}"`);
}

/**
 * A client assertion refused by our own rules (configuration.ts,
 * assertJwtClientAuthClaimsAndHeader). The library answers every refused
 * assertion "client authentication failed" and keeps the reason for its log;
 * these reasons are given to the client (sayWhyAssertionsWereRefused): they
 * are checked only once the assertion's signature verified, so only the
 * holder of the client's key reads them, and a developer whose library signs
 * assertions otherwise than we take them learns what to change.
 */
export class AssertionRefused extends errors.InvalidClientAuth {
  constructor(readonly reason: string) {
    super(reason);
  }
}

const refusedAssertions = new WeakMap<object, string>();

function sayWhyAssertionsWereRefused(ctx: KoaContextWithOIDC): void {
  const reason = refusedAssertions.get(ctx);
  const body = ctx.body as { error?: string } | undefined;
  if (reason === undefined || ctx.status !== 401 || body?.error !== 'invalid_client') return;
  ctx.body = { ...body, error_description: printable(reason) };
}

/** The library's words for a client_assertion that is no JWT (lib/shared/client_auth.js). */
const UNREADABLE_ASSERTION = 'invalid client_assertion format';

/**
 * RFC 7523 §3.2: a client assertion that is not valid is answered
 * invalid_client, whatever is wrong with it; the library answers one that is
 * not even a JWT invalid_request (every other fault of an assertion is
 * invalid_client already).
 */
function useInvalidClientForUnreadableAssertions(ctx: KoaContextWithOIDC): void {
  const body = ctx.body as { error?: string; error_description?: string } | undefined;
  if (ctx.status !== 400 || body?.error !== 'invalid_request' || body.error_description !== UNREADABLE_ASSERTION) return;
  ctx.status = 401;
  ctx.body = { error: 'invalid_client', error_description: 'the client_assertion is not a JWT' };
}

/**
 * Whether an Authorization header is HTTP Basic holding a client id and a
 * secret, both non-empty, form-urlencoded and of printable ASCII (RFC 6749
 * §2.3.1, §A.1–A.2), read as the library reads it (lib/shared/client_auth.js):
 * anything else it refuses as invalid_request.
 */
function isBasicCredentials(header: string): boolean {
  const parts = header.split(' ');
  if (parts.length !== 2 || parts[0]!.toLowerCase() !== 'basic' || !isBase64(parts[1]!)) return false;
  const decoded = Buffer.from(parts[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon <= 0) return false;
  try {
    return [decoded.slice(0, colon), decoded.slice(colon + 1)].every((token) => {
      const value = decodeURIComponent(token.replace(/\+/g, '%20'));
      return value !== '' && /^[\x20-\x7E]+$/.test(value);
    });
  } catch {
    return false;
  }
}

/** Base64 with its padding right, or none (the library's rule). */
function isBase64(text: string): boolean {
  const match = /^([A-Za-z0-9+/]*)(={0,2})$/.exec(text);
  if (!match?.[1]) return false;
  const remainder = match[1].length % 4;
  return match[2] ? (match[1].length + match[2].length) % 4 === 0 && match[2].length === 4 - remainder : remainder !== 1;
}

/**
 * A token request naming scopes of which none can be granted (none is known,
 * say) would get a token without a `scope` in the response, which RFC 6749
 * §5.1 reads as "all you asked for". invalid_scope says what happened.
 */
function refuseWhenNoScopeIsGranted(ctx: KoaContextWithOIDC): void {
  if (ctx.status !== 200) return;
  // As sent: the library drops the scopes it does not know from params.
  const requested = (ctx.oidc as { body?: Record<string, unknown> }).body?.scope;
  const body = ctx.body as { access_token?: unknown; scope?: unknown } | undefined;
  // An empty `scope` in the response says the same as none.
  if (typeof requested !== 'string' || !requested.trim() || !body?.access_token || (body.scope !== undefined && body.scope !== '')) return;
  ctx.status = 400;
  // Most often an API's scopes asked for without the API: say how to name it.
  // OpenID Connect scopes alone but openid (a refresh narrowing to `profile`)
  // would make a token for UserInfo, which takes none without openid.
  const scopes = requested.split(' ').filter(Boolean);
  const refresh = ctx.oidc.params?.grant_type === 'refresh_token';
  const forUserinfo = refresh && onlyOpenIdConnectScopes(scopes) && !scopes.includes('openid');
  // An API named, and none of its scopes asked for (`scope=openid` with
  // `resource`): as client credentials say it (configuration.ts). The
  // identifier is a registered API's: the request got this far.
  const api = ctx.oidc.params?.resource;
  ctx.body = {
    error: 'invalid_scope',
    error_description: forUserinfo
      ? 'none of the requested scopes can be granted: an access token for UserInfo needs openid among them'
      : typeof api === 'string'
        ? `request at least one scope of ${api}`
        : "none of the requested scopes can be granted (an API's scopes need its identifier as resource, RFC 8707)",
  };
}

/**
 * The library refuses to introspect a JWT (unsupported_token_type, an RFC 7009
 * error code). A JWT access token of this server the caller may know about was
 * answered already (structured-access-tokens.ts); any other JWT is one RFC
 * 7662 §2.2 answers with `{"active": false}`.
 */
function inactiveForStructuredTokens(ctx: KoaContextWithOIDC): void {
  const body = ctx.body as { error?: string } | undefined;
  if (ctx.status !== 400 || body?.error !== 'unsupported_token_type') return;
  ctx.status = 200;
  ctx.body = { active: false };
}

/**
 * The library refuses to revoke a JWT access token (400
 * unsupported_token_type, RFC 7009 §2.2.1): it does not store them, and an
 * API verifies one alone until it expires (its client's own is kept as
 * revoked for introspection, structured-access-tokens.ts). But to a client every access token is
 * opaque: whether it is a JWT is the API's choice (`--token-format`), and
 * the error broke the libraries that revoke at sign-out (oidc-client-ts's
 * signoutRedirect rejected before reaching the sign-out endpoint;
 * simple-oauth2's revokeAll stopped before the refresh token). RFC 7009 §2.2
 * answers a token the server cannot act on with 200, since "the client
 * cannot handle such an error in a reasonable way".
 */
function acceptStructuredTokens(ctx: KoaContextWithOIDC): void {
  const body = ctx.body as { error?: string } | undefined;
  if (ctx.status !== 400 || body?.error !== 'unsupported_token_type') return;
  ctx.status = 200;
  ctx.body = {};
}

/**
 * RFC 7662 §2.1: the endpoint "MUST also require some form of authorization",
 * and discovery offers only client secrets and keys there (RFC 8414 §2). A public
 * client authenticates with its client_id alone (`none`), which the library
 * lets through to answer {"active": false} whatever the token: it learned
 * nothing, but the answer said its request was good. It is invalid_client,
 * as for any method the endpoint does not take, whether or not the token
 * exists (the answer must not depend on it).
 */
function refusePublicClients(ctx: KoaContextWithOIDC): void {
  if (ctx.oidc.client?.clientAuthMethod !== 'none') return;
  ctx.status = 401;
  ctx.body = { error: 'invalid_client', error_description: 'a public client cannot use introspection; authenticate with a client secret or key' };
  ctx.set('WWW-Authenticate', `Basic realm="${ctx.oidc.issuer}"`);
}

/**
 * RFC 6749 §5.2: a client asking for a grant type it is not allowed gets
 * `unauthorized_client`; oidc-provider answers `invalid_request` (with the
 * description "requested grant type is not allowed for this client"). The
 * cases are told apart by what was asked, not by the description: the client
 * authenticated, one supported grant type named, and that one not allowed to
 * it: after client authentication the token endpoint checks nothing else that
 * answers invalid_request before it checks exactly this. (Our interaction
 * pages run through here too, without ctx.oidc.) The device authorization
 * endpoint (RFC 8628 §3.2, which answers as §5.2 says) asks for `grantType`,
 * checked right after client authentication too.
 */
function useUnauthorizedClient(ctx: KoaContextWithOIDC, grantType: unknown = ctx.oidc.params?.grant_type): void {
  const body = ctx.body as { error?: string } | undefined;
  if (ctx.status !== 400 || body?.error !== 'invalid_request') return;
  const client = ctx.oidc.client;
  // An unsupported grant type is unsupported_grant_type, checked before; a repeated one is not a string.
  if (!client || typeof grantType !== 'string' || client.grantTypeAllowed(grantType)) return;
  ctx.body = { ...body, error: 'unauthorized_client' };
}
