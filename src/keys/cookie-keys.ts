// Keys that sign oidc-provider's cookies. From COOKIE_KEYS when set, otherwise
// generated once and kept in the database, sealed (see sealed-secrets.ts), so
// every instance accepts the others' cookies.
import { randomBytes, randomUUID } from 'node:crypto';
import type { Database } from '../persistence/database.js';
import { SecretSealer } from './sealed-secrets.js';

const sealContext = (id: string) => `cookie key ${id}`;

/**
 * The cookie keys, made if none are stored yet. One process at a time
 * (Database.exclusively): two instances making the first key at once would
 * each keep only the key it read back, and refuse the other's cookies.
 */
export async function loadCookieKeys(database: Database, sealer: SecretSealer, fromEnv?: string[]): Promise<string[]> {
  if (fromEnv?.length) return fromEnv;
  return database.exclusively(() => loadStored(database.prisma, sealer));
}

async function loadStored(prisma: Database['prisma'], sealer: SecretSealer): Promise<string[]> {
  const stored = () => prisma.cookieKey.findMany({ orderBy: { createdAt: 'desc' }, select: { id: true, secret: true } });
  let rows = await stored();
  if (rows.length === 0) {
    const id = randomUUID();
    await prisma.cookieKey.create({ data: { id, secret: sealer.seal(randomBytes(32).toString('base64url'), sealContext(id)) } });
    rows = await stored();
  }
  return Promise.all(
    rows.map(async ({ id, secret: stored }) => {
      const sealed = SecretSealer.isSealed(stored);
      const secret = sealed ? sealer.open(stored, sealContext(id)) : stored;
      if (!sealed || !sealer.isCurrent(stored)) {
        // In the plain (an earlier version) or under an encryption key that no longer
        // seals: sealed again where it is, unless another instance just did.
        await prisma.cookieKey.updateMany({ where: { id, secret: stored }, data: { secret: sealer.seal(secret, sealContext(id)) } });
      }
      return secret;
    }),
  );
}
