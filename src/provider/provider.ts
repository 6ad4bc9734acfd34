// Builds an oidc-provider instance from the current key set. A new instance is
// built when the published keys change (rotation), see ProviderHost.
import { hash, timingSafeEqual } from 'node:crypto';
import type Koa from 'koa';
import Provider, { errors, type AdapterPayload, type KoaContextWithOIDC } from 'oidc-provider';
import type { Accounts } from '../accounts/accounts.js';
import { shownError } from '../http/error-pages.js';
import { routePattern } from '../http/methods.js';
import type { Metrics } from '../metrics/metrics.js';
import { sha256 } from '../persistence/hash.js';
import { isDatabaseUnreachable, UNREACHABLE_RETRY_AFTER } from '../persistence/unreachable.js';
import type { NotifiedCache } from '../persistence/notified-cache.js';
import { answerBodyTooLarge, BODY_TOO_LARGE, isBodyTooLarge } from './body-limit.js';
import { accessibleFormPostPage } from './form-post-page.js';
import { ArtifactAdapter } from './adapter.js';
import { buildConfiguration, type ProviderServices } from './configuration.js';
import { settleDeferredWrites } from './request-scope.js';

/** What the library answers for an error of its own (its err_out helper); details stay in the log. */
const SERVER_ERROR = { error: 'server_error', error_description: 'oops! something went wrong' } as const;
const UNAVAILABLE = { error: 'temporarily_unavailable', error_description: 'the service is temporarily unavailable; try again shortly' } as const;

export function createProvider(services: ProviderServices): Provider {
  const configuration = buildConfiguration(services);
  const provider = new Provider(services.config.issuer, configuration);
  provider.proxy = services.config.trustProxy > 0;
  // Only the entries the trusted proxies appended: the client writes the rest.
  provider.maxIpsCount = services.config.trustProxy;
  pinToIssuer(provider, services.config.issuer);
  if (new URL(services.config.issuer).protocol === 'http:') laxCookiesOverHttp(provider);

  // Client secrets are stored as SHA-256 digests (see ClientAdapter), so the
  // presented secret is digested before the constant-time comparison. Our
  // clients authenticate with client_secret_basic/post only, the one place the
  // library compares secrets; HS* algorithms (which need the plain secret) are
  // not offered to them.
  provider.Client.prototype.compareClientSecret = function compareClientSecret(this: { clientSecret?: string }, actual: string) {
    if (typeof this.clientSecret !== 'string' || typeof actual !== 'string') return false;
    const expected = Buffer.from(this.clientSecret);
    const presented = Buffer.from(sha256(actual));
    return expected.length === presented.length && timingSafeEqual(expected, presented);
  };

  registeredScopesOnly(provider);
  refuseUnauthorizedResponseTypes(provider);
  challengeOtherSchemesAtUserinfo(provider);
  honourSignOuts(provider, services.accounts);
  keepBuiltClients(provider, services.clientCache);
  checkReplaysAtomically(provider, new ArtifactAdapter('ReplayDetection', services.sql));

  if (services.metrics) {
    provider.use(countRequests(services.metrics));
    // An authorization error sent back to the client (a redirect, or form_post)
    // leaves no error code in the response's body: countRequests takes it from here.
    provider.on('authorization.error', (ctx: KoaContextWithOIDC, error: { error?: unknown }) => {
      if (typeof error.error === 'string') authorizationErrors.set(ctx, error.error);
    });
  }

  // Runs around every route, before Koa sends what it built: a token response
  // goes out only once the tokens in it are stored, and a failed one stores
  // nothing (see deferUntilResponse). What it built is replaced by an OAuth
  // error if a deferred write failed: a code or refresh token consumed
  // meanwhile by a replay (invalid_grant, its tokens were never stored), or
  // the database (server_error). So is what a route built when an error
  // escapes the route's own error handler: the session oidc-provider saves
  // after the route (its ensureSessionSave) can still fail, on a request
  // parameter stored in it that the database refuses, or on the database.
  provider.use(async (ctx, next) => {
    let escaped: unknown;
    try {
      await next();
      followTheStandards(ctx as unknown as KoaContextWithOIDC);
    } catch (error) {
      escaped = error;
    }
    const oidcCtx = ctx as unknown as KoaContextWithOIDC;
    await settleDeferredWrites(ctx, escaped === undefined && ctx.status < 400).catch((error: unknown) =>
      answerWithError(oidcCtx, error, 'grant.error'),
    );
    if (escaped !== undefined) await answerWithError(oidcCtx, escaped);
    // The database could not be reached: 503, to be retried (a page said so
    // already, see renderError in configuration.ts), not a 500 server_error.
    if (unreachable.has(ctx) && ctx.status === 500) {
      ctx.status = 503;
      if (ctx.body && typeof ctx.body === 'object' && !Buffer.isBuffer(ctx.body)) ctx.body = UNAVAILABLE;
    }
    if (unreachable.has(ctx) && ctx.status === 503) ctx.set('Retry-After', UNREACHABLE_RETRY_AFTER);
  });

  /**
   * Replaces the response with `error`, as the library's handler answers
   * inside a route: a page for a browser, OAuth error JSON otherwise; details
   * of an internal error only in the log.
   */
  async function answerWithError(ctx: KoaContextWithOIDC, error: unknown, exposedEvent?: string): Promise<void> {
    const exposed = error instanceof errors.OIDCProviderError && error.expose;
    if (!exposed) provider.emit('server_error', ctx, error as Error);
    else if (exposedEvent) provider.emit(exposedEvent, ctx, error);
    const out = exposed
      ? { error: error.error, ...(error.error_description ? { error_description: error.error_description } : {}) }
      : SERVER_ERROR;
    ctx.status = exposed ? error.statusCode : 500;
    ctx.remove('Location');
    if (ctx.accepts('json', 'html') === 'html') await configuration.renderError!(ctx, out, error as Error);
    else ctx.body = out;
  }

  // The library emits these with the error once it has answered it (as JSON, or
  // a page by renderError, which makes its own 413 page: configuration.ts); all
  // with the same arguments, whatever the typings' one overload per name.
  for (const event of REQUEST_ERROR_EVENTS) {
    provider.on(event as 'grant.error', (ctx: KoaContextWithOIDC, error: unknown) => {
      if (isBodyTooLarge(error)) bodiesTooLarge.add(ctx);
      else if (isDpopReplay(error)) dpopReplays.add(ctx);
    });
  }

  // For the audit trail. At the token endpoint a grant is revoked only because
  // a code or refresh token was presented again: taken for theft (RFC 9700
  // §4.14.2), so worth a warning. Elsewhere it is a client's revocation or a
  // logout. Ids only: a grant id authorizes nothing.
  provider.on('grant.revoked', (ctx: KoaContextWithOIDC, grantId: string) => {
    const fields = { route: ctx.oidc?.route, client: ctx.oidc?.client?.clientId, grant: grantId };
    const replayed = ctx.oidc?.route === 'token';
    if (replayed) services.logger.warn('grant revoked: a code or refresh token was used twice', fields);
    else services.logger.info('grant revoked', fields);
    services.metrics?.grantRevoked(replayed ? 'replay' : 'other');
  });
  provider.on('server_error', (ctx, error) => {
    if (isDatabaseUnreachable(error)) {
      // Expected while the database is away: one line, without a stack, once
      // per request (the session saved after a route fails again after it).
      if (unreachable.has(ctx)) return;
      unreachable.add(ctx);
      services.logger.error('database unreachable', { route: ctx.oidc?.route, error: `${error.name}: ${error.message}` });
      return;
    }
    services.logger.error('provider server_error', { route: ctx.oidc?.route, error: `${error.name}: ${error.message}`, stack: error.stack });
  });
  return provider;
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
function challengeOtherSchemesAtUserinfo(provider: Provider): void {
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
 * A client registered without any OpenID Connect scope (only an API's, or
 * none) may ask for none: the library reads a missing `scope` as "any of the
 * provider's scopes", and refuses an empty one in the metadata. The blank
 * allowlist set here on the built client, after the metadata was validated,
 * is one the library's checks (authorization request, client credentials)
 * treat as a list that names no scope, so asking for one is invalid_scope.
 * (Scopes of APIs are checked against `api_scopes`, see configuration.ts.)
 */
function registeredScopesOnly(provider: Provider): void {
  const Client = provider.Client;
  const find = Client.find.bind(Client);
  Client.find = async (id: string) => {
    const client = await find(id);
    if (client && client.scope === undefined) (client as { scope?: string }).scope = ' ';
    return client;
  };
}

/**
 * RFC 6749 §4.1.2.1: a client that may not use the authorization code flow (a
 * client-credentials-only client) is told unauthorized_client; the library
 * answers invalid_request. It asks the client model only at that check (the
 * response type itself is known to be supported by then), so the model
 * answers with the error instead of false; the library redirects it to the
 * client as it would its own.
 */
function refuseUnauthorizedResponseTypes(provider: Provider): void {
  const prototype = provider.Client.prototype as unknown as { responseTypeAllowed(type: string): boolean };
  const allowed = prototype.responseTypeAllowed;
  prototype.responseTypeAllowed = function responseTypeAllowed(type: string) {
    if (allowed.call(this, type)) return true;
    throw new errors.UnauthorizedClient('requested response_type is not allowed for this client');
  };
}

/**
 * A session of a person an operator signed out (`user set-password`, `user
 * revoke`) or deleted is not found, whatever row a request in flight saved
 * back after the sessions were deleted (the library saves the session at the
 * end of every request): the library then starts a new, empty session and
 * the person signs in again. Refusing the account instead (findAccount) would
 * leave a session that names an account and has none, which the library's
 * consent check does not expect.
 */
function honourSignOuts(provider: Provider, accounts: Accounts): void {
  // (The library's typings make find generic over the class; these are Sessions.)
  type SessionLookup = (id: string) => Promise<{ accountId?: string; loginTs?: number } | undefined>;
  const Session = provider.Session as unknown as { find: SessionLookup; findByUid: SessionLookup };
  const find = Session.find.bind(Session);
  const findByUid = Session.findByUid.bind(Session);
  const stands = async (session: Awaited<ReturnType<SessionLookup>>) =>
    session?.accountId && !(await accounts.isSignedIn(session.accountId, session.loginTs)) ? undefined : session;
  Session.find = async (id) => stands(await find(id));
  Session.findByUid = async (uid) => stands(await findByUid(uid));
  // A finished sign-in waiting to be resumed (/auth/:uid) stands only as a
  // session would, and only while the password it checked is the account's
  // (a resume sent before the sign-in's own check of that has answered): the
  // resume signs the person in and goes on to a code in the same request,
  // before any session is looked up again.
  type Login = { accountId?: string; ts?: number; credential?: string };
  type InteractionLookup = (id: string) => Promise<{ result?: { login?: Login } } | undefined>;
  const Interaction = provider.Interaction as unknown as { find: InteractionLookup };
  const findInteraction = Interaction.find.bind(Interaction);
  const loginStands = async ({ accountId, ts, credential }: Login) =>
    !accountId ||
    ((await accounts.isSignedIn(accountId, ts)) && (credential === undefined || (await accounts.passwordStands(accountId, credential))));
  Interaction.find = async (id) => {
    const interaction = await findInteraction(id);
    const login = interaction?.result?.login;
    return login && !(await loginStands(login)) ? undefined : interaction;
  };
}

/**
 * What must be used once is checked once (RFC 9449 §11.1 for DPoP proofs; the
 * library's other callers, client assertions and attestations, are off here
 * but would be served the same way). The library checks with a lookup and
 * then a save, so a proof sent in several requests at once passed in all of
 * them (11 tokens from one proof, measured). The check is one conditional
 * insert instead. The row's id is the library's own, a digest of issuer (the
 * client) and jti.
 *
 * The library asks for a row until `exp`: for a DPoP proof, the end of its
 * acceptance window (now + 5 minutes). But a proof is accepted while its
 * `iat` is within 5 minutes of the clock either way, so one made 5 minutes
 * ahead stays acceptable for 10: every row is kept for the window past `exp`.
 */
const REPLAY_WINDOW = 300;

function checkReplaysAtomically(provider: Provider, replays: ArtifactAdapter): void {
  const ReplayDetection = provider.ReplayDetection as unknown as { unique(iss: string, jti: string, exp: number): Promise<boolean> };
  ReplayDetection.unique = (iss, jti, exp) => {
    const now = Math.floor(Date.now() / 1000);
    const until = Math.max(now, exp) + REPLAY_WINDOW;
    return replays.claim(hash('sha256', `${iss}${jti}`, 'base64url'), { iss, iat: now, exp: until, kind: 'ReplayDetection' }, until - now);
  };
}

/**
 * oidc-provider builds a Client once per distinct metadata, and finds it again
 * on every request by a SHA-256 of the JSON of what the adapter returned: about
 * 3 µs of the main thread's 125 µs per client-credentials grant. The client
 * cache (NotifiedCache) holds one frozen object per client until the client
 * changes, so the built Client is kept per that object instead, and lives as
 * long as it. A change gives a new object, hence a new Client. Where nothing is
 * cached (PGlite, the change feed down, a client not looked up yet) the
 * library finds the client as it always does, with one lookup.
 */
function keepBuiltClients(provider: Provider, clientCache: NotifiedCache<AdapterPayload>): void {
  const Client = provider.Client;
  const find = Client.find.bind(Client);
  const built = new WeakMap<object, ReturnType<typeof find>>();
  Client.find = (id: string) => {
    const metadata = typeof id === 'string' ? clientCache.peek(id) : undefined;
    if (!metadata) return find(id);
    let client = built.get(metadata);
    if (!client) {
      client = find(id);
      built.set(metadata, client);
      // Metadata the library refuses is not remembered: the next request asks again.
      client.catch(() => built.delete(metadata));
    }
    return client;
  };
}

/**
 * Every request is taken as addressed to the issuer, whatever its Host or
 * X-Forwarded-Host: the library builds its URLs (discovery's endpoints, form
 * actions, redirects to its own pages) from the request, and a forged host
 * would send clients' secrets and codes, or an API's key lookups, elsewhere
 * (OIDC Discovery §4.3; a cache in front keyed without the host would keep the
 * forgery). So is the scheme: Portcullis speaks plain HTTP, so an https issuer
 * means TLS ends in front of it, and its cookies must be Secure (Koa gives a
 * cookie Secure only on a request it takes as https). Set once on the Koa
 * app's request prototype, so no request pays for it.
 */
function pinToIssuer(provider: Provider, issuer: string): void {
  const { protocol, host, origin } = new URL(issuer);
  const scheme = protocol.slice(0, -1);
  Object.defineProperties((provider as unknown as Koa).request, {
    protocol: { get: () => scheme, configurable: true },
    host: { get: () => host, configurable: true },
    // Koa takes a request target in absolute form (`GET http://elsewhere/...`,
    // which a server must accept, RFC 9112 §3.2.2) as the whole URL: only its
    // path and query count here.
    href: {
      get(this: { originalUrl: string }) {
        return origin + this.originalUrl.replace(ABSOLUTE_FORM, '');
      },
      configurable: true,
    },
    URL: {
      get(this: { href: string }) {
        return new URL(this.href);
      },
      configurable: true,
    },
  });
}

/**
 * An http issuer's cookies cannot be Secure (Koa refuses, and so do browsers
 * but on localhost), and browsers drop a SameSite=None cookie that is not:
 * the session cookie, SameSite=None for POSTed authorization requests (see
 * configuration.ts), would never be kept. Over http it is sent as Lax, as
 * before POST was supported. A development setup loses little: an app on
 * another port of the same host is the same site, so its POSTs still carry
 * the cookie; only a POST from another site asks the person to sign in again.
 * Set once on the Koa app's context prototype, like pinToIssuer.
 */
function laxCookiesOverHttp(provider: Provider): void {
  const context = (provider as unknown as Koa).context;
  const cookies = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(context), 'cookies');
  if (!cookies?.get || !cookies.set) throw new Error("Koa's context has no cookies accessor to wrap");
  const adjusted = new WeakSet<object>();
  Object.defineProperty(context, 'cookies', {
    get(this: Koa.Context) {
      const jar = cookies.get!.call(this) as Koa.Context['cookies'];
      if (!adjusted.has(jar)) {
        adjusted.add(jar);
        const set = jar.set.bind(jar);
        jar.set = (name, value, options) => set(name, value, options?.sameSite === 'none' ? { ...options, sameSite: 'lax' } : options);
      }
      return jar;
    },
    set(this: Koa.Context, jar: unknown) {
      cookies.set!.call(this, jar);
    },
    configurable: true,
  });
}

/** The error of an authorization request answered by sending it back to the client. */
const authorizationErrors = new WeakMap<object, string>();

/**
 * Times every request, from the outermost of our middleware to the response
 * Koa is about to send, and counts what that response says: a token issued,
 * or an OAuth error. Taken from the response itself, status final and
 * deferred writes settled, rather than from the library's events, which
 * name errors our corrections then replace (followTheStandards), fire twice
 * for one answer, or not at all for some routes.
 */
function countRequests(metrics: Metrics): Koa.Middleware {
  return async (ctx, next) => {
    const started = performance.now();
    try {
      await next();
    } finally {
      const oidc = (ctx as unknown as KoaContextWithOIDC).oidc;
      const route = oidc?.route ?? (/^\/interaction\//i.test(ctx.path) ? 'interaction' : ctx.path === '/healthz' || ctx.path === '/readyz' ? 'health' : 'other');
      metrics.request(route, ctx.status, (performance.now() - started) / 1000);
      if (route === 'token' && ctx.status === 200) metrics.tokenIssued(oidc?.params?.grant_type);
      const error = answeredError(ctx, route);
      if (error) {
        metrics.oauthError(route, error);
        if (ctx.status === 503 && error === 'temporarily_unavailable') metrics.databaseUnreachable();
      }
    }
  };
}

/**
 * The OAuth error code a response carries: in its JSON, on its error page,
 * or sent back to the client (by redirect, or by form_post, whose page keeps
 * the error's status).
 */
function answeredError(ctx: Koa.Context, route: string): string | undefined {
  if (ctx.status >= 400) {
    const body = ctx.body as { error?: unknown } | null | undefined;
    if (body && typeof body === 'object' && !Buffer.isBuffer(body) && typeof body.error === 'string') return body.error;
    const shown = shownError(ctx);
    if (shown) return shown;
  }
  return route === 'authorization' || route === 'resume' ? authorizationErrors.get(ctx) : undefined;
}

/** The scheme and authority of a request target in absolute form. */
const ABSOLUTE_FORM = /^[a-z][a-z\d+.-]*:\/\/[^/?#]*/i;

/** The error events of the routes that read a request body (the library's lib/helpers/initialize_app.js). */
const REQUEST_ERROR_EVENTS = [
  'authorization.error',
  'grant.error',
  'userinfo.error',
  'introspection.error',
  'revocation.error',
  'pushed_authorization_request.error',
  'end_session.error',
  'end_session_confirm.error',
] as const;

/** The endpoints where a client authenticates. */
const CLIENT_AUTHENTICATED_ROUTES = new Set(['token', 'introspection', 'revocation', 'pushed_authorization_request']);

/**
 * Where the library's answer departs from the RFCs, the answer they ask for.
 * Runs before the deferred writes are settled, so that an answer turned into
 * an error stores nothing.
 */
function followTheStandards(ctx: KoaContextWithOIDC): void {
  const route = ctx.oidc?.route;
  if (route === undefined) return;
  useContentTooLarge(ctx);
  useInvalidDpopProofForReplays(ctx);
  accessibleFormPostPage(ctx);
  if (route === 'authorization' || route === 'resume') keepRedirectUriQuery(ctx, [ctx.oidc.params?.redirect_uri]);
  // RP-Initiated Logout 1.0 §3: the post_logout_redirect_uri, with `state` added.
  else if (route === 'end_session_confirm') keepRedirectUriQuery(ctx, ctx.oidc.client?.postLogoutRedirectUris ?? []);
  if (!CLIENT_AUTHENTICATED_ROUTES.has(route)) return;
  if (route === 'token') {
    // RFC 6749 §5.1 asks for both; the library sends only Cache-Control.
    ctx.set('Pragma', 'no-cache');
    useUnauthorizedClient(ctx);
    refuseWhenNoScopeIsGranted(ctx);
  } else if (route === 'introspection') {
    inactiveForStructuredTokens(ctx);
    refusePublicClients(ctx);
  } else if (route === 'revocation') {
    // As every other answer to a client's credentials: nothing for a cache to keep.
    ctx.set('Cache-Control', 'no-store');
    // RFC 7009 §2.2: a 200 with nothing in it. The library's empty body went
    // out as text/plain (Koa's type for a string), which clients that accept
    // no content type but JSON refuse (oidc-client-ts's revokeTokens, and
    // with it its sign-out, which stopped short of /session/end).
    if (ctx.status === 200 && ctx.body === '') ctx.remove('Content-Type');
  }
  useInvalidClientWithoutCredentials(ctx);
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

/** Requests a server_error failed because the database could not be reached. */
const unreachable = new WeakSet<object>();

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
  const challenge = ctx.response.get('WWW-Authenticate');
  if (challenge) {
    ctx.set('WWW-Authenticate', challenge.replace(/error="[^"]*"/, 'error="invalid_dpop_proof"').replace(/error_description="[^"]*"/, `error_description="${description}"`));
  }
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
 * Discovery's claims_supported names the claims the OP may supply (Discovery
 * §3). The library always lists `sid`, which it issues only to clients of
 * front- or back-channel logout, or through the claims parameter: all off here.
 * A middleware of its own (see app.ts for its place), not part of
 * followTheStandards: the discovery document must be final before its ETag is
 * made (http/public-documents.ts).
 */
export const listOnlyClaimsIssued: Koa.Middleware = (ctx, next) =>
  ctx.path.startsWith('/.well-known/')
    ? next().then(() => {
        const body = (ctx as unknown as KoaContextWithOIDC).oidc?.route === 'discovery' ? (ctx.body as { claims_supported?: unknown }) : undefined;
        if (Array.isArray(body?.claims_supported)) body.claims_supported = body.claims_supported.filter((claim) => claim !== 'sid');
      })
    : next();

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
  ctx.body = { error: 'invalid_scope', error_description: 'none of the requested scopes can be granted' };
}

/**
 * The library refuses to introspect a JWT (unsupported_token_type, an RFC 7009
 * error code); RFC 7662 §2.2 answers a token the caller may not introspect
 * with `{"active": false}`. An API verifies its JWTs with the JWKS instead.
 */
function inactiveForStructuredTokens(ctx: KoaContextWithOIDC): void {
  const body = ctx.body as { error?: string } | undefined;
  if (ctx.status !== 400 || body?.error !== 'unsupported_token_type') return;
  ctx.status = 200;
  ctx.body = { active: false };
}

/**
 * RFC 7662 §2.1: the endpoint "MUST also require some form of authorization",
 * and discovery offers only client secrets there (RFC 8414 §2). A public
 * client authenticates with its client_id alone (`none`), which the library
 * lets through to answer {"active": false} whatever the token: it learned
 * nothing, but the answer said its request was good. It is invalid_client,
 * as for any method the endpoint does not take, whether or not the token
 * exists (the answer must not depend on it).
 */
function refusePublicClients(ctx: KoaContextWithOIDC): void {
  if (ctx.oidc.client?.clientAuthMethod !== 'none') return;
  ctx.status = 401;
  ctx.body = { error: 'invalid_client', error_description: 'a public client cannot use introspection; authenticate with a client secret' };
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
 * pages run through here too, without ctx.oidc.)
 */
function useUnauthorizedClient(ctx: KoaContextWithOIDC): void {
  const body = ctx.body as { error?: string } | undefined;
  if (ctx.status !== 400 || body?.error !== 'invalid_request') return;
  const client = ctx.oidc.client;
  const grantType = ctx.oidc.params?.grant_type;
  // An unsupported grant type is unsupported_grant_type, checked before; a repeated one is not a string.
  if (!client || typeof grantType !== 'string' || client.grantTypeAllowed(grantType)) return;
  ctx.body = { ...body, error: 'unauthorized_client' };
}
