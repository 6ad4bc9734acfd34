// Keys that sign oidc-provider's cookies. From COOKIE_KEYS when set, otherwise
// generated once and kept in the database so every instance accepts the others' cookies.
import { randomBytes, randomUUID } from 'node:crypto';
import type { Prisma } from '../persistence/database.js';

export async function loadCookieKeys(prisma: Prisma, fromEnv?: string[]): Promise<string[]> {
  if (fromEnv?.length) return fromEnv;
  const existing = await prisma.cookieKey.findMany({ orderBy: { createdAt: 'desc' }, select: { secret: true } });
  if (existing.length) return existing.map((key) => key.secret);
  const secret = randomBytes(32).toString('base64url');
  await prisma.cookieKey.create({ data: { id: randomUUID(), secret } });
  // Two instances starting together may both create one; all verify, the newest signs.
  return (await prisma.cookieKey.findMany({ orderBy: { createdAt: 'desc' }, select: { secret: true } })).map((key) => key.secret);
}
