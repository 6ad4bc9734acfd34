// The second step of a sign-in: a TOTP code (accounts/totp.ts) after the
// password, for the people an operator requires it of (`user update --totp
// required`). Each person's key is made when the setup page first shows it,
// kept sealed (keys/sealed-secrets.ts: a database dump alone makes no codes),
// and set up once the person entered a code of it. The step itself is a
// prompt of the sign-in (provider/second-factor-prompt.ts), its page in
// interactions/routes.ts.
import type { Database, Prisma } from '../persistence/database.js';
import type { SecretSealer } from '../keys/sealed-secrets.js';
import { matchingStep, newTotpKey } from './totp.js';

/** What `user show` says of a person's second step: required or not, and since when their key is set up (null: not set up). */
export interface TotpState {
  required: boolean;
  setUpAt: Date | null;
}

/** Bound to the row: a sealed key copied to another person's row does not open. */
const sealContext = (userId: string) => `totp key of user ${userId}`;

export class SecondFactors {
  constructor(
    private readonly prisma: Prisma,
    private readonly sealer: SecretSealer,
  ) {}

  async stateOf(userId: string): Promise<TotpState> {
    const user = await this.prisma.user.findUnique({ where: { id: userId }, select: { totpRequired: true, totpSecret: { select: { setUpAt: true } } } });
    return { required: Boolean(user?.totpRequired), setUpAt: user?.totpSecret?.setUpAt ?? null };
  }

  /**
   * The key the setup page shows: the one made when it was first shown, so
   * that a reload (or a second tab) shows the key the app already scanned.
   * Undefined once one is set up: a key in use is never shown again.
   */
  async keyToSetUp(userId: string): Promise<Buffer | undefined> {
    const stored = () => this.prisma.totpSecret.findUnique({ where: { userId }, select: { secret: true, setUpAt: true } });
    let row = await stored();
    if (!row) {
      // Two pages shown at once keep the first one's key.
      const sealed = this.sealer.seal(newTotpKey().toString('base64url'), sealContext(userId));
      await this.prisma.totpSecret.createMany({ data: [{ userId, secret: sealed }], skipDuplicates: true });
      row = await stored();
    }
    return row && row.setUpAt === null ? this.open(userId, row.secret) : undefined;
  }

  /**
   * Takes `code` if it is a code of the person's key at `at` (ms) not taken
   * before: the step it belongs to is recorded in the same statement that
   * checks it is later than the last one recorded, so that one code (seen
   * over a shoulder, replayed) signs in once, also when sent twice at once.
   * A first code taken sets the key up. False for a wrong code, and for a
   * person without a key (reset meanwhile).
   */
  async take(userId: string, code: string, at: number): Promise<boolean> {
    const row = await this.prisma.totpSecret.findUnique({ where: { userId }, select: { secret: true, lastStep: true } });
    if (!row) return false;
    const step = matchingStep(this.open(userId, row.secret), code, at, row.lastStep === null ? null : Number(row.lastStep));
    if (step === undefined) return false;
    // `secret` too: a key reset and made again meanwhile is another key.
    const taken = await this.prisma.$executeRaw`
      UPDATE totp_secrets SET last_step = ${step}, set_up_at = coalesce(set_up_at, now())
      WHERE user_id = ${userId}::uuid AND secret = ${row.secret} AND (last_step IS NULL OR last_step < ${step})`;
    return taken === 1;
  }

  /** `user update --totp`: required from the person's next sign-in (and the sessions' next request), or not at all (the key forgotten). */
  async require(userId: string, required: boolean): Promise<void> {
    await this.prisma.$transaction([
      this.prisma.user.update({ where: { id: userId }, data: { totpRequired: required } }),
      ...(required ? [] : [this.prisma.totpSecret.deleteMany({ where: { userId } })]),
    ]);
  }

  /** `user reset-totp`: forgets the person's key (a lost phone); false if there was none. */
  async reset(userId: string): Promise<boolean> {
    return (await this.prisma.totpSecret.deleteMany({ where: { userId } })).count > 0;
  }

  /**
   * A server's start seals every key sealed under an encryption key that no
   * longer seals again, as it does the signing keys. A row changed
   * meanwhile (set up, reset) is left for the next start.
   */
  async reseal(): Promise<number> {
    let resealed = 0;
    const rows = await this.prisma.totpSecret.findMany({ where: { secret: { not: { startsWith: this.sealer.currentPrefix() } } }, select: { userId: true, secret: true } });
    for (const { userId, secret } of rows) {
      const again = this.sealer.seal(this.sealer.open(secret, sealContext(userId)), sealContext(userId));
      resealed += (await this.prisma.totpSecret.updateMany({ where: { userId, secret }, data: { secret: again } })).count;
    }
    return resealed;
  }

  private open(userId: string, sealed: string): Buffer {
    return Buffer.from(this.sealer.open(sealed, sealContext(userId)), 'base64url');
  }
}

/** Whether any TOTP key is stored (every one is sealed: the database then needs its encryption key). */
export async function holdsTotpKeys(prisma: Database['prisma']): Promise<boolean> {
  return (await prisma.totpSecret.count()) > 0;
}
