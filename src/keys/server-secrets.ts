// Secrets made once, kept in the database sealed (see sealed-secrets.ts), and
// never rotated: unlike a cookie or signing key, what one derives must stay
// the same for good. The pairwise subject identifiers (accounts/subjects.ts)
// are what apps know their people by; a new secret would make everyone a
// stranger to them. People's TOTP keys (accounts/second-factors.ts) are
// sealed under one: read at every sign-in, they cannot be resealed while
// instances still on the old ENCRYPTION_KEYS run, which hold this secret
// open since their start. An ENCRYPTION_KEYS change reseals the row, and
// leaves the secret as it was.
import { randomBytes } from 'node:crypto';
import type { Database } from '../persistence/database.js';
import { SealError, type SecretSealer } from './sealed-secrets.js';

/** What each secret is for; its name is its row's key. */
export type ServerSecretName = 'pairwise subjects' | 'totp keys';

const sealContext = (name: ServerSecretName) => `server secret ${name}`;
/** How errors name it: where it is. */
const described = (name: ServerSecretName) => `the server secret '${name}' (table server_secrets)`;

/**
 * What has used each secret: made again while any of it exists, it would
 * derive something else for them (every pairwise sub, for the clients that
 * have them).
 */
const USERS_OF: Record<ServerSecretName, { count: (prisma: Database['prisma']) => Promise<number>; what: string; lost: string }> = {
  'pairwise subjects': {
    count: (prisma) => prisma.client.count({ where: { pairwiseSector: { not: null } } }),
    what: 'client(s) with pairwise identifiers',
    lost: 'a new secret would give every person another sub at those apps',
  },
  'totp keys': {
    count: (prisma) => prisma.totpSecret.count(),
    what: "people's TOTP key(s)",
    lost: 'a new secret would open none of them, and each of those people would need `portcullis user reset-totp`',
  },
};

/**
 * The secret named `name`, 32 bytes, made on first use: at most one row, two
 * processes making it at once keep the first one's. Never made again where
 * it was lost while something used it (a restore that left the table out):
 * that stops the start or the command, as a missing encryption key does.
 * `reseal`: a server's start seals it again under a new ENCRYPTION_KEYS'
 * first key, as it does the other keys; a CLI command does not (servers
 * still on the old list could not open it at their next start).
 */
export async function loadServerSecret(database: Database, sealer: SecretSealer, name: ServerSecretName, reseal: boolean): Promise<Buffer> {
  const { prisma } = database;
  const stored = () => prisma.serverSecret.findUnique({ where: { name }, select: { secret: true } });
  let row = await stored();
  if (!row) {
    const users = await USERS_OF[name].count(prisma);
    if (users > 0) {
      throw new SealError(
        `the database holds ${users} ${USERS_OF[name].what} but not ${described(name)}, which they are made from: ` +
          `restore that row from a backup of this database; ${USERS_OF[name].lost}`,
      );
    }
    await prisma.serverSecret.createMany({ data: [{ name, secret: sealer.seal(randomBytes(32).toString('base64url'), sealContext(name)) }], skipDuplicates: true });
    row = await stored();
    if (!row) throw new SealError(`${described(name)} was made but is not there`);
  }
  const secret = sealer.open(row.secret, sealContext(name));
  if (reseal && !sealer.isCurrent(row.secret)) {
    // Sealed under an encryption key that no longer seals: sealed again where it is, unless another instance just did.
    await prisma.serverSecret.updateMany({ where: { name, secret: row.secret }, data: { secret: sealer.seal(secret, sealContext(name)) } });
  }
  const bytes = Buffer.from(secret, 'base64url');
  if (bytes.length !== 32) throw new SealError(`${described(name)} is not 32 bytes: the row was changed outside Portcullis`);
  return bytes;
}

/** Whether any server secret is stored (every one is sealed: the database then needs its encryption key). */
export async function holdsServerSecrets(prisma: Database['prisma']): Promise<boolean> {
  return (await prisma.serverSecret.count()) > 0;
}
