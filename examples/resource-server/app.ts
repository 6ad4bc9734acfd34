// A small orders API protected by Portcullis tokens: the recipe in README.md.
import Koa from 'koa';
import { createTokenVerifier, requireToken, type ProtectOptions } from './protect.js';

export function createResourceServer(options: ProtectOptions): Koa {
  const verify = createTokenVerifier(options);
  const app = new Koa();
  const orders = [{ id: 1, item: 'Portcullis winch', quantity: 1 }];

  app.use(async (ctx, next) => {
    if (ctx.path === '/health') {
      ctx.body = { ok: true };
      return;
    }
    await next();
  });

  const routes: Record<string, Koa.Middleware[]> = {
    'GET /orders': [requireToken(verify, 'read:orders'), (ctx) => void (ctx.body = { orders, for: ctx.state.token.sub })],
    'POST /orders': [requireToken(verify, 'write:orders'), (ctx) => void ((ctx.status = 201), (ctx.body = { created: true }))],
  };
  app.use(async (ctx, next) => {
    const chain = routes[`${ctx.method} ${ctx.path}`];
    if (!chain) return next();
    const [guard, handler] = chain;
    await guard!(ctx, () => Promise.resolve(handler!(ctx, next)));
  });
  return app;
}
