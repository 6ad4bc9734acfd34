// Koa composition: security headers and request logging first, then our
// interaction pages, then everything else to oidc-provider.
import { randomUUID } from 'node:crypto';
import Koa from 'koa';
import type { Accounts } from './accounts/accounts.js';
import type { Apis } from './apis/apis.js';
import type { Config } from './config.js';
import { securityHeaders } from './http/security-headers.js';
import { interactionRoutes } from './interactions/routes.js';
import type { Logger } from './logger.js';
import type { ProviderHost } from './provider/host.js';

export interface AppDeps {
  config: Config;
  host: ProviderHost;
  accounts: Accounts;
  apis: Apis;
  logger: Logger;
}

export function createApp(deps: AppDeps): Koa {
  const { config, host, logger } = deps;
  const app = new Koa({ proxy: config.trustProxy });
  // Errors are rendered where they happen; anything reaching Koa's handler is logged once here.
  app.silent = true;
  app.on('error', (error: Error) => logger.error('unhandled', { error: error.stack ?? String(error) }));

  app.use(async (ctx, next) => {
    const started = performance.now();
    const requestId = randomUUID();
    ctx.set('X-Request-Id', requestId);
    try {
      await next();
    } finally {
      // Path only: query strings and bodies may carry codes and tokens.
      logger.debug('request', {
        id: requestId,
        method: ctx.method,
        path: ctx.path,
        status: ctx.status,
        ms: Math.round(performance.now() - started),
      });
    }
  });
  app.use(securityHeaders);

  // Only /interaction/* is ours; token traffic (most requests) skips the
  // router's matching altogether on its way to the provider.
  const interactions = interactionRoutes(deps);
  // (@koa/router's context types do not line up with Koa's plain Middleware.)
  const routes = interactions.routes() as unknown as Koa.Middleware;
  const allowedMethods = interactions.allowedMethods() as unknown as Koa.Middleware;
  app.use((ctx, next) => (ctx.path.startsWith('/interaction/') ? routes(ctx, () => allowedMethods(ctx, next)) : next()));

  // Delegate to whichever provider instance is current (see ProviderHost).
  const callbacks = new WeakMap<object, ReturnType<Koa['callback']>>();
  app.use(async (ctx) => {
    const provider = host.current;
    let callback = callbacks.get(provider);
    if (!callback) {
      callback = provider.callback();
      callbacks.set(provider, callback);
    }
    ctx.respond = false;
    await callback(ctx.req, ctx.res);
  });
  return app;
}
