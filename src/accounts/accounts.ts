// People who sign in: create, verify a password, and the claims oidc-provider asks for.
import { randomUUID } from 'node:crypto';
import { domainToASCII } from 'node:url';
import { unshowable } from '../display-text.js';
import type { Account, FindAccount } from 'oidc-provider';
import { sha256, sha256Sql } from '../persistence/hash.js';
import { Batcher } from '../persistence/batcher.js';
import type { Database, Prisma, Sql } from '../persistence/database.js';
import { NotifiedCache } from '../persistence/notified-cache.js';
import { storable } from '../persistence/nul.js';
import type { PasswordHasher } from './passwords.js';
import { passwordProblem, type PasswordPolicy } from './password-policy.js';
import { countByKind, type Removed } from '../provider/removed.js';
import type { SessionEnd } from '../clients/logout-tokens.js';
import { ACCOUNT_CLIENT_ID } from '../self-service/account-client.js';

export class AccountError extends Error {
  override name = 'AccountError';
}

/** What `user update` may change; absent: kept. An empty name removes it. */
export interface UserChanges {
  email?: string;
  name?: string;
  emailVerified?: boolean;
  /** A TOTP code after the password (accounts/second-factors.ts); false also forgets the person's key. */
  totpRequired?: boolean;
}

export interface NewUser {
  email: string;
  name?: string;
  password: string;
  emailVerified?: boolean;
  totpRequired?: boolean;
}

export interface UserView {
  id: string;
  email: string;
  name: string | null;
  emailVerified: boolean;
}

export interface UserListing extends UserView {
  createdAt: Date;
  /** Since when `user disable` refuses the user; null: not disabled. */
  disabledAt: Date | null;
}

/** What `user show` tells of a user: who they are, and what they gave and hold now. */
export interface UserDetails extends UserListing {
  /** When the password was last set (null: none was, the user cannot sign in). */
  passwordSetAt: Date | null;
  /** The sessions honoured now, in every browser. */
  sessions: number;
  consents: ConsentView[];
}

/** A consent (a grant) the user gave an app, unexpired. */
export interface ConsentView {
  clientId: string;
  /** null: the app was deleted since (a consent of a deleted client is no longer used). */
  clientName: string | null;
  /** The OpenID Connect scopes granted ('' for none: an API's scopes only). */
  scope: string;
  /** The scopes granted per API, by its identifier. */
  apis: Record<string, string>;
  /** When it was first given (giving more scopes later keeps the same consent). */
  firstGivenAt: Date;
  expiresAt: Date | null;
  /** When a sign-out withdrew it; null: in force. */
  withdrawnAt: Date | null;
}

const MAX_NAME_LENGTH = 200;
/** Users per read of `user list`: a few hundred KB of rows at a time. */
const LIST_PAGE_SIZE = 1000;
// What a browser lets a person type into the sign-in form's type=email field
// (the HTML Standard's valid e-mail address): an address outside it could
// never sign in.
const EMAIL = /^[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$/;

/**
 * Emails compare case-insensitively; we keep them lower-cased (NFC) so the
 * unique index agrees, with an internationalized domain in its ASCII form
 * (`bücher.example` is `xn--bcher-kva.example`), which is what a browser's
 * email field sends, so that the CLI and the sign-in page name one account.
 */
export function normalizeEmail(email: string): string {
  const normalized = email.trim().normalize('NFC').toLowerCase();
  const at = normalized.lastIndexOf('@');
  const domain = normalized.slice(at + 1);
  if (at < 0 || /^[\x20-\x7e]*$/.test(domain)) return normalized;
  // (Empty for what is no domain: the address is then refused as it was typed.)
  const ascii = domainToASCII(domain);
  return ascii ? `${normalized.slice(0, at + 1)}${ascii}` : normalized;
}

/** The email address `text` names, as stored, if it is one a person could sign in with (a login_hint worth filling in, say). */
export function emailAddressIn(text: string): string | undefined {
  const email = normalizeEmail(text);
  return email.length <= 254 && EMAIL.test(email) ? email : undefined;
}

// findAccount runs on every refresh, userinfo and code exchange: cached
// (persistence/notified-cache.ts), and otherwise on the pg pool directly, like
// the provider adapter (see persistence/database.ts), batched like the
// adapter's lookups (persistence/batcher.ts).
const FIND_ACCOUNTS = {
  name: 'account-find-many',
  text: 'SELECT id, email, name, email_verified, updated_at, signed_out_at, revoked_at, disabled_at, totp_required FROM users WHERE id = ANY($1::uuid[])',
} as const;

// FOR SHARE: a user revoke or set-password still open holds these rows; the
// read waits for it to commit and sees what it wrote, where a plain read would
// see what was there before, in the moment between its delete and its commit.
const REVOKED_AT = { name: 'account-revoked-at', text: 'SELECT revoked_at FROM users WHERE id = $1::uuid FOR SHARE' } as const;
const PASSWORD_NOW = { name: 'account-password-now', text: 'SELECT hash FROM passwords WHERE user_id = $1::uuid FOR SHARE' } as const;
// Not updated_at: the password is the same one, only stored anew.
const REHASH = { name: 'account-rehash', text: 'UPDATE passwords SET hash = $3 WHERE user_id = $1::uuid AND hash = $2' } as const;
/** A user's consents in force ($1), but the account page's own grant ($2, self-service/account-client.ts), which is nobody's consent. */
const CONSENTS_OF = {
  name: 'account-consents',
  text: `SELECT g.client_id, c.name AS client_name, coalesce(g.payload #>> '{openid,scope}', '') AS scope,
                CASE jsonb_typeof(g.payload->'resources') WHEN 'object' THEN g.payload->'resources' ELSE '{}'::jsonb END AS apis,
                g.created_at AS first_given_at, g.expires_at, g.consumed_at AS withdrawn_at
         FROM provider_artifacts g LEFT JOIN clients c ON c.client_id = g.client_id
         WHERE g.kind = 'Grant' AND g.account_id = $1 AND (g.expires_at IS NULL OR g.expires_at > now()) AND g.client_id <> $2
         ORDER BY g.created_at, g.id`,
} as const;
interface ConsentRow {
  client_id: string;
  client_name: string | null;
  scope: string;
  apis: Record<string, string>;
  first_given_at: Date;
  expires_at: Date | null;
  withdrawn_at: Date | null;
}

// A page of `user list`, after the last one's final user. A row comparison,
// where `created_at > $1 OR (created_at = $1 AND id > $2)` would read the
// index from its start on every page (the users_created_at_id_idx).
const LIST_PAGE = {
  name: 'account-list-page',
  text: `SELECT id, email, name, email_verified, created_at, disabled_at FROM users
         WHERE (created_at, id) > ($1::timestamptz, $2::uuid) ORDER BY created_at, id LIMIT $3`,
} as const;
interface ListedRow {
  id: string;
  email: string;
  name: string | null;
  email_verified: boolean;
  created_at: Date;
  disabled_at: Date | null;
}
const PASSWORD_OF = {
  name: 'account-password',
  text: 'SELECT u.id, p.hash, u.disabled_at FROM users u JOIN passwords p ON p.user_id = u.id WHERE u.email = $1',
} as const;

/**
 * Everything the provider keeps for one account ($1): sessions, grants, and
 * the codes and tokens issued under them (their payloads name the account),
 * and sign-ins in progress, whose interaction names the account in the
 * session it started from or in the login it finished. A scan of the
 * payloads, as `client delete` makes: an operator's command, not a request's.
 */
const INTERACTIONS_OF_ACCOUNT = `(kind = 'Interaction' AND (payload #>> '{session,accountId}' = $1 OR payload #>> '{result,login,accountId}' = $1))`;
const ARTIFACTS_OF_ACCOUNT = `account_id = $1 OR payload->>'accountId' = $1 OR ${INTERACTIONS_OF_ACCOUNT}`;

/** Only what keeps the account signed in: its sessions and its sign-ins in progress. */
const SIGN_INS_OF_ACCOUNT = `(kind = 'Session' AND payload->>'accountId' = $1) OR ${INTERACTIONS_OF_ACCOUNT}`;

/**
 * The consents that end with the account's sessions, as at a sign-out (see
 * grantsEndingWith in provider/session-payloads.ts): those its live sessions hold
 * without the library's persistsLogout, and those its sign-ins in progress
 * were given (not yet named by a session). A consent that holds
 * offline_access now stays, whatever the session or request that used it
 * asked for: remembered consents are shared by sessions, and one given
 * without offline_access may have been given it since, in another browser.
 * As grant ids, the grant_id of what was issued under them.
 */
const CONSENTS_ENDING_WITH_SIGN_INS = `
  SELECT ending.grant_id FROM (
    SELECT a.value->>'grantId' AS grant_id FROM provider_artifacts s
      CROSS JOIN LATERAL jsonb_each(CASE jsonb_typeof(s.payload->'authorizations') WHEN 'object' THEN s.payload->'authorizations' ELSE '{}'::jsonb END) a
    WHERE s.kind = 'Session' AND s.payload->>'accountId' = $1 AND s.consumed_at IS NULL
      AND a.value->>'grantId' IS NOT NULL AND a.value->>'persistsLogout' IS DISTINCT FROM 'true'
    UNION
    SELECT payload #>> '{result,consent,grantId}' FROM provider_artifacts
    WHERE ${INTERACTIONS_OF_ACCOUNT} AND payload #>> '{result,consent,grantId}' IS NOT NULL
  ) ending
  -- One primary-key probe per consent (LATERAL ... LIMIT 1, as the adapter's
  -- find): as NOT EXISTS, a generic plan hashed every grant in the table.
  LEFT JOIN LATERAL (
    SELECT g.payload #>> '{openid,scope}' AS scope FROM provider_artifacts g
    WHERE g.kind = 'Grant' AND g.id = ${sha256Sql('ending.grant_id')} LIMIT 1
  ) g ON true
  WHERE NOT 'offline_access' = ANY (string_to_array(coalesce(g.scope, ''), ' '))`;

/**
 * Those consents and every code and token issued under them, by key: the
 * consents found once, their rows by primary key and the rest by the
 * grant_id index. As one condition (`grant_id IN (…) OR payload->>'jti' IN
 * (…)`) it read the whole table and found the consents twice: 5.5 s at 3M
 * rows (probe AQ).
 */
const CONSENTS_OF_SIGN_INS = `(id, kind) IN (
  WITH ending AS MATERIALIZED (${CONSENTS_ENDING_WITH_SIGN_INS})
  SELECT id, kind FROM provider_artifacts WHERE grant_id IN (SELECT grant_id FROM ending)
  UNION ALL
  SELECT id, kind FROM provider_artifacts WHERE kind = 'Grant' AND id IN (SELECT ${sha256Sql('grant_id')} FROM ending))`;

interface DeletedArtifact {
  kind: string;
  /** A live session's `authorizations`: per app, the session's id for it (`sid`) once the app signed in with it. */
  apps: Record<string, { sid?: unknown }> | null;
}

/**
 * The apps of the sessions a command deleted, each with the session's id
 * for it (what its ID tokens carry as `sid`), for them to be told
 * (clients/logout-tokens.ts): taken from the rows the DELETE removed, so a
 * session is told of exactly when it ends. Only entries with a sid: the
 * library makes one without it for an app that merely asked about the
 * session (see provider/backchannel-logout.ts).
 */
function appsOfEndedSessions(accountId: string, deleted: DeletedArtifact[]): SessionEnd[] {
  return deleted.flatMap(({ apps }) =>
    apps && typeof apps === 'object'
      ? Object.entries(apps).flatMap(([clientId, part]) => (typeof part?.sid === 'string' ? [{ accountId, clientId, sid: part.sid }] : []))
      : [],
  );
}

/** A trigger on `users` (migration 20261130094000_user_changes) announces every update and delete here. */
export const USER_CHANGES_CHANNEL = 'portcullis_user_changes';

interface AccountRow {
  id: string;
  email: string;
  name: string | null;
  email_verified: boolean;
  updated_at: Date;
  signed_out_at: Date | null;
  revoked_at: Date | null;
  disabled_at: Date | null;
  totp_required: boolean;
}

export class Accounts {
  private readonly byId: Batcher<string, AccountRow | undefined>;
  // Caches nothing until listenForChanges(): the CLI reads once and exits.
  private readonly cache = new NotifiedCache<AccountRow>();

  constructor(
    private readonly prisma: Prisma,
    private readonly sql: Sql,
    private readonly hasher: PasswordHasher,
    private readonly passwordPolicy: PasswordPolicy,
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
    const email = checkEmail(input.email);
    await this.checkNewPassword(input.password, email);
    const name = input.name?.trim() || null;
    checkName(name);
    await this.assertEmailFree(email);
    const hash = await this.hasher.hash(input.password);
    return this.prisma.user.create({
      data: {
        id: randomUUID(),
        email,
        name,
        emailVerified: input.emailVerified ?? false,
        totpRequired: input.totpRequired ?? false,
        password: { create: { hash } },
      },
      select: { id: true, email: true, name: true, emailVerified: true },
    });
  }

  private async checkNewPassword(password: string, email: string): Promise<void> {
    const problem = await passwordProblem(password, email, this.passwordPolicy);
    if (problem) throw new AccountError(problem);
  }

  /**
   * Every user, oldest first, a page at a time: a directory of a million
   * people is shown without being held in memory at once. Each page starts
   * after the last one's final user (created_at, then id for those made in
   * the same millisecond).
   */
  async *list(pageSize = LIST_PAGE_SIZE): AsyncGenerator<UserListing[]> {
    let after = ['-infinity', '00000000-0000-0000-0000-000000000000'];
    for (;;) {
      const { rows } = await this.sql.query<ListedRow>(LIST_PAGE, [...after, pageSize]);
      if (rows.length > 0) {
        yield rows.map((row) => ({ id: row.id, email: row.email, name: row.name, emailVerified: row.email_verified, createdAt: row.created_at, disabledAt: row.disabled_at }));
      }
      if (rows.length < pageSize) return;
      const last = rows[rows.length - 1]!;
      // As text: the driver writes a Date in local time, off by seconds in a zone of the past whose offset had them.
      after = [last.created_at.toISOString(), last.id];
    }
  }

  /**
   * One user, as `user show` tells: their listing, when the password was
   * set, how many sessions the server honours now, and their consents,
   * oldest first. A session counts as isSignedIn and the server's session
   * lookup (provider/sign-outs.ts) have it: not one a sign-out's or revoke's
   * cut-off ends, nor one signed in more than `sessionMaxAge` seconds ago
   * (the server's SESSION_MAX_AGE: the CLI's environment must give the
   * same). A consent withdrawn at a sign-out (consumed_at, see adapter.ts)
   * is listed with when: the next sign-in to its app asks again, but
   * sign-ins from before, in other browsers, still use it. The account
   * page's own grant (self-service/account-client.ts) is nobody's consent.
   */
  async show(who: string, sessionMaxAge: number): Promise<UserDetails> {
    const { id } = await this.resolve(who);
    const [user, sessions] = await this.prisma.$transaction([
      this.prisma.user.findUnique({
        where: { id },
        select: { id: true, email: true, name: true, emailVerified: true, createdAt: true, disabledAt: true, password: { select: { updatedAt: true } } },
      }),
      this.prisma.$queryRaw<{ n: number }[]>`SELECT count(*)::int AS n FROM provider_artifacts s, users u
        WHERE s.kind = 'Session' AND s.payload->>'accountId' = ${id} AND u.id = ${id}::uuid
          AND u.disabled_at IS NULL AND s.consumed_at IS NULL AND (s.expires_at IS NULL OR s.expires_at > now())
          AND (u.signed_out_at IS NULL OR (s.payload->>'loginTs')::numeric >= floor(extract(epoch FROM u.signed_out_at)))
          AND (jsonb_typeof(s.payload->'loginTs') <> 'number' OR (s.payload->>'loginTs')::numeric + ${sessionMaxAge} > extract(epoch FROM now()))`,
    ]);
    // Deleted since it was looked up.
    if (!user) throw new AccountError(`no user ${who}`);
    const { password, ...listing } = user;
    return { ...listing, passwordSetAt: password?.updatedAt ?? null, sessions: sessions[0]?.n ?? 0, consents: await this.consentsOf(id) };
  }

  /**
   * The consents of the user with id `userId` in force, oldest first (see
   * show): one statement by the grants' account index, for the account page
   * as much as `user show`.
   */
  async consentsOf(userId: string): Promise<UserDetails['consents']> {
    const { rows } = await this.sql.query<ConsentRow>(CONSENTS_OF, [userId, ACCOUNT_CLIENT_ID]);
    return rows.map((row) => ({
      clientId: row.client_id,
      clientName: row.client_name,
      scope: row.scope,
      apis: row.apis,
      firstGivenAt: row.first_given_at,
      expiresAt: row.expires_at,
      withdrawnAt: row.withdrawn_at,
    }));
  }

  /**
   * Changes a user's name, email or whether the email is verified; what is
   * not given stays. A new email is unverified unless said otherwise. Every
   * instance sees the change at once (a trigger announces it): ID tokens and
   * UserInfo carry the new values from then on. Nothing else changes: the
   * user stays signed in, and their consents and tokens stay.
   */
  async update(who: string, changes: UserChanges): Promise<UserView> {
    const user = await this.resolve(who);
    const data: { email?: string; name?: string | null; emailVerified?: boolean; totpRequired?: boolean } = {};
    if (changes.email !== undefined) {
      const email = checkEmail(changes.email);
      if (email !== user.email) {
        data.email = email;
        data.emailVerified = false;
      }
    }
    if (changes.name !== undefined) {
      data.name = changes.name.trim() || null;
      checkName(data.name);
    }
    if (changes.emailVerified !== undefined) data.emailVerified = changes.emailVerified;
    if (changes.totpRequired !== undefined) data.totpRequired = changes.totpRequired;
    if (data.email) await this.assertEmailFree(data.email);
    const [updated] = await this.prisma.$transaction([
      this.prisma.user.update({ where: { id: user.id }, data, select: { id: true, email: true, name: true, emailVerified: true } }),
      // Off forgets the key: required again, the person sets up an app anew.
      ...(changes.totpRequired === false ? [this.prisma.totpSecret.deleteMany({ where: { userId: user.id } })] : []),
    ]);
    return updated;
  }

  /**
   * Replaces the password and signs the user out everywhere: their sessions
   * and sign-ins in progress end, in the same transaction, so whoever knew
   * the old one is not left signed in. The rows go, and the cut-off
   * (signed_out_at) refuses what a request in flight saves back, and a
   * sign-in that read the old hash in an earlier second (see isSignedIn).
   * Consents end as at a sign-out: those given with offline_access, and the
   * tokens issued under them, stay (revokeAccess takes those too); the
   * others end with the sessions, and what was issued under them.
   */
  async setPassword(who: string, password: string): Promise<{ user: UserView; disabled: boolean; removed: Removed; consentsKept: number; ended: SessionEnd[] }> {
    const user = await this.resolve(who);
    await this.checkNewPassword(password, user.email);
    const hash = await this.hasher.hash(password);
    const [, ...signedOut] = await this.prisma.$transaction([
      this.prisma.password.upsert({ where: { userId: user.id }, update: { hash }, create: { userId: user.id, hash } }),
      ...this.signOutEverywhere(user.id),
    ]);
    return { user, ...this.signedOut(user.id, signedOut) };
  }

  /**
   * `user reset-totp`: forgets the person's TOTP key (a lost phone), and
   * signs them out everywhere, as a new password does: a session that passed
   * a code of that key (the phone's finder's, perhaps) would otherwise stay
   * signed in. The next sign-in sets up a new app.
   */
  async resetTotp(who: string): Promise<{ user: UserView; disabled: boolean; removed: Removed; consentsKept: number; ended: SessionEnd[] }> {
    const user = await this.resolve(who);
    if (!(await this.prisma.totpSecret.findUnique({ where: { userId: user.id }, select: { userId: true } }))) {
      throw new AccountError(`${user.email} has no authenticator app to forget`);
    }
    // The user's row first, as a setup page's key takes its locks (users, then totp_secrets): no deadlock.
    const [signedOut, consents, signIns, kept] = await this.prisma.$transaction([...this.signOutEverywhere(user.id), this.prisma.totpSecret.deleteMany({ where: { userId: user.id } })]);
    return { user, ...this.signedOut(user.id, [signedOut, consents, signIns, kept]) };
  }

  /**
   * Requires a TOTP code of the user from now on (the account page's "Turn
   * on two-step verification"), and signs them out everywhere in the same
   * transaction: a session that passed the password only would otherwise be
   * offered the setup of the new key at its next request, and whoever holds
   * it (someone who learned the password, a stolen cookie) would tie the
   * account to their phone. The person signs in again and sets up the app.
   */
  async requireTotp(who: string): Promise<{ user: UserView; disabled: boolean; removed: Removed; consentsKept: number; ended: SessionEnd[] }> {
    const user = await this.resolve(who);
    const [, signedOut, consents, signIns, kept] = await this.prisma.$transaction([
      this.prisma.user.update({ where: { id: user.id }, data: { totpRequired: true }, select: { id: true } }),
      ...this.signOutEverywhere(user.id),
    ]);
    return { user, ...this.signedOut(user.id, [signedOut, consents, signIns, kept]) };
  }

  /**
   * Signs the user out everywhere (the account page's "Sign out
   * everywhere"): what a new password ends, and nothing else changes.
   */
  async endSessions(who: string): Promise<{ user: UserView; disabled: boolean; removed: Removed; consentsKept: number; ended: SessionEnd[] }> {
    const user = await this.resolve(who);
    const [signedOut, consents, signIns, kept] = await this.prisma.$transaction([...this.signOutEverywhere(user.id)]);
    return { user, ...this.signedOut(user.id, [signedOut, consents, signIns, kept]) };
  }

  /**
   * The statements that sign `userId` out everywhere, in one transaction
   * with a change that calls for it (a new password, a forgotten TOTP key):
   * the cut-off for sessions, their consents (found through the sessions,
   * so first), the sessions and sign-ins in progress, and a count of the
   * consents that still give apps access without the person, for the
   * operator to know (user revoke ends them).
   */
  private signOutEverywhere(userId: string) {
    return [
      // A disabled user stays so (user enable is for that): the operator is told.
      this.prisma.$queryRaw<{ disabled: boolean }[]>`UPDATE users SET signed_out_at = now() WHERE id = ${userId}::uuid RETURNING disabled_at IS NOT NULL AS disabled`,
      this.deleteArtifacts(CONSENTS_OF_SIGN_INS, userId),
      this.deleteArtifacts(SIGN_INS_OF_ACCOUNT, userId),
      this.prisma.$queryRaw<{ n: number }[]>`SELECT count(*)::int AS n FROM provider_artifacts
        WHERE kind = 'Grant' AND account_id = ${userId} AND (expires_at IS NULL OR expires_at > now())
          AND 'offline_access' = ANY (string_to_array(coalesce(payload #>> '{openid,scope}', ''), ' '))`,
    ] as const;
  }

  /** What signOutEverywhere's statements answered, as the commands report it. */
  private signedOut(userId: string, [signedOut, consents, signIns, kept]: [{ disabled: boolean }[], DeletedArtifact[], DeletedArtifact[], { n: number }[]]) {
    return {
      disabled: signedOut[0]?.disabled ?? false,
      removed: countByKind([...consents, ...signIns]),
      consentsKept: kept[0]?.n ?? 0,
      ended: appsOfEndedSessions(userId, [...consents, ...signIns]),
    };
  }

  /**
   * Ends everything the user was given: sessions, sign-ins in progress,
   * consents (grants), and every code, access token and refresh token issued
   * under them, in one transaction, with cut-offs (signed_out_at,
   * revoked_at) that refuse whatever a request in flight saves back. JWT
   * access tokens already issued are verified by APIs without asking us, and
   * stay valid until they expire.
   */
  async revokeAccess(who: string): Promise<{ user: UserView; removed: Removed; ended: SessionEnd[] }> {
    const user = await this.resolve(who);
    const [, rows] = await this.prisma.$transaction([
      this.prisma.$executeRaw`UPDATE users SET signed_out_at = now(), revoked_at = now() WHERE id = ${user.id}::uuid`,
      this.deleteArtifacts(ARTIFACTS_OF_ACCOUNT, user.id),
    ]);
    return { user, removed: countByKind(rows), ended: appsOfEndedSessions(user.id, rows) };
  }

  /**
   * Ends what the user gave one app: their consents to it, every code and
   * token issued under them, their sign-ins to it in progress, and the app's
   * part of their sessions (the app is told: back-channel logout), in one
   * transaction. They stay signed in, and their other apps keep theirs; the
   * app asks for consent again. What a request in flight saves back under a
   * consent that is gone is refused (the library finds no grant for it at
   * refresh, UserInfo and introspection). JWT access tokens already issued
   * run out, as at any consent withdrawn.
   */
  async revokeClient(who: string, clientId: string): Promise<{ user: UserView; removed: Removed; ended: SessionEnd[] }> {
    const user = await this.resolve(who);
    const client = await this.prisma.client.findUnique({ where: { clientId }, select: { api: { select: { identifier: true } } } });
    if (!client) throw new AccountError(`no client with id ${clientId}`);
    if (client.api) throw new AccountError(`client ${clientId} holds the credentials of API ${client.api.identifier}: nobody consents to it`);
    const [rows, ended] = await this.prisma.$transaction([
      this.prisma.$queryRawUnsafe<{ kind: string }[]>(
        `WITH consents AS (
           SELECT payload->>'jti' AS grant_id FROM provider_artifacts WHERE kind = 'Grant' AND account_id = $1 AND client_id = $2)
         DELETE FROM provider_artifacts
         WHERE (kind = 'Grant' AND account_id = $1 AND client_id = $2)
            OR grant_id IN (SELECT grant_id FROM consents)
            OR (${INTERACTIONS_OF_ACCOUNT} AND payload->'params'->>'client_id' = $2)
         RETURNING kind`,
        user.id,
        clientId,
      ),
      // The app's part of each session ends too, as "Stay signed in" on the
      // sign-out page ends it: the app is told (back-channel logout), and a
      // sign-in to it from that browser starts another part, with another sid.
      this.prisma.$queryRawUnsafe<{ sid: unknown; live: boolean }[]>(
        `UPDATE provider_artifacts s SET payload = jsonb_set(s.payload, '{authorizations}', (s.payload->'authorizations') - $2::text)
         FROM (SELECT id, kind, payload->'authorizations'->$2::text->'sid' AS sid FROM provider_artifacts
               WHERE kind = 'Session' AND payload->>'accountId' = $1
                 AND jsonb_typeof(payload->'authorizations') = 'object' AND payload->'authorizations' ? $2::text
               FOR UPDATE) AS part
         WHERE s.id = part.id AND s.kind = part.kind
         RETURNING part.sid, s.consumed_at IS NULL AND (s.expires_at IS NULL OR s.expires_at > now()) AS live`,
        user.id,
        clientId,
      ),
    ]);
    const ends = ended.filter((part) => part.live && typeof part.sid === 'string').map((part) => ({ accountId: user.id, clientId, sid: part.sid as string }));
    return { user, removed: countByKind(rows), ended: ends };
  }

  /**
   * Refuses the user from now on, until enable(): at sign-in (after the
   * password, see checkPassword) and in every lookup of the account, so no
   * session, code or token of theirs is honoured, whatever a request in flight
   * saves back. Ends everything revokeAccess ends, in the same transaction.
   * Disabling again keeps the first time, and ends whatever is there again.
   */
  async disable(who: string): Promise<{ user: UserView; removed: Removed; wasDisabled: boolean; ended: SessionEnd[] }> {
    const user = await this.resolve(who);
    const [before, , rows] = await this.prisma.$transaction([
      // FOR UPDATE: two disables at once agree on which came first.
      this.prisma.$queryRaw<{ disabled_at: Date | null }[]>`SELECT disabled_at FROM users WHERE id = ${user.id}::uuid FOR UPDATE`,
      this.prisma.$executeRaw`UPDATE users SET disabled_at = coalesce(disabled_at, now()), signed_out_at = now(), revoked_at = now() WHERE id = ${user.id}::uuid`,
      this.deleteArtifacts(ARTIFACTS_OF_ACCOUNT, user.id),
    ]);
    return { user, removed: countByKind(rows), wasDisabled: Boolean(before[0]?.disabled_at), ended: appsOfEndedSessions(user.id, rows) };
  }

  /**
   * Lets a disabled user sign in again. Nothing disable ended comes back:
   * they sign in anew, and apps ask for consent again. Cut-offs as at the
   * disable: a session or token stored back in its own second (which the
   * disable's cut-offs, counting seconds, let through) stays refused.
   */
  async enable(who: string): Promise<{ user: UserView; wasDisabled: boolean }> {
    const user = await this.resolve(who);
    // Changes a row only if it was disabled: the count says whether it was.
    const changed = await this.prisma.$executeRaw`UPDATE users SET disabled_at = NULL, signed_out_at = now(), revoked_at = now() WHERE id = ${user.id}::uuid AND disabled_at IS NOT NULL`;
    return { user, wasDisabled: changed > 0 };
  }

  /** Deletes the user, their password and everything revokeAccess ends, in one transaction. */
  async delete(who: string): Promise<{ user: UserView; removed: Removed; ended: SessionEnd[] }> {
    const user = await this.resolve(who);
    // A request in flight that saves something of theirs back finds no account for it.
    const [, rows] = await this.prisma.$transaction([
      this.prisma.user.delete({ where: { id: user.id } }),
      this.deleteArtifacts(ARTIFACTS_OF_ACCOUNT, user.id),
    ]);
    return { user, removed: countByKind(rows), ended: appsOfEndedSessions(user.id, rows) };
  }

  /**
   * Deletes the provider artifacts `where` picks for account `id` ($1);
   * answers the kind of each, and for a session that had not ended, the apps
   * it holds (see appsOfEndedSessions).
   */
  private deleteArtifacts(where: string, id: string) {
    return this.prisma.$queryRawUnsafe<DeletedArtifact[]>(
      `DELETE FROM provider_artifacts WHERE ${where}
       RETURNING kind, CASE WHEN kind = 'Session' AND consumed_at IS NULL AND (expires_at IS NULL OR expires_at > now()) THEN payload->'authorizations' END AS apps`,
      id,
    );
  }

  private async assertEmailFree(email: string): Promise<void> {
    const exists = await this.prisma.user.findUnique({ where: { email }, select: { id: true } });
    if (exists) throw new AccountError(`a user with email ${email} already exists`);
  }

  /** The user `who` names (email or id), if there is one. */
  async lookup(who: string): Promise<UserView | undefined> {
    return this.resolve(who).catch((error: unknown) => {
      if (error instanceof AccountError) return undefined;
      throw error;
    });
  }

  /** A user named as the CLI names them: by email (any case) or by id. */
  private async resolve(who: string): Promise<UserView> {
    const select = { id: true, email: true, name: true, emailVerified: true } as const;
    const email = normalizeEmail(who);
    const user = isUuid(who)
      ? await this.prisma.user.findUnique({ where: { id: who.toLowerCase() }, select })
      : storable(email) && email.length <= 254
        ? await this.prisma.user.findUnique({ where: { email }, select })
        : null;
    if (!user) throw new AccountError(`no user ${who}`);
    return user;
  }

  /**
   * The user's id when the password is right, undefined otherwise, in the
   * same time either way; with the credential it checked (opaque: a digest
   * of the stored hash, which the sign-in's result keeps): for passwordStands().
   * A disabled user's right password is answered as such, `disabled`: the
   * sign-in page may then say why it refuses, to the one person who knows the
   * password, and to nobody else.
   */
  async checkPassword(email: string, password: string): Promise<{ accountId: string; credential: string; disabled: boolean } | undefined> {
    // On the sign-in path: one statement on the pg pool (see persistence/database.ts).
    // An email no column can hold belongs to nobody: the decoy below keeps the timing.
    const normalized = normalizeEmail(email);
    const { rows } = storable(normalized) ? await this.sql.query<{ id: string; hash: string; disabled_at: Date | null }>(PASSWORD_OF, [normalized]) : { rows: [] };
    const user = rows[0];
    if (!user) {
      await this.hasher.verifyDecoy(password);
      return undefined;
    }
    const verified = await this.hasher.verifyStored(user.hash, password);
    if (!verified) return undefined;
    const stored = verified === 'outdated' ? await this.rehash(user.id, user.hash, password) : user.hash;
    return { accountId: user.id, credential: sha256(stored), disabled: user.disabled_at !== null };
  }

  /**
   * Replaces an outdated hash (see PasswordHasher.verifyStored) with one made
   * now from the password just verified: raised ARGON2_* reach every account
   * as its owner signs in, with no reset. Only if the hash is still the one
   * verified: a `user set-password` meanwhile wins. The hash stored after,
   * whichever it is.
   */
  private async rehash(accountId: string, verified: string, password: string): Promise<string> {
    const fresh = await this.hasher.hash(password);
    const { rowCount } = await this.sql.query(REHASH, [accountId, verified, fresh]);
    return rowCount ? fresh : verified;
  }

  /** The password the account with this email holds now, as checkPassword names it (its `credential`). */
  async credentialOf(email: string): Promise<string | undefined> {
    const normalized = normalizeEmail(email);
    if (!storable(normalized)) return undefined;
    const { rows } = await this.sql.query<{ id: string; hash: string }>(PASSWORD_OF, [normalized]);
    return rows[0] && sha256(rows[0].hash);
  }

  /**
   * Whether the password checked as `credential` is still the account's. A
   * sign-in saved after `user set-password` deleted the sign-ins in progress
   * would otherwise stand on the old password; one saved before it is among
   * those it deletes.
   */
  async passwordStands(accountId: string, credential: string): Promise<boolean> {
    if (!isUuid(accountId)) return false;
    const { rows } = await this.sql.query<{ hash: string }>(PASSWORD_NOW, [accountId]);
    return rows[0] !== undefined && sha256(rows[0].hash) === credential;
  }

  async find(id: string): Promise<UserView | undefined> {
    if (!isUuid(id)) return undefined;
    const user = await this.load(id);
    return user && { id: user.id, email: user.email, name: user.name, emailVerified: user.email_verified };
  }

  /** Whether `accountId` must enter a TOTP code after the password (accounts/second-factors.ts); read from the cache, as every sign-in's step asks. */
  async requiresTotp(accountId: string): Promise<boolean> {
    const user = isUuid(accountId) ? await this.load(accountId) : undefined;
    return Boolean(user?.totp_required);
  }

  /**
   * Whether a session of `accountId` that signed in at `loginTs` (epoch
   * seconds) still stands: the account exists and is not disabled, and no
   * cut-off (`user set-password`, `user revoke`, `user disable`) came after
   * the sign-in.
   */
  async isSignedIn(accountId: string, loginTs: number | undefined): Promise<boolean> {
    const user = isUuid(accountId) ? await this.load(accountId) : undefined;
    return Boolean(user) && !user!.disabled_at && !before(loginTs, user!.signed_out_at);
  }

  /**
   * Whether `user revoke` or `user delete` came at or after `epochSeconds`,
   * read from the database, not the cache (which hears of a change a moment
   * later). See POST /confirm (interactions/routes.ts).
   */
  async revokedSince(accountId: string, epochSeconds: number): Promise<boolean> {
    const { rows } = isUuid(accountId) ? await this.sql.query<{ revoked_at: Date | null }>(REVOKED_AT, [accountId]) : { rows: [] };
    const revokedAt = rows[0] ? rows[0].revoked_at : new Date(); // gone: deleted
    return revokedAt !== null && Math.floor(revokedAt.getTime() / 1000) >= epochSeconds;
  }

  /**
   * Whether a code or token of `accountId` issued at `issuedAt` (epoch
   * seconds) is still theirs to use: the account exists and is not disabled,
   * and no `user revoke` came after it was issued. For introspection, which
   * asks no findAccount.
   */
  async honours(accountId: string, issuedAt: number | undefined): Promise<boolean> {
    return (await this.holder(accountId, issuedAt)) !== undefined;
  }

  /** The account a code or token (issued at `issuedAt`) belongs to, if it is honoured (see honours). */
  private async holder(accountId: string, issuedAt: number | undefined): Promise<AccountRow | undefined> {
    if (!isUuid(accountId)) return undefined;
    const user = await this.load(accountId);
    // A disabled user is nobody's to serve: every code and token of theirs is
    // refused, whatever the cut-offs (one issued in the disable's own second
    // passes those). A code or token issued before `user revoke` is not this
    // account's any more. Sessions: see isSignedIn.
    if (!user || user.disabled_at || before(issuedAt, user.revoked_at)) return undefined;
    return user;
  }

  /** oidc-provider's findAccount: the provider filters the claims by granted scope (see `claims` in configuration). */
  readonly findAccount: FindAccount = async (_ctx, sub, token) => {
    // The library refuses what has no account here: invalid_grant, invalid_token.
    const user = token ? await this.holder(sub, token.iat) : isUuid(sub) ? await this.load(sub) : undefined;
    if (!user || user.disabled_at) return undefined;
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

/**
 * Whether a time in epoch seconds falls before a cut-off's second. Seconds are
 * all the library keeps, so what happened in the cut-off's own second counts:
 * a person signing in with their new password at once must not be asked
 * again. What a request in flight saves back signed in earlier than that.
 */
function before(epochSeconds: number | undefined, cutoff: Date | null): boolean {
  if (!cutoff) return false;
  return epochSeconds === undefined || epochSeconds < Math.floor(cutoff.getTime() / 1000);
}

/** The address as stored (normalized), if it is one a person can sign in with. */
function checkEmail(input: string): string {
  const email = normalizeEmail(input);
  // RFC 5321 §4.5.3.1.3: a path, and so an address, has at most 254 characters.
  if (email.length > 254) throw new AccountError('an email address has at most 254 characters');
  if (!EMAIL.test(email)) throw new AccountError(`"${input}" is not an email address`);
  return email;
}

/** A person's display name: shown on consent pages and in ID tokens. */
function checkName(name: string | null): void {
  const problem = name ? unshowable(name, 'a name', MAX_NAME_LENGTH) : undefined;
  if (problem) throw new AccountError(problem);
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Whether `value` is written as a user id (any case). */
export function isUuid(value: string): boolean {
  return UUID.test(value);
}
