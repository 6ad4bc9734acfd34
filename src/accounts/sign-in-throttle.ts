// Limits online password guessing. Failed sign-ins are counted per email (one
// account guessed at from anywhere) and per client address (one source trying
// many accounts) over a fixed window that starts at the first failure; past
// either limit, sign-ins for that email or from that address are refused
// until the window ends, without verifying the password (so a flood costs no
// argon2 time). Unknown emails are counted like known ones, so the refusal
// tells nobody which emails have accounts. Counters live in the database, so
// every instance enforces the same limits. Keys are keyed digests (HMAC under
// a key derived from the encryption key): the table holds neither emails nor
// addresses, nor digests anyone could reverse by trying every IPv4 address or
// a list of emails.
//
// Guesses sent at once would all read the counts before any of them failed:
// thirty concurrent wrong passwords all got verified against a limit of ten.
// So each process also counts the sign-ins it is verifying, per key, and lets
// no more run at once than the failures left allow; the others wait their
// turn (a burst of right passwords is let in, a little later). Reading the
// counts and deciding, and recording an outcome and finishing, take turns per
// key, so a decision never pairs counts read before a failure was recorded
// with a running number taken after it finished. Across instances the bound
// is per instance: each lets at most the failures left through at a time.
//
// A limit per email lets anyone who knows an email lock its owner out. So a
// browser that has signed in to the account before (see device-cookies.ts) is
// counted on its own instead of in the email's count: the owner's browsers
// still sign in while someone else's guesses hold the email locked for every
// other browser.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Sql } from '../persistence/database.js';
import { normalizeEmail } from './accounts.js';
import { networkOf } from './client-network.js';

export interface ThrottlePolicy {
  /** Failures per email within the window before that email is refused. */
  maxFailuresPerAccount: number;
  /** Failures from one client address within the window before it is refused. */
  maxFailuresPerAddress: number;
  /** Seconds. */
  window: number;
}

/**
 * Which count refused a sign-in: the email's, the browser's (counted instead
 * of the email's, see device-cookies.ts), the client address's, the
 * address's wrong user codes (device-flow.ts), the account's wrong TOTP codes
 * (secondStep); or `busy`,
 * when other sign-ins for the same email or address held every failure left
 * for longer than a sign-in waits its turn. For operators (the log), never
 * for the page: which limit was reached would tell a guesser what to change.
 */
export type ThrottleLimit = 'account' | 'device' | 'address' | 'user-code' | 'code' | 'busy';

/** A sign-in's outcome: refused (too many failures), or the verification's answer. */
export type ThrottledSignIn = { refused: true; retryAfter: number; limits: ThrottleLimit[] } | { refused: false; accountId: string | undefined };

/** What a sign-in's reading of the counts decided: refused, or whether it may verify now. */
type Decision = { retryAfter: number; limits: ThrottleLimit[] } | { turn: boolean; countedHasFailures: boolean };

/** How long a sign-in waits for its turn behind others for the same email or address. */
const MAX_WAIT_MS = 5_000;

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

/** A keyed, one-way digest (base64url) of an email or address. */
export type KeyedDigest = (value: string) => string;

export class SignInThrottle {
  /** Sign-ins this process is verifying, per key. */
  private readonly verifying = new Map<string, number>();
  /** Per key, the end of the last decision or outcome queued for it (see inTurn). */
  private readonly turns = new Map<string, Promise<void>>();

  constructor(
    private readonly sql: Sql,
    private readonly policy: ThrottlePolicy,
    private readonly digest: KeyedDigest,
  ) {}

  private accountKey(email: string): string {
    return `account:${this.digest(normalizeEmail(email))}`;
  }


  /**
   * Verifies a sign-in with `verify` (the account id, or undefined for a wrong
   * email or password) unless the email (or `browser`, the id of a browser
   * recognised as having signed in to this account before) or the address
   * has no failures left, and records the outcome before the next sign-in for
   * them reads it.
   */
  async signIn(email: string, address: string, verify: () => Promise<string | undefined>, browser?: string): Promise<ThrottledSignIn> {
    // Keyed digests cost an HMAC each: made once per sign-in.
    const account = email ? this.accountKey(email) : undefined;
    const counted = browser ? `device:${this.digest(browser)}` : account;
    return this.attempt(`address:${this.digest(networkOf(address))}`, counted, verify);
  }

  /**
   * Verifies a sign-in's second step, a TOTP code of account `accountId`
   * (accounts/second-factors.ts), with `verify`, unless the account's codes
   * or the address have no failures left. The account's wrong codes have a
   * count of their own, which only a right code clears: in the email's, a
   * right password would clear them (whoever guesses codes has the
   * password), and a million codes would be guessed a few at a time.
   */
  async secondStep(accountId: string, address: string, verify: () => Promise<string | undefined>): Promise<ThrottledSignIn> {
    return this.attempt(`address:${this.digest(networkOf(address))}`, this.codeKey(accountId), verify);
  }

  /** Clears an account's wrong codes: an operator has just reset its authenticator app. */
  async forgiveCodes(accountId: string): Promise<void> {
    await this.sql.query(CLEAR, [this.codeKey(accountId)]);
  }

  private codeKey(accountId: string): string {
    return `code:${this.digest(accountId)}`;
  }

  /**
   * Looks up a user code someone typed at the device verification page
   * (RFC 8628 §3.3) with `find` (undefined: no such code) unless the client
   * address has entered too many wrong codes within the window, counted as
   * failed sign-ins are, apart from them, against the same per-address limit
   * (§5.1: a user code is short enough to guess at).
   */
  async enterUserCode<T>(address: string, find: () => Promise<T | undefined>): Promise<{ refused: true; retryAfter: number } | { refused: false; found: T | undefined }> {
    let found: T | undefined;
    const outcome = await this.attempt(`user-code:${this.digest(networkOf(address))}`, undefined, async () => {
      found = await find();
      return found === undefined ? undefined : 'found';
    });
    return outcome.refused ? { refused: true, retryAfter: outcome.retryAfter } : { refused: false, found };
  }

  /**
   * Runs `verify` (undefined: a failure) unless the `address` key, or the
   * `counted` one (an email's or a browser's), has no failures left, and
   * records the outcome before the next attempt for them reads it.
   */
  private async attempt(address: string, counted: string | undefined, verify: () => Promise<string | undefined>): Promise<ThrottledSignIn> {
    // Sorted, so that sign-ins sharing keys take them in one order and cannot wait on each other.
    const keys = [address, ...(counted ? [counted] : [])].sort();
    const deadline = Date.now() + MAX_WAIT_MS;
    for (;;) {
      const decision = await this.inTurn<Decision>(keys, async () => {
        const { rows } = await this.sql.query<{ key: string; failures: number; seconds_left: number }>(COUNTS, [keys]);
        const failures = new Map(rows.map((row) => [row.key, row]));
        let retryAfter = 0;
        const limits: ThrottleLimit[] = [];
        for (const row of rows) {
          if (row.failures < this.limit(row.key)) continue;
          retryAfter = Math.max(retryAfter, row.seconds_left, 1);
          limits.push(limitOf(row.key));
        }
        if (retryAfter > 0) return { retryAfter, limits: limits.sort() };
        // Those already verifying may fail too: no more at once than the failures left.
        const turn = keys.every((key) => (failures.get(key)?.failures ?? 0) + this.running(key) < this.limit(key));
        if (turn) this.take(keys);
        return { turn, countedHasFailures: counted !== undefined && failures.has(counted) };
      });
      if ('retryAfter' in decision) return { refused: true, retryAfter: decision.retryAfter, limits: decision.limits };
      if (decision.turn) {
        let accountId: string | undefined;
        try {
          accountId = await verify();
        } catch (error) {
          this.give(keys);
          throw error;
        }
        await this.inTurn(keys, async () => {
          try {
            if (!accountId) await this.sql.query(RECORD, [keys, this.policy.window]);
            // A right password clears the count of the email, or of the
            // browser it came from if that was counted instead (not the
            // email's then, which may be held by someone else's guesses; nor
            // the address's: one account an attacker owns must not reset
            // their count against the others); a right code, the account's
            // count of codes.
            else if (decision.countedHasFailures) await this.sql.query(CLEAR, [counted]);
          } finally {
            this.give(keys);
          }
        });
        return { refused: false, accountId };
      }
      if (Date.now() >= deadline) return { refused: true, retryAfter: 1, limits: ['busy'] };
      await sleep(10 + Math.random() * 20);
    }
  }

  /** Clears the email's failures: an operator has just set a new password for it. */
  async forgive(email: string): Promise<void> {
    await this.sql.query(CLEAR, [this.accountKey(email)]);
  }

  /** Runs `task` when no other decision or outcome for any of `keys` is in progress here. */
  private async inTurn<T>(keys: string[], task: () => Promise<T>): Promise<T> {
    const releases: Array<() => void> = [];
    try {
      for (const key of keys) releases.push(await this.turnFor(key));
      return await task();
    } finally {
      for (const release of releases.reverse()) release();
    }
  }

  /** Waits for `key`'s turn; the function returned ends it. */
  private async turnFor(key: string): Promise<() => void> {
    const before = this.turns.get(key) ?? Promise.resolve();
    let end!: () => void;
    const mine = new Promise<void>((resolve) => (end = resolve));
    const queue = before.then(() => mine);
    this.turns.set(key, queue);
    await before;
    return () => {
      end();
      if (this.turns.get(key) === queue) this.turns.delete(key);
    };
  }

  private limit(key: string): number {
    return key.startsWith('address:') || key.startsWith('user-code:') ? this.policy.maxFailuresPerAddress : this.policy.maxFailuresPerAccount;
  }

  private running(key: string): number {
    return this.verifying.get(key) ?? 0;
  }

  private take(keys: string[]): void {
    for (const key of keys) this.verifying.set(key, this.running(key) + 1);
  }

  private give(keys: string[]): void {
    for (const key of keys) {
      const left = this.running(key) - 1;
      if (left > 0) this.verifying.set(key, left);
      else this.verifying.delete(key);
    }
  }
}

/** The kind of count a key is (the part before its digest). */
function limitOf(key: string): ThrottleLimit {
  return key.slice(0, key.indexOf(':')) as ThrottleLimit;
}
