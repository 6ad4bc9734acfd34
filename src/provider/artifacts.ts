// Queries over stored provider artifacts that are ours rather than the
// adapter contract's: housekeeping and remembered consent.
import type { Prisma, Sql } from '../persistence/database.js';

/** Deletes expired rows (and sign-in failure counts whose window ended); run periodically by the server. */
export async function sweepExpired(prisma: Prisma): Promise<number> {
  const now = new Date();
  const [artifacts, failures] = await Promise.all([
    prisma.providerArtifact.deleteMany({ where: { expiresAt: { lt: now } } }),
    prisma.signInFailure.deleteMany({ where: { expiresAt: { lt: now } } }),
  ]);
  return artifacts.count + failures.count;
}

const GRANT_OF = {
  name: 'grant-of-account-client',
  text: `SELECT payload->>'jti' AS jti FROM provider_artifacts
         WHERE kind = 'Grant' AND account_id = $1 AND client_id = $2 AND (expires_at IS NULL OR expires_at > now())
         ORDER BY created_at DESC LIMIT 1`,
} as const;

/** The id of the grant a person gave a client, if any (remembered consent across sessions). */
export async function findGrantId(sql: Sql, accountId: string, clientId: string): Promise<string | undefined> {
  // On every authorization without a grant in the session: on the pg pool (see persistence/database.ts).
  const { rows } = await sql.query<{ jti: string | null }>(GRANT_OF, [accountId, clientId]);
  return rows[0]?.jti ?? undefined;
}
