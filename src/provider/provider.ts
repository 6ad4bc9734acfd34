// Builds an oidc-provider instance from the current key set. A new instance is
// built when the published keys change (rotation), see ProviderHost. What the
// library leaves to the host, or answers otherwise than the RFCs ask, is
// adjusted in the modules named below; this one puts them together and turns
// errors that escape a route into the answer the library would have given.
import Provider, { errors, type KoaContextWithOIDC } from 'oidc-provider';
import { databaseTrouble, UNAVAILABLE_RETRY_AFTER } from '../persistence/unavailable.js';
import { errorReference, requestField } from '../http/request-id.js';
import { outageLog } from '../http/outage-log.js';
import { forgetFinishedSteps } from '../interactions/finished-steps.js';
import { ArtifactAdapter, grantKeptAtSignOut } from './adapter.js';
import { reportBackchannelLogouts } from './backchannel-logout.js';
import { adaptClientModel } from './client-model.js';
import { codesForRegisteredAddresses, idTokenHintsOfEarlierAlgorithms, refreshTokensWhileOffline } from './registration-changes.js';
import { buildConfiguration, type ProviderServices } from './configuration.js';
import { keepNewSessionsOfDevicePages } from './device-flow.js';
import { accessibleFormPostPage } from './form-post-page.js';
import { refuseGarbledLogout } from './request-encoding.js';
import { laxCookiesOverHttp, pinToIssuer } from './issuer-origin.js';
import { checkReplaysAtomically } from './replay-detection.js';
import { countRequests } from './request-metrics.js';
import { settleDeferredWrites } from './request-scope.js';
import { honourSignOuts } from './sign-outs.js';
import { structuredAccessTokens } from './structured-access-tokens.js';
import { acceptSpacesAfterScheme, challengeOtherSchemesAtUserinfo, followTheStandards, noteRequestErrors, omitEmptyParameters } from './standards.js';

/** What the library answers for an error of its own (its err_out helper); details stay in the log. */
const SERVER_ERROR = { error: 'server_error', error_description: 'oops! something went wrong' } as const;
const UNAVAILABLE = { error: 'temporarily_unavailable', error_description: 'the service is temporarily unavailable; try again shortly' } as const;

/** The error events of the routes where a client authenticates. */
const CLIENT_AUTHENTICATING_EVENTS = ['grant.error', 'introspection.error', 'revocation.error', 'pushed_authorization_request.error', 'device_authorization.error'];

/** Requests a server_error failed because the database could not serve them (see unavailable.ts). */
const unavailable = new WeakSet<object>();

export function createProvider(services: ProviderServices): Provider {
  const configuration = buildConfiguration(services);
  const provider = new Provider(services.config.issuer, configuration);
  provider.proxy = services.config.trustProxy > 0;
  // Only the entries the trusted proxies appended: the client writes the rest.
  provider.maxIpsCount = services.config.trustProxy;
  pinToIssuer(provider, services.config.issuer);
  if (new URL(services.config.issuer).protocol === 'http:') laxCookiesOverHttp(provider);

  adaptClientModel(provider, services.clientCache);
  codesForRegisteredAddresses(provider);
  refreshTokensWhileOffline(provider);
  idTokenHintsOfEarlierAlgorithms(provider);
  challengeOtherSchemesAtUserinfo(provider);
  omitEmptyParameters(provider);
  honourSignOuts(provider, services.accounts, services.config.ttl.sessionMaxAge);
  checkReplaysAtomically(provider, new ArtifactAdapter('ReplayDetection', services.sql));
  keepNewSessionsOfDevicePages(provider);

  if (services.metrics) countRequests(provider, services.metrics);
  reportBackchannelLogouts(provider, services.logger, services.metrics);

  const answerForAccessTokenJwt = structuredAccessTokens(
    services.signingKeys,
    services.config.issuer,
    configuration.features!.introspection!.allowedPolicy as Parameters<typeof structuredAccessTokens>[2],
    new ArtifactAdapter('RevokedAccessToken', services.sql),
    // As for a stored token's (configuration.ts), but it ends this token alone: nothing stored names its sign-in.
    (ctx) => services.logger.info('tokens revoked', { ...requestField(ctx), route: ctx.oidc.route, client: ctx.oidc.client?.clientId, presented: 'AccessToken', format: 'jwt' }),
    services.subjects,
  );

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
    acceptSpacesAfterScheme(ctx.req);
    try {
      await next();
      await answerForAccessTokenJwt(ctx as unknown as KoaContextWithOIDC);
      followTheStandards(ctx as unknown as KoaContextWithOIDC);
      refuseGarbledLogout(ctx as unknown as KoaContextWithOIDC);
      accessibleFormPostPage(ctx as unknown as KoaContextWithOIDC, services.config.issuerName);
    } catch (error) {
      escaped = error;
    }
    const oidcCtx = ctx as unknown as KoaContextWithOIDC;
    // A client that hung up before its answer was made will never read it
    // (nor one that half-closed: the same end of input, which Node takes for
    // a hang-up, ending the connection): its code or refresh token is left
    // unused, for the retry it will make, rather than spent on tokens it
    // never received (a retry would then be taken for a replay, and revoke
    // the sign-in). One that hangs up after this still loses them. (No
    // socket at all: the answer went already, as a page's 413 does, and so
    // nothing was deferred.)
    const { socket } = ctx.req as { socket: typeof ctx.req.socket | null };
    const answerable = socket !== null && !socket.destroyed && socket.writable;
    await settleDeferredWrites(ctx, escaped === undefined && ctx.status < 400 && answerable).catch((error: unknown) =>
      answerWithError(oidcCtx, error, 'grant.error'),
    );
    if (escaped !== undefined) await answerWithError(oidcCtx, escaped);
    // The database could not serve it: 503, to be retried (a page said so
    // already, see renderError in configuration.ts), not a 500 server_error.
    if (unavailable.has(ctx) && ctx.status === 500) {
      ctx.status = 503;
      if (ctx.body && typeof ctx.body === 'object' && !Buffer.isBuffer(ctx.body)) ctx.body = UNAVAILABLE;
    }
    if (unavailable.has(ctx) && ctx.status === 503) {
      ctx.set('Retry-After', UNAVAILABLE_RETRY_AFTER);
      // A single-page app's script reads it only if told it may (Retry-After
      // is no CORS-safelisted response header); the library lists its own.
      if (ctx.response.get('Access-Control-Allow-Origin')) {
        const exposed = ctx.response.get('Access-Control-Expose-Headers');
        ctx.set('Access-Control-Expose-Headers', exposed ? `${exposed},Retry-After` : 'Retry-After');
      }
    }
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

  noteRequestErrors(provider);

  // A sign-out in the browser forgets the steps it finished
  // (finished-steps.ts): whoever uses it next is not told what the last
  // person did. Every sign-out, not "Stay signed in": the sign-out page's, one
  // on the way back to an app, and the one a new sign-in makes of the
  // account signed in before (both post `logout`).
  provider.on('end_session.success', (ctx: KoaContextWithOIDC) => {
    if (ctx.oidc.params?.logout) forgetFinishedSteps(ctx);
  });

  // For the audit trail: a whole grant revoked, for a code or refresh token
  // without its sign-in's uid (most often one sign-in's tokens are, and
  // logSignInEnded in configuration.ts says so). At the token endpoint only
  // because one was presented again: taken for theft (RFC 9700 §4.14.2), so
  // worth a warning. Elsewhere it is a logout. Ids only: a grant id
  // authorizes nothing.
  provider.on('grant.revoked', (ctx: KoaContextWithOIDC, grantId: string) => {
    // A sign-out of a session without a uid ends whole grants, announced by the library; one holding offline_access was kept (adapter.ts).
    if (grantKeptAtSignOut(ctx, grantId)) return;
    const fields = { ...requestField(ctx), route: ctx.oidc?.route, client: ctx.oidc?.client?.clientId, grant: grantId };
    const replayed = ctx.oidc?.route === 'token';
    if (replayed) services.logger.warn('grant revoked: a code or refresh token was used twice', fields);
    else services.logger.info('grant revoked', fields);
    services.metrics?.grantRevoked(replayed ? 'replay' : 'other');
  });
  // A registered client that failed to authenticate (a wrong or old secret,
  // another method than it registered): what an operator looks for when an
  // app says it "stopped working", or when someone guesses its secret. An
  // unknown client id is whatever anyone sent: at debug only, so that junk
  // requests cannot fill the info log. The detail is the library's own words.
  for (const event of CLIENT_AUTHENTICATING_EVENTS) {
    provider.on(event as 'grant.error', (ctx: KoaContextWithOIDC, error: unknown) => {
      if (!(error instanceof errors.InvalidClientAuth)) return;
      const client = ctx.oidc?.client?.clientId;
      const fields = { ...requestField(ctx), route: ctx.oidc?.route, client, detail: error.error_detail };
      if (client) services.logger.info('client authentication failed', fields);
      else services.logger.debug('client authentication failed', fields);
    });
  }
  provider.on('server_error', (ctx, error) => {
    const trouble = databaseTrouble(error);
    if (trouble) {
      // Expected while the database is away or out of space: one line, without
      // a stack, once per request (the session saved after a route fails
      // again after it).
      if (unavailable.has(ctx)) return;
      unavailable.add(ctx);
      outageLog(services.logger).failed(trouble, { ...requestField(ctx), route: ctx.oidc?.route, error: `${error.name}: ${error.message}` });
      return;
    }
    services.logger.error('provider server_error', { ...requestField(ctx), reference: errorReference(ctx), route: ctx.oidc?.route, error: `${error.name}: ${error.message}`, stack: error.stack });
  });
  return provider;
}
