// argon2id with parameters from configuration (OWASP minimum by default:
// m=19 MiB, t=2, p=1). Tests lower them through the same configuration.
//
// A password is hashed in Unicode normalization form NFKC (NIST SP 800-63B
// §5.1.1.2): the same text typed on another keyboard or system, composed
// (é) or decomposed (e + ◌́), is the same password.
import argon2 from 'argon2';
import type { Config } from '../config.js';

/** How a stored hash took a password: as hashes are made now, or otherwise (to be stored anew). */
export type Verified = 'current' | 'outdated';

const normalized = (password: string) => password.normalize('NFKC');

/** A password as compared (normalized), and whether that differs from what was typed. */
interface Typed {
  normalized: string;
  changed: boolean;
}

function asTyped(password: string): Typed {
  const form = normalized(password);
  return { normalized: form, changed: form !== password };
}

export class PasswordHasher {
  // A hash of a random password with the same parameters, verified when the
  // email is unknown so that both failures take the same time.
  private decoy?: Promise<string>;

  constructor(private readonly params: Config['argon2']) {}

  hash(password: string): Promise<string> {
    return argon2.hash(normalized(password), { type: argon2.argon2id, ...this.params });
  }

  private async verify(hash: string, password: string): Promise<boolean> {
    try {
      return await argon2.verify(hash, password);
    } catch {
      return false; // a malformed stored hash verifies nothing
    }
  }

  /**
   * Whether `hash` was made otherwise than a hash made now would be (another
   * variant, or ARGON2_* changed since). A malformed hash is not: it verifies
   * nothing, so nothing would replace it.
   */
  private isOutdated(hash: string): boolean {
    try {
      return !hash.startsWith('$argon2id$') || argon2.needsRehash(hash, this.params);
    } catch {
      return false;
    }
  }

  /**
   * Verifies `password` against a stored hash; undefined if it is not the
   * password. `outdated`: the caller stores a fresh hash of it (see
   * Accounts.checkPassword), so raised ARGON2_* reach every account as its
   * owner signs in. A hash stored before passwords were normalized (0.5.8)
   * took the password as typed: tried second, where normalizing changes it.
   *
   * A failure against an outdated hash (made cheaper, before ARGON2_* were
   * raised) is followed by the decoy's verification at the current cost: a
   * wrong password for an email that has an account then takes no less time
   * than one for an email that has none (verifyDecoy).
   */
  async verifyStored(hash: string, password: string): Promise<Verified | undefined> {
    const outdated = this.isOutdated(hash);
    const typed = asTyped(password);
    if (await this.verify(hash, typed.normalized)) return outdated ? 'outdated' : 'current';
    if (typed.changed && (await this.verify(hash, password))) return 'outdated';
    if (outdated) await this.spendDecoy(password, typed);
    return undefined;
  }

  /**
   * Spends the cost of a verification without a stored hash: as many as
   * verifyStored makes of a wrong password (two where normalizing changes it).
   */
  async verifyDecoy(password: string): Promise<false> {
    await this.spendDecoy(password, asTyped(password));
    return false;
  }

  private async spendDecoy(password: string, typed: Typed): Promise<void> {
    this.decoy ??= this.hash(crypto.randomUUID());
    const decoy = await this.decoy;
    await this.verify(decoy, typed.normalized);
    if (typed.changed) await this.verify(decoy, password);
  }
}
