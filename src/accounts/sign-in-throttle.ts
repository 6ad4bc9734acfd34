// Limits online password guessing. Failed sign-ins are counted per email (one
// account guessed at from anywhere) and per client address (one source trying
// many accounts) over a fixed window that starts at the first failure; past
// either limit, sign-ins for that email or from that address are refused
// until the window ends, without verifying the password (so a flood costs no
// argon2 time). Unknown emails are counted like known ones, so the refusal
// tells nobody which emails have accounts. Counters live in the database, so
// every instance enforces the same limits. Keys are digests: the table holds
// neither emails nor addresses.
import { sha256 } from '../persistence/hash.js';
import type { Sql } from '../persistence/database.js';
import { normalizeEmail } from './accounts.js';

export interface ThrottlePolicy {
  /** Failures per email within the window before that email is refused. */
  maxFailuresPerAccount: number;
  /** Failures from one client address within the window before it is refused. */
  maxFailuresPerAddress: number;
  /** Seconds. */
  window: number;
}

export type ThrottleDecision = { allowed: true; accountHasFailures: boolean } | { allowed: false; retryAfter: number };

const COUNTS = {
  name: 'sign-in-failures-find',
  text: `SELECT key, failures, ceil(date_part('epoch', expires_at - now()))::int AS seconds_left
         FROM sign_in_failures WHERE key = ANY($1::text[]) AND expires_at > now()`,
} as const;

// A counter whose window has ended starts over, in the same statement.
const RECORD = {
  name: 'sign-in-failures-record',
  text: `INSERT INTO sign_in_failures AS f (key, failures, expires_at)
         SELECT key, 1, now() + make_interval(secs => $2) FROM unnest($1::text[]) AS key
         ON CONFLICT (key) DO UPDATE SET
           failures = CASE WHEN f.expires_at <= now() THEN 1 ELSE f.failures + 1 END,
           expires_at = CASE WHEN f.expires_at <= now() THEN EXCLUDED.expires_at ELSE f.expires_at END`,
} as const;

const CLEAR = { name: 'sign-in-failures-clear', text: 'DELETE FROM sign_in_failures WHERE key = $1' } as const;

const accountKey = (email: string) => `account:${sha256(normalizeEmail(email))}`;
const addressKey = (address: string) => `address:${sha256(address)}`;
const keysFor = (email: string, address: string) => [addressKey(address), ...(email ? [accountKey(email)] : [])];

export class SignInThrottle {
  constructor(
    private readonly sql: Sql,
    private readonly policy: ThrottlePolicy,
  ) {}

  /** Whether a sign-in for this email from this address may be tried now. */
  async check(email: string, address: string): Promise<ThrottleDecision> {
    const { rows } = await this.sql.query<{ key: string; failures: number; seconds_left: number }>(COUNTS, [keysFor(email, address)]);
    let retryAfter = 0;
    let accountHasFailures = false;
    for (const row of rows) {
      const isAccount = row.key.startsWith('account:');
      accountHasFailures ||= isAccount;
      const limit = isAccount ? this.policy.maxFailuresPerAccount : this.policy.maxFailuresPerAddress;
      if (row.failures >= limit) retryAfter = Math.max(retryAfter, row.seconds_left, 1);
    }
    return retryAfter > 0 ? { allowed: false, retryAfter } : { allowed: true, accountHasFailures };
  }

  async recordFailure(email: string, address: string): Promise<void> {
    await this.sql.query(RECORD, [keysFor(email, address), this.policy.window]);
  }

  /**
   * A right password clears the email's count (not the address's: one account
   * an attacker owns must not reset their count against the others).
   */
  async recordSuccess(email: string): Promise<void> {
    await this.sql.query(CLEAR, [accountKey(email)]);
  }
}
