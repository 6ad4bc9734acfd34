// The address a sign-in's failures are counted by (the sign-in throttle's
// per-address limit). With TRUST_PROXY it is the one the farthest trusted
// proxy appended to X-Forwarded-For (Koa's ctx.ip, with maxIpsCount); a
// request carrying fewer entries than TRUST_PROXY names came around the
// proxies, or through one that appends nothing, and its address is the
// connection's: behind such a proxy that is the proxy's own, the same for
// every person, and a hundred wrong guesses from anyone would shut out all
// of them. Nothing in the request tells the two apart, so it is said, once.
import type { Context } from 'koa';
import type { Logger } from '../logger.js';

export class ClientAddresses {
  #warned = false;

  constructor(
    private readonly trustProxy: number,
    private readonly logger: Logger,
  ) {}

  of(ctx: Context): string {
    if (this.trustProxy > 0 && !this.#warned) {
      const appended = ctx.get('x-forwarded-for').split(',').filter((entry) => entry.trim() !== '').length;
      if (appended < this.trustProxy) {
        this.#warned = true;
        this.logger.warn(
          `TRUST_PROXY is ${this.trustProxy}, but a sign-in came with ${appended} X-Forwarded-For address${appended === 1 ? '' : 'es'}: ` +
            "it is counted by its connection's address, which behind a proxy that does not append X-Forwarded-For is the proxy's, " +
            "shared by every person; make each proxy append it (nginx: proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for), " +
            'and let only the proxy reach this server (said once)',
        );
      }
    }
    return ctx.ip;
  }
}
