// The only reader of process.env: environment → one typed, validated Config.
import { statSync } from 'node:fs';
import path from 'node:path';
import querystring from 'node:querystring';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import type { PasswordPolicy } from './accounts/password-policy.js';
import type { ThrottlePolicy } from './accounts/sign-in-throttle.js';
import { unshowable } from './display-text.js';
import type { EncryptionKeySource } from './keys/sealed-secrets.js';
import { typoOf } from './typos.js';

/** Whether `target` exists and is something other than a directory. */
function isFileNotDirectory(target: string): boolean {
  try {
    return !statSync(target).isDirectory();
  } catch {
    return false; // absent (made at start), or not ours to look into: found out when opened
  }
}

export class ConfigError extends Error {
  override name = 'ConfigError';
  constructor(
    message: string,
    /** Variables set a typo away from ours (see mistypedVariables): maybe why. */
    readonly mistyped: { name: string; meant: string }[] = [],
  ) {
    super(message);
  }
}

/** What is said of a variable a typo away from one of ours (never its value: a mistyped ENCRYPTION_KEYS holds secrets). */
export const typoHint = ({ name, meant }: { name: string; meant: string }) => `${name} is not a variable Portcullis reads: did you mean ${meant}?`;

const durationPattern = /^(\d+)\s*(s|m|h|d)?$/;
const unitSeconds = { s: 1, m: 60, h: 3600, d: 86400 } as const;

/** "90", "90s", "15m", "12h", "14d" → seconds. */
export function parseDuration(value: string): number {
  const match = durationPattern.exec(value.trim());
  if (!match) throw new ConfigError(`"${value}" is not a duration (use e.g. 90s, 15m, 12h, 14d)`);
  return Number(match[1]) * unitSeconds[(match[2] ?? 's') as keyof typeof unitSeconds];
}

// Node's timers hold at most 2^31-1 ms (about 24.8 days); a longer interval
// fires at once, every millisecond.
const MAX_TIMER_SECONDS = 24 * 86400;

// A lifetime ends at a date PostgreSQL can store (its timestamps stop at year
// 294276, but a year beyond 9999 is refused when written as ISO text) and the
// library can compute: far above any sensible value, far below the failures.
export const MAX_LIFETIME_SECONDS = 36_500 * 86400;

const duration = (fallback: string, { min = 1, max = MAX_LIFETIME_SECONDS }: { min?: number; max?: number } = {}) =>
  z
    .string()
    .default(fallback)
    .transform((value, ctx) => {
      try {
        const seconds = parseDuration(value);
        if (seconds < min) throw new ConfigError(`"${value}" is shorter than the least allowed, ${min} s`);
        if (seconds > max) throw new ConfigError(`"${value}" is longer than the most allowed, ${max >= 86400 ? `${max / 86400} days` : `${max} s`}`);
        return seconds;
      } catch (error) {
        ctx.addIssue({ code: 'custom', message: (error as Error).message });
        return z.NEVER;
      }
    });

/** A comma-separated list of secrets, each long enough to be a key; the first is the one in use. */
const secretList = () =>
  z
    .string()
    .optional()
    .transform((value) => value?.split(',').map((key) => key.trim()).filter(Boolean))
    // Set, but only commas and spaces: a list built from an empty variable
    // (`"$KEY,"`), which must not pass for no list and a key made up locally.
    .refine((keys) => !keys || keys.length > 0, 'holds no key (only commas or spaces)')
    .refine((keys) => !keys || keys.every((key) => key.length >= 32), 'each key must be at least 32 characters');

/**
 * Whether pg can take `url`: a URL, or libpq's form with credentials and no
 * host (`postgresql://user:pw@/db?host=/var/run/postgresql`, a Unix socket),
 * which pg reads and a URL parser refuses.
 */
function parsesAsConnectionString(url: string): boolean {
  return URL.canParse(url) || URL.canParse(url.replace(/@\//, '@localhost/'));
}

/** The sslmode values node-postgres's connection string parser knows; with uselibpqcompat=true, libpq's it knows. */
const SSL_MODES: readonly string[] = ['disable', 'prefer', 'require', 'verify-ca', 'verify-full', 'no-verify'];
const LIBPQ_SSL_MODES: readonly string[] = ['disable', 'prefer', 'require', 'verify-ca', 'verify-full'];

const databaseUrl = z
  .string()
  .regex(/^postgres(ql)?:\/\//, 'must be a postgresql:// connection string')
  .refine(parsesAsConnectionString, 'is not a valid URL (check the port, and percent-encode special characters in the user name and password)')
  // Prisma's own parameter, which the pg driver we connect with ignores:
  // the tables would go to `public` while the operator believed otherwise.
  .refine((url) => !/[?&]schema=/i.test(url), 'must not set schema= (Portcullis keeps its tables in the public schema: give it a database of its own)')
  // The driver takes any other value for TLS with the certificate checked in
  // full (a misspelt `disable` included), and then fails with a message that
  // names no setting.
  .superRefine((url, ctx) => {
    const problem = sslModeProblem(url);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });

/**
 * What node-postgres would not read as written in the connection string's
 * sslmode, or undefined. Only a value written as such: the driver decodes
 * an escape in it only sometimes (not where a `%` escaping nothing, or a
 * space, is elsewhere in the string). With uselibpqcompat=true it reads
 * sslmode as libpq does, which has no no-verify.
 */
function sslModeProblem(url: string): string | undefined {
  const query = url.split('#')[0]!.split('?').slice(1).join('?');
  const settings = query.split('&').map((part) => {
    const equals = part.indexOf('=');
    const name = equals < 0 ? part : part.slice(0, equals);
    return { written: name, name: querystring.unescape(name), value: equals < 0 ? '' : part.slice(equals + 1) };
  });
  const libpq = settings.some(({ name, value }) => name === 'uselibpqcompat' && querystring.unescape(value) === 'true');
  const modes = libpq ? LIBPQ_SSL_MODES : SSL_MODES;
  const wrong = settings.some(({ written, name, value }) => name === 'sslmode' && (written !== 'sslmode' || !modes.includes(value)));
  return wrong ? `must set sslmode= to one of ${modes.join(', ')}${libpq ? ' (with uselibpqcompat=true)' : ', written as such'}` : undefined;
}

/** What is wrong with `url` as a DATABASE_URL, or undefined (for the CLI's `copy --to`). */
export function databaseUrlProblem(url: string): string | undefined {
  const result = databaseUrl.safeParse(url);
  return result.success ? undefined : result.error.issues[0]!.message;
}

/** What makes `value`, a URL, more or other than its origin (for the message). */
function notOrigin(value: string, url: URL): string {
  if (url.username || url.password) return 'it holds credentials';
  if (url.search || value.includes('?')) return 'it has a query';
  if (url.hash || value.includes('#')) return 'it has a fragment';
  if (url.pathname !== '/') return `it has a path (${url.pathname}): endpoints are served at the root`;
  if (/:\d+\/?$/.test(value) && !url.port) return `it names the default port of ${url.protocol.slice(0, -1)}`;
  return `write it as ${url.origin}, as a URL parser does (lower-case, no empty or zero-padded port)`;
}

/** Decimal digits only: Number() also reads "0x10", "1e3" and " " (as 0). (Blanks around any value are dropped in loadConfig.) */
const wholeNumber = (min: number, max: number) =>
  z
    .string()
    .regex(/^\d+$/, 'must be a whole number (decimal digits)')
    .transform(Number)
    .pipe(z.number().int().min(min, `must be from ${min} to ${max}`).max(max, `must be from ${min} to ${max}`));
const integer = (fallback: number, min: number, max: number) => z.string().default(String(fallback)).pipe(wholeNumber(min, max));

/** One of `values`. */
const choice = <const T extends readonly [string, ...string[]]>(values: T, fallback: T[number]) =>
  z
    .string()
    .default(fallback)
    .pipe(z.enum(values, { error: () => `must be one of ${values.join(', ')}` }));

const fields = z.object({
  PORT: integer(3000, 1, 65535),
  HOST: z.string().default('0.0.0.0'),
  // The origin alone: Portcullis serves its endpoints at the root, so an
  // issuer with a path would name endpoints it does not serve; an issuer has
  // no query or fragment (RFC 8414 §2), nor credentials.
  ISSUER: z
    .string()
    .superRefine((value, ctx) => {
      const url = URL.parse(value);
      // As written, it is every token's `iss`: exactly the origin, as a URL
      // parser writes it (lower-case host, no default port), with no path,
      // query, fragment or credentials; a trailing slash is dropped.
      const problem = !url || !url.host
        ? 'is not a URL with a host (and a port of at most 65535), as in https://id.example.com'
        : !['http:', 'https:'].includes(url.protocol)
          ? 'must be an https (or, in development, http) URL'
          : value.replace(/\/$/, '') !== url.origin
            ? `must be the origin alone, as in https://id.example.com: ${notOrigin(value, url)}`
            : undefined;
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    })
    .optional(),
  // Shown on every page, as the clients' and people's names are: it must read as written.
  ISSUER_NAME: z
    .string()
    .default('Portcullis')
    .superRefine((value, ctx) => {
      // (Not the layout rules that came later for client and people's names:
      // the operator's own words, which a server started with before.)
      const problem = unshowable(value, 'it', undefined, false);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    }),
  DATABASE_URL: databaseUrl.optional(),
  DATABASE_POOL_SIZE: integer(10, 1, 200),
  DATABASE_TIMEOUT: duration('20s', { max: 600 }),
  // One that names a file would fail later, on the key file or the database
  // inside it, with a message about them instead.
  DATA_DIR: z.string().refine((dir) => !isFileNotDirectory(dir), 'names a file, not a directory').optional(),
  COOKIE_KEYS: secretList(),
  // Seal private signing keys and cookie keys in the database (keys/sealed-secrets.ts).
  ENCRYPTION_KEYS: secretList(),
  ENCRYPTION_KEY_FILE: z.string().min(1).optional(),
  // RS256 for resource servers that verify nothing else (RFC 9068 §2.1 has
  // both sides support it; Spring Security's decoder takes only RS256 unless told).
  SIGNING_ALG: choice(['ES256', 'EdDSA', 'RS256'], 'ES256'),
  // RFC 9700 §2.1.1: PKCE is required of public clients, recommended to the others.
  PKCE_REQUIRED: choice(['public', 'all'], 'public'),
  ARGON2_MEMORY_KIB: integer(19456, 1024, 4194304),
  ARGON2_TIME_COST: integer(2, 1, 100),
  ARGON2_PARALLELISM: integer(1, 1, 64),
  // At most 64: NIST SP 800-63B has every verifier accept passwords of 64 characters.
  PASSWORD_MIN_LENGTH: integer(8, 8, 64),
  ACCESS_TOKEN_TTL: duration('1h'),
  ID_TOKEN_TTL: duration('1h'),
  REFRESH_TOKEN_TTL: duration('14d'),
  // 0: a rotated refresh token presented again is a replay at once. At most
  // 5 minutes: the window covers a lost response or two tabs, not a second life.
  REFRESH_TOKEN_REUSE_INTERVAL: duration('0s', { min: 0, max: 300 }),
  AUTHORIZATION_CODE_TTL: duration('60s'),
  SESSION_TTL: duration('14d'),
  // However often it is used, a session ends this long after its sign-in:
  // NIST SP 800-63B §4.1.3 asks for a new sign-in at least every 30 days.
  SESSION_MAX_AGE: duration('30d'),
  INTERACTION_TTL: duration('1h'),
  GRANT_TTL: duration('365d'),
  SIGN_IN_MAX_FAILURES: integer(10, 1, 10_000),
  SIGN_IN_MAX_FAILURES_PER_ADDRESS: integer(100, 1, 1_000_000),
  SIGN_IN_FAILURE_WINDOW: duration('15m'),
  KEY_REFRESH_INTERVAL: duration('30s', { max: MAX_TIMER_SECONDS }),
  // ≥ KEY_REFRESH_INTERVAL + 30 s: every instance publishes a new key, and a
  // resource server that fetched the old JWKS may refetch (jose waits 30 s
  // between refetches), before anything is signed with it.
  // At most a month: a key that signs only years after `keys rotate` is a typo.
  KEY_ACTIVATION_DELAY: duration('90s', { min: 0, max: 30 * 86400 }),
  SWEEP_INTERVAL: duration('10m', { max: MAX_TIMER_SECONDS }),
  // Kubernetes sends SIGTERM while its load balancers still route to the pod
  // for a few seconds: serving on, with /readyz at 503, covers that. 0 for a
  // workstation's Ctrl-C; at most 5 minutes, a stop that takes longer is a typo.
  SHUTDOWN_DELAY: duration('0s', { min: 0, max: 300 }),
  // How many proxies stand in front: `true` is one. The client's address is
  // the one the farthest of them appended to X-Forwarded-For; what the client
  // wrote there itself, to the left, is never taken (it would choose its own
  // address for the sign-in throttle).
  TRUST_PROXY: z
    .string()
    .default('false')
    .refine((value) => /^(true|false|[0-9])$/.test(value), 'must be true, false, or the number of proxies in front (0-9)')
    .transform((value) => (value === 'false' ? 0 : value === 'true' ? 1 : Number(value))),
  LOG_LEVEL: choice(['debug', 'info', 'warn', 'error', 'silent'], 'info'),
  // Prometheus metrics on a listener of their own; unset, there is none.
  METRICS_PORT: wholeNumber(1, 65535).optional(),
  // Loopback by default: the counters are for the operator, not the internet.
  METRICS_HOST: z.string().default('127.0.0.1'),
});

// Between variables: said with every other bad variable's line, not found
// only once those are fixed (so it runs whenever these two parse).
const schema = fields.refine((e) => e.METRICS_PORT === undefined || e.METRICS_PORT !== e.PORT, {
  path: ['METRICS_PORT'],
  message: 'must differ from PORT (metrics have a listener of their own)',
  when: (payload) => !payload.issues.some((issue) => issue.path?.[0] === 'PORT' || issue.path?.[0] === 'METRICS_PORT'),
});

export interface Config {
  port: number;
  host: string;
  issuer: string;
  issuerName: string;
  database: ({ kind: 'postgres'; url: string; poolSize: number } | {
    kind: 'embedded';
    dataDir: string;
    /**
     * With DATA_DIR unset, where releases before 0.5.6 kept the database
     * (`data` in the current directory), when that is another directory.
     */
    earlierDefault?: string;
  }) & {
    /** Seconds a server waits for a connection, and then for a statement's answer (DATABASE_TIMEOUT). */
    timeout: number;
  };
  cookieKeys?: string[];
  encryption: EncryptionKeySource;
  signingAlg: 'ES256' | 'EdDSA' | 'RS256';
  /** Which clients' authorization requests must use PKCE: public ones only, or every client. */
  pkceRequired: 'public' | 'all';
  argon2: { memoryCost: number; timeCost: number; parallelism: number };
  passwordPolicy: PasswordPolicy;
  ttl: {
    accessToken: number;
    idToken: number;
    refreshToken: number;
    authorizationCode: number;
    session: number;
    /** The most a session lasts from its sign-in, used or not (SESSION_MAX_AGE). */
    sessionMaxAge: number;
    interaction: number;
    grant: number;
  };
  /**
   * Seconds after its first use during which a rotated refresh token may be
   * used again, each use getting tokens of its own (REFRESH_TOKEN_REUSE_INTERVAL);
   * 0: none, a second use revokes the tokens of its sign-in.
   */
  refreshTokenReuseInterval: number;
  signInThrottle: ThrottlePolicy;
  keyRefreshInterval: number;
  keyActivationDelay: number;
  sweepInterval: number;
  /** Seconds a stopping server goes on serving, with /readyz at 503, before its shutdown (SHUTDOWN_DELAY). */
  shutdownDelay: number;
  /** Proxies in front whose X-Forwarded-* headers are trusted; 0: none. */
  trustProxy: number;
  logLevel: 'debug' | 'info' | 'warn' | 'error' | 'silent';
  /** Where GET /metrics is served (METRICS_HOST, METRICS_PORT); undefined: nowhere. */
  metrics?: { host: string; port: number };
  /** Variables set that are none of ours but one letter or two from one (see mistypedVariables): warned of at start. */
  mistyped: { name: string; meant: string }[];
  /**
   * SUDO_USER, which sudo sets to the login it made root: not configuration,
   * but read here with the rest of the environment. The audit trail names it
   * only in a process running as root (audit/admin-events.ts, actor).
   */
  sudoUser?: string;
}

/**
 * Listen errors that say a HOST or METRICS_HOST names no address of this
 * machine: configuration to fix (exit 2), as a bad value is; a port in use
 * is not (another process has it).
 */
export const NOT_AN_ADDRESS_HERE = new Set(['ENOTFOUND', 'EADDRNOTAVAIL', 'EAI_NONAME']);

/**
 * `data` in Portcullis's own directory (this module's parent's parent: dist/
 * or src/ sits in it), where `npm start` runs: a CLI command run from another
 * directory opens the same embedded database, not a new empty one there.
 */
const DEFAULT_DATA_DIR = fileURLToPath(new URL('../data', import.meta.url));

/** A Unix socket's path, in bytes, on Linux (sun_path, less its terminating NUL). */
const MAX_SOCKET_PATH_BYTES = 107;
/** DATA_DIR and the longest socket the embedded database makes in it, `/.s.PGSQL.<pid>` (pids reach 7 digits). */
const MAX_DATA_DIR_BYTES = MAX_SOCKET_PATH_BYTES - '/.s.PGSQL.4194304'.length;

export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  // A variable set to nothing (`PORT=` in a compose file, or blanks) counts as
  // unset, not as 0 or "". Blanks around any value are dropped, paths and
  // addresses included: a `DATA_DIR` kept with a trailing blank (an env file's
  // line) would otherwise open a new, empty database beside the real one.
  const given = Object.entries(env).flatMap(([name, value]) => (value?.trim() ? [[name, value.trim()] as const] : []));
  const mistyped = mistypedVariables(given.map(([name]) => name));
  const result = schema.safeParse(Object.fromEntries(given));
  if (!result.success) {
    const problems = result.error.issues.map((issue) => `  ${issue.path.join('.')}: ${issue.message}`).join('\n');
    throw new ConfigError(`invalid configuration:\n${problems}`, mistyped);
  }
  const e = result.data;
  const dataDir = path.resolve(e.DATA_DIR ?? DEFAULT_DATA_DIR);
  if (!e.DATABASE_URL && Buffer.byteLength(dataDir) > MAX_DATA_DIR_BYTES) {
    // The socket's path would be cut short without a word (bound under another
    // name, which the next start then finds in its way).
    throw new ConfigError(
      `invalid configuration:\n  DATA_DIR: ${dataDir} is ${Buffer.byteLength(dataDir)} bytes long, more than the ${MAX_DATA_DIR_BYTES} the embedded database allows ` +
        `(the Unix socket inside it must fit in ${MAX_SOCKET_PATH_BYTES}): choose a shorter path${e.DATA_DIR === undefined ? ' with DATA_DIR' : ''}`,
      mistyped,
    );
  }
  const issuer = (e.ISSUER ?? `http://localhost:${e.PORT}`).replace(/\/+$/, '');
  return {
    port: e.PORT,
    host: e.HOST,
    issuer,
    issuerName: e.ISSUER_NAME,
    database: e.DATABASE_URL
      ? { kind: 'postgres', url: e.DATABASE_URL, poolSize: e.DATABASE_POOL_SIZE, timeout: e.DATABASE_TIMEOUT }
      : {
          kind: 'embedded',
          dataDir,
          ...(e.DATA_DIR === undefined && path.resolve('data') !== path.resolve(DEFAULT_DATA_DIR) ? { earlierDefault: path.resolve('data') } : {}),
          timeout: e.DATABASE_TIMEOUT,
        },
    cookieKeys: e.COOKIE_KEYS,
    encryption: e.ENCRYPTION_KEYS?.length
      ? { kind: 'env', keys: e.ENCRYPTION_KEYS }
      : { kind: 'file', path: path.resolve(e.ENCRYPTION_KEY_FILE ?? path.join(e.DATA_DIR ?? DEFAULT_DATA_DIR, 'encryption.key')) },
    signingAlg: e.SIGNING_ALG,
    pkceRequired: e.PKCE_REQUIRED,
    argon2: { memoryCost: e.ARGON2_MEMORY_KIB, timeCost: e.ARGON2_TIME_COST, parallelism: e.ARGON2_PARALLELISM },
    passwordPolicy: { minLength: e.PASSWORD_MIN_LENGTH },
    ttl: {
      accessToken: e.ACCESS_TOKEN_TTL,
      idToken: e.ID_TOKEN_TTL,
      refreshToken: e.REFRESH_TOKEN_TTL,
      authorizationCode: e.AUTHORIZATION_CODE_TTL,
      session: e.SESSION_TTL,
      sessionMaxAge: e.SESSION_MAX_AGE,
      interaction: e.INTERACTION_TTL,
      grant: e.GRANT_TTL,
    },
    refreshTokenReuseInterval: e.REFRESH_TOKEN_REUSE_INTERVAL,
    signInThrottle: {
      maxFailuresPerAccount: e.SIGN_IN_MAX_FAILURES,
      maxFailuresPerAddress: e.SIGN_IN_MAX_FAILURES_PER_ADDRESS,
      window: e.SIGN_IN_FAILURE_WINDOW,
    },
    keyRefreshInterval: e.KEY_REFRESH_INTERVAL,
    keyActivationDelay: e.KEY_ACTIVATION_DELAY,
    sweepInterval: e.SWEEP_INTERVAL,
    shutdownDelay: e.SHUTDOWN_DELAY,
    trustProxy: e.TRUST_PROXY,
    logLevel: e.LOG_LEVEL,
    metrics: e.METRICS_PORT === undefined ? undefined : { host: e.METRICS_HOST, port: e.METRICS_PORT },
    mistyped,
    ...(env.SUDO_USER?.trim() ? { sudoUser: env.SUDO_USER.trim() } : {}),
  };
}

/**
 * Variables that are none of ours but a typo away from one (`DATABSE_URL`,
 * `LOGLEVEL`, `SIGNIN_MAX_FAILURES`): set, they change nothing, and the
 * server would run on the default without a word (an embedded database
 * instead of PostgreSQL, say). A typo is an edit or two (a swap of
 * neighbours is one) in a long name, one in a shorter one; four letters are
 * too few to tell (`HOME` is not a mistyped `HOST`). Only names written as
 * ours are (capitals, digits, underscores), against every other variable a
 * machine sets.
 */
export function mistypedVariables(names: string[]): { name: string; meant: string }[] {
  const ours = Object.keys(fields.shape);
  const mistyped: { name: string; meant: string }[] = [];
  for (const name of names) {
    if (ours.includes(name) || !/^[A-Z][A-Z0-9_]{4,}$/.test(name)) continue;
    const meant = typoOf(name, ours);
    if (meant) mistyped.push({ name, meant });
  }
  return mistyped;
}
