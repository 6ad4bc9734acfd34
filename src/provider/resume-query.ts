// The resume address (/auth/<uid>) is where the library sends a browser back
// once a sign-in step is done; it carries nothing in its query, and the
// library reads everything it needs from the stored interaction. But when the
// resume fails before that interaction is loaded (no cookie, or an unknown
// one), the library's error handler reads the request's own query as the
// authorization request, and, given a client_id there, runs its recovery of
// a client's only redirect URI on parameters it never set: a TypeError, a
// 500, and an error line, for a link anyone can make
// (`/auth/x?client_id=<any registered client>`). The query is dropped: the
// resume then fails as any resume without its interaction does, on the
// "Your sign-in expired" page, which redirects nowhere.
import type Koa from 'koa';
import type { Provider } from 'oidc-provider';
import { routePattern } from '../http/methods.js';

export function ignoreResumeQuery(provider: Provider): Koa.Middleware {
  const resume = routePattern(provider, 'authorization', '/[^/]+');
  return (ctx, next) => {
    // (HEAD too: the library's router answers it wherever it answers GET.)
    if (ctx.querystring !== '' && (ctx.method === 'GET' || ctx.method === 'HEAD') && resume.test(ctx.path)) ctx.querystring = '';
    return next();
  };
}
