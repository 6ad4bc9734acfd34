// Queries over stored provider artifacts that are ours rather than the
// adapter contract's: housekeeping and remembered consent.
import type { Prisma, Sql } from '../persistence/database.js';
import { sha256 } from '../persistence/hash.js';
import { keepGrant, type GrantRow } from './adapter.js';

/** The tables a sweep deletes expired rows from. */
export const SWEPT_TABLES = ['provider_artifacts', 'sign_in_failures'] as const;
export type SweptTable = (typeof SWEPT_TABLES)[number];

/**
 * Deletes expired rows (and sign-in failure counts whose window ended); run
 * periodically by the server. Each batch deleted is told to `deleted` once
 * committed: a sweep that fails partway has still deleted those.
 */
export async function sweepExpired(prisma: Prisma, deleted: (table: SweptTable, rows: number) => void): Promise<void> {
  for (const table of SWEPT_TABLES) await deleteExpired(prisma, table, deleted);
}

const SWEEP_BATCH = 5000;

/**
 * In batches, each a short statement: one DELETE of a large backlog (after
 * downtime, say) would outlast the server's statement_timeout (see
 * persistence/database.ts), be cancelled and never get through it.
 * Rows another transaction holds are left for a later sweep (SKIP LOCKED):
 * another instance's sweep taking the same batch, or a request on a row
 * just expiring, would otherwise hold this statement, and every row it
 * deleted, until it ends.
 */
async function deleteExpired(prisma: Prisma, table: SweptTable, told: (table: SweptTable, rows: number) => void): Promise<void> {
  for (;;) {
    const deleted = await prisma.$executeRawUnsafe(
      `DELETE FROM ${table} WHERE ctid = ANY (ARRAY(SELECT ctid FROM ${table} WHERE expires_at < now() LIMIT ${SWEEP_BATCH} FOR UPDATE SKIP LOCKED))`,
    );
    told(table, deleted);
    if (deleted < SWEEP_BATCH) return;
  }
}

const DROP_UNUSED_GRANT = {
  name: 'grant-drop-unused',
  text: `DELETE FROM provider_artifacts WHERE kind = 'Grant' AND id = $1
         AND NOT EXISTS (SELECT 1 FROM provider_artifacts WHERE grant_id = $2)`,
} as const;

/**
 * Deletes the grant `grantId` if nothing was issued under it (no code or
 * token names it), in one statement: a consent withdrawn before it was used
 * (POST /abort).
 */
export async function dropUnusedGrant(sql: Sql, grantId: string): Promise<void> {
  await sql.query(DROP_UNUSED_GRANT, [sha256(grantId), grantId]);
}

const GRANT_OF = {
  name: 'grant-of-account-client',
  text: `SELECT payload->>'jti' AS jti, payload, expires_at, consumed_at FROM provider_artifacts
         WHERE kind = 'Grant' AND account_id = $1 AND client_id = $2 AND (expires_at IS NULL OR expires_at > now())
           AND consumed_at IS NULL
         ORDER BY created_at DESC LIMIT 1`,
} as const;

/**
 * The id of the grant a person gave a client, if any (remembered consent
 * across sessions), but one withdrawn at a sign-out (SQL.withdrawConsent in
 * adapter.ts: the sign-ins that hold it keep it). The grant itself is kept
 * for the Grant lookup the provider makes next in the same request (see
 * request-scope.ts), which then needs no statement of its own.
 */
export async function findGrantId(sql: Sql, accountId: string, clientId: string): Promise<string | undefined> {
  // On every authorization without a grant in the session: on the pg pool (see persistence/database.ts).
  const { rows } = await sql.query<{ jti: string | null } & GrantRow>(GRANT_OF, [accountId, clientId]);
  const row = rows[0];
  if (!row?.jti) return undefined;
  keepGrant(row.jti, row);
  return row.jti;
}
