// Back-channel logout for the sessions an operator ends with the CLI (`user
// revoke`, `set-password`, `disable`, `delete`, and `revoke --client` for one
// app). The server's sign-out page tells the apps through the library
// (provider/backchannel-logout.ts); the CLI ends sessions in the database,
// where no library runs, so it tells them itself, with the same logout token
// (OpenID Connect Back-Channel Logout 1.0 §2.4): signed with the key the
// server signs the app's ID tokens with, POSTed as the library POSTs it.
import { importJWK, SignJWT } from 'jose';
import { randomUUID } from 'node:crypto';
import type { Prisma } from '../persistence/database.js';
import type { SecretSealer } from '../keys/sealed-secrets.js';
import { loadSigningKeys } from '../keys/signing-keys.js';
import type { Subjects } from '../accounts/subjects.js';
import type { StoredMetadata } from './clients.js';

/** One app's part of a session that ended: the app is told the person (`sub`) and the session (`sid`). */
export interface SessionEnd {
  accountId: string;
  clientId: string;
  sid: string;
}

export interface LogoutDelivery {
  clientId: string;
  delivered: boolean;
  /** Why not, for one not delivered: the app's answer, or what stopped the request. */
  reason?: string;
}

const BACKCHANNEL_EVENT = 'http://schemas.openid.net/event/backchannel-logout';
/** How long the library waits for an app's answer (its fetch helper's): the CLI waits as long. */
export const LOGOUT_TIMEOUT_MS = 2500;
/** Logout tokens in flight at once from the CLI: a person with many sessions is not a burst of hundreds. */
const AT_ONCE = 8;
/** §2.4 recommends a lifetime of at most two minutes; the library's. */
const LIFETIME_SECONDS = 120;

/**
 * Tells each app of `ends` that registered a back-channel logout URI, and is
 * enabled (a disabled client is not found by the server either), one logout
 * token per ended session, eight at a time. Answers how each fared; apps
 * without a URI are not in the answer.
 */
export async function sendLogoutTokens(
  prisma: Prisma,
  sealer: SecretSealer,
  issuer: string,
  ends: SessionEnd[],
  subjects: () => Promise<Subjects>,
): Promise<LogoutDelivery[]> {
  const clientIds = [...new Set(ends.map((end) => end.clientId))];
  if (clientIds.length === 0) return [];
  const rows = await prisma.client.findMany({ where: { clientId: { in: clientIds }, disabledAt: null }, select: { clientId: true, metadata: true, pairwiseSector: true } });
  const told = new Map(
    rows
      .map((row) => [row.clientId, { metadata: row.metadata as unknown as StoredMetadata, sector: row.pairwiseSector ?? undefined }] as const)
      .filter(([, app]) => app.metadata.backchannel_logout_uri !== undefined),
  );
  const due = ends.filter((end) => told.has(end.clientId));
  if (due.length === 0) return [];
  // The server signs with the first key of an algorithm (see loadSigningKeys).
  let keys: Awaited<ReturnType<typeof loadSigningKeys>>;
  try {
    keys = await loadSigningKeys(prisma, sealer);
  } catch (error) {
    // (ENCRYPTION_KEYS not the server's, say.) What the command ended stays ended: the apps due are reported.
    const reason = `no logout token could be signed (${(error as Error).message})`;
    return due.map(({ clientId }) => ({ clientId, delivered: false, reason }));
  }
  const signers = new Map<string, Promise<{ kid?: string; key: Awaited<ReturnType<typeof importJWK>> } | undefined>>();
  const signerFor = (alg: string) => {
    if (!signers.has(alg)) {
      const jwk = keys.find((key) => key.alg === alg);
      signers.set(alg, jwk ? importJWK(jwk, alg).then((key) => ({ kid: jwk.kid, key })) : Promise.resolve(undefined));
    }
    return signers.get(alg)!;
  };
  const deliver = async ({ accountId, clientId, sid }: SessionEnd): Promise<LogoutDelivery> => {
    const { metadata, sector } = told.get(clientId)!;
    try {
      const alg = metadata.id_token_signed_response_alg ?? 'RS256';
      const signer = await signerFor(alg);
      if (!signer) return { clientId, delivered: false, reason: `no signing key for ${alg}` };
      // The person as the app knows them: its pairwise identifier, where it has them.
      const sub = sector === undefined ? accountId : (await subjects()).of(accountId, sector);
      const token = await new SignJWT({ events: { [BACKCHANNEL_EVENT]: {} }, sid })
        .setProtectedHeader({ alg, typ: 'logout+jwt', kid: signer.kid })
        .setIssuer(issuer)
        .setSubject(sub)
        .setAudience(clientId)
        .setIssuedAt()
        .setExpirationTime(`${LIFETIME_SECONDS}s`)
        .setJti(randomUUID())
        .sign(signer.key);
      const response = await fetch(metadata.backchannel_logout_uri!, {
        method: 'POST',
        redirect: 'manual',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ logout_token: token }),
        signal: AbortSignal.timeout(LOGOUT_TIMEOUT_MS),
      });
      await response.body?.cancel();
      // §2.8: 200 (or 204) is success; anything else, a redirect included, is not.
      if (response.status === 200 || response.status === 204) return { clientId, delivered: true };
      return { clientId, delivered: false, reason: `answered ${response.status}` };
    } catch (error) {
      return { clientId, delivered: false, reason: whyNotDelivered(error) };
    }
  };
  // AT_ONCE workers, each taking the next token when its last is answered:
  // an app that never answers holds up one worker, not a batch.
  const deliveries: LogoutDelivery[] = new Array(due.length);
  let next = 0;
  const worker = async () => {
    while (next < due.length) {
      const index = next++;
      deliveries[index] = await deliver(due[index]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(AT_ONCE, due.length) }, worker));
  return deliveries;
}

/**
 * Why a logout token was not delivered, for the operator, by the server and
 * the CLI alike: the app's answer, no answer in time, or what stopped the
 * request; never the address (its query may hold a secret).
 */
export function whyNotDelivered(error: unknown): string {
  const { name, message, cause, response } = (error ?? {}) as { name?: unknown; message?: unknown; cause?: { code?: unknown; message?: unknown }; response?: { status?: unknown } };
  if (name === 'TimeoutError') return `no answer within ${LOGOUT_TIMEOUT_MS / 1000} s`;
  // The library's own error for an answer other than 200 or 204 carries it.
  if (typeof response?.status === 'number') return `answered ${response.status}`;
  if (typeof cause?.code === 'string') return `${UNREACHED.has(cause.code) ? 'could not connect' : 'the request failed'} (${cause.code})`;
  // fetch's own "fetch failed" says why only in its cause ("bad port", say).
  const why = typeof cause?.message === 'string' ? `${String(message)} (${cause.message})` : String(message ?? error);
  return why.replace(/\b[a-z][a-z0-9+.-]*:\/\/\S*/gi, '(its address)');
}

/** Errors that mean no connection was made (others, such as ECONNRESET or a TLS error, came after one). */
const UNREACHED = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'EAI_AGAIN']);
