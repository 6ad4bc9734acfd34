// Signing keys live in the database so every instance serves the same JWKS.
// The newest key of each algorithm signs; rotated keys stay published until
// nothing they signed can still be valid (`publishUntil`).
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from 'jose';
import type { Prisma } from '../persistence/database.js';

export type SigningAlg = 'ES256' | 'EdDSA' | 'RS256';

export class KeyError extends Error {
  override name = 'KeyError';
}

export interface KeyInfo {
  kid: string;
  alg: string;
  createdAt: Date;
  /** `current` signs; `published` only verifies; `expired` can be retired. */
  status: 'current' | 'published' | 'expired';
  publishUntil: Date | null;
}

async function generate(alg: SigningAlg): Promise<{ kid: string; jwk: JWK }> {
  const { privateKey } = await generateKeyPair(alg, alg === 'RS256' ? { modulusLength: 2048, extractable: true } : { extractable: true });
  const jwk = await exportJWK(privateKey);
  const kid = await calculateJwkThumbprint(jwk);
  return { kid, jwk: { ...jwk, kid, alg, use: 'sig' } };
}

/**
 * Creates the first key of each algorithm we sign with if none is active.
 * RS256 is always available because some relying parties support nothing else.
 */
export async function ensureSigningKeys(prisma: Prisma, primaryAlg: 'ES256' | 'EdDSA'): Promise<void> {
  const active = await prisma.signingKey.findMany({ where: { rotatedAt: null }, select: { alg: true } });
  const missing = ([primaryAlg, 'RS256'] as SigningAlg[]).filter((alg) => !active.some((key) => key.alg === alg));
  for (const alg of missing) {
    const { kid, jwk } = await generate(alg);
    await prisma.signingKey.create({ data: { kid, alg, jwk: jwk as object } });
  }
}

/** Private JWKs to hand to oidc-provider: current keys first, so they are the ones chosen to sign. */
export async function loadSigningKeys(prisma: Prisma): Promise<JWK[]> {
  const rows = await prisma.signingKey.findMany({
    where: { OR: [{ publishUntil: null }, { publishUntil: { gt: new Date() } }] },
    orderBy: [{ rotatedAt: { sort: 'asc', nulls: 'first' } }, { createdAt: 'desc' }],
    select: { jwk: true },
  });
  return rows.map((row) => row.jwk as JWK);
}

/** A fingerprint of the published key set, so instances notice a rotation cheaply. */
export async function signingKeysVersion(prisma: Prisma): Promise<string> {
  const rows = await prisma.signingKey.findMany({
    select: { kid: true, rotatedAt: true, publishUntil: true },
    orderBy: { kid: 'asc' },
  });
  const now = Date.now();
  return rows
    .filter((row) => !row.publishUntil || row.publishUntil.getTime() > now)
    .map((row) => `${row.kid}:${row.rotatedAt ? 'r' : 'c'}`)
    .join(',');
}

/**
 * Makes a new key current for every algorithm in use. The previous keys stay
 * published for `keepPublishedFor` seconds: long enough for every instance to
 * pick up the new key and for everything the old one signed to expire.
 */
export async function rotateSigningKeys(prisma: Prisma, keepPublishedFor: number): Promise<KeyInfo[]> {
  const current = await prisma.signingKey.findMany({ where: { rotatedAt: null }, select: { kid: true, alg: true } });
  if (current.length === 0) throw new KeyError('there are no signing keys yet; start the server or run `portcullis migrate` first');
  const now = new Date();
  const publishUntil = new Date(now.getTime() + keepPublishedFor * 1000);
  const fresh = await Promise.all([...new Set(current.map((key) => key.alg))].map((alg) => generate(alg as SigningAlg)));
  await prisma.$transaction([
    prisma.signingKey.updateMany({ where: { kid: { in: current.map((key) => key.kid) } }, data: { rotatedAt: now, publishUntil } }),
    ...fresh.map(({ kid, jwk }) => prisma.signingKey.create({ data: { kid, alg: jwk.alg!, jwk: jwk as object } })),
  ]);
  return listSigningKeys(prisma);
}

export async function listSigningKeys(prisma: Prisma): Promise<KeyInfo[]> {
  const rows = await prisma.signingKey.findMany({
    orderBy: [{ rotatedAt: { sort: 'asc', nulls: 'first' } }, { createdAt: 'desc' }],
    select: { kid: true, alg: true, createdAt: true, rotatedAt: true, publishUntil: true },
  });
  const now = Date.now();
  return rows.map((row) => ({
    kid: row.kid,
    alg: row.alg,
    createdAt: row.createdAt,
    publishUntil: row.publishUntil,
    status: !row.rotatedAt ? 'current' : row.publishUntil && row.publishUntil.getTime() <= now ? 'expired' : 'published',
  }));
}

/** Deletes a rotated key, but only once nothing it signed can still be valid. */
export async function retireSigningKey(prisma: Prisma, kid: string): Promise<void> {
  const key = await prisma.signingKey.findUnique({ where: { kid }, select: { rotatedAt: true, publishUntil: true } });
  if (!key) throw new KeyError(`no signing key with kid ${kid}`);
  if (!key.rotatedAt) throw new KeyError(`key ${kid} is current; run \`portcullis keys rotate\` first`);
  if (key.publishUntil && key.publishUntil.getTime() > Date.now()) {
    throw new KeyError(
      `key ${kid} may still verify unexpired tokens until ${key.publishUntil.toISOString()}; retire it after that`,
    );
  }
  await prisma.signingKey.delete({ where: { kid } });
}

