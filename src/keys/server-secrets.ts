// Secrets made once, kept in the database sealed (see sealed-secrets.ts), and
// never rotated: unlike a cookie or signing key, what one derives must stay
// the same for good. The pairwise subject identifiers (accounts/subjects.ts)
// are what apps know their people by; a new secret would make everyone a
// stranger to them. An ENCRYPTION_KEYS change reseals the row, and leaves the
// secret as it was.
import { randomBytes } from 'node:crypto';
import type { Database } from '../persistence/database.js';
import { SealError, type SecretSealer } from './sealed-secrets.js';

/** What each secret is for; its name is its row's key. */
export type ServerSecretName = 'pairwise subjects';

const sealContext = (name: ServerSecretName) => `server secret ${name}`;

/**
 * The secret named `name`, 32 bytes, made on first use. One process at a
 * time (Database.exclusively): two instances making it at once would each
 * derive from its own. `reseal`: a server's start seals it again under a new
 * ENCRYPTION_KEYS' first key, as it does the other keys; a CLI command does
 * not (servers still on the old list could not open it at their next start).
 */
export async function loadServerSecret(database: Database, sealer: SecretSealer, name: ServerSecretName, reseal: boolean): Promise<Buffer> {
  const { prisma } = database;
  const stored = () => prisma.serverSecret.findUnique({ where: { name }, select: { secret: true } });
  let row = await stored();
  if (!row) {
    row = await database.exclusively(async () => {
      const now = await stored();
      if (now) return now;
      return prisma.serverSecret.create({ data: { name, secret: sealer.seal(randomBytes(32).toString('base64url'), sealContext(name)) }, select: { secret: true } });
    });
  }
  const secret = sealer.open(row.secret, sealContext(name));
  if (reseal && !sealer.isCurrent(row.secret)) {
    // Sealed under an encryption key that no longer seals: sealed again where it is, unless another instance just did.
    await prisma.serverSecret.updateMany({ where: { name, secret: row.secret }, data: { secret: sealer.seal(secret, sealContext(name)) } });
  }
  const bytes = Buffer.from(secret, 'base64url');
  if (bytes.length !== 32) throw new SealError(`${sealContext(name)} is not 32 bytes: the row was changed outside Portcullis`);
  return bytes;
}

/** Whether any server secret is stored (every one is sealed: the database then needs its encryption key). */
export async function holdsServerSecrets(prisma: Database['prisma']): Promise<boolean> {
  return (await prisma.serverSecret.count()) > 0;
}
