// Queries over stored provider artifacts that are ours rather than the
// adapter contract's: housekeeping and remembered consent.
import type { Prisma } from '../persistence/database.js';

/** Deletes expired rows; run periodically by the server. */
export async function sweepExpired(prisma: Prisma): Promise<number> {
  const { count } = await prisma.providerArtifact.deleteMany({ where: { expiresAt: { lt: new Date() } } });
  return count;
}

/** The id of the grant a person gave a client, if any (remembered consent across sessions). */
export async function findGrantId(prisma: Prisma, accountId: string, clientId: string): Promise<string | undefined> {
  const row = await prisma.providerArtifact.findFirst({
    where: { kind: 'Grant', accountId, clientId, OR: [{ expiresAt: null }, { expiresAt: { gt: new Date() } }] },
    orderBy: { createdAt: 'desc' },
    select: { payload: true },
  });
  return (row?.payload as { jti?: string } | undefined)?.jti;
}
