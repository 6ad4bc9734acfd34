// Discovery and the JWKS are the same for every caller and change rarely, so
// relying parties, APIs and the HTTP caches between may keep them: each is
// sent with a lifetime and an ETag, and a refetch that finds nothing new is a
// 304 without a body.
//
// The JWKS may be kept only as long as key rotation allows: a new key is
// published on every instance within KEY_REFRESH_INTERVAL of `keys rotate`
// and signs KEY_ACTIVATION_DELAY after it, so a copy taken just before an
// instance published the key must be gone by then (README, Keys).
import { createHash } from 'node:crypto';
import type { Middleware } from 'koa';

/** How long discovery may be kept: it changes only with a new deployment. */
const DISCOVERY_MAX_AGE = 3600;
/**
 * The longest the JWKS may be kept whatever the rotation settings: a key
 * removed from it (`keys retire`) should not live on in caches for long.
 */
const JWKS_MAX_AGE = 300;

export function cacheablePublicDocuments(keys: { keyActivationDelay: number; keyRefreshInterval: number }): Middleware {
  // By the provider's route, not the path: it serves discovery at two
  // addresses (OpenID Connect's and RFC 8414's), with or without a trailing slash.
  const lifetimes: Record<string, number> = {
    discovery: DISCOVERY_MAX_AGE,
    jwks: Math.min(JWKS_MAX_AGE, Math.max(0, keys.keyActivationDelay - keys.keyRefreshInterval)),
  };
  return (ctx, next) => {
    // Other requests pass straight through, without a promise of this middleware's.
    if ((ctx.method !== 'GET' && ctx.method !== 'HEAD') || !/^\/(\.well-known\/|jwks)/i.test(ctx.path)) return next();
    return next().then(() => {
      const route = (ctx as { oidc?: { route?: string } }).oidc?.route;
      const maxAge = route === undefined ? undefined : lifetimes[route];
      if (maxAge === undefined) return;
      readableFromEveryOrigin(ctx);
      if (ctx.status !== 200 || ctx.body == null) return;
      if (route === 'jwks') ctx.body = inStableOrder(ctx.body as { keys?: Array<{ kid?: string }> });
      if (route === 'discovery') ctx.body = withAlgorithmsSorted(ctx.body as Record<string, unknown>);
      // must-revalidate: a cache may not serve a copy past its age (when the server is unreachable, say).
      ctx.set('Cache-Control', maxAge > 0 ? `public, max-age=${maxAge}, must-revalidate` : 'no-cache');
      const body = typeof ctx.body === 'string' ? ctx.body : JSON.stringify(ctx.body);
      const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`;
      ctx.set('ETag', etag);
      // Not Koa's ctx.fresh: it ignores If-None-Match when the request also
      // says Cache-Control: no-cache, which fetch() adds to every conditional
      // request. That directive is for caches; the origin answers the
      // condition (RFC 9110 §13.1.2). A 304 goes out without the body.
      if (matches(ctx.get('If-None-Match'), etag)) ctx.status = 304;
    });
  };
}

/**
 * Any page may read them, and one copy serves every origin: the library's
 * CORS answers with the caller's own origin and `Vary: Origin`, so a shared
 * cache kept a copy per origin (and one fetched without an Origin, by a
 * server, served no page). No credentials are involved: `*` says it all.
 */
function readableFromEveryOrigin(ctx: Parameters<Middleware>[0]): void {
  ctx.set('Access-Control-Allow-Origin', '*');
  const vary = ctx.response.get('Vary')
    .split(',')
    .map((name) => name.trim())
    .filter((name) => name !== '' && name.toLowerCase() !== 'origin');
  if (vary.length > 0) ctx.set('Vary', vary.join(', '));
  else ctx.remove('Vary');
}

/**
 * The keys by `kid`: the provider lists the signing key first, so the order
 * changed when a rotated key began to sign although the set had not, and
 * every cache's revalidation got the whole set again instead of a 304.
 */
function inStableOrder(jwks: { keys?: Array<{ kid?: string }> }): unknown {
  if (!Array.isArray(jwks.keys)) return jwks;
  const keys = [...jwks.keys].sort((a, b) => ((a.kid ?? '') < (b.kid ?? '') ? -1 : (a.kid ?? '') > (b.kid ?? '') ? 1 : 0));
  return { ...jwks, keys };
}

/**
 * Every list of algorithms in alphabetical order: the provider lists the
 * signing algorithms in the order of its keys, which changed when a rotation
 * reloaded them (RS256 before ES256, then after it), and so did the ETag,
 * though nothing had. The order of these lists means nothing (RFC 8414 §2).
 */
function withAlgorithmsSorted(metadata: Record<string, unknown>): Record<string, unknown> {
  const sorted = { ...metadata };
  for (const [name, value] of Object.entries(metadata)) {
    if (/_(alg|enc)_values_supported$/.test(name) && Array.isArray(value)) sorted[name] = [...value].sort();
  }
  return sorted;
}

/** Whether an If-None-Match header names `etag` (weak comparison, RFC 9110 §8.8.3.2), or is `*`. */
function matches(header: string, etag: string): boolean {
  if (!header) return false;
  if (header.trim() === '*') return true;
  return header.split(',').some((tag) => tag.trim().replace(/^W\//, '') === etag);
}
