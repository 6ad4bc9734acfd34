// A server that could not load signing keys changed since it started (sealed
// with an encryption key its ENCRYPTION_KEYS lacks: ProviderHost.keysOutOfDate)
// still holds the old ones, a replaced key or one retired as compromised among
// them. Serving on would sign with those and publish them in its JWKS, so an
// API fetching the JWKS through it would go on trusting a key retired
// because it leaked. Not ready (/readyz says why) is not enough where nothing
// routes on readiness: every request but the health probes is answered 503,
// to be retried elsewhere, until the server is started with the key.
import type { Middleware } from 'koa';
import { renderUnavailablePage } from './error-pages.js';
import type { SigningKeysState } from './health.js';
import { UNAVAILABLE_RETRY_AFTER } from '../persistence/unavailable.js';

/** The paths a browser is sent to: they get the page that says to try again, not JSON. */
const BROWSER_PATHS = /^\/(auth(\/|$)|interaction\/|session\/end|device(?!\/auth(\/|$))(\/|$))/i;

export function refuseWithStaleKeys(keys: SigningKeysState, issuerName: string): Middleware {
  return (ctx, next) => {
    if (keys.keysOutOfDate === undefined) return next();
    // Counted apart from a database that cannot serve (request-metrics.ts).
    ctx.state.staleKeys = true;
    if (BROWSER_PATHS.test(ctx.path) && ctx.accepts('json', 'html') === 'html') return renderUnavailablePage(ctx, { res: ctx.res, issuerName });
    ctx.status = 503;
    ctx.set('Retry-After', UNAVAILABLE_RETRY_AFTER);
    ctx.set('Cache-Control', 'no-store');
    ctx.body = { error: 'temporarily_unavailable', error_description: 'the service is temporarily unavailable; try again shortly' };
  };
}
