// People who sign in: create, verify a password, and the claims oidc-provider asks for.
import { randomUUID } from 'node:crypto';
import type { Account, FindAccount } from 'oidc-provider';
import { Batcher } from '../persistence/batcher.js';
import type { Database, Prisma, Sql } from '../persistence/database.js';
import { NotifiedCache } from '../persistence/notified-cache.js';
import { storable } from '../persistence/nul.js';
import type { PasswordHasher } from './passwords.js';

export class AccountError extends Error {
  override name = 'AccountError';
}

export interface NewUser {
  email: string;
  name?: string;
  password: string;
  emailVerified?: boolean;
}

export interface UserView {
  id: string;
  email: string;
  name: string | null;
  emailVerified: boolean;
}

const MIN_PASSWORD_LENGTH = 8;
const EMAIL = /^[^\s@]+@[^\s@]+$/;

/** Emails compare case-insensitively; we keep them lower-cased (NFC) so the unique index agrees. */
export function normalizeEmail(email: string): string {
  return email.trim().normalize('NFC').toLowerCase();
}

// findAccount runs on every refresh, userinfo and code exchange: cached
// (persistence/notified-cache.ts), and otherwise on the pg pool directly, like
// the provider adapter (see persistence/database.ts), batched like the
// adapter's lookups (persistence/batcher.ts).
const FIND_ACCOUNTS = {
  name: 'account-find-many',
  text: 'SELECT id, email, name, email_verified, updated_at FROM users WHERE id = ANY($1::uuid[])',
} as const;

const PASSWORD_OF = {
  name: 'account-password',
  text: 'SELECT u.id, p.hash FROM users u JOIN passwords p ON p.user_id = u.id WHERE u.email = $1',
} as const;

/** A trigger on `users` (migration 20261130094000_user_changes) announces every update and delete here. */
export const USER_CHANGES_CHANNEL = 'portcullis_user_changes';

interface AccountRow {
  id: string;
  email: string;
  name: string | null;
  email_verified: boolean;
  updated_at: Date;
}

export class Accounts {
  private readonly byId: Batcher<string, AccountRow | undefined>;
  // Caches nothing until listenForChanges(): the CLI reads once and exits.
  private readonly cache = new NotifiedCache<AccountRow>();

  constructor(
    private readonly prisma: Prisma,
    private readonly sql: Sql,
    private readonly hasher: PasswordHasher,
  ) {
    this.byId = new Batcher(async (entries) => {
      const { rows } = await sql.query<AccountRow>(FIND_ACCOUNTS, [entries.map(([id]) => id)]);
      return new Map(rows.map((row) => [row.id, row]));
    });
  }

  /** Serve account lookups from memory while a change feed tells us what to forget (a server, on PostgreSQL). */
  async listenForChanges(database: Database): Promise<void> {
    await this.cache.listen(database, USER_CHANGES_CHANNEL);
  }

  private load(id: string): Promise<AccountRow | undefined> {
    const key = id.toLowerCase();
    return this.cache.get(key, () => this.byId.load(key));
  }

  async create(input: NewUser): Promise<UserView> {
    const email = normalizeEmail(input.email);
    // RFC 5321 §4.5.3.1.3: a path, and so an address, has at most 254 characters.
    if (email.length > 254) throw new AccountError('an email address has at most 254 characters');
    if (!EMAIL.test(email)) throw new AccountError(`"${input.email}" is not an email address`);
    if (input.password.length < MIN_PASSWORD_LENGTH) {
      throw new AccountError(`the password must be at least ${MIN_PASSWORD_LENGTH} characters`);
    }
    const exists = await this.prisma.user.findUnique({ where: { email }, select: { id: true } });
    if (exists) throw new AccountError(`a user with email ${email} already exists`);
    const hash = await this.hasher.hash(input.password);
    return this.prisma.user.create({
      data: {
        id: randomUUID(),
        email,
        name: input.name?.trim() || null,
        emailVerified: input.emailVerified ?? false,
        password: { create: { hash } },
      },
      select: { id: true, email: true, name: true, emailVerified: true },
    });
  }

  /** The user's id when the password is right; undefined otherwise, in the same time either way. */
  async verifyPassword(email: string, password: string): Promise<string | undefined> {
    // On the sign-in path: one statement on the pg pool (see persistence/database.ts).
    // An email no column can hold belongs to nobody: the decoy below keeps the timing.
    const normalized = normalizeEmail(email);
    const { rows } = storable(normalized) ? await this.sql.query<{ id: string; hash: string }>(PASSWORD_OF, [normalized]) : { rows: [] };
    const user = rows[0];
    if (!user) {
      await this.hasher.verifyDecoy(password);
      return undefined;
    }
    return (await this.hasher.verify(user.hash, password)) ? user.id : undefined;
  }

  async find(id: string): Promise<UserView | undefined> {
    if (!isUuid(id)) return undefined;
    const user = await this.load(id);
    return user && { id: user.id, email: user.email, name: user.name, emailVerified: user.email_verified };
  }

  /** oidc-provider's findAccount: the provider filters the claims by granted scope (see `claims` in configuration). */
  readonly findAccount: FindAccount = async (_ctx, sub) => {
    if (!isUuid(sub)) return undefined;
    const user = await this.load(sub);
    if (!user) return undefined;
    const account: Account = {
      accountId: user.id,
      claims: () => ({
        sub: user.id,
        email: user.email,
        email_verified: user.email_verified,
        ...(user.name ? { name: user.name } : {}),
        updated_at: Math.floor(user.updated_at.getTime() / 1000),
      }),
    };
    return account;
  };
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
function isUuid(value: string): boolean {
  return UUID.test(value);
}
