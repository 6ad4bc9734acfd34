// A small orders API protected by Portcullis tokens: the recipe in README.md.
import Koa from 'koa';
import { createTokenVerifier, requireToken, type ProtectOptions } from './protect.js';

export interface ResourceServerOptions extends ProtectOptions {
  /**
   * Origins of browser apps (single-page apps, public clients) allowed to call
   * this API (CORS), e.g. `https://app.example.com`. None by default.
   */
  allowedOrigins?: string[];
}

export function createResourceServer(options: ResourceServerOptions): Koa {
  const verify = createTokenVerifier(options);
  const app = new Koa();
  const orders = [{ id: 1, item: 'Portcullis winch', quantity: 1 }];
  const allowedOrigins = new Set((options.allowedOrigins ?? []).map(originOf));

  // CORS for the allowed origins: the preflight a token in Authorization (or
  // a DPoP proof) sets off, and the headers a browser app may read, the
  // challenge that says why a token was refused among them.
  app.use(async (ctx, next) => {
    ctx.vary('Origin');
    const origin = ctx.get('origin');
    const allowed = allowedOrigins.has(origin);
    if (allowed) {
      ctx.set('Access-Control-Allow-Origin', origin);
      ctx.set('Access-Control-Expose-Headers', 'WWW-Authenticate, Retry-After');
    }
    if (ctx.method === 'OPTIONS' && ctx.get('access-control-request-method')) {
      ctx.status = 204;
      if (allowed) {
        ctx.set('Access-Control-Allow-Methods', 'GET, POST');
        ctx.set('Access-Control-Allow-Headers', 'Authorization, DPoP, Content-Type');
        ctx.set('Access-Control-Max-Age', '600');
      }
      return;
    }
    await next();
  });

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

/** An allowed origin as browsers send it (`https://app.example.com`, no path or trailing slash). */
function originOf(value: string): string {
  const url = URL.canParse(value) ? new URL(value) : undefined;
  if (!url || !/^https?:$/.test(url.protocol) || url.pathname !== '/' || url.search || url.hash || url.username || url.password) {
    throw new Error(`allowed origin "${value}" is not an origin such as https://app.example.com`);
  }
  return url.origin;
}
