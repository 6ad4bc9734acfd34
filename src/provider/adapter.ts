// Prisma adapter for every model oidc-provider stores, after the contract of its
// lib/adapters/memory_adapter.js. Rows are keyed by (kind, SHA-256 of the id).
import type { Adapter, AdapterPayload } from 'oidc-provider';
import { errors } from 'oidc-provider';
import type { Prisma } from '../persistence/database.js';
import { sha256 } from '../persistence/hash.js';

/** Models whose rows belong to a grant and go when it is revoked. */
const GRANT_BOUND = [
  'AccessToken',
  'AuthorizationCode',
  'RefreshToken',
  'DeviceCode',
  'BackchannelAuthenticationRequest',
  'PreAuthorizedCode',
];

/** Models whose single use must be enforced atomically (RFC 6749 §4.1.2, §10.5; RFC 9700 §4.14.2). */
const SINGLE_USE = new Set(['AuthorizationCode', 'RefreshToken', 'DeviceCode', 'BackchannelAuthenticationRequest']);

interface ArtifactRow {
  payload: unknown;
  expiresAt: Date | null;
  consumedAt: Date | null;
}

export class ArtifactAdapter implements Adapter {
  // revokeByGrantId is called once per grant-bound model, concurrently; the
  // first call deletes them all in one statement and the others share it.
  private static readonly revocations = new Map<string, Promise<void>>();

  constructor(
    private readonly kind: string,
    private readonly prisma: Prisma,
  ) {}

  async upsert(id: string, payload: AdapterPayload, expiresIn: number): Promise<void> {
    const key = sha256(id);
    const expiresAt = expiresIn ? new Date(Date.now() + expiresIn * 1000) : null;
    // The payload repeats the id as `jti`: drop it, find() puts it back. Grant
    // ids stay, as tokens' payloads name their grant anyway and a grant id
    // alone authorizes nothing.
    const { jti, ...rest } = payload;
    const json = JSON.stringify(this.kind === 'Grant' ? payload : rest);
    void jti;
    const grantId = payload.grantId ?? null;
    const uid = payload.uid ?? null;
    const userCode = payload.userCode ?? null;
    const accountId = this.kind === 'Grant' ? (payload.accountId ?? null) : null;
    const clientId = this.kind === 'Grant' ? (payload.clientId ?? null) : null;
    await this.prisma.$executeRaw`
      INSERT INTO provider_artifacts (kind, id, payload, grant_id, uid, user_code, account_id, client_id, expires_at)
      VALUES (${this.kind}, ${key}, ${json}::jsonb, ${grantId}, ${uid}, ${userCode}, ${accountId}, ${clientId}, ${expiresAt})
      ON CONFLICT (kind, id) DO UPDATE SET
        payload = EXCLUDED.payload, grant_id = EXCLUDED.grant_id, uid = EXCLUDED.uid,
        user_code = EXCLUDED.user_code, account_id = EXCLUDED.account_id,
        client_id = EXCLUDED.client_id, expires_at = EXCLUDED.expires_at`;
  }

  async find(id: string): Promise<AdapterPayload | undefined> {
    const row = await this.prisma.providerArtifact.findUnique({
      where: { kind_id: { kind: this.kind, id: sha256(id) } },
      select: { payload: true, expiresAt: true, consumedAt: true },
    });
    const payload = toPayload(row);
    return payload && { ...payload, jti: id };
  }

  // Found by uid, a Session comes back without its id (the cookie value, kept
  // only hashed); the provider only reads such sessions, never saves them.
  async findByUid(uid: string): Promise<AdapterPayload | undefined> {
    const row = await this.prisma.providerArtifact.findFirst({
      where: { kind: this.kind, uid },
      select: { payload: true, expiresAt: true, consumedAt: true },
    });
    return toPayload(row);
  }

  async findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
    const row = await this.prisma.providerArtifact.findFirst({
      where: { kind: this.kind, userCode },
      select: { payload: true, expiresAt: true, consumedAt: true },
    });
    return toPayload(row);
  }

  async consume(id: string): Promise<void> {
    const key = sha256(id);
    const claimed = await this.prisma.$executeRaw`
      UPDATE provider_artifacts SET consumed_at = now()
      WHERE kind = ${this.kind} AND id = ${key} AND consumed_at IS NULL`;
    if (claimed === 0 && SINGLE_USE.has(this.kind)) {
      // Another request consumed it between the provider's check and this
      // write: a replay. Treat it as the provider treats a detected reuse —
      // revoke everything issued under the grant — and fail this request.
      const row = await this.prisma.providerArtifact.findUnique({
        where: { kind_id: { kind: this.kind, id: key } },
        select: { grantId: true },
      });
      if (row?.grantId) await this.revokeByGrantId(row.grantId);
      throw new errors.InvalidGrant('grant request is invalid');
    }
  }

  async destroy(id: string): Promise<void> {
    await this.prisma.providerArtifact.deleteMany({ where: { kind: this.kind, id: sha256(id) } });
  }

  revokeByGrantId(grantId: string): Promise<void> {
    const pending = ArtifactAdapter.revocations.get(grantId);
    if (pending) return pending;
    const revocation = this.prisma.providerArtifact
      .deleteMany({ where: { grantId, kind: { in: GRANT_BOUND } } })
      .then(() => undefined)
      .finally(() => ArtifactAdapter.revocations.delete(grantId));
    ArtifactAdapter.revocations.set(grantId, revocation);
    return revocation;
  }
}

function toPayload(row: ArtifactRow | null): AdapterPayload | undefined {
  if (!row) return undefined;
  // Expired rows may linger until the sweeper runs; they must not be found.
  if (row.expiresAt && row.expiresAt.getTime() <= Date.now()) return undefined;
  const payload = row.payload as AdapterPayload;
  return row.consumedAt ? { ...payload, consumed: Math.floor(row.consumedAt.getTime() / 1000) } : payload;
}

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
