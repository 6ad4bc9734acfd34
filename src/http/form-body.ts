// application/x-www-form-urlencoded bodies for our own form posts (login,
// consent). Small and bounded: these forms carry a few short fields.
import type { Context } from 'koa';

const LIMIT = 16 * 1024;

export class BodyError extends Error {
  override name = 'BodyError';
}

export async function readForm(ctx: Context): Promise<Record<string, string>> {
  if (!ctx.is('application/x-www-form-urlencoded')) return {};
  // Refused before reading when announced: the connection then closes after the answer.
  if (Number(ctx.get('content-length')) > LIMIT) throw new BodyError('request body too large');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req) {
    size += (chunk as Buffer).length;
    if (size > LIMIT) throw new BodyError('request body too large');
    chunks.push(chunk as Buffer);
  }
  const params = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
  const form: Record<string, string> = {};
  for (const [key, value] of params) form[key] ??= value;
  return form;
}
