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

  /** Spends the cost of one verification without a stored hash. */
  async verifyDecoy(password: string): Promise<false> {
    this.decoy ??= this.hash(crypto.randomUUID());
    await this.verify(await this.decoy, password);
    return false;
  }
}
