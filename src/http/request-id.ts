import { randomUUID } from 'node:crypto';
import type Koa from 'koa';

/**
 * What an id from a proxy may look like: nginx's `$request_id` (32 hex
 * digits), a UUID, a load balancer's or a tracer's id. Nothing that could
 * break a JSON log line apart or pass for another field; a longer or stranger
 * one is replaced by our own.
 */
const FROM_PROXY = /^[A-Za-z0-9._:@+=/-]{1,128}$/;

/**
 * Names the request: by the `X-Request-Id` a trusted proxy sent (TRUST_PROXY,
 * as for X-Forwarded-For: a client reaching us directly does not choose how
 * its request is named in our log), so that a line here is matched with the
 * proxy's, or else by an id of our own. Echoed in the response, where a
 * client reporting a failure finds it.
 */
export function nameRequest(ctx: Koa.Context, trustProxy: boolean): string {
  const sent = trustProxy ? ctx.req.headers['x-request-id'] : undefined;
  const id = typeof sent === 'string' && FROM_PROXY.test(sent) ? sent : randomUUID();
  ctx.state.requestId = id;
  ctx.res.setHeader('X-Request-Id', id);
  return id;
}

/** The field that ties a log line to its request (and to the response's X-Request-Id). */
export function requestField(ctx: { state?: { requestId?: unknown } } | undefined): { request?: string } {
  const id = ctx?.state?.requestId;
  return typeof id === 'string' ? { request: id } : {};
}

/**
 * The short reference of a server error, shown on its page for a person to
 * quote, and logged with the error. One per request, whichever comes first:
 * the library emits its server_error before it renders the page on the
 * authorization endpoint, after it elsewhere.
 */
export function errorReference(ctx: { state: { errorReference?: unknown } }): string {
  if (typeof ctx.state.errorReference !== 'string') ctx.state.errorReference = randomUUID().slice(0, 8);
  return ctx.state.errorReference as string;
}
