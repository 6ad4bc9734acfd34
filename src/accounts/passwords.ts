// argon2id with parameters from configuration (OWASP minimum by default:
// m=19 MiB, t=2, p=1). Tests lower them through the same configuration.
import argon2 from 'argon2';
import type { Config } from '../config.js';

export class PasswordHasher {
  // A hash of a random password with the same parameters, verified when the
  // email is unknown so that both failures take the same time.
  private decoy?: Promise<string>;

  constructor(private readonly params: Config['argon2']) {}

  hash(password: string): Promise<string> {
    return argon2.hash(password, { type: argon2.argon2id, ...this.params });
  }

  async verify(hash: string, password: string): Promise<boolean> {
    try {
      return await argon2.verify(hash, password);
    } catch {
      return false; // a malformed stored hash verifies nothing
    }
  }

  /**
   * Whether `hash` was made otherwise than a hash made now would be (another
   * variant, or ARGON2_* changed since): a sign-in that verifies it stores a
   * fresh one (Accounts.checkPassword). A malformed hash is not: it verifies
   * nothing, so nothing would replace it.
   */
  isOutdated(hash: string): boolean {
    try {
      return !hash.startsWith('$argon2id$') || argon2.needsRehash(hash, this.params);
    } catch {
      return false;
    }
  }

  /**
   * Verifies `password` against a stored hash. A failure against an outdated
   * one (made cheaper, before ARGON2_* were raised) is followed by the
   * decoy's verification at the current cost: a wrong password for an email
   * that has an account then takes no less time than one for an email that
   * has none (verifyDecoy), which would otherwise tell the two apart.
   */
  async verifyStored(hash: string, password: string): Promise<boolean> {
    if (await this.verify(hash, password)) return true;
    if (this.isOutdated(hash)) await this.verifyDecoy(password);
    return false;
  }

  /** Spends the cost of one verification without a stored hash. */
  async verifyDecoy(password: string): Promise<false> {
    this.decoy ??= this.hash(crypto.randomUUID());
    await this.verify(await this.decoy, password);
    return false;
  }
}
