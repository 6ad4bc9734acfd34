// Limits online password guessing. Failed sign-ins are counted per email (one
// account guessed at from anywhere) and per client address (one source trying
// many accounts) over a fixed window that starts at the first failure; past
// either limit, sign-ins for that email or from that address are refused
// until the window ends, without verifying the password (so a flood costs no
// argon2 time). Unknown emails are counted like known ones, so the refusal
// tells nobody which emails have accounts. Counters live in the database, so
// every instance enforces the same limits. Keys are digests: the table holds
// neither emails nor addresses.
//
// Each sign-in is counted as a failure before its password is verified, in
// the same statement that reads the counts, and given back if the password is
// right. A check that only read the counts would let concurrent guesses all
// pass it before any of them was recorded: thirty at once, against a limit of
// ten, all got their password verified.
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

export type ThrottleDecision = { allowed: true } | { allowed: false; retryAfter: number };

// Counts one more attempt against each key, answering the counts after it; a
// counter whose window has ended starts over, in the same statement.
const CLAIM = {
  name: 'sign-in-failures-claim',
  text: `INSERT INTO sign_in_failures AS f (key, failures, expires_at)
         SELECT key, 1, now() + make_interval(secs => $2) FROM unnest($1::text[]) AS key
         ON CONFLICT (key) DO UPDATE SET
           failures = CASE WHEN f.expires_at <= now() THEN 1 ELSE f.failures + 1 END,
           expires_at = CASE WHEN f.expires_at <= now() THEN EXCLUDED.expires_at ELSE f.expires_at END
         RETURNING key, failures, ceil(date_part('epoch', expires_at - now()))::int AS seconds_left`,
} as const;

// Gives back the attempts counted on these keys ($1) and clears those ($2).
const RELEASE = {
  name: 'sign-in-failures-release',
  text: `WITH cleared AS (DELETE FROM sign_in_failures WHERE key = ANY($2::text[]))
         UPDATE sign_in_failures SET failures = failures - 1
         WHERE key = ANY($1::text[]) AND failures > 0 AND expires_at > now()`,
} as const;

const accountKey = (email: string) => `account:${sha256(normalizeEmail(email))}`;
const addressKey = (address: string) => `address:${sha256(address)}`;
const keysFor = (email: string, address: string) => [addressKey(address), ...(email ? [accountKey(email)] : [])];

export class SignInThrottle {
  constructor(
    private readonly sql: Sql,
    private readonly policy: ThrottlePolicy,
  ) {}

  /**
   * Whether a sign-in for this email from this address may be tried now. An
   * allowed attempt counts as a failure until succeeded() says otherwise; a
   * refused one is not counted.
   */
  async attempt(email: string, address: string): Promise<ThrottleDecision> {
    const keys = keysFor(email, address);
    const { rows } = await this.sql.query<{ key: string; failures: number; seconds_left: number }>(CLAIM, [keys, this.policy.window]);
    let retryAfter = 0;
    for (const row of rows) {
      const limit = row.key.startsWith('account:') ? this.policy.maxFailuresPerAccount : this.policy.maxFailuresPerAddress;
      // This attempt is among the counted: past the limit, the ones before it used it up.
      if (row.failures > limit) retryAfter = Math.max(retryAfter, row.seconds_left, 1);
    }
    if (retryAfter === 0) return { allowed: true };
    await this.sql.query(RELEASE, [keys, []]);
    return { allowed: false, retryAfter };
  }

  /**
   * The password was right: this attempt is no failure, and the email's count
   * is cleared (not the address's: one account an attacker owns must not
   * reset their count against the others).
   */
  async succeeded(email: string, address: string): Promise<void> {
    await this.sql.query(RELEASE, [[addressKey(address)], [accountKey(email)]]);
  }
}
