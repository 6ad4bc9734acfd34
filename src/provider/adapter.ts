// The adapter for every model oidc-provider stores, after the contract of its
// lib/adapters/memory_adapter.js, over Prisma's `provider_artifacts` table.
// Rows are keyed by (kind, SHA-256 of the id). Its statements
// (artifact-statements.ts) run on every token request, so they go straight to the pg pool Prisma itself runs on
// (see persistence/database.ts for the measured difference); the table, its
// indexes and migrations stay Prisma's.
import type { Adapter, AdapterPayload, KoaContextWithOIDC } from 'oidc-provider';
import { errors, Provider } from 'oidc-provider';
import type { Sql } from '../persistence/database.js';
import { Batcher } from '../persistence/batcher.js';
import { sha256 } from '../persistence/hash.js';
import { unstorableParameters } from '../persistence/nul.js';
import { SQL } from './artifact-statements.js';
import { ArtifactWriter, type ArtifactRecord } from './artifact-writer.js';
import { BROWSER_BINDING_KIND, type BrowserBinding } from './browser-binding.js';
import type { DevicePolling, UserCodes } from './device-flow.js';
import { DEVICE_CODE_CONTEXT, withLiveIds, withoutLiveIds, type PayloadSealer } from './interaction-payloads.js';
import { presentedByPusher, pushedParamsUnstorable } from './pushed-requests.js';
import { deferUntilResponse, keep, peek, take } from './request-scope.js';
import { DEVICE_ROUTES, grantsEndingWith, sessionForRoute, sessionStatesKept, sessionUidOf, withDeviceForm, type SessionPayload } from './session-payloads.js';

/** Models whose rows belong to a grant and go when it is revoked. */
const GRANT_BOUND = [
  'AccessToken',
  'AuthorizationCode',
  'RefreshToken',
  'DeviceCode',
  'BackchannelAuthenticationRequest',
  'PreAuthorizedCode',
];

/**
 * Models the token endpoint saves and never reads back in the same request:
 * their saves there wait until the response is built, and are made only if it
 * is a success (see deferUntilResponse); the response waits for them.
 */
const DEFERRABLE = new Set(['AccessToken', 'RefreshToken', 'ClientCredentials']);

/** Models whose single use must be enforced atomically (RFC 6749 §4.1.2, §10.5; RFC 9700 §4.14.2). */
const SINGLE_USE = new Set(['AuthorizationCode', 'RefreshToken', 'DeviceCode', 'BackchannelAuthenticationRequest']);

interface ArtifactRow {
  kind?: string;
  payload: AdapterPayload;
  expires_at: Date | null;
  consumed_at: Date | null;
  /** Seconds since consumed_at by the database's clock, the one the consuming statement judges by (find only). */
  consumed_ago?: string | number | null;
}

interface TokenRow extends ArtifactRow {
  id: string;
  grant_payload: AdapterPayload | null;
  grant_expires_at: Date | null;
  grant_consumed_at: Date | null;
}

const grantKey = (grantId: string) => `grant:${sha256(grantId)}`;

/** A Grant's row as read alongside something else (its token, or the grant of an account and client). */
export type GrantRow = Omit<ArtifactRow, 'kind'>;

/** Keeps a grant just read for this request's Grant lookup of it (see find()). */
export function keepGrant(grantId: string, row: GrantRow): void {
  keep(grantKey(grantId), row);
}

const withdrawnKey = (grantId: string) => `withdrawn:${sha256(grantId)}`;

/**
 * When the consent `grantId`, found in this request, was withdrawn at a
 * sign-out (SQL.withdrawConsent), in seconds: the library's Grant model keeps
 * no such field. Undefined if it was not.
 */
export function withdrawnAt(grantId: string): number | undefined {
  return peek<number>(withdrawnKey(grantId));
}

function noteWithdrawal(grantId: string, row: GrantRow | null | undefined): void {
  if (row?.consumed_at) keep(withdrawnKey(grantId), Math.floor(row.consumed_at.getTime() / 1000));
}

/**
 * The consumption a token exchange deferred in this request (request-scope.ts):
 * `started` once the deferred saves are made, the consumption first.
 */
const HELD_CONSUMPTION = 'consumption';
interface HeldConsumption {
  started?: { call: string; marked: Promise<boolean> };
}

const atTokenEndpoint = () => Provider.ctx?.oidc?.route === 'token';

/** This request found a refresh token used before, within its reuse interval (see ArtifactOptions). */
const REUSED_WITHIN_INTERVAL = 'reused within interval';

/** The id a session of this request is replacing (see ArtifactAdapter.destroy), until its new id is saved. */
const REPLACED_SESSION = 'replaced session';
const REPLACED_SESSION_BY = 'replacing session';


/**
 * A consent that holds offline_access outlives sign-outs (README: Sessions).
 * The library ends the grants a session holds without its persistsLogout
 * mark (here: that sign-in's tokens, and the consent withdrawn, see
 * signInOf), which it sets from the scopes of the request that used the grant.
 * But a remembered consent is shared by sessions (loadExistingGrant), and
 * one first used without offline_access may have been given it since in
 * another browser: signing out where it was first used ended the app's
 * offline access there. So a sign-out keeps the grants that hold it now, and
 * the tokens issued under them (which run until they expire). Those kept
 * in a request are remembered for its "grant revoked" event (provider.ts).
 */
const keptAtSignOut = new WeakMap<object, Set<string>>();
/** Per request, the revocations (endSignIn's keys) already told of: the library asks once per grant-bound model. */
const told = new WeakMap<object, Set<string>>();
function firstTold(request: object | undefined, key: string): boolean {
  if (!request) return true;
  const keys = told.get(request) ?? new Set<string>();
  told.set(request, keys);
  if (keys.has(key)) return false;
  keys.add(key);
  return true;
}

/** Per sign-out request, whether each grant it asked about is kept (one query per grant, see keptAtSignOut). */
const signOutDecisions = new WeakMap<object, Map<string, Promise<boolean>>>();
const isSignOut = (request: KoaContextWithOIDC | undefined) => request?.oidc?.route === 'end_session_confirm';

/** At the token endpoint, the browser session of the code or refresh token presented (see signInOf). */
const PRESENTED_SIGN_IN = 'presented sign-in';

/**
 * The browser session whose sign-in a revocation in this request ends, where
 * the library would end a whole grant: a remembered consent is one grant,
 * shared by the person's sign-ins to the app on all their devices (see
 * loadExistingGrant in configuration.ts), so ending it ended the app on every
 * device. The code and the tokens issued from it and its refreshes carry
 * their session's uid; only those go, and the grant stays
 * (revokeGrantPolicy in configuration.ts):
 * - at the revocation endpoint (RFC 7009), the revoked token's: an app's
 *   "sign out on this device" (oidc-client-ts's revokeTokensOnSignout,
 *   simple-oauth2's revokeAll); §2.1's tokens "based on the same
 *   authorization grant";
 * - at the token endpoint, the code or refresh token presented again: a
 *   replay taken for theft (RFC 6749 §4.1.2, RFC 9700 §4.14.2) ends the
 *   tokens a thief could hold, which all descend from that one sign-in;
 * - at a sign-out, the session's: its tokens go, and its consents are
 *   withdrawn (withdrawConsent), not taken from the person's other sign-ins.
 * Undefined elsewhere, or for a token without one: the whole grant.
 */
export function signInOf(request: KoaContextWithOIDC | undefined): string | undefined {
  switch (request?.oidc?.route) {
    case 'revocation': {
      const token = (request.oidc.entities.RefreshToken ?? request.oidc.entities.AccessToken) as { sessionUid?: string } | undefined;
      return token?.sessionUid || undefined;
    }
    case 'token':
      return peek<string>(PRESENTED_SIGN_IN, request) || undefined;
    case 'end_session_confirm':
      return (request.oidc.session as { uid?: string } | undefined)?.uid || undefined;
    default:
      return undefined;
  }
}

/** Whether a sign-out in this request kept the grant instead of revoking it. */
export function grantKeptAtSignOut(request: object, grantId: string): boolean {
  return keptAtSignOut.get(request)?.has(grantId) === true;
}

/**
 * Work shared by the adapters of one database. Lookups made in one event-loop
 * turn (by concurrent requests, or by one request asking for a token as
 * several kinds at once, as introspection does) go to the database as one
 * statement (persistence/batcher.ts); consumptions and saves share the
 * writer's statements (artifact-writer.ts). A grant or sign-in is
 * revoked once per grant-bound model, concurrently: one revocation (see
 * endSignIn), shared while in flight. Nothing outlives its statements, so
 * nothing can be stale.
 */
interface InFlight {
  finder: Batcher<string, TokenRow[]>;
  revocations: Map<string, Promise<SignInEnded | undefined>>;
  writer: ArtifactWriter;
}

// Two lookups at once: one runs while the next gathers whatever the requests
// of the meantime ask for (see persistence/batcher.ts).
const READS = { maxInFlight: 2 };

function sharedWork(sql: Sql): InFlight {
  return {
    finder: new Batcher(async (entries) => {
      const keys = entries.map(([key]) => key);
      const { rows } = await sql.query<TokenRow>(SQL.find, [keys]);
      const byId = new Map<string, TokenRow[]>(keys.map((key) => [key, []]));
      for (const row of rows) byId.get(row.id)!.push(row);
      return byId;
    }, READS),
    revocations: new Map(),
    writer: new ArtifactWriter(sql),
  };
}
const inFlight = new WeakMap<Sql, InFlight>();

function shared(sql: Sql): InFlight {
  let work = inFlight.get(sql);
  if (!work) inFlight.set(sql, (work = sharedWork(sql)));
  return work;
}

export interface ArtifactOptions {
  /**
   * Seconds after its first use during which a refresh token may be used
   * again (REFRESH_TOKEN_REUSE_INTERVAL): found as unused, and consumed again
   * without counting as a replay. 0: never.
   */
  refreshTokenReuseInterval?: number;
  /** Told of each such reuse once the database has taken it (the request's consumption stands). */
  onReuse?: (request: KoaContextWithOIDC | undefined) => void;
  /** Binds each interaction to the browser that made it (browser-binding.ts): for Interaction. */
  browsers?: BrowserBinding;
  /**
   * Told when one sign-in's tokens were revoked instead of a whole grant (see
   * signInOf), and of a revocation endpoint's, which keeps the grant: once per
   * request, grant and sign-in.
   */
  onSignInEnded?: (request: KoaContextWithOIDC | undefined, ended: SignInEnded) => void;
  /** SESSION_MAX_AGE, in seconds: how long a consent withdrawn at a sign-out is kept (SQL.withdrawConsent). */
  sessionMaxAge?: number;
  /** How user codes are kept and found (device-flow.ts): for DeviceCode. */
  userCodes?: UserCodes;
  /** How often a device may poll (device-flow.ts): for DeviceCode. */
  polling?: DevicePolling;
}

/** One sign-in's tokens revoked under `grantId`, the app `client`'s; the consent kept, or withdrawn at a sign-out (SQL.withdrawConsent). */
export interface SignInEnded {
  grantId: string;
  client?: string;
  consent: 'kept' | 'withdrawn';
}

export class ArtifactAdapter implements Adapter {
  private readonly shared: InFlight;
  /** This model's reuse interval, in seconds (see ArtifactOptions); 0 for all but refresh tokens. */
  private readonly reuse: number;
  private readonly onReuse?: ArtifactOptions['onReuse'];
  private readonly onSignInEnded?: ArtifactOptions['onSignInEnded'];
  private readonly sessionMaxAge: number;
  private readonly browsers?: BrowserBinding;
  private readonly userCodes?: UserCodes;
  private readonly polling?: DevicePolling;

  /** `sealer`: seals the pushed request id a stored sign-in in progress names (see withoutLiveIds). */
  constructor(
    private readonly kind: string,
    private readonly sql: Sql,
    private readonly sealer?: PayloadSealer,
    options: ArtifactOptions = {},
  ) {
    this.reuse = kind === 'RefreshToken' ? (options.refreshTokenReuseInterval ?? 0) : 0;
    this.onReuse = options.onReuse;
    this.onSignInEnded = options.onSignInEnded;
    this.sessionMaxAge = options.sessionMaxAge ?? 30 * 24 * 3600;
    if (kind === 'Interaction') {
      if (!options.browsers) throw new TypeError('an Interaction adapter needs the browser binding (see browser-binding.ts)');
      this.browsers = options.browsers;
    }
    if (kind === 'Interaction' && !sealer) throw new TypeError('an Interaction adapter needs a sealer for the ids its rows keep (see withoutLiveIds)');
    if (kind === 'DeviceCode') {
      if (!options.userCodes || !options.polling || !sealer) throw new TypeError('a DeviceCode adapter needs the user codes, the polling pace and a sealer (see findByUserCode)');
      this.userCodes = options.userCodes;
      this.polling = options.polling;
    }
    this.shared = shared(sql);
  }

  async upsert(id: string, payload: AdapterPayload, expiresIn: number): Promise<void> {
    // None of the library's models is kept forever, but a model saved for the
    // rest of its life (an interaction, a grant: its exp less the current
    // second) may have none left, 0 or less: stored as expired, not as never.
    const expiresAt = typeof expiresIn === 'number' ? new Date(Date.now() + Math.max(0, expiresIn) * 1000) : null;
    // A lifetime beyond what a Date holds would be written as no expiry at all.
    if (expiresAt && Number.isNaN(expiresAt.getTime())) throw new RangeError(`${this.kind} lifetime out of range: ${expiresIn} s`);
    // A pushed request lives 60 s, but each sign-in begun with it checks,
    // when it ends, that it is still unused and uses it up (the library reads
    // it then whatever its `exp`). Expired, it would be found by none, and
    // every such sign-in would get a code: so each step of the sign-in (a
    // new interaction after the login, say) keeps it at least as long as
    // itself. One nobody uses is kept only its 60 s: anyone may push
    // requests for a public client, up to a body's size each.
    const parJti = this.kind === 'Interaction' ? (payload as { parJti?: unknown }).parJti : undefined;
    if (typeof parJti === 'string' && expiresAt) await this.sql.query(SQL.keepPushedRequest, [sha256(parJti), expiresAt]);
    // The payload repeats the id as `jti`: drop it, find() puts it back. Grant
    // ids stay, as tokens' payloads name their grant anyway and a grant id
    // alone authorizes nothing.
    const { jti, ...rest } = payload;
    void jti;
    const isGrant = this.kind === 'Grant';
    const route = String(Provider.ctx?.oidc?.route);
    const json = JSON.stringify(
      isGrant
        ? payload
        : this.kind === 'Interaction'
          ? withoutLiveIds(rest, id, this.sealer)
          : this.kind === 'DeviceCode'
            ? this.findableDeviceCode(rest, id)
            : this.kind === 'Session' && DEVICE_ROUTES.has(route)
              ? withDeviceForm(rest)
              : kept(this.kind, rest),
    );
    // A request parameter with U+0000 (a state, a login_hint), or a lone
    // surrogate from a request object's JSON, ends up in the payload, which
    // jsonb cannot store: the request is refused as OAuth invalid_request (an
    // authorization request's error goes back to the client).
    const refusal = unstorableParameters(json) ?? (this.kind === 'PushedAuthorizationRequest' ? pushedParamsUnstorable(payload) : undefined);
    if (refusal) throw new errors.InvalidRequest(refusal);
    // The form states a session keeps as stored when this route saves it (see SQL.saveSessionKeeping).
    const statesKept = this.kind === 'Session' ? sessionStatesKept(route, payload.state) : [];
    if (this.kind === 'Session') {
      const replaced = take<string>(REPLACED_SESSION);
      // A second save in the request, once replaced, is an ordinary one; once
      // refused (signed out meanwhile), refused again.
      const replacement = peek<{ id: string; stored: boolean }>(REPLACED_SESSION_BY);
      if (replacement?.id === id) {
        if (!replacement.stored) return;
      } else if (replaced !== undefined && replaced !== id) {
        return this.replaceSession(replaced, id, json, payload.uid ?? null, expiresAt, statesKept);
      }
    }
    const sessionUid = (this.kind === 'Interaction' ? sessionUidOf(payload) : payload.uid) ?? null;
    // The sign-out page keeps its details (the form's secret, where to send
    // the person back) in the session, to be checked when the form comes
    // back. Every request that loaded the session saves it back when it ends:
    // one that loaded it before the sign-out page was shown (a silent
    // prompt=none in another frame) would save it without them, and the
    // person's "Sign out" would be refused ("could not find logout
    // details"), leaving them signed in. Only the logout routes change them;
    // and only the device page's routes its own form's (DEVICE_ROUTES).
    if (this.kind === 'Session') {
      await this.sql.query(SQL.saveSessionKeeping, [sha256(id), json, sessionUid, expiresAt, statesKept]);
      return;
    }
    // Outside a provider request, an interaction is saved by our pages
    // (interactions/routes.ts), which only ever change one the provider made:
    // the row is updated, never made again. A form posted twice at once
    // (a double click) would otherwise write back, with its result, an
    // interaction the first post's resume had already used and deleted, and
    // its own resume would answer the request a second time: a second code.
    if (this.kind === 'Interaction' && !Provider.ctx) {
      const { rowCount } = await this.sql.query(SQL.updateInteraction, [sha256(id), json, expiresAt, sessionUid, payload.grantId ?? null]);
      if (!rowCount) throw new errors.SessionNotFound('interaction already used or expired');
      return;
    }
    const deferrable = DEFERRABLE.has(this.kind) && atTokenEndpoint();
    const record = {
      kind: this.kind,
      id: sha256(id),
      payload: json,
      grantId: payload.grantId ?? null,
      // An interaction is filed under its session's uid, for the sign-out of
      // that session to find the consents given in it (see signOut).
      uid: sessionUid,
      // Only the device authorization request's save names it; later saves
      // keep the digest stored then (artifact-writer.ts).
      userCode: this.userCodes && typeof payload.userCode === 'string' ? this.userCodes.digest(payload.userCode) : null,
      accountId: isGrant ? (payload.accountId ?? null) : null,
      clientId: isGrant ? (payload.clientId ?? null) : null,
      expiresAt,
    };
    // Tokens issued by an exchange that consumed a code or refresh token land
    // only if that consumption wins (see consume()).
    const held = deferrable ? peek<HeldConsumption>(HELD_CONSUMPTION) : undefined;
    const { writer } = this.shared;
    // A held consumption was deferred before this save, so it has started by the time this runs.
    const save = () => (held ? writer.saveIfConsumed(record, held.started!.call, held.started!.marked) : writer.upsert(record));
    if (deferrable && deferUntilResponse(save)) return;
    const binding = this.browserBinding(id, expiresAt);
    // In the same tick as the interaction's own row, so most often in the
    // same statement (not always: a full batch goes at once). An interaction
    // found without its binding is refused (see inBoundBrowser).
    await (binding ? Promise.all([save(), writer.upsert(binding)]) : save());
  }

  /**
   * The row binding interaction `id` to the browser of the provider request
   * saving it (browser-binding.ts): an authorization request or a resume
   * that makes it, or a resume that saves the one it resumed, which only
   * that browser could resume (the same value again). A save outside a
   * provider request (our interaction pages, which check the binding before
   * they save) leaves the row as it is. The row outlives the interaction by
   * a minute: a save keeps the interaction's expiry to the second only.
   */
  private browserBinding(id: string, expiresAt: Date | null): ArtifactRecord | undefined {
    const request = Provider.ctx;
    if (!this.browsers || !request) return undefined;
    const browser = this.browsers.establish(request);
    const payload = JSON.stringify({ browser });
    const until = expiresAt && new Date(expiresAt.getTime() + 60_000);
    return { kind: BROWSER_BINDING_KIND, id: sha256(id), payload, grantId: null, uid: null, userCode: null, accountId: null, clientId: null, expiresAt: until };
  }

  async find(id: string): Promise<AdapterPayload | undefined> {
    if (this.kind === 'Grant') {
      // Read moments ago in this request, with its token or as the grant of
      // an account and client (artifacts.ts)? See request-scope.ts.
      const kept = take<GrantRow | null>(grantKey(id));
      if (kept !== undefined) {
        noteWithdrawal(id, kept);
        return kept ? toPayload(kept) : undefined;
      }
    }
    const rows = await this.shared.finder.load(sha256(id));
    const row = rows.find((candidate) => candidate.kind === this.kind);
    if (isEndedSession(this.kind, row)) return undefined;
    if (this.kind === 'Grant') noteWithdrawal(id, row);
    // An expired device code is found too (until the sweeper takes it), as
    // the library expects of it: it judges the expiry itself, and tells the
    // device expired_token (RFC 8628 §3.5) rather than that there is no such code.
    const payload = toPayload(row && this.kind === 'DeviceCode' ? { ...row, expires_at: null } : row, this.reuse);
    if (payload && row?.consumed_at && !payload.consumed) keep(REUSED_WITHIN_INTERVAL, true);
    if (payload && (this.kind === 'AuthorizationCode' || this.kind === 'RefreshToken' || this.kind === 'DeviceCode') && atTokenEndpoint()) {
      keep(PRESENTED_SIGN_IN, payload.sessionUid ?? ''); // a replay ends this sign-in (signInOf)
      if (this.polling) await this.polling.pace(id, payload, row!.expires_at, Provider.ctx?.oidc?.client?.clientId);
    }
    if (payload?.grantId && row) {
      keep(
        grantKey(payload.grantId),
        row.grant_payload ? { payload: row.grant_payload, expires_at: row.grant_expires_at, consumed_at: row.grant_consumed_at } : null,
      );
    }
    if (payload && this.kind === 'Interaction') {
      // The library's resume: only in the browser that made the interaction.
      // (Our pages check it themselves, see mayUseInteraction: they run outside
      // the library's request, so Provider.ctx does not name their request.)
      const request = Provider.ctx;
      if (this.browsers && request && !inBoundBrowser(rows, this.browsers.of(request))) return undefined;
      return withLiveIds(payload, id, this.sealer);
    }
    if (payload && this.kind === 'PushedAuthorizationRequest' && !presentedByPusher(payload)) return undefined;
    if (payload && this.kind === 'Session') return { ...sessionForRoute(payload, Provider.ctx?.oidc?.route), jti: id };
    // Rows of 0.5.0 and earlier may hold what kept() now leaves out.
    return payload && { ...kept(this.kind, payload), jti: id };
  }

  /**
   * Stores `payload` under `id` for `expiresIn` seconds (by the database's
   * clock), and at least until `until` (epoch seconds), unless a live row
   * has it already; whether this call stored it. For what must happen once
   * (a DPoP proof's jti): the library's find-then-save lets concurrent
   * requests, whose lookups share one statement here, all find nothing.
   */
  async claim(id: string, payload: AdapterPayload, expiresIn: number, until?: number): Promise<boolean> {
    const lifetime = Math.max(1, expiresIn) * 1000;
    // As upsert(): a lifetime beyond what a Date holds, or a character jsonb refuses, is the request's fault.
    if (Number.isNaN(new Date(Date.now() + lifetime).getTime()) || (until !== undefined && Number.isNaN(new Date(until * 1000).getTime()))) {
      throw new errors.InvalidRequest(`${this.kind} lifetime out of range`);
    }
    const json = JSON.stringify(payload);
    const refusal = unstorableParameters(json);
    if (refusal) throw new errors.InvalidRequest(refusal);
    const { rowCount } = await this.sql.query(SQL.claim, [this.kind, sha256(id), json, Math.round(lifetime), until ?? null]);
    return rowCount === 1;
  }

  // Found by uid, a Session comes back without its id (the cookie value, kept
  // only hashed); the provider only reads such sessions, never saves them.
  async findByUid(uid: string): Promise<AdapterPayload | undefined> {
    const { rows } = await this.sql.query<ArtifactRow>(SQL.findByUid, [this.kind, uid]); // (ended sessions left out)
    return toPayload(rows[0]);
  }

  /**
   * The device code whose user code was typed at /device (`userCode`, as
   * the library normalised it), found by the code's keyed digest, and
   * counted against the client address if there is none (device-flow.ts).
   * An expired one too: the library tells the person it expired, rather
   * than that the code is wrong. It comes back with its id (the device
   * code itself, kept sealed: the row's key is only its hash) and the user
   * code, as the library stored them.
   */
  async findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
    if (!this.userCodes || !this.sealer) return undefined;
    const { sealer } = this;
    // Under every encryption key: a code issued before a new key was put first is found too.
    const keys = this.userCodes.digests(userCode);
    const row = await this.userCodes.enter(Provider.ctx, async () => {
      const { rows } = await this.sql.query<ArtifactRow>(SQL.findByUserCode, [this.kind, keys]);
      // Two live codes alike (one in 20^8 per pair: someone asking for
      // codes by the million) name no one device: the person could connect
      // someone else's. Neither is found; both devices start again.
      const live = rows.filter((candidate) => !candidate.expires_at || candidate.expires_at.getTime() > Date.now());
      return live.length > 1 ? undefined : rows[0];
    });
    if (!row) return undefined;
    const { sealedJti, ...payload } = toPayload({ ...row, expires_at: null })! as AdapterPayload & { sealedJti?: string };
    if (typeof sealedJti !== 'string') return undefined;
    let jti: string;
    try {
      jti = sealer.open(sealedJti, DEVICE_CODE_CONTEXT);
    } catch {
      return undefined; // sealed with an encryption key dropped since: as good as gone
    }
    return { ...payload, jti, userCode };
  }

  /** A DeviceCode's payload as stored: its id sealed, for findByUserCode; no user code (the row keeps its digest). */
  private findableDeviceCode(payload: AdapterPayload, id: string): AdapterPayload {
    const { userCode: _userCode, ...rest } = payload;
    return { ...rest, sealedJti: this.sealer!.seal(id, DEVICE_CODE_CONTEXT) };
  }

  async consume(id: string): Promise<void> {
    const key = sha256(id);
    const request = Provider.ctx;
    // At the token endpoint the consumption waits, with the tokens the
    // exchange then saves, for the response: they go out together, the tokens
    // stored only if the consumption wins (one statement and one commit), and
    // only if the request succeeds, so that a request that fails leaves the
    // code or refresh token as it was. A lost race answers invalid_grant
    // (see provider.ts).
    if (SINGLE_USE.has(this.kind) && atTokenEndpoint()) {
      const held: HeldConsumption = {};
      const deferred = deferUntilResponse(() => {
        const { call, marked } = this.shared.writer.consume(this.kind, key, this.reuse);
        held.started = { call, marked };
        return this.checkConsumption(key, marked, request);
      });
      if (deferred) {
        keep(HELD_CONSUMPTION, held);
        return;
      }
    }
    await this.checkConsumption(key, this.shared.writer.consume(this.kind, key, this.reuse).marked, request);
  }

  /** Fails the request if another consumed the row first: a replay, which revokes its sign-in's tokens. */
  private async checkConsumption(key: string, marked: Promise<boolean>, request: KoaContextWithOIDC | undefined): Promise<void> {
    if (await marked) {
      if (this.reuse > 0 && take<boolean>(REUSED_WITHIN_INTERVAL, request)) this.onReuse?.(request);
      return;
    }
    // A pushed request is good for one authorization (RFC 9126 §4): the
    // library checks that it is unconsumed and then consumes it, so of two
    // sign-ins finishing at once only the one that marked it gets a code.
    if (this.kind === 'PushedAuthorizationRequest') throw new errors.InvalidRequestUri('request_uri is invalid, expired, or was already used');
    if (!SINGLE_USE.has(this.kind)) return;
    // Another request consumed it between the provider's check and this
    // write: a replay, ended as one the provider detects itself (signInOf).
    const { rows } = await this.sql.query<{ grant_id: string | null; session_uid: string | null }>(SQL.grantOf, [this.kind, key]);
    const grantId = rows[0]?.grant_id;
    const signIn = rows[0]?.session_uid;
    if (grantId && signIn) await this.endSignIn(grantId, signIn, request, false);
    else if (grantId) await this.revokeGrants([grantId], request);
    throw new errors.InvalidGrant('grant request is invalid');
  }

  async destroy(id: string): Promise<void> {
    if (this.kind === 'Session') {
      // The library replaces a session's id at every sign-in and consent
      // (Session.save: destroy the old id, then save under the new one).
      const session = Provider.ctx?.oidc?.session as { id?: string; oldId?: string } | undefined;
      if (session?.oldId === id && session.id !== id) {
        keep(REPLACED_SESSION, id); // done with the new id's save (upsert)
        return;
      }
      return this.signOut(id);
    }
    // The library's sign-out destroys the grants it ends; not one it keeps.
    if (this.kind === 'Grant' && isSignOut(Provider.ctx) && (await this.keptAtSignOut([id], Provider.ctx)).has(id)) return;
    const { rowCount } = await this.sql.query(SQL.destroy, [this.kind, sha256(id)]);
    // The provider resumes an authorization by reading its finished
    // interaction and then destroying it, without checking that it was still
    // there: two resumes at once (a double submit) would both go on and give
    // two authorization codes. The one that did not destroy it is answered as
    // a resume after the interaction was used. (Not a device's resume: it
    // fills in the one device code both would, and an error here would be
    // written onto it, failing the device the first resume let in.)
    if (!rowCount && this.kind === 'Interaction' && Provider.ctx?.oidc?.route === 'resume') {
      throw new errors.SessionNotFound('interaction session not found');
    }
  }

  // Every request that loaded a session saves it back when it ends (the
  // library's session middleware), so a deleted session row would come back:
  // a request that loaded the session before a sign-out and ends after it
  // would sign the person in again for the session's whole lifetime. Ended
  // rows stay instead, and are never updated (artifact-writer.ts) nor found.

  /**
   * A session's new id, saved unless the old one was signed out of, in one
   * statement with ending the old one (see SQL.replaceSession): the
   * replacement and a sign-out (signOut) lock the old row, so whichever comes
   * second sees what the first did. A replacement that loses stores nothing,
   * and the browser's new cookie names no session.
   *
   * What it would have stored can name a grant the sign-out did not see: a
   * consent resumed while the sign-out ran (its interaction already used up,
   * and the session naming it not yet stored). That grant ends here, as the
   * sign-out would have ended it had the session been stored first.
   */
  private async replaceSession(oldId: string, id: string, json: string, uid: string | null, expiresAt: Date | null, statesKept: string[]): Promise<void> {
    const { rowCount } = await this.sql.query(SQL.replaceSession, [sha256(oldId), sha256(id), json, uid, expiresAt, statesKept]);
    keep(REPLACED_SESSION_BY, { id, stored: rowCount > 0 });
    if (rowCount === 0) await this.endAtSignOut(grantsEndingWith(JSON.parse(json) as SessionPayload), uid, Provider.ctx);
  }

  /**
   * Signs out of the session `id` names and of every id it has had or is
   * being given (its uid). Repeated until a pass finds nothing more: a pass
   * that waited for a replacement of a row does not see the row that
   * replacement made, the next one does; and no replacement can start from
   * a row already ended.
   */
  private async signOut(id: string): Promise<void> {
    const key = sha256(id);
    const uid = (await this.sql.query<{ uid: string | null }>(SQL.sessionUid, [key])).rows[0]?.uid ?? null;
    const grants = new Set<string>();
    for (let pass = 0; pass < 10; pass++) {
      const { rows } = await this.sql.query<{ payload: SessionPayload }>(SQL.signOut, [key, uid]);
      if (rows.length === 0) break;
      for (const { payload } of rows) for (const grantId of grantsEndingWith(payload)) grants.add(grantId);
    }
    // A consent given in the session but not yet resumed (the sign-out came
    // between Allow and the redirect that follows it) is not named in the
    // session yet; the resume would have named it, and is refused now. Its
    // grant ends as a named one would: unless offline_access was asked for,
    // which the library keeps past a sign-out (persistsLogout). Read after
    // the rows are ended: a consent saved later sees them ended (POST
    // /confirm checks) and undoes itself.
    if (uid) {
      const { rows } = await this.sql.query<{ grant_id: string; scope: string | null }>(SQL.pendingConsents, [uid]);
      for (const { grant_id, scope } of rows) if (!scope?.split(' ').includes('offline_access')) grants.add(grant_id);
    }
    // The library ends the grants of the session it loaded (those without
    // offline_access); the session's other ids (two tabs that each finished a
    // consent at once) may name others, revoked here the same way.
    const request = Provider.ctx;
    const loaded = (request?.oidc?.session as SessionPayload | undefined)?.authorizations ?? {};
    for (const { grantId } of Object.values(loaded)) if (grantId) grants.delete(grantId); // revoked by the library already
    await this.endAtSignOut(grants, uid, request);
  }

  /**
   * Each grant and everything issued under it, as the library's revoke helper
   * does with the default revokeGrantPolicy, announced as the library does.
   */
  private async revokeGrants(grantIds: Iterable<string>, request: KoaContextWithOIDC | undefined): Promise<void> {
    await Promise.all(
      [...grantIds].map(async (grantId) => {
        await Promise.all([this.endSignIn(grantId, undefined, request, false), this.sql.query(SQL.destroy, ['Grant', sha256(grantId)])]);
        request?.oidc.provider.emit('grant.revoked', request, grantId);
      }),
    );
  }

  revokeByGrantId(grantId: string): Promise<void> {
    const request = Provider.ctx;
    return this.endSignIn(grantId, signInOf(request), request, isSignOut(request));
  }

  /**
   * What a sign-out of browser session `sessionUid` does to `grantId`, for a
   * sign-out found outside a provider request (a consent saved while it ran,
   * interactions/routes.ts): that sign-in's tokens end, and the consent is
   * withdrawn, unless it holds offline_access.
   */
  endAtSignOutOf(grantId: string, sessionUid: string): Promise<void> {
    return this.endSignIn(grantId, sessionUid, undefined, true);
  }

  /**
   * Revokes what was issued under `grantId` in the sign-in of browser
   * session `signIn` (see signInOf), or, without one, everything issued
   * under it (the library then destroys the grant too). At a sign-out
   * (`atSignOut`), a consent that holds offline_access keeps even that
   * sign-in's tokens (keptAtSignOut), and one that does not is withdrawn
   * (SQL.withdrawConsent). One revocation per grant and sign-in (up to four
   * statements, revokeSignIn), shared while in flight (the library revokes
   * once per grant-bound model), and told once per request that asked
   * (onSignInEnded).
   */
  private endSignIn(grantId: string, signIn: string | undefined, request: KoaContextWithOIDC | undefined, atSignOut: boolean): Promise<void> {
    const { revocations } = this.shared;
    // A sign-out's revocation may keep what a replay's must not (offline_access): never shared between the two.
    const key = `${atSignOut ? 'sign-out' : 'revoke'} ${grantId} ${signIn ?? ''}`;
    let revocation = revocations.get(key);
    if (!revocation) {
      revocation = this.revokeSignIn(grantId, signIn, request, atSignOut).finally(() => revocations.delete(key));
      revocations.set(key, revocation);
    }
    return revocation.then((ended) => {
      // Without a sign-in, a whole grant: announced by the library (grant.revoked), but at the revocation endpoint, which keeps it.
      if (signIn === undefined && request?.oidc?.route !== 'revocation') return;
      if (ended && this.onSignInEnded && firstTold(request, key)) this.onSignInEnded(request, ended);
    });
  }

  private async revokeSignIn(
    grantId: string,
    signIn: string | undefined,
    request: KoaContextWithOIDC | undefined,
    atSignOut: boolean,
  ): Promise<SignInEnded | undefined> {
    if (atSignOut && (await this.keptAtSignOut([grantId], request)).has(grantId)) return undefined;
    if (signIn === undefined) {
      await this.sql.query(SQL.revoke, [grantId, GRANT_BOUND]);
      return { grantId, consent: 'kept' };
    }
    // Twice. A code exchange or refresh of the same sign-in running at
    // this moment marks its code or token used and stores what it issued
    // in one statement (artifact-writer.ts); the delete waits for that
    // row, but its snapshot, taken before, does not hold the new rows,
    // which would outlive the revocation (no grant ends to refuse them
    // now). A second statement sees them. One that had not marked its
    // row yet finds it deleted, and issues nothing.
    await this.sql.query(SQL.revokeSignIn, [grantId, GRANT_BOUND, signIn]);
    await this.sql.query(SQL.revokeSignIn, [grantId, GRANT_BOUND, signIn]);
    if (!atSignOut) return { grantId, consent: 'kept' };
    // (At most what the statement's int holds, 68 years: SESSION_MAX_AGE may be set longer.)
    const keptFor = Math.min(Math.round(this.sessionMaxAge), 2 ** 31 - 1);
    const { rows } = await this.sql.query<{ client_id: string | null }>(SQL.withdrawConsent, [sha256(grantId), keptFor]);
    // Gone meanwhile, or given offline_access meanwhile (kept): nothing to tell.
    return rows[0] ? { grantId, client: rows[0].client_id ?? undefined, consent: 'withdrawn' } : undefined;
  }

  /**
   * Of `grantIds`, those a sign-out keeps (see keptAtSignOut). Each grant's
   * answer is remembered for `request`: the library asks about a grant twice
   * at once (revoking its tokens, destroying it), and both must get the same
   * answer from one query.
   */
  private async keptAtSignOut(grantIds: string[], request: KoaContextWithOIDC | undefined): Promise<Set<string>> {
    if (grantIds.length === 0) return new Set();
    const decisions = (request && signOutDecisions.get(request)) || new Map<string, Promise<boolean>>();
    if (request) signOutDecisions.set(request, decisions);
    const unknown = grantIds.filter((grantId) => !decisions.has(grantId));
    if (unknown.length > 0) {
      const holding = this.sql
        .query<{ jti: string }>(SQL.offlineGrants, [unknown.map((grantId) => sha256(grantId))])
        .then(({ rows }) => new Set(rows.map((row) => row.jti)));
      for (const grantId of unknown) decisions.set(grantId, holding.then((kept) => kept.has(grantId)));
    }
    const answers = await Promise.all(grantIds.map((grantId) => decisions.get(grantId)!));
    const kept = new Set(grantIds.filter((_, index) => answers[index]));
    if (request && kept.size > 0) {
      const remembered = keptAtSignOut.get(request) ?? new Set<string>();
      for (const grantId of kept) remembered.add(grantId);
      keptAtSignOut.set(request, remembered);
    }
    return kept;
  }

  /**
   * The grants a sign-out of browser session `uid` ends (grantsEndingWith),
   * as the library's sign-out ends those of the session it loaded (see
   * signInOf); without a uid, whole, but those it keeps.
   */
  private async endAtSignOut(grantIds: Iterable<string>, uid: string | null, request: KoaContextWithOIDC | undefined): Promise<void> {
    const ending = [...grantIds];
    if (uid) {
      await this.keptAtSignOut(ending, request); // one query for all; each endSignIn then finds its answer
      await Promise.all(ending.map((grantId) => this.endSignIn(grantId, uid, request, true)));
      return;
    }
    const kept = await this.keptAtSignOut(ending, request);
    await this.revokeGrants(ending.filter((grantId) => !kept.has(grantId)), request);
  }
}

/**
 * Whether the browser whose binding digest is `browser` may use the
 * interaction whose rows (by id, every kind) are `rows`: the browser it is
 * bound to. One without a binding is refused, unless it was made before
 * this process started (by a release that did not bind interactions, before
 * an upgrade): an interaction made since has its binding, or lost it only by
 * a failed or not yet committed write, which must not leave it open to any
 * browser.
 */
function inBoundBrowser(rows: TokenRow[], browser: string | undefined): boolean {
  const bound = boundBrowserIn(rows);
  if (bound !== undefined) return bound === browser;
  const made = (rows.find((row) => row.kind === 'Interaction')?.payload as { iat?: unknown } | undefined)?.iat;
  return typeof made === 'number' && made < STARTED_AT;
}

/** When this process started, in the seconds of a payload's `iat`. */
const STARTED_AT = Math.floor(Date.now() / 1000);

function boundBrowserIn(rows: TokenRow[]): string | undefined {
  const binding = rows.find((row) => row.kind === BROWSER_BINDING_KIND);
  const browser = (binding?.payload as { browser?: unknown } | undefined)?.browser;
  return typeof browser === 'string' ? browser : undefined;
}

/**
 * Whether the interaction `uid` may be used by the browser whose binding
 * digest is `browser` (see inBoundBrowser), for the interaction pages: looked
 * up by the lookup that loads the interaction itself when asked in the same
 * tick (the rows of every kind under its id come back together).
 */
export async function mayUseInteraction(sql: Sql, uid: string, browser: string | undefined): Promise<boolean> {
  return inBoundBrowser(await shared(sql).finder.load(sha256(uid)), browser);
}

/** A session signed out of, or whose id was replaced (see ArtifactAdapter.signOut): as good as absent. */
function isEndedSession(kind: string, row: ArtifactRow | undefined): boolean {
  return kind === 'Session' && !!row?.consumed_at;
}

/**
 * What a model's row keeps of its payload, on the way in and out. A refresh
 * token's nonce is read only to be repeated in the ID tokens it refreshes,
 * which OIDC Core §12.2 (errata set 2) says SHOULD NOT carry one. A copy:
 * rows found by one lookup are shared by its callers.
 */
function kept(kind: string, payload: AdapterPayload): AdapterPayload {
  // A device code's sealed id is for findByUserCode; find() has the id.
  if (kind === 'DeviceCode') {
    const { sealedJti: _sealed, ...rest } = payload as AdapterPayload & { sealedJti?: unknown };
    return rest;
  }
  if (kind !== 'RefreshToken') return payload;
  const { nonce: _nonce, ...rest } = payload;
  return rest;
}

/** `reuse`: seconds after its consumption during which a row is found as not consumed (ArtifactOptions). */
function toPayload(row: ArtifactRow | undefined, reuse = 0): AdapterPayload | undefined {
  if (!row) return undefined;
  // Expired rows may linger until the sweeper runs; they must not be found.
  if (row.expires_at && row.expires_at.getTime() <= Date.now()) return undefined;
  if (!row.consumed_at) return row.payload;
  // Within the interval the library goes on to consume it again, which the
  // consuming statement allows or refuses (artifact-writer.ts): judged here
  // by the same clock, the database's, so the two cannot disagree.
  if (reuse > 0 && row.consumed_ago != null && Number(row.consumed_ago) < reuse) return row.payload;
  return { ...row.payload, consumed: Math.floor(row.consumed_at.getTime() / 1000) };
}
