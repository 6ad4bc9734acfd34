// Which methods each address takes, and the answer to a request with another
// one: 405 with Allow (RFC 9110 §15.5.6), in one shape for every address.
import type { Context, Middleware } from 'koa';
import type Provider from 'oidc-provider';
import { escapeRegExp } from '../display-text.js';

/** What an address takes, whether a browser is sent there (its errors are pages), and whether the provider answers CORS there. */
export interface Address {
  /** The provider's name for the route (ours for our own addresses), for the metrics of requests answered before it ran. */
  route: string;
  methods: string[];
  page: boolean;
  cors: boolean;
}

/**
 * The paths the provider's `route` answers, as its router matches them:
 * whatever the case, with or without a trailing slash (`suffix`: a pattern
 * for what follows the route's path).
 */
export function routePattern(provider: Provider, route: string, suffix = ''): RegExp {
  return new RegExp(`^${escapeRegExp(provider.pathFor(route))}${suffix}/?$`, 'i');
}

/**
 * The methods each address takes, for a request no route answered: the
 * provider's routes (where its configuration puts them), our pages and the
 * health probes. Routes match paths case-insensitively, with or without a
 * trailing slash, as the provider's and our routers do.
 */
export function allowedMethodsOf(provider: Provider): (path: string) => Address | undefined {
  const at = (route: string, suffix = '') => routePattern(provider, route, suffix);
  // A browser navigates to a page; only the provider's JSON endpoints answer other origins.
  const page = (route: string, methods: string[]) => ({ route, methods, page: true, cors: false });
  const api = (route: string, methods: string[], cors = true) => ({ route, methods, page: false, cors });
  const table: [RegExp, Address][] = [
    [at('authorization'), page('authorization', ['GET', 'POST'])],
    [at('authorization', '/[^/]+'), page('resume', ['GET'])],
    [at('token'), api('token', ['POST'])],
    [at('introspection'), api('introspection', ['POST'])],
    [at('revocation'), api('revocation', ['POST'])],
    [at('pushed_authorization_request'), api('pushed_authorization_request', ['POST'])],
    // Before the device page's sign-ins (/device/:uid), among which its path would be one.
    [at('device_authorization'), api('device_authorization', ['POST'])],
    [at('code_verification'), page('code_verification', ['GET', 'POST'])],
    [at('code_verification', '/[^/]+'), page('device_resume', ['GET'])],
    [at('userinfo'), api('userinfo', ['GET', 'POST'])],
    [at('jwks'), api('jwks', ['GET'])],
    [at('end_session'), page('end_session', ['GET', 'POST'])],
    [at('end_session', '/confirm'), page('end_session_confirm', ['POST'])],
    [at('end_session', '/success'), page('end_session_success', ['GET'])],
    [/^\/\.well-known\/(openid-configuration|oauth-authorization-server)\/?$/i, api('discovery', ['GET'])],
    [/^\/interaction\/[^/]+\/?$/i, page('interaction', ['GET'])],
    [/^\/interaction\/[^/]+\/login\/?$/i, page('interaction', ['GET', 'POST'])],
    [/^\/interaction\/[^/]+\/(select|confirm|abort)\/?$/i, page('interaction', ['POST'])],
    [/^\/(healthz|readyz)$/, api('health', ['GET'], false)], // health.ts: these paths exactly
    [/^\/$/, page('home', ['GET'])], // home-page.ts
    // self-service/account-pages.ts
    [/^\/account\/?$/i, page('account', ['GET'])],
    [/^\/account\/callback\/?$/i, page('account', ['GET'])],
    [/^\/account\/(apps\/remove|password|two-step|sign-out-everywhere)\/?$/i, page('account', ['POST'])],
    [/^\/account\/done\/?$/i, page('account', ['GET'])],
  ];
  return (path) => table.find(([pattern]) => pattern.test(path))?.[1];
}

/**
 * OPTIONS: what the address takes, in Allow (RFC 9110 §9.3.7). The
 * provider's CORS routes would otherwise end such a request with a bare 404.
 * A CORS preflight goes to the provider where it answers CORS; elsewhere (the
 * pages, the health probes) it gets the same answer without any
 * Access-Control-* header, which the browser reads as a refusal (a 405
 * there would contradict the Allow it carries).
 */
export function answerOptions(addresses: (path: string) => Address | undefined): Middleware {
  return async (ctx, next) => {
    if (ctx.method !== 'OPTIONS') return next();
    // `OPTIONS *` asks about the server as a whole (RFC 9110 §9.3.7): the methods some address takes.
    if (ctx.url === '*') {
      ctx.status = 204;
      ctx.set('Allow', 'GET, HEAD, POST, OPTIONS');
      return undefined;
    }
    const address = addresses(ctx.path);
    if (!address || (address.cors && ctx.get('Origin') && ctx.get('Access-Control-Request-Method'))) {
      await next();
      // The provider's preflight answer echoes the headers and method asked
      // for (Access-Control-Allow-Headers, -Methods), and says Vary: Origin
      // only: a cache must not give it to a preflight asking for others.
      if (ctx.response.get('Access-Control-Allow-Origin')) {
        ctx.vary('Access-Control-Request-Headers');
        ctx.vary('Access-Control-Request-Method');
      }
      return;
    }
    ctx.status = 204;
    ctx.set('Allow', [...withHead(address.methods), 'OPTIONS'].join(', '));
    return undefined;
  };
}

function withHead(methods: string[]): string[] {
  return methods.includes('GET') && !methods.includes('HEAD') ? [...methods, 'HEAD'] : methods;
}

/** Whether `method` is one of `allowed`; HEAD goes wherever GET does. */
export function takes(allowed: string[], method: string): boolean {
  return allowed.includes(method) || (method === 'HEAD' && allowed.includes('GET'));
}

/** Answers 405 with Allow; the body (JSON) is what it returns, for the caller to send or render. */
export function refuseMethod(ctx: Context, allowed: string[]): { error: string; error_description: string } {
  ctx.status = 405;
  ctx.set('Allow', [...withHead(allowed), 'OPTIONS'].join(', ')); // OPTIONS: answerOptions
  // About this request: not to be kept for the next (a 405 is cacheable by default, RFC 9110 §15.1).
  ctx.set('Cache-Control', 'no-store');
  return { error: 'method_not_allowed', error_description: `${ctx.method} is not allowed here; use ${allowed.join(' or ')}` };
}
