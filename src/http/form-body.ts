// application/x-www-form-urlencoded bodies for our own form posts (login,
// consent). Small and bounded: these forms carry a few short fields.
import type { IncomingMessage } from 'node:http';
import type { Context } from 'koa';

const LIMIT = 16 * 1024;

/**
 * Has a form posted to one of oidc-provider's endpoints, which the library
 * reads itself (through `req.iterator`) and checks against its
 * Content-Length, rewritten by `rewrite` before it reads it: held until
 * whole, at most `maxBytes` (past that, passed on as it comes, unread). A
 * form is percent-encoded ASCII; latin1 keeps any other byte as it was.
 * `rewrite` must keep the form's length.
 */
export function rewriteFormForTheLibrary(req: IncomingMessage, maxBytes: number, rewrite: (form: string) => string): void {
  const iterator = req.iterator.bind(req);
  req.iterator = (options) => rewritten(iterator(options), maxBytes, rewrite);
}

async function* rewritten(source: AsyncIterableIterator<unknown>, maxBytes: number, rewrite: (form: string) => string): AsyncGenerator<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  let asSent = false;
  for await (const chunk of source) {
    if (asSent) {
      yield chunk;
      continue;
    }
    chunks.push(chunk as Buffer);
    size += (chunk as Buffer).length;
    if (size > maxBytes) {
      asSent = true;
      yield* chunks;
    }
  }
  if (asSent) return;
  yield Buffer.from(rewrite(Buffer.concat(chunks).toString('latin1')), 'latin1');
}

export class BodyError extends Error {
  override name = 'BodyError';
}

/**
 * The largest form that holds three of the longest passwords (the account
 * page's new password form: the current one, the new one twice), 12 KiB each
 * form-encoded (accounts/password-policy.ts), and its few other fields.
 */
export const THREE_PASSWORDS_LIMIT = 40 * 1024;

/** The form posted, at most `limit` bytes (a BodyError past that). */
export async function readForm(ctx: Context, limit = LIMIT): Promise<Record<string, string>> {
  if (!ctx.is('application/x-www-form-urlencoded')) return {};
  // Refused before reading when announced: the connection then closes after the answer.
  if (Number(ctx.get('content-length')) > limit) throw new BodyError('request body too large');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new BodyError('request body too large');
    chunks.push(chunk as Buffer);
  }
  const params = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
  const form: Record<string, string> = {};
  for (const [key, value] of params) form[key] ??= value;
  return form;
}
