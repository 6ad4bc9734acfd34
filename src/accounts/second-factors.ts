// The second step of a sign-in: a TOTP code (accounts/totp.ts) after the
// password, for the people an operator requires it of (`user update --totp
// required`). Each person's key is made when the setup page shows it, kept
// sealed (keys/sealed-secrets.ts: a database dump alone makes no codes), and
// set up once the person entered a code of it. The step itself is a prompt
// of the sign-in (provider/second-factor-prompt.ts), its page in
// interactions/routes.ts.
//
// The keys are sealed (AES-256-GCM, bound to their row) under a key derived
// from a server secret (keys/server-secrets.ts), itself sealed under
// ENCRYPTION_KEYS: a new encryption key reseals that one row at a server's
// start, while instances still on the old list, which hold the secret open,
// go on reading every person's key.
//
// A key not set up yet belongs to the session it was shown to: the page
// shown to another session (someone else who has the password) makes a new
// key, so that a key seen once, and scanned into someone's app, does not
// become the person's later. Whoever was shown the key last and enters a
// code of it sets up the app: the operator requires TOTP before the password
// is given out.
import type { Prisma } from '../persistence/database.js';
import { SealError, type SecretSealer } from '../keys/sealed-secrets.js';
import { sha256 } from '../persistence/hash.js';
import { matchingStep, newTotpKey } from './totp.js';

/** What `user show` says of a person's second step: required or not, and since when their key is set up (null: not set up). */
export interface TotpState {
  required: boolean;
  setUpAt: Date | null;
  /** Whether the code step is locked (MAX_CONSECUTIVE_FAILURES wrong codes), until `user reset-totp`. */
  locked: boolean;
}

/**
 * Wrong codes in a row, whatever the time between them, after which the
 * code step is locked until an operator resets it (`user reset-totp`): the
 * sign-in throttle's window alone would let someone who has the password
 * guess on for ever, a few codes at a time (NIST SP 800-63B §5.2.2 sets 100
 * at most; RFC 4226 §7.3 asks for such a limit).
 */
export const MAX_CONSECUTIVE_FAILURES = 100;

/** Bound to the row: a sealed key copied to another person's row does not open. */
const sealContext = (userId: string) => `totp key of user ${userId}`;

/** How a key not set up yet names the session it was shown to (its uid, which the session's cookie is not). */
const shownTo = (sessionUid: string) => sha256(`totp setup of session ${sessionUid}`);

/** What the second step asks of a person now: nothing (not required, or no longer), a code, or the setup of this key. */
export type Step = { kind: 'not_required' } | { kind: 'code' } | { kind: 'setup'; key: Buffer };

/** What became of a code: taken, wrong (or used before), or not checked (the step is locked). */
export type CodeOutcome = 'taken' | 'wrong' | 'locked';

export class SecondFactors {
  /**
   * `keys`: the sealer of people's keys, made from the server secret on
   * first use (a server's start; a CLI command never needs it).
   */
  constructor(
    private readonly prisma: Prisma,
    private readonly keys: () => Promise<SecretSealer>,
  ) {}

  async stateOf(userId: string): Promise<TotpState> {
    const user = await this.prisma.user.findUnique({ where: { id: userId }, select: { totpRequired: true, totpSecret: { select: { setUpAt: true, failures: true } } } });
    return { required: Boolean(user?.totpRequired), setUpAt: user?.totpSecret?.setUpAt ?? null, locked: (user?.totpSecret?.failures ?? 0) >= MAX_CONSECUTIVE_FAILURES };
  }

  /**
   * Opens the server secret the keys are sealed under, or makes it (see
   * keys/server-secrets.ts): a server's start, so that a lost row stops it,
   * and so does another database's (a restore that mixed two backups), which
   * opens none of the keys: a stored key is opened to tell.
   */
  async loadKeys(): Promise<void> {
    const keys = await this.keys();
    const sample = await this.prisma.totpSecret.findFirst({ select: { userId: true, secret: true } });
    if (sample) open(keys, sample.userId, sample.secret);
  }

  /**
   * What the step asks of the person signed in to session `sessionUid`, read
   * from the database (an operator's `--totp off` while the page was open is
   * heeded at once). For a setup, the key shown to this session before, so
   * that a reload or a second tab shows the key the app already scanned; else
   * a new one, which replaces a key shown to another session. A key set up is
   * never shown again.
   */
  async stepFor(userId: string, sessionUid: string): Promise<Step> {
    const shown = shownTo(sessionUid);
    const keys = await this.keys();
    // Sessions showing the page at once each replace the others' key: a few
    // turns, and then the page fails rather than spin.
    for (let attempt = 0; attempt < 5; attempt++) {
      const user = await this.prisma.user.findUnique({ where: { id: userId }, select: { totpRequired: true, totpSecret: { select: { secret: true, shownTo: true, setUpAt: true } } } });
      const row = user?.totpSecret;
      if (!user?.totpRequired) return { kind: 'not_required' };
      if (row?.setUpAt) return { kind: 'code' };
      if (row?.shownTo === shown) return { kind: 'setup', key: open(keys, userId, row.secret) };
      // Only while TOTP is required (FOR SHARE: a `--totp off` being
      // committed is waited for), never over a key set up meanwhile, nor over
      // one another tab of this session made meanwhile (the read above tells).
      const sealed = keys.seal(newTotpKey().toString('base64url'), sealContext(userId));
      const made = await this.prisma.$queryRaw<{ secret: string }[]>`
        INSERT INTO totp_secrets (user_id, secret, shown_to)
        SELECT id, ${sealed}, ${shown} FROM users WHERE id = ${userId}::uuid AND totp_required FOR SHARE
        ON CONFLICT (user_id) DO UPDATE SET secret = EXCLUDED.secret, shown_to = EXCLUDED.shown_to, last_step = NULL, failures = 0, created_at = now()
        WHERE totp_secrets.set_up_at IS NULL AND totp_secrets.shown_to IS DISTINCT FROM EXCLUDED.shown_to
        RETURNING secret`;
      if (made[0]) return { kind: 'setup', key: open(keys, userId, made[0].secret) };
    }
    throw new Error("the person's TOTP key was replaced by other sessions' setup pages as fast as it was made");
  }

  /**
   * Takes `code` if it is a code of the person's key at `at` (ms) not taken
   * before: the step it belongs to is recorded in the same statement that
   * checks it is later than the last one recorded, so that one code (seen
   * over a shoulder, replayed) signs in once, also when sent twice at once.
   * A first code taken sets the key up, only from the session it was shown
   * to. Wrong for a person without a key (reset meanwhile) or whose key was
   * shown to another session; each wrong code of a key counts towards
   * MAX_CONSECUTIVE_FAILURES, and a right one clears the count.
   */
  async take(userId: string, sessionUid: string, code: string, at: number): Promise<CodeOutcome> {
    const keys = await this.keys();
    const row = await this.prisma.totpSecret.findUnique({ where: { userId }, select: { secret: true, lastStep: true, shownTo: true, setUpAt: true, failures: true } });
    if (!row || (row.setUpAt === null && row.shownTo !== shownTo(sessionUid))) return 'wrong';
    // Counted as a failure before it is checked, in a statement that refuses
    // past the limit: codes sent at once cannot all read 99 and be checked.
    // A right code clears the count below. (`secret` in each statement: a key
    // reset and made again meanwhile is another key.)
    const counted = await this.prisma.$executeRaw`
      UPDATE totp_secrets SET failures = failures + 1
      WHERE user_id = ${userId}::uuid AND secret = ${row.secret} AND failures < ${MAX_CONSECUTIVE_FAILURES}`;
    if (counted === 0) return (await this.isLocked(userId)) ? 'locked' : 'wrong';
    const step = matchingStep(open(keys, userId, row.secret), code, at, row.lastStep === null ? null : Number(row.lastStep));
    if (step === undefined) return 'wrong';
    const taken = await this.prisma.$executeRaw`
      UPDATE totp_secrets SET last_step = ${step}, set_up_at = coalesce(set_up_at, now()), shown_to = NULL, failures = 0
      WHERE user_id = ${userId}::uuid AND secret = ${row.secret} AND (last_step IS NULL OR last_step < ${step})`;
    return taken === 1 ? 'taken' : 'wrong';
  }

  private async isLocked(userId: string): Promise<boolean> {
    const row = await this.prisma.totpSecret.findUnique({ where: { userId }, select: { failures: true } });
    return (row?.failures ?? 0) >= MAX_CONSECUTIVE_FAILURES;
  }
}

function open(keys: SecretSealer, userId: string, sealed: string): Buffer {
  try {
    return Buffer.from(keys.open(sealed, sealContext(userId)), 'base64url');
  } catch (error) {
    // The sealer's words would send the operator to ENCRYPTION_KEYS: it is the server secret that does not open it.
    if (!(error instanceof SealError)) throw error;
    throw new SealError(
      `the TOTP key of user ${userId} does not open under the server secret 'totp keys' (table server_secrets): ` +
        "the row is another database's (restore this database's own), or the key's was changed outside Portcullis (`portcullis user reset-totp` makes the person set up anew)",
      { cause: error },
    );
  }
}
