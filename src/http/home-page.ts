// The issuer's own address, `/`. Nothing needs it: apps find everything from
// the discovery document. But people open it (someone who typed the address
// they saw in the sign-in page's address bar, a developer looking around), and
// "Page not found" there reads as a broken service.
import type { Middleware } from 'koa';
import { renderPage } from './views.js';

export function homePage(issuerName: string): Middleware {
  return (ctx, next) => {
    if (ctx.path !== '/' || (ctx.method !== 'GET' && ctx.method !== 'HEAD')) return next();
    ctx.type = 'html';
    ctx.set('Cache-Control', 'no-cache');
    ctx.body = renderPage({ res: ctx.res, issuerName }, 'home', {});
    return undefined;
  };
}
