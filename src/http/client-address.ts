// The address a sign-in's failures are counted by (the sign-in throttle's
// per-address limit). With TRUST_PROXY it is the one the farthest trusted
// proxy appended to X-Forwarded-For (Koa's ctx.ip, with maxIpsCount). A
// request carrying fewer entries than TRUST_PROXY names came around the
// proxies, or through one that appends nothing: it is counted by the first
// entry, which the client may have written, or with none by the
// connection's address, which behind such a proxy is the proxy's own, the
// same for every person (a hundred wrong guesses from anyone would shut out
// all of them). Nothing in the request tells the two apart: said, once.
import type { Context } from 'koa';
import type { Logger } from '../logger.js';
import { requestField } from './request-id.js';

export class ClientAddresses {
  #warned = false;

  constructor(
    private readonly trustProxy: number,
    private readonly logger: Logger,
  ) {}

  of(ctx: Context): string {
    if (this.trustProxy > 0 && !this.#warned) {
      // As Koa reads it for ctx.ip: the header's entries, the last TRUST_PROXY of them.
      const entries = ctx.ips;
      if (entries.length < this.trustProxy || !entries[0]) {
        this.#warned = true;
        this.logger.warn(
          `TRUST_PROXY is ${this.trustProxy}, but a sign-in came with ${entries.filter(Boolean).length} of the X-Forwarded-For addresses it expects: ` +
            "it is counted by the first address there, which the client may have written itself, or by the connection's when there is none, " +
            "which behind a proxy that appends none is the proxy's, shared by every person; make each proxy append it " +
            '(nginx: proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for), and let only the proxy reach this server (said once)',
          requestField(ctx),
        );
      }
    }
    return ctx.ip;
  }
}
