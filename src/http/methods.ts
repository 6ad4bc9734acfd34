// Which methods each address takes, and the answer to a request with another
// one: 405 with Allow (RFC 9110 §15.5.6), in one shape for every address.
import type { Context } from 'koa';
import type Provider from 'oidc-provider';

/**
 * The methods each address takes, for a request no route answered: the
 * provider's routes (where its configuration puts them) and our pages. Its
 * router matches paths case-insensitively, with or without a trailing slash.
 */
export function allowedMethodsOf(provider: Provider): (path: string) => string[] | undefined {
  const escape = (path: string) => path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const at = (route: string, suffix = '') => new RegExp(`^${escape(provider.pathFor(route))}${suffix}/?$`, 'i');
  const table: [RegExp, string[]][] = [
    [at('authorization'), ['GET', 'POST']],
    [at('authorization', '/[^/]+'), ['GET']],
    [at('token'), ['POST']],
    [at('introspection'), ['POST']],
    [at('revocation'), ['POST']],
    [at('pushed_authorization_request'), ['POST']],
    [at('userinfo'), ['GET', 'POST']],
    [at('jwks'), ['GET']],
    [at('end_session'), ['GET', 'POST']],
    [at('end_session', '/confirm'), ['POST']],
    [at('end_session', '/success'), ['GET']],
    [/^\/\.well-known\/(openid-configuration|oauth-authorization-server)\/?$/i, ['GET']],
    [/^\/interaction\/[^/]+\/?$/, ['GET']],
    [/^\/interaction\/[^/]+\/(login|confirm|abort)\/?$/, ['POST']],
  ];
  return (path) => table.find(([pattern]) => pattern.test(path))?.[1];
}

/** Whether `method` is one of `allowed`; HEAD goes wherever GET does. */
export function takes(allowed: string[], method: string): boolean {
  return allowed.includes(method) || (method === 'HEAD' && allowed.includes('GET'));
}

/** Answers 405 with Allow; the body (JSON) is what it returns, for the caller to send or render. */
export function refuseMethod(ctx: Context, allowed: string[]): { error: string; error_description: string } {
  const allow = allowed.includes('GET') && !allowed.includes('HEAD') ? [...allowed, 'HEAD'] : allowed;
  ctx.status = 405;
  ctx.set('Allow', allow.join(', '));
  return { error: 'method_not_allowed', error_description: `${ctx.method} is not allowed here; use ${allowed.join(' or ')}` };
}
