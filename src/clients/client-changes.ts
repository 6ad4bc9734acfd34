// Instances cache registered clients (persistence/notified-cache.ts); whoever
// changes or deletes one announces it on this channel, in the same transaction.
import type { Prisma } from '../persistence/database.js';

export const CLIENT_CHANGES_CHANNEL = 'portcullis_client_changes';

/**
 * A statement announcing a change to `clientId`; run it inside the changing
 * transaction. Only for the id of a client found: PostgreSQL refuses a payload
 * of 8000 bytes or more, and an id typed by an operator may be any length.
 */
export function announceClientChange(prisma: Prisma, clientId: string) {
  return prisma.$executeRaw`SELECT pg_notify(${CLIENT_CHANGES_CHANNEL}, ${clientId})`;
}
