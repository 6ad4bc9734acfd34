// Resource servers (APIs): registered with their identifier (the `aud` of
// their tokens), their scopes, a token format, and credentials of their own
// for introspection.
import { randomBytes } from 'node:crypto';
import { announceClientChange, CLIENT_CHANGES_CHANNEL } from '../clients/client-changes.js';
import { MAX_URI_LENGTH, type StoredMetadata } from '../clients/clients.js';
import { parseDuration } from '../config.js';
import { unshowable } from '../display-text.js';
import type { Prisma } from '../persistence/database.js';
import { sha256 } from '../persistence/hash.js';
import { storable } from '../persistence/nul.js';
import { databaseNow } from '../persistence/clock-skew.js';

export class ApiError extends Error {
  override name = 'ApiError';
}

export type TokenFormat = 'jwt' | 'opaque';

export interface ApiScope {
  name: string;
  description?: string;
}

export interface ApiView {
  identifier: string;
  name: string;
  scopes: ApiScope[];
  tokenFormat: TokenFormat;
  accessTokenTtl: number;
  clientId: string;
}

export interface NewApi {
  identifier: string;
  name?: string;
  /** "read:orders" or "read:orders=See your orders" */
  scopes: string[];
  tokenFormat?: TokenFormat;
  ttl?: string;
}

// RFC 6749 §3.3 scope-token characters, minus '=' which separates a description.
const SCOPE_TOKEN = /^[\x21\x23-\x3c\x3e-\x5b\x5d-\x7e]+$/;
const RESERVED_SCOPES = new Set(['openid', 'profile', 'email', 'offline_access', 'address', 'phone']);
const MAX_TTL = 24 * 3600;
const MAX_DESCRIPTION_LENGTH = 300;

export function parseScope(spec: string): ApiScope {
  const index = spec.indexOf('=');
  const name = (index === -1 ? spec : spec.slice(0, index)).trim();
  const description = index === -1 ? undefined : spec.slice(index + 1).trim() || undefined;
  if (!SCOPE_TOKEN.test(name)) throw new ApiError(`"${name}" is not a valid scope name (RFC 6749 §3.3)`);
  if (RESERVED_SCOPES.has(name)) throw new ApiError(`"${name}" is an OpenID Connect scope, not an API scope`);
  // Shown on the consent page as what the person allows: it must read as written.
  const problem = description === undefined ? undefined : unshowable(description, `the description of ${name}`, MAX_DESCRIPTION_LENGTH);
  if (problem) throw new ApiError(problem);
  return description ? { name, description } : { name };
}

function checkIdentifier(identifier: string): string {
  if (identifier.length > MAX_URI_LENGTH) throw new ApiError(`an API identifier has at most ${MAX_URI_LENGTH} characters`);
  let url: URL;
  try {
    url = new URL(identifier);
  } catch {
    throw new ApiError(`"${identifier}" is not an absolute URI`);
  }
  // RFC 8707 §2: an absolute URI without a fragment.
  if (url.hash || identifier.includes('#')) throw new ApiError(`"${identifier}" must not have a fragment (RFC 8707 §2)`);
  // A URI is ASCII (RFC 3986 §2): anything else percent-encoded. Tokens carry
  // the identifier as written, as their `aud`, and an API compares it so.
  if (!/^[\x21-\x7e]+$/.test(identifier)) throw new ApiError(`"${identifier}" must be a URI in printable ASCII (percent-encode other characters, RFC 3986 §2.1)`);
  return identifier;
}

function checkScopes(specs: string[]): ApiScope[] {
  const scopes = specs.map(parseScope);
  if (scopes.length === 0) throw new ApiError('an API needs at least one --scope');
  if (new Set(scopes.map((scope) => scope.name)).size !== scopes.length) throw new ApiError('a scope is listed twice');
  return scopes;
}

function checkTokenFormat(format: string): TokenFormat {
  if (format !== 'jwt' && format !== 'opaque') throw new ApiError('--token-format must be jwt or opaque');
  return format;
}

function checkTtl(ttl: string): number {
  let seconds: number;
  try {
    seconds = parseDuration(ttl);
  } catch (error) {
    throw new ApiError((error as Error).message);
  }
  if (seconds < 1 || seconds > MAX_TTL) throw new ApiError('--ttl must be between 1s and 24h');
  return seconds;
}

/** The name shown on consent pages: the one given, else the identifier's host. */
function checkName(given: string | undefined, identifier: string): string {
  const name = given?.trim();
  const problem = name ? unshowable(name, 'an API name') : undefined;
  if (problem) throw new ApiError(problem);
  return name || new URL(identifier).host || identifier;
}

function toView(row: { identifier: string; name: string; scopes: unknown; tokenFormat: string; accessTokenTtl: number; clientId: string }): ApiView {
  return {
    identifier: row.identifier,
    name: row.name,
    scopes: row.scopes as ApiScope[],
    tokenFormat: row.tokenFormat as TokenFormat,
    accessTokenTtl: row.accessTokenTtl,
    clientId: row.clientId,
  };
}

const SELECT = { identifier: true, name: true, scopes: true, tokenFormat: true, accessTokenTtl: true, clientId: true } as const;

/**
 * An identifier as an address, to tell two apart that differ only in how
 * they are written: scheme and host in another case, a default port, a
 * trailing slash. Tokens carry an identifier exactly as registered (`aud`),
 * so such twins would be two APIs an operator, and the consent page (which
 * names both by their host), could not tell apart.
 */
function asAddress(identifier: string): string {
  const url = new URL(identifier);
  const { search } = url;
  url.search = '';
  return `${url.href.replace(/\/+$/, '')}${search}`;
}

/** Whether an API made at `createdAt` existed at `issuedAt` (epoch seconds, as a token's iat: whole seconds). */
const existedAt = (createdAt: Date, issuedAt: number) => Math.floor(createdAt.getTime() / 1000) <= issuedAt;

export class Apis {
  /** `issuer`: this server's, which names no API (see create). */
  constructor(
    private readonly prisma: Prisma,
    private readonly issuer: string,
  ) {}

  async create(input: NewApi): Promise<ApiView & { clientSecret: string }> {
    const identifier = checkIdentifier(input.identifier.trim());
    const scopes = checkScopes(input.scopes);
    const tokenFormat = checkTokenFormat(input.tokenFormat ?? 'jwt');
    const accessTokenTtl = checkTtl(input.ttl ?? '15m');
    // A token with the issuer as its audience would be one for this server
    // itself, which takes none: the name of no API.
    if (asAddress(identifier) === asAddress(this.issuer)) throw new ApiError(`"${identifier}" is this server's own address (ISSUER), not an API's`);
    const all = await this.prisma.api.findMany({ select: { identifier: true } });
    const twin = all.find((api) => asAddress(api.identifier) === asAddress(identifier));
    if (twin?.identifier === identifier) throw new ApiError(`an API with identifier ${identifier} already exists`);
    if (twin) throw new ApiError(`"${identifier}" is the address of the API ${twin.identifier}, written otherwise: tokens name an API exactly as registered, so use that one`);
    const name = checkName(input.name, identifier);
    const clientId = randomBytes(16).toString('base64url');
    const clientSecret = randomBytes(32).toString('base64url');
    // The API's own credentials: a client that can authenticate but has no grants.
    const metadata: StoredMetadata = {
      redirect_uris: [],
      post_logout_redirect_uris: [],
      grant_types: [],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_basic',
    };
    const row = await this.prisma.api.create({
      data: {
        // By the database's clock: tokens issued before it are not this API's (existedAt).
        createdAt: await databaseNow(this.prisma),
        identifier,
        name,
        scopes: scopes as object[],
        tokenFormat,
        accessTokenTtl,
        client: { create: { clientId, name: `${name} (API)`, metadata: metadata as object, clientSecretHash: sha256(clientSecret) } },
      },
      select: SELECT,
    });
    return { ...toView(row), clientSecret };
  }

  async list(): Promise<ApiView[]> {
    return (await this.prisma.api.findMany({ orderBy: { createdAt: 'asc' }, select: SELECT })).map(toView);
  }

  async find(identifier: string): Promise<ApiView | undefined> {
    // A resource indicator from a request may hold U+0000, which names no API (see persistence/nul.ts).
    if (!storable(identifier)) return undefined;
    const row = await this.prisma.api.findUnique({ where: { identifier }, select: SELECT });
    return row ? toView(row) : undefined;
  }

  /** The API `identifier`, which must exist (just changed: deleted since, it is said so). */
  private async found(identifier: string): Promise<ApiView> {
    const api = await this.find(identifier);
    if (!api) throw new ApiError(`no API with identifier ${identifier}`);
    return api;
  }

  /** The API `identifier`, if it already existed at `issuedAt` (epoch seconds): one made since is another API. */
  async findHeldSince(identifier: string, issuedAt: number): Promise<ApiView | undefined> {
    if (!storable(identifier)) return undefined;
    const row = await this.prisma.api.findUnique({ where: { identifier }, select: { ...SELECT, createdAt: true } });
    return row && existedAt(row.createdAt, issuedAt) ? toView(row) : undefined;
  }

  /** Whether an API `identifier` exists and already did at `issuedAt` (epoch seconds): a token then issued for it is its. */
  async heldSince(identifier: string, issuedAt: number): Promise<boolean> {
    if (!storable(identifier)) return false;
    const row = await this.prisma.api.findUnique({ where: { identifier }, select: { createdAt: true } });
    return row !== null && existedAt(row.createdAt, issuedAt);
  }

  async findByClientId(clientId: string): Promise<ApiView | undefined> {
    const row = await this.prisma.api.findUnique({ where: { clientId }, select: SELECT });
    return row ? toView(row) : undefined;
  }

  /**
   * Changes what is given in `changes` and keeps the rest. Scopes given
   * replace the API's list; one taken away is taken from the consents that
   * hold it for this API and from the clients registered for it, so it is
   * neither in a token issued afterwards, refreshes included, nor given again
   * if a later update brings the name back. Tokens already issued keep what
   * they say until they expire (the API's --ttl at most). Every instance sees
   * the change at its next request: APIs are read where they are used.
   */
  async update(identifier: string, changes: ApiChanges): Promise<ApiView & { removed: ApiScopesRemoved }> {
    const row = storable(identifier) ? await this.prisma.api.findUnique({ where: { identifier }, select: SELECT }) : null;
    if (!row) throw new ApiError(`no API with identifier ${identifier}`);
    const before = toView(row);
    const scopes = changes.scopes === undefined ? undefined : checkScopes(changes.scopes);
    const data = {
      ...(changes.name !== undefined ? { name: checkName(changes.name, identifier) } : {}),
      ...(scopes ? { scopes: scopes as object[] } : {}),
      ...(changes.tokenFormat !== undefined ? { tokenFormat: checkTokenFormat(changes.tokenFormat) } : {}),
      ...(changes.ttl !== undefined ? { accessTokenTtl: checkTtl(changes.ttl) } : {}),
    };
    // With --scope, one transaction: the update locks the API's row until it
    // commits, so two updates at once take turns, and the narrowing that
    // follows it reads the scopes the row holds then: whatever another update
    // added meanwhile is narrowed away too, if this one leaves it out.
    const update = this.prisma.api.updateMany({ where: { identifier }, data });
    const [changed, consents, clients] = scopes
      ? await this.prisma.$transaction([update, narrowConsents(this.prisma, identifier), narrowClients(this.prisma, identifier)])
      : [await update, 0, []];
    // Deleted since it was looked up (`api delete` had ended what was given for it: nothing was left to narrow).
    if (changed.count === 0) throw new ApiError(`no API with identifier ${identifier}`);
    // (What this update took away as read before it: an update in between may have added more, which it took too.)
    const names = scopes?.map((scope) => scope.name);
    const taken = names ? before.scopes.map((scope) => scope.name).filter((name) => !names.includes(name)) : [];
    return { ...(await this.found(identifier)), removed: { scopes: taken, consentsChanged: consents, clientsChanged: clients.length } };
  }

  /**
   * Deletes the API and its credentials, and what was given for it: its
   * opaque access tokens (introspection calls them inactive at once; JWT ones
   * stay valid until they expire, as nothing revokes a JWT), the consents to
   * its scopes (a refresh token gets no more tokens for it), and the clients'
   * registration for it. An API created later under the same identifier
   * starts from nothing: no client, token or consent of this one counts there.
   */
  async delete(identifier: string): Promise<ApiDeletion> {
    const api = storable(identifier) ? await this.prisma.api.findUnique({ where: { identifier }, select: { clientId: true } }) : null;
    if (!api) throw new ApiError(`no API with identifier ${identifier}`);
    // One transaction: the clients changed are announced in it (client-changes.ts).
    // Once the API row is gone (its client's delete cascades to it), the
    // narrowing leaves consents and clients none of its scopes.
    const [, tokens, grants, clients] = await this.prisma.$transaction([
      this.prisma.client.delete({ where: { clientId: api.clientId } }),
      this.prisma.$executeRaw`
        DELETE FROM provider_artifacts WHERE kind IN ('AccessToken', 'ClientCredentials') AND payload->'aud' ? ${identifier}`,
      narrowConsents(this.prisma, identifier),
      narrowClients(this.prisma, identifier),
      announceClientChange(this.prisma, api.clientId),
    ]);
    return { tokensRevoked: tokens, consentsChanged: grants, clientsChanged: clients.length };
  }
}

// The two statements below narrow what was given for the API `identifier` to
// the scopes its row holds when they run: none once it is deleted. They run
// inside the transaction that changed the row.

/** Consents: their scopes for the API, less those it no longer has (the API left out when none remain). */
function narrowConsents(prisma: Prisma, identifier: string) {
  // (account_id IS NOT NULL, as every grant's: lets the grants' partial index find them.)
  return prisma.$executeRaw`
    UPDATE provider_artifacts SET payload = (
      SELECT CASE WHEN kept.names = '' THEN payload #- ARRAY['resources', ${identifier}]
                  ELSE jsonb_set(payload, ARRAY['resources', ${identifier}], to_jsonb(kept.names)) END
      FROM (SELECT array_to_string(ARRAY(
              SELECT given FROM unnest(string_to_array(payload->'resources'->>${identifier}, ' ')) AS given
              WHERE given IN (SELECT scope->>'name' FROM apis, jsonb_array_elements(apis.scopes) AS scope WHERE apis.identifier = ${identifier})
            ), ' ') AS names) AS kept)
    WHERE kind = 'Grant' AND account_id IS NOT NULL AND payload->'resources' ? ${identifier}
      AND NOT string_to_array(payload->'resources'->>${identifier}, ' ')
          <@ ARRAY(SELECT scope->>'name' FROM apis, jsonb_array_elements(apis.scopes) AS scope WHERE apis.identifier = ${identifier})`;
}

/**
 * Clients' registrations for the API, the same way, announced to every
 * instance (client-changes.ts); api_scopes (what `client list` shows) is the
 * union of what remains per API.
 */
function narrowClients(prisma: Prisma, identifier: string) {
  return prisma.$queryRaw<{ client_id: string }[]>`
    WITH held AS (
      SELECT scope->>'name' AS name FROM apis, jsonb_array_elements(apis.scopes) AS scope WHERE apis.identifier = ${identifier}
    ), narrowed AS (
      SELECT c.client_id, (
        SELECT jsonb_object_agg(per_api.api, per_api.names) FROM (
          SELECT api, array_to_string(ARRAY(
            SELECT given FROM regexp_split_to_table(names, ' ') AS given
            WHERE given <> '' AND (api <> ${identifier} OR given IN (SELECT name FROM held))), ' ') AS names
          FROM jsonb_each_text(c.metadata->'api_scopes_by_api') AS per_api(api, names)) AS per_api
        WHERE per_api.names <> '') AS by_api
      FROM clients c
      WHERE c.metadata->'api_scopes_by_api' ? ${identifier}
        AND NOT string_to_array(c.metadata->'api_scopes_by_api'->>${identifier}, ' ') <@ ARRAY(SELECT name FROM held)
    ), changed AS (
      UPDATE clients SET updated_at = now(), metadata = CASE
          WHEN narrowed.by_api IS NULL THEN clients.metadata - 'api_scopes' - 'api_scopes_by_api'
          ELSE jsonb_set(jsonb_set(clients.metadata, '{api_scopes_by_api}', narrowed.by_api), '{api_scopes}', to_jsonb((
            SELECT string_agg(DISTINCT given, ' ')
              FROM jsonb_each_text(narrowed.by_api) AS per_api(api, names), regexp_split_to_table(per_api.names, ' ') AS given
             WHERE given <> '')))
        END
      FROM narrowed WHERE clients.client_id = narrowed.client_id
      RETURNING clients.client_id
    )
    SELECT client_id FROM changed, LATERAL (SELECT pg_notify(${CLIENT_CHANGES_CHANNEL}, changed.client_id)) AS announced`;
}

/** What `api update` changes: what is given replaces what is registered. */
export interface ApiChanges {
  /** "" for the identifier's host, as at creation. */
  name?: string;
  /** The whole list, as `create` takes it. */
  scopes?: string[];
  tokenFormat?: string;
  ttl?: string;
}

/** The scopes an update took from the API, and what no longer holds them. */
export interface ApiScopesRemoved {
  scopes: string[];
  consentsChanged: number;
  clientsChanged: number;
}

/** What deleting an API ended besides it. */
export interface ApiDeletion {
  /** Opaque access tokens for it (JWT ones are not stored). */
  tokensRevoked: number;
  /** Consents that included its scopes, which no longer do. */
  consentsChanged: number;
  /** Clients that were registered for it, which no longer are. */
  clientsChanged: number;
}
