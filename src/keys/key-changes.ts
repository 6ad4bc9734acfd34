// Instances reload their signing keys every KEY_REFRESH_INTERVAL; on PostgreSQL
// whoever changes the key set (keys rotate, keys retire) also announces it on
// this channel, in the same transaction, so that running servers reload at
// once: a key retired as compromised stops signing and leaves the JWKS within
// moments, not a refresh interval later.
import type { Prisma } from '../persistence/database.js';

export const SIGNING_KEY_CHANGES_CHANNEL = 'portcullis_signing_key_changes';

/** A statement announcing a change to the signing keys; run it inside the changing transaction. */
export function announceSigningKeyChange(prisma: Prisma) {
  return prisma.$executeRaw`SELECT pg_notify(${SIGNING_KEY_CHANGES_CHANNEL}, '')`;
}
