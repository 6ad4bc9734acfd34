// Opens the database and builds the services both fronts (HTTP app, CLI) use.
import path from 'node:path';
import { Accounts } from './accounts/accounts.js';
import { Subjects } from './accounts/subjects.js';
import { SecondFactors } from './accounts/second-factors.js';
import { PasswordHasher } from './accounts/passwords.js';
import { SignInThrottle } from './accounts/sign-in-throttle.js';
import { DeviceCookies } from './accounts/device-cookies.js';
import { SignInNotices } from './interactions/sign-in-notice.js';
import { Apis } from './apis/apis.js';
import { Clients } from './clients/clients.js';
import type { Config } from './config.js';
import { loadSealer, openKeyFile, SecretSealer } from './keys/sealed-secrets.js';
import { holdsServerSecrets, loadServerSecret } from './keys/server-secrets.js';
import { ensureSigningKeys } from './keys/signing-keys.js';
import { DatabaseUnavailable, openDatabase, type Database } from './persistence/database.js';
import { describeFree, freeSpace, isFull } from './persistence/disk-space.js';
import { EmbeddedDatabaseBusy, type EmbeddedRole } from './persistence/embedded.js';
import { MigrationError, type MigrateOptions, type MigrationResult } from './persistence/migrations.js';
import { BrowserBinding } from './provider/browser-binding.js';

export interface Services {
  config: Config;
  database: Database;
  accounts: Accounts;
  /** People's TOTP keys, the sign-in's second step (accounts/second-factors.ts). */
  secondFactors: SecondFactors;
  signInThrottle: SignInThrottle;
  deviceCookies: DeviceCookies;
  /** Why a sign-in was refused, carried to the page its form redirects to (interactions/sign-in-notice.ts). */
  signInNotices: SignInNotices;
  /** Which browser made each sign-in in progress (provider/browser-binding.ts). */
  browsers: BrowserBinding;
  apis: Apis;
  clients: Clients;
  /** Seals the secrets the database keeps for later use (signing and cookie keys). */
  sealer: SecretSealer;
  /**
   * The subject identifiers apps know people by (accounts/subjects.ts), from
   * a secret made on first use: the server's start, or the first command
   * that needs one.
   */
  subjects(): Promise<Subjects>;
  /** Whether the encryption key file was created by this start (no ENCRYPTION_KEYS, first run). */
  encryptionKeyGenerated: boolean;
  /** Whether the encryption key file may be read by others than its owner. */
  encryptionKeyExposed: boolean;
  /** What this start's migration step applied, and how many migrations the database held before. */
  migrations: MigrationResult;
  close(): Promise<void>;
}

/** Opens the database, applies migrations (see MigrateOptions) and makes sure signing keys exist, sealed. */
export async function openServices(config: Config, role: EmbeddedRole, migrating: MigrateOptions = {}): Promise<Services> {
  // A key file that is there but unreadable stops us before the database is
  // opened; one that is not there yet is made once the database is known to
  // hold nothing sealed (see loadSealer).
  if (config.encryption.kind === 'file') await openKeyFile(config.encryption.path);
  const dataDir = config.database.kind === 'embedded' ? config.database.dataDir : undefined;
  const database = await openDatabase(config.database, role).catch(async (error: unknown) => {
    // PGlite's own failures (a data directory it cannot read, a full disk:
    // "file system error 51") say nothing of where it looked, or why.
    if (dataDir === undefined || error instanceof EmbeddedDatabaseBusy) throw error;
    const full = await fullDisk(dataDir);
    throw new DatabaseUnavailable(`cannot open the embedded database in DATA_DIR (${dataDir}): ${describe(error)}${full ? `; ${full}` : ''}`, { cause: error });
  });
  let loaded: Awaited<ReturnType<typeof loadSealer>>;
  let migrations: MigrationResult;
  try {
    migrations = await database.migrate(migrating).catch((error: Error & { code?: string }) => {
      // The first statements: what fails them before any migration runs
      // (address, credentials, TLS, session options) is DATABASE_URL's to
      // fix; a migration's own failure says which (MigrationError).
      if (config.database.kind === 'postgres' && !(error instanceof MigrationError)) {
        const what = isConnectionFailure(error) ? 'cannot reach' : 'cannot use';
        throw new DatabaseUnavailable(`${what} the database at DATABASE_URL: ${describe(error)}`, { cause: error });
      }
      throw error;
    });
    // One process at a time checks for sealed keys and makes the first ones:
    // two first starts at once (two replicas, a CLI beside a server) would
    // each find none and each make a set, under different encryption keys.
    loaded = await database.exclusively(async () => {
      const sealing = await loadSealer(config.encryption, () => holdsNothingSealed(database.prisma));
      await ensureSigningKeys(database.prisma, sealing.sealer, config.signingAlg, { byCli: role === 'cli' });
      return sealing;
    });
    await database.ready();
  } catch (error) {
    // The error that stopped the start is the one to tell (closing may fail too, on a full disk).
    await database.close().catch(() => undefined);
    // Migrations and the first keys write: on a full disk they fail with
    // PGlite's or the key file's words for it, which do not name the disk.
    // The error's own words stay: on a small disk the cause may be another.
    const full = dataDir === undefined ? undefined : await fullDisk(dataDir);
    if (full) throw new DatabaseUnavailable(`cannot start on the embedded database in DATA_DIR (${dataDir}): ${describe(error)}; ${full}`, { cause: error });
    throw error;
  }
  const { sealer, generated, exposed } = loaded;
  return {
    config,
    database,
    accounts: new Accounts(database.prisma, database.sql, new PasswordHasher(config.argon2), config.passwordPolicy),
    // People's TOTP keys are sealed under a server secret (keys/server-secrets.ts), not the encryption key itself.
    secondFactors: new SecondFactors(database.prisma, once(async () => new SecretSealer([(await loadServerSecret(database, sealer, 'totp keys', role === 'server')).toString('base64url')]))),
    signInThrottle: new SignInThrottle(database.sql, config.signInThrottle, sealer.keyedDigest('sign-in throttle keys v1')),
    deviceCookies: new DeviceCookies(sealer.keyedMac('device cookies v1')),
    signInNotices: new SignInNotices(sealer.keyedMac('sign-in notices v1')),
    browsers: new BrowserBinding(config.issuer),
    apis: new Apis(database.prisma, config.issuer),
    clients: new Clients(database.prisma),
    sealer,
    subjects: once(async () => new Subjects(await loadServerSecret(database, sealer, 'pairwise subjects', role === 'server'))),
    encryptionKeyGenerated: generated,
    encryptionKeyExposed: exposed,
    migrations,
    close: () => database.close(),
  };
}

/** `make`'s promise, made at the first call and kept, unless it failed (then made again at the next). */
function once<T>(make: () => Promise<T>): () => Promise<T> {
  let made: Promise<T> | undefined;
  return () => (made ??= make().catch((error: unknown) => {
    made = undefined;
    throw error;
  }));
}

/**
 * Closes the services, or gives up after `ms` (true then): a PostgreSQL pool
 * waits for the connections it lent, and one whose connection died in a
 * transaction may never be given back. Not for the embedded database a
 * process holds itself, whose close (a checkpoint) is work to finish.
 */
export async function closeWithin(services: Services, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    services.close().then(() => false),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), ms))),
  ]).finally(() => clearTimeout(timer));
}

/**
 * Whether the database holds no secret sealed with an encryption key, so that
 * a new key may be made. Keys that versions before sealing stored in the plain
 * do not count: the first start with a key seals them where they are.
 */
async function holdsNothingSealed(prisma: Database['prisma']): Promise<boolean> {
  if ((await prisma.signingKey.count({ where: { privateJwk: { not: null } } })) > 0) return false;
  if (await holdsServerSecrets(prisma)) return false;
  const cookieKeys = await prisma.cookieKey.findMany({ select: { secret: true } });
  return !cookieKeys.some(({ secret }) => SecretSealer.isSealed(secret));
}

/** Says so if the disk holding `dir` is full; undefined if it is not, or cannot be told. */
async function fullDisk(dir: string): Promise<string | undefined> {
  // DATA_DIR itself may not exist yet (a first start): its nearest parent that does is on the same disk, most likely.
  for (let at = dir; ; at = path.dirname(at)) {
    const free = await freeSpace(at);
    if (free) return isFull(free) ? `the disk holding it is full (${describeFree(free)}); free some space and start again` : undefined;
    if (path.dirname(at) === at) return undefined;
  }
}

/** An error's message, for anything thrown (PGlite throws some without one). */
function describe(error: unknown): string {
  if (error instanceof Error && error.message) return error.message;
  const { code, errno } = (error ?? {}) as { code?: unknown; errno?: unknown };
  if (typeof code === 'string') return code;
  return typeof errno === 'number' ? `file system error ${errno}` : String(error);
}

/** Errors of connecting (address, network, authentication), not of what a statement did. */
function isConnectionFailure(error: Error & { code?: string }): boolean {
  const code = error.code ?? '';
  return ['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ECONNRESET'].includes(code) || code.startsWith('28') || code === '3D000';
}
