// Request handling, all in the provider's Koa app: the provider's own
// middleware around every request (provider/provider.ts: deferred writes,
// corrections to what a route answered), then ours, request logging and
// security headers first, then our interaction pages, then oidc-provider's
// own routes.
import type { IncomingMessage, ServerResponse } from 'node:http';
import Koa from 'koa';
import type Provider from 'oidc-provider';
import type { Accounts } from './accounts/accounts.js';
import type { DeviceCookies } from './accounts/device-cookies.js';
import type { Subjects } from './accounts/subjects.js';
import type { SecondFactors } from './accounts/second-factors.js';
import type { SignInNotices } from './interactions/sign-in-notice.js';
import type { SignInThrottle } from './accounts/sign-in-throttle.js';
import type { Apis } from './apis/apis.js';
import type { BrowserBinding } from './provider/browser-binding.js';
import type { Config } from './config.js';
import type { InFlightRequests } from './http/in-flight.js';
import { renderErrorPage } from './http/error-pages.js';
import { healthProbes } from './http/health.js';
import { homePage } from './http/home-page.js';
import { allowedMethodsOf, answerOptions, refuseMethod, routePattern, takes, type Address } from './http/methods.js';
import { loggedPath } from './http/log-redaction.js';
import { cacheablePublicDocuments } from './http/public-documents.js';
import { nameRequest, requestField } from './http/request-id.js';
import { securityHeaders } from './http/security-headers.js';
import { refuseWithStaleKeys } from './http/stale-keys.js';
import { interactionRoutes } from './interactions/routes.js';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics/metrics.js';
import type { Sql } from './persistence/database.js';
import type { SpaceWatch } from './persistence/disk-space.js';
import type { ProviderHost } from './provider/host.js';
import { keepRequestForms } from './provider/request-encoding.js';
import { defuseNestedRequestObjects } from './provider/request-objects.js';
import { ignoreResumeQuery } from './provider/resume-query.js';
import { foldUserCodes } from './provider/device-flow.js';
import { accountPages } from './self-service/account-pages.js';

export interface AppDeps {
  config: Config;
  host: ProviderHost;
  /** The `sub` each client knows a person by (accounts/subjects.ts). */
  subjects: Subjects;
  accounts: Accounts;
  /** People's TOTP keys, the sign-in's second step (accounts/second-factors.ts). */
  secondFactors: SecondFactors;
  signInThrottle: SignInThrottle;
  deviceCookies: DeviceCookies;
  signInNotices: SignInNotices;
  /** Which browser made each sign-in in progress (provider/browser-binding.ts). */
  browsers: BrowserBinding;
  apis: Apis;
  logger: Logger;
  /** The database and whether it has run out of disk space, for the readiness probe. */
  sql: Sql;
  space: SpaceWatch;
  /** Every request's handling is tracked here, for shutdown to wait on. */
  inFlight: InFlightRequests;
  /** Counts sign-ins and consents, when metrics are served (METRICS_PORT). */
  metrics?: Metrics;
}

export type RequestHandler = (req: IncomingMessage, res: ServerResponse) => void;

/**
 * The HTTP handler: whichever provider instance is current (see ProviderHost),
 * with our middleware mounted on it. oidc-provider is itself a Koa app; running
 * ours inside it rather than wrapping it in a second Koa app saves a Koa
 * context, middleware chain and response bookkeeping on every request (the
 * profile charged ~44 µs per token request to koa with two layers).
 */
export function createApp(deps: AppDeps): RequestHandler {
  const { host, logger, inFlight } = deps;
  const callbacks = new WeakMap<Provider, ReturnType<Koa['callback']>>();
  return (req, res) => {
    const provider = host.current;
    let callback = callbacks.get(provider);
    if (!callback) {
      // Errors are rendered where they happen; anything reaching Koa's handler is logged once here.
      const koa = provider as unknown as Koa; // the provider's typings omit Koa's 'error' event
      koa.silent = true;
      koa.on('error', (error: Error, ctx?: Koa.Context) => {
        if (clientFault(error)) logger.debug('request failed on the client side', { ...requestField(ctx), error: `${error.name}: ${error.message}` });
        else logger.error('unhandled', { ...requestField(ctx), error: error.stack ?? String(error) });
      });
      const addresses = allowedMethodsOf(provider);
      // provider.use() runs these ahead of the provider's own routes.
      const middleware = [
        requestLog(logger, deps.config.trustProxy > 0, addresses),
        securityHeaders(deps.config.issuer),
        // Caching headers for discovery and the JWKS.
        cacheablePublicDocuments(deps.config),
        answerOptions(addresses),
        refuseGetAtDeviceAuthorization(provider, deps.config, addresses),
        refuseEncodedBodies(deps.config, addresses),
        refuseCrowdedQueries(deps.config, addresses),
        ignoreResumeQuery(provider),
        keepRequestForms(provider),
        defuseNestedRequestObjects(provider),
        foldUserCodes(provider),
        healthProbes(deps.sql, deps.space, deps.host, inFlight),
        refuseWithStaleKeys(deps.host, deps.config.issuerName),
        homePage(deps.config.issuerName),
        accountPages(deps),
        interactionPages(deps),
      ];
      for (const fn of middleware) provider.use(fn);
      // Koa's own use() puts this after the provider's routes (its use() puts
      // middleware ahead of them), so only a request no route answered gets here.
      Koa.prototype.use.call(provider, notFound(deps.config, addresses));
      callback = provider.callback();
      callbacks.set(provider, callback);
    }
    // Shutting down: no connection is kept alive for another request.
    if (inFlight.draining) res.shouldKeepAlive = false;
    inFlight.track(callback(req, res), res);
  };
}

// Connection errors a client causes: it hung up or reset, or sent bytes that
// are not HTTP after a request (Koa hears of them through the response that
// could not be finished).
const CLIENT_CONNECTION_ERRORS = new Set(['ECONNRESET', 'ECONNABORTED', 'EPIPE', 'ERR_STREAM_PREMATURE_CLOSE']);

/** What the request log says for the path of an address nothing serves. */
const NOT_SERVED = '(an address nothing serves)';

/**
 * Whether an error reaching Koa's handler is the client's doing rather than
 * ours: not worth an error line, which any client could otherwise write at will.
 */
function clientFault(error: Error & { code?: unknown; status?: unknown; expose?: unknown }): boolean {
  if (typeof error.code === 'string' && (error.code.startsWith('HPE_') || CLIENT_CONNECTION_ERRORS.has(error.code))) return true;
  return error.expose === true && typeof error.status === 'number' && error.status < 500;
}

function requestLog(logger: Logger, trustProxy: boolean, addresses: (path: string) => Address | undefined): Koa.Middleware {
  // Without debug lines there is nothing to time: the id alone, and no extra
  // promise on every request.
  if (!logger.enabled('debug')) {
    return (ctx, next) => {
      nameRequest(ctx, trustProxy);
      return next();
    };
  }
  return (ctx, next) => {
    const started = performance.now();
    // Path only: query strings and bodies may carry codes and tokens. Nor
    // the path of an address nothing serves: a client with a wrong base URL
    // may have put a token in it (probe AN).
    const path = addresses(ctx.path) ? loggedPath(ctx.path) : NOT_SERVED;
    const line = { request: nameRequest(ctx, trustProxy), method: ctx.method, path };
    // Once the response is done, with the status sent: the provider's own
    // middleware (provider.ts), which runs around this one, may still change
    // what a route answered (an invalid_scope for a token the route issued).
    // A connection closed before the answer was sent (the client went away)
    // has no status to log: Node's default (200), or Koa's (404), would be
    // taken for an answer the route gave, which it may give only after.
    ctx.res.once('close', () => {
      const answered = ctx.res.writableFinished ? { status: ctx.res.statusCode } : { status: null, aborted: true };
      logger.debug('request', { ...line, ...answered, ms: Math.round(performance.now() - started) });
    });
    return next();
  };
}

/**
 * Only /interaction/* is ours; token traffic (most requests) skips the
 * router's matching altogether. A method a page does not take is answered by
 * notFound, from the table of addresses (405 with Allow, or 404), not by the
 * router's allowedMethods(), which answered a method it does not know (TRACE,
 * PROPFIND) 501 with an empty Allow even where nothing is served.
 */
function interactionPages(deps: AppDeps): Koa.Middleware {
  // (@koa/router's context types do not line up with Koa's plain Middleware.)
  const routes = interactionRoutes(deps).routes() as unknown as Koa.Middleware;
  return (ctx, next) => (INTERACTION_PATH.test(ctx.path) ? routes(ctx, next) : next());
}

/** As @koa/router matches (and the 405 table, http/methods.ts): whatever the case. */
const INTERACTION_PATH = /^\/interaction\//i;

/**
 * An address nothing serves, or not with this method (405, with Allow as RFC
 * 9110 §15.5.6 asks): the error page for a browser, JSON otherwise, instead
 * of Koa's plain "Not Found".
 */
function notFound(config: Config, addresses: (path: string) => Address | undefined): Koa.Middleware {
  return (ctx) => {
    if (ctx.body != null || ctx.status !== 404) return;
    const address = addresses(ctx.path);
    if (address && !takes(address.methods, ctx.method)) return answerWrongMethod(ctx, config, address);
    ctx.status = 404;
    answer(ctx, config, address, { error: 'not_found', error_description: 'nothing is served at this address' }, false);
  };
}

/** 405 with Allow: a page where a browser is sent, JSON elsewhere. */
function answerWrongMethod(ctx: Koa.Context, config: Config, address: Address): void {
  answer(ctx, config, address, refuseMethod(ctx, address.methods), false);
}

/**
 * The device authorization endpoint's path lies under the device page's
 * (`/device/auth` under `/device/:uid`, a device's sign-in), so the
 * provider's page route would take a GET meant for the endpoint, as a
 * sign-in named "auth". 405 there, as at every endpoint that takes only POST.
 */
function refuseGetAtDeviceAuthorization(provider: Provider, config: Config, addresses: (path: string) => Address | undefined): Koa.Middleware {
  const endpoint = routePattern(provider, 'device_authorization');
  return (ctx, next) => {
    const address = (ctx.method === 'GET' || ctx.method === 'HEAD') && endpoint.test(ctx.path) ? addresses(ctx.path) : undefined;
    if (!address) return next();
    answerWrongMethod(ctx, config, address);
    return undefined;
  };
}

/**
 * A body in a content coding (gzip, say): neither the provider nor our pages
 * decode one, and read as it is it would be taken for an empty or a garbled
 * form. 415 with `Accept-Encoding: identity` (RFC 9110 §15.5.16, §12.5.3);
 * in a transfer coding besides chunked, 501.
 */
function refuseEncodedBodies(config: Config, addresses: (path: string) => Address | undefined): Koa.Middleware {
  return (ctx, next) => {
    const coding = ctx.get('Content-Encoding').trim().toLowerCase();
    // Node's parser takes chunked as the last transfer coding and undoes only
    // that one: a body also sent in another (`gzip, chunked`) would be read
    // as it is. 501 for a transfer coding not understood (RFC 9112 §6.1).
    const transfer = ctx.get('Transfer-Encoding');
    // (Split only when there is more than chunked: nothing is allocated for most requests.)
    const transferCodings = transfer === '' || transfer === 'chunked' ? [] : transfer.toLowerCase().split(',').map((each) => each.trim()).filter((each) => each && each !== 'chunked');
    if ((!coding || coding === 'identity') && transferCodings.length === 0) return next();
    const hasBody = ctx.request.length > 0 || ctx.get('Transfer-Encoding') !== '';
    // An address nothing serves, or not by this method, is answered as such (404, 405).
    const address = addresses(ctx.path);
    if (!hasBody || !address || !takes(address.methods, ctx.method)) return next();
    if (transferCodings.length > 0) {
      ctx.status = 501;
    } else {
      ctx.status = 415;
      ctx.set('Accept-Encoding', 'identity');
    }
    ctx.set('Connection', 'close'); // the body is not read
    refuseBeforeRoute(ctx, config, address, ctx.status === 501
      ? 'the request body must not be sent in a transfer coding other than chunked (Transfer-Encoding)'
      : 'the request body must not be compressed (Content-Encoding)');
    return undefined;
  };
}

/** The most parameters a query string may hold. */
const MAX_QUERY_PARAMETERS = 100;

/**
 * A query string of thousands of parameters: Koa's parser (which the
 * provider's GET routes use) takes time that grows with the square of their
 * number, 2.8 s for 7,800 in a URL under the 16 KiB limit, on the one thread
 * every request shares (probe AM). No request of ours needs more than a few
 * dozen, so more than MAX_QUERY_PARAMETERS are refused, counted without
 * parsing.
 */
function refuseCrowdedQueries(config: Config, addresses: (path: string) => Address | undefined): Koa.Middleware {
  // Fewer characters than that cannot hold that many parameters: most requests are not counted.
  const shortest = 2 * MAX_QUERY_PARAMETERS;
  return (ctx, next) => {
    const query = ctx.querystring;
    if (query.length < shortest) return next();
    let separators = 0;
    for (let at = query.indexOf('&'); at !== -1; at = query.indexOf('&', at + 1)) separators++;
    if (separators < MAX_QUERY_PARAMETERS) return next();
    ctx.status = 400;
    refuseBeforeRoute(ctx, config, addresses(ctx.path), `the query string holds more than ${MAX_QUERY_PARAMETERS} parameters`);
    return undefined;
  };
}

/** Answers invalid_request, with `ctx.status` set, for a request refused before any route takes it. */
function refuseBeforeRoute(ctx: Koa.Context, config: Config, address: Address | undefined, description: string): void {
  answer(ctx, config, address, { error: 'invalid_request', error_description: description }, true);
}

/**
 * An error for a request no route took: a client's or an API's address
 * answers JSON whatever Accept prefers (as the provider's own errors there);
 * a page, or an address nobody serves, a page if preferred.
 */
function answer(ctx: Koa.Context, config: Config, address: Address | undefined, out: { error: string; error_description: string }, describe: boolean): void {
  const negotiated = !address || address.page;
  if (negotiated) {
    // A page or JSON by Accept: a cache must not give one to who asked for the other (RFC 9110 §12.5.5).
    ctx.vary('Accept');
  } else if (address.cors) {
    // The provider's API routes answer any origin's request, their errors
    // included, before the client is known (clientBasedCORS then decides):
    // this error too (a 405, a 415), or a single-page app sees only a failed fetch.
    const origin = ctx.get('Origin');
    if (origin) {
      ctx.vary('Origin');
      ctx.set('Access-Control-Allow-Origin', origin);
    }
  }
  if (negotiated && ctx.accepts('json', 'html') === 'html') {
    renderErrorPage(ctx, { res: ctx.res, issuerName: config.issuerName }, describe ? out : { error: out.error });
  } else {
    // An error is about this request: not to be kept for the next (a 404 and a 405 are cacheable by default, RFC 9110 §15.1).
    ctx.set('Cache-Control', 'no-store');
    ctx.body = out;
  }
}
