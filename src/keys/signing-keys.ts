// Signing keys live in the database so every instance serves the same JWKS.
// The newest key of each algorithm signs; rotated keys stay published until
// nothing they signed can still be valid (`publishUntil`). A row holds the
// public JWK in the plain and the private one sealed (see sealed-secrets.ts).
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from 'jose';
import type { Config } from '../config.js';
import { announceSigningKeyChange, SIGNING_KEY_CHANGES_CHANNEL } from './key-changes.js';
import type { Database, Prisma } from '../persistence/database.js';
import type { SecretSealer } from './sealed-secrets.js';
import { databaseNow } from '../persistence/clock-skew.js';

/** The algorithms of our signing keys (ID tokens, JWT access tokens, signed responses): asymmetric, every one. */
export const SIGNING_ALGS = ['ES256', 'EdDSA', 'RS256'] as const;
export type SigningAlg = (typeof SIGNING_ALGS)[number];

export class KeyError extends Error {
  override name = 'KeyError';
}

export interface KeyInfo {
  kid: string;
  alg: string;
  createdAt: Date;
  /** `next` is published and will sign; `current` signs; `published` only verifies; `expired` can be retired. */
  status: 'next' | 'current' | 'published' | 'expired';
  activatesAt: Date;
  publishUntil: Date | null;
  /** Replaced while it waited to sign (`keys rotate --now`): it signed nothing, and may be retired at once. */
  signedNothing: boolean;
}

// The members of a JWK that are private (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2).
const PRIVATE_MEMBERS = new Set(['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k']);

/** A key's public JWK: what verifies its signatures, as /jwks publishes it. */
export const publicPart = (jwk: JWK): JWK => Object.fromEntries(Object.entries(jwk).filter(([name]) => !PRIVATE_MEMBERS.has(name))) as JWK;
const sealContext = (kid: string) => `signing key ${kid}`;

/** A new key pair as the row to store: the public JWK, and the private one sealed. */
async function generate(alg: SigningAlg, sealer: SecretSealer): Promise<{ kid: string; alg: SigningAlg; jwk: object; privateJwk: string }> {
  const { privateKey } = await generateKeyPair(alg, alg === 'RS256' ? { modulusLength: 2048, extractable: true } : { extractable: true });
  const exported = await exportJWK(privateKey);
  const kid = await calculateJwkThumbprint(exported);
  const jwk: JWK = { ...exported, kid, alg, use: 'sig' };
  return { kid, alg, jwk: publicPart(jwk), privateJwk: sealer.seal(JSON.stringify(jwk), sealContext(kid)) };
}

/**
 * Seals keys stored in the plain by earlier versions, or under an encryption
 * key that no longer seals, then creates the first key of each algorithm we
 * sign with if none is active. RS256 is always available because some relying
 * parties support nothing else.
 *
 * `byCli`: keys are made only when there are none at all, so that the CLI
 * works before the server's first start; beside a server's keys it adds none.
 * Run with another SIGNING_ALG than the server's, it would otherwise add a key
 * of an algorithm the server never signs with. Nor does the CLI seal stored
 * keys again: only a server's start does (README, Keys). A command run to try
 * a new ENCRYPTION_KEYS list, `keys list` say, would otherwise reseal every
 * key under a key no running server has, and none of them could start again.
 */
export async function ensureSigningKeys(
  prisma: Prisma,
  sealer: SecretSealer,
  primaryAlg: SigningAlg,
  { byCli = false }: { byCli?: boolean } = {},
): Promise<void> {
  const stored = await prisma.signingKey.findMany({ select: { kid: true, jwk: true, privateJwk: true } });
  for (const row of stored) {
    // Every start opens every key: a wrong ENCRYPTION_KEYS stops the server or
    // CLI here, before it adds keys sealed under another key than the rest.
    const jwk = openPrivateJwk(row, sealer);
    if (byCli || (row.privateJwk && sealer.isCurrent(row.privateJwk))) continue;
    // In the plain (an earlier version) or sealed with a key that no longer
    // seals (ENCRYPTION_KEYS rotated): sealed again with the current one, so
    // the old key can be dropped after one start. The old value in the filter:
    // of two instances doing this at once, the second changes nothing.
    await prisma.signingKey.updateMany({
      where: { kid: row.kid, privateJwk: row.privateJwk },
      data: { jwk: publicPart(jwk) as object, privateJwk: sealer.seal(JSON.stringify(jwk), sealContext(row.kid)) },
    });
  }
  if (byCli && stored.length > 0) return;
  const active = await prisma.signingKey.findMany({ where: { rotatedAt: null }, select: { alg: true } });
  const missing = [...new Set<SigningAlg>([primaryAlg, 'RS256'])].filter((alg) => !active.some((key) => key.alg === alg));
  for (const alg of missing) await prisma.signingKey.create({ data: await generate(alg, sealer) });
}

interface KeyTimes {
  kid: string;
  activatesAt: Date;
  rotatedAt: Date | null;
  publishUntil: Date | null;
}

const isPublished = (key: KeyTimes, now: number) => !key.publishUntil || key.publishUntil.getTime() > now;

/**
 * A key signs from its activation until it is rotated out. One rotated out
 * before it activated (an immediate rotation while a rotation waited) never
 * signs: it is only published.
 */
function statusOf(key: KeyTimes, now: number): KeyInfo['status'] {
  const signsFrom = key.activatesAt.getTime();
  const signsUntil = key.rotatedAt?.getTime() ?? Infinity;
  if (now < signsFrom && signsUntil > signsFrom) return 'next';
  if (now >= signsFrom && now < signsUntil) return 'current';
  return isPublished(key, now) ? 'published' : 'expired';
}

/** Rotated out before its activation: it never signed. */
const signedNothing = (key: KeyTimes) => key.rotatedAt !== null && key.rotatedAt.getTime() <= key.activatesAt.getTime();

/**
 * Private JWKs to hand to oidc-provider, which signs with the first key of an
 * algorithm: current keys first, newest first; then the keys that only verify
 * (rotated out, or not active yet: published so that resource servers learn
 * them before they sign anything).
 */
export async function loadSigningKeys(prisma: Prisma, sealer: SecretSealer): Promise<JWK[]> {
  const rows = await prisma.signingKey.findMany({
    select: { kid: true, jwk: true, privateJwk: true, activatesAt: true, rotatedAt: true, publishUntil: true },
  });
  const now = Date.now();
  return rows
    .filter((row) => isPublished(row, now))
    .sort((a, b) => rank(a, now) - rank(b, now) || b.activatesAt.getTime() - a.activatesAt.getTime())
    .map((row) => openPrivateJwk(row, sealer));
}

const rank = (key: KeyTimes, now: number) => (statusOf(key, now) === 'current' ? 0 : 1);

/**
 * A row's private JWK. During a rolling upgrade an older server may still
 * write a key in the plain; it is used as it is, and the next start seals it.
 */
function openPrivateJwk(row: { kid: string; jwk?: unknown; privateJwk: string | null }, sealer: SecretSealer): JWK {
  if (row.privateJwk) return JSON.parse(sealer.open(row.privateJwk, sealContext(row.kid))) as JWK;
  const plain = row.jwk as JWK | undefined;
  if (!plain?.d) throw new KeyError(`signing key ${row.kid} has no private key`);
  return plain;
}

/** A fingerprint of which keys are published and which sign now, so instances notice a change cheaply. */
export async function signingKeysVersion(prisma: Prisma): Promise<string> {
  const rows = await prisma.signingKey.findMany({
    select: { kid: true, activatesAt: true, rotatedAt: true, publishUntil: true },
    orderBy: { kid: 'asc' },
  });
  const now = Date.now();
  return rows
    .filter((row) => isPublished(row, now))
    .map((row) => `${row.kid}:${statusOf(row, now)}`)
    .join(',');
}

/**
 * Adds a new key for every algorithm in use, published at once and signing
 * after `activationDelay` seconds. The keys it replaces stay published for
 * `keepPublishedFor` seconds after that: long enough for everything they
 * signed to expire.
 *
 * One rotation at a time: two at once (two operators, automation retrying)
 * would each read the same keys as current and each add successors, leaving
 * two current keys per algorithm, the older of which never signs and cannot
 * be retired. On PostgreSQL rotations take the lock that first starts take
 * to make the first keys (Database.exclusively), so that each reads what the
 * one before wrote. The embedded database has no such lock (every connection
 * shares one session), but runs one statement at a time: there the write is
 * one statement that checks nothing changed since the read, and else the
 * rotation starts again.
 */
export async function rotateSigningKeys(
  database: Pick<Database, 'prisma' | 'exclusively'>,
  sealer: SecretSealer,
  options: { activationDelay: number; keepPublishedFor: number },
): Promise<KeyInfo[]> {
  const { prisma } = database;
  return database.exclusively(async () => {
    for (;;) {
      // Times are the database's clock, which the servers' statuses are
      // checked against, not the CLI's: run from a machine whose clock is
      // behind by more than the delay, the new keys would sign at once.
      const delay = options.activationDelay;
      // Replaced: every key that would still sign at the new keys' activation,
      // a key waiting from an earlier rotation included (an immediate rotation
      // after a scheduled one must not be undone when the scheduled key activates).
      const current = await prisma.$queryRaw<{ kid: string; alg: string }[]>`
        SELECT kid, alg FROM signing_keys WHERE rotated_at IS NULL OR rotated_at > now() + make_interval(secs => ${delay}::double precision)`;
      if (current.length === 0) throw new KeyError('there are no signing keys yet; start the server or run `portcullis migrate` first');
      const fresh = await Promise.all([...new Set(current.map((key) => key.alg))].map((alg) => generate(alg as SigningAlg, sealer)));
      const replaced = current.map((key) => key.kid);
      if (await replaceUnlessChanged(prisma, replaced, fresh, { activationDelay: delay, keepPublishedFor: options.keepPublishedFor })) return listSigningKeys(prisma);
    }
  });
}

/**
 * In one statement (no transaction left open on the embedded database, where
 * a CLI shares its session with the server): marks `replaced` as rotated out
 * and adds `fresh`, made now and signing `activationDelay` seconds from now
 * (the delay recorded: a server holds it to its own, holdBackScheduledKeys),
 * announcing the change, if the keys that sign then are still exactly
 * `replaced`. False, changing nothing, if not.
 */
async function replaceUnlessChanged(
  prisma: Prisma,
  replaced: string[],
  fresh: Awaited<ReturnType<typeof generate>>[],
  times: { activationDelay: number; keepPublishedFor: number },
): Promise<boolean> {
  // (Sorted by code unit on both sides: COLLATE "C" is the order of JavaScript's sort.)
  const rows = fresh.map((key) => ({ kid: key.kid, alg: key.alg, jwk: key.jwk, private_jwk: key.privateJwk }));
  const done = await prisma.$queryRaw<unknown[]>`
    WITH schedule AS (
      SELECT now() AS made, now() + make_interval(secs => ${times.activationDelay}::double precision) AS activates
    ), checked AS (
      SELECT ARRAY(
        SELECT kid FROM signing_keys WHERE rotated_at IS NULL OR rotated_at > (SELECT activates FROM schedule) ORDER BY kid COLLATE "C"
      ) = ${[...replaced].sort()}::text[] AS unchanged
    ), rotated AS (
      UPDATE signing_keys
      SET rotated_at = (SELECT activates FROM schedule),
          publish_until = (SELECT activates FROM schedule) + make_interval(secs => ${times.keepPublishedFor}::double precision)
      WHERE kid = ANY(${replaced}::text[]) AND (SELECT unchanged FROM checked)
    ), added AS (
      INSERT INTO signing_keys (kid, alg, jwk, private_jwk, created_at, activates_at, activation_delay)
      SELECT kid, alg, jwk, private_jwk, (SELECT made FROM schedule), (SELECT activates FROM schedule), ${times.activationDelay}::int
      FROM jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) AS fresh(kid text, alg text, jwk jsonb, private_jwk text)
      WHERE (SELECT unchanged FROM checked)
    )
    SELECT unchanged FROM checked, LATERAL (SELECT pg_notify(${SIGNING_KEY_CHANGES_CHANNEL}, '') WHERE unchanged) AS announced`;
  return done.length > 0;
}

/**
 * How long a replaced key stays published after the new one activates: every
 * instance must notice, then all it signed must be done with. Access tokens
 * (of any registered API) are, once they expire; an ID token is not: an app
 * hands it back as id_token_hint, to sign out (RP-Initiated Logout §2) or to
 * check the session with prompt=none, for as long as the session it came from
 * lasts, and the hint is verified with the key that signed it. A session ends
 * SESSION_MAX_AGE after its sign-in at the latest (each use renews
 * SESSION_TTL, so that does not bound it), and its ID tokens are from after it.
 */
export async function keepPublishedFor(
  config: Pick<Config, 'ttl' | 'keyRefreshInterval'>,
  apis: { list(): Promise<{ accessTokenTtl: number }[]> },
): Promise<number> {
  const clockSkew = 60;
  const apiTtls = (await apis.list()).map((api) => api.accessTokenTtl);
  return Math.max(config.ttl.idToken, config.ttl.sessionMaxAge, config.ttl.accessToken, ...apiTtls) + config.keyRefreshInterval + clockSkew;
}

/**
 * Keeps every replaced key published at least `seconds` past its rotation.
 * `keys rotate` sets the window from the lifetimes of the environment it runs
 * in; a server whose tokens live longer lengthens it (never shortens it), so
 * that `keys retire` cannot take a key that still verifies its tokens.
 * Returns how many keys it changed.
 */
export async function keepReplacedKeysPublished(prisma: Prisma, seconds: number): Promise<number> {
  return prisma.$executeRaw`
    UPDATE signing_keys SET publish_until = rotated_at + make_interval(secs => ${seconds}::double precision)
    WHERE rotated_at IS NOT NULL AND publish_until IS NOT NULL
      AND publish_until < rotated_at + make_interval(secs => ${seconds}::double precision)`;
}

/**
 * Moves later the keys a `keys rotate` scheduled to sign sooner than
 * `activationDelay` (this server's KEY_ACTIVATION_DELAY) after it made them:
 * one run from a shell without the servers' delay would otherwise have them
 * sign before the JWKS copies their max-age lets APIs and caches keep have
 * the new key. The schedule is moved in the rows, so every server and
 * `keys list` follow one schedule, and the longest delay among the servers
 * wins (a server only ever moves a key later). The keys a moved key replaces
 * sign until it does and stay published as much longer. Only rotations that
 * recorded their delay are moved (`activation_delay`): not `--now` (0), first
 * keys, or an earlier release's rotation (its created_at is the database's
 * clock, its activation the CLI's: the two cannot tell its delay). Nor keys
 * signing already, or a key replaced before it would sign. Returns the keys
 * moved.
 *
 * On PostgreSQL moves take the lock rotations take (rotateSigningKeys), so
 * that two servers, or a server and a rotation, do not each act on what the
 * other is changing: each reads what the one before wrote.
 */
export async function holdBackScheduledKeys(
  database: Pick<Database, 'prisma' | 'exclusively'>,
  activationDelay: number,
): Promise<{ kid: string; activatesAt: Date }[]> {
  const { prisma } = database;
  const early = () => prisma.$queryRaw<{ kid: string; activates_at: Date; due: Date }[]>`
    SELECT kid, activates_at, created_at + make_interval(secs => ${activationDelay}::double precision) AS due
    FROM signing_keys
    WHERE activation_delay > 0 AND activation_delay < ${activationDelay}::int
      AND activates_at > now() AND (rotated_at IS NULL OR rotated_at > activates_at)
    ORDER BY activates_at DESC`;
  // Read first without the lock: nearly always there is nothing to move.
  if ((await early()).length === 0) return [];
  return database.exclusively(async () => {
    const moved: { kid: string; activatesAt: Date }[] = [];
    // The latest first: a key replaced by a later scheduled one then signs
    // until that one's moved activation, which its own move must stay before.
    for (const key of await early()) {
      const from = key.activates_at.toISOString();
      const to = key.due.toISOString();
      // One statement, checking the key is as read (the embedded database has
      // no lock to take, and a CLI shares the server's session there: no
      // transaction is left open), and announced, so every instance reloads
      // the same schedule. Of the keys it replaces, only those that would
      // sign until it does: one replaced again before it signed (a later
      // rotation) stays so.
      const done = await prisma.$queryRaw<unknown[]>`
        WITH moved AS (
          UPDATE signing_keys SET activates_at = ${to}::timestamptz, activation_delay = ${activationDelay}::int
          WHERE kid = ${key.kid} AND activates_at = ${from}::timestamptz AND (rotated_at IS NULL OR rotated_at > ${to}::timestamptz)
          RETURNING kid
        ), replaced AS (
          UPDATE signing_keys
          SET rotated_at = ${to}::timestamptz, publish_until = publish_until + (${to}::timestamptz - ${from}::timestamptz)
          WHERE rotated_at = ${from}::timestamptz AND rotated_at > activates_at AND kid <> ${key.kid} AND EXISTS (SELECT 1 FROM moved)
        )
        SELECT kid FROM moved, LATERAL (SELECT pg_notify(${SIGNING_KEY_CHANGES_CHANNEL}, '')) AS announced`;
      if (done.length > 0) moved.push({ kid: key.kid, activatesAt: key.due });
    }
    return moved;
  });
}

export async function listSigningKeys(prisma: Prisma): Promise<KeyInfo[]> {
  const rows = await prisma.signingKey.findMany({
    orderBy: [{ activatesAt: 'desc' }, { alg: 'asc' }],
    select: { kid: true, alg: true, createdAt: true, activatesAt: true, rotatedAt: true, publishUntil: true },
  });
  const now = Date.now();
  return rows.map((row) => ({
    kid: row.kid,
    alg: row.alg,
    createdAt: row.createdAt,
    activatesAt: row.activatesAt,
    publishUntil: row.publishUntil,
    status: statusOf(row, now),
    signedNothing: signedNothing(row),
  }));
}

/**
 * Deletes a rotated key, but only once nothing it signed can still be valid
 * (at once for one that signed nothing); a `compromised` key at once, whatever it signed: tokens forged with it must
 * stop verifying, and the genuine ones it signed stop with them.
 */
export async function retireSigningKey(prisma: Prisma, kid: string, options: { compromised?: boolean } = {}): Promise<void> {
  const key = await prisma.signingKey.findUnique({ where: { kid }, select: { kid: true, activatesAt: true, rotatedAt: true, publishUntil: true } });
  if (!key) throw new KeyError(`no signing key with kid ${kid}`);
  // The database's clock, as rotations schedule by: a CLI on a machine whose clock runs ahead would retire a key still published.
  const now = (await databaseNow(prisma)).getTime();
  const status = statusOf(key, now);
  // Rotated already, with its successor waiting: a second rotation is not what it needs.
  if (status === 'current' && key.rotatedAt) {
    const when = key.rotatedAt.toISOString();
    throw new KeyError(
      options.compromised
        ? `key ${kid} signs until its successor takes over at ${when}; run \`portcullis keys rotate --now\` to replace it at once, then retire it`
        : `key ${kid} signs until its successor takes over at ${when}, and what it signed may verify until ${key.publishUntil?.toISOString()}; retire it after that (or, if it leaked, run \`portcullis keys rotate --now\` first)`,
    );
  }
  // Waiting to sign: a plain rotation would only put another key in its place to wait.
  if (status === 'next') {
    throw new KeyError(
      `key ${kid} has signed nothing yet and signs from ${key.activatesAt.toISOString()}; \`portcullis keys rotate --now\` replaces it with a key that signs at once, after which it can be retired`,
    );
  }
  if (status === 'current') {
    throw new KeyError(`key ${kid} is current; run \`portcullis keys rotate${options.compromised ? ' --now' : ''}\` first`);
  }
  // Replaced while it waited (`keys rotate --now`): it signed nothing that could need it.
  if (!options.compromised && !signedNothing(key) && key.publishUntil && key.publishUntil.getTime() > now) {
    throw new KeyError(
      `key ${kid} may still verify unexpired tokens until ${key.publishUntil.toISOString()}; retire it after that (or now with --compromised)`,
    );
  }
  await prisma.$transaction([prisma.signingKey.delete({ where: { kid } }), announceSigningKeyChange(prisma)]);
}

