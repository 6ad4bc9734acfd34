import type Koa from 'koa';
import type Provider from 'oidc-provider';
import type { KoaContextWithOIDC } from 'oidc-provider';
import { shownError } from '../http/error-pages.js';
import { allowedMethodsOf } from '../http/methods.js';
import type { Metrics } from '../metrics/metrics.js';

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
export function countRequests(provider: Provider, metrics: Metrics): void {
  const addresses = allowedMethodsOf(provider);
  // An authorization error sent back to the client (a redirect, or form_post)
  // leaves no error code in the response's body: it is taken from here.
  provider.on('authorization.error', (ctx: KoaContextWithOIDC, error: { error?: unknown }) => {
    if (typeof error.error === 'string') authorizationErrors.set(ctx, error.error);
  });
  provider.use(async (ctx, next) => {
    const started = performance.now();
    try {
      await next();
    } finally {
      const oidc = (ctx as unknown as KoaContextWithOIDC).oidc;
      // Answered before the library named the route (our pages, the health
      // probes; a method refused, a server without its keys): by the address.
      const route = oidc?.route ?? addresses(ctx.path)?.route ?? 'other';
      metrics.request(route, ctx.status, (performance.now() - started) / 1000);
      if (route === 'token' && ctx.status === 200) metrics.tokenIssued(oidc?.params?.grant_type);
      const error = answeredError(ctx, route);
      if (error) {
        metrics.oauthError(route, error);
        if (ctx.status === 503 && error === 'temporarily_unavailable' && !ctx.state.staleKeys) metrics.databaseUnavailable();
      }
    }
  });
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
