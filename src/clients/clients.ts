// Applications registered by an operator. Stored in their own table; the
// provider reads them through ClientAdapter (src/provider/client-adapter.ts).
import { randomBytes } from 'node:crypto';
import type { Prisma } from '../persistence/database.js';
import { unshowable } from '../display-text.js';
import { isLoopbackHost } from '../http/safe-url.js';
import { claimsReleasedBy, OIDC_SCOPES } from '../oidc-scopes.js';
import { announceClientChange, CLIENT_CHANGES_CHANNEL } from './client-changes.js';
import { sha256 } from '../persistence/hash.js';
import { countByKind, type Removed } from '../provider/removed.js';
import { clientJwks, type ClientJwks } from './client-keys.js';

export class ClientError extends Error {
  override name = 'ClientError';
}

/** The Device Authorization Grant's type (RFC 8628 §3.4), as registrations and token requests name it. */
export const DEVICE_CODE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

export const GRANT_TYPES = ['authorization_code', 'refresh_token', 'client_credentials', DEVICE_CODE_GRANT] as const;
export type GrantType = (typeof GRANT_TYPES)[number];

/** The grants a person signs in for, the ones refresh tokens are issued at. */
const SIGN_IN_GRANTS: readonly string[] = ['authorization_code', DEVICE_CODE_GRANT];

export interface NewClient {
  name: string;
  redirectUris: string[];
  postLogoutRedirectUris?: string[];
  grantTypes?: GrantType[];
  scope?: string;
  public?: boolean;
  /** A native app (RFC 8252): public, with a private-use scheme, loopback or claimed https redirect. */
  native?: boolean;
  idTokenSignedResponseAlg?: 'ES256' | 'EdDSA' | 'RS256';
  /** Shown on the consent page (OIDC Dynamic Client Registration §2). */
  logoUri?: string;
  clientUri?: string;
  policyUri?: string;
  tosUri?: string;
  /**
   * A confidential client that authenticates with a key rather than a secret
   * (private_key_jwt): its public keys (a parsed JWK Set, or one JWK).
   * Absent: a secret.
   */
  jwks?: unknown;
  /**
   * Where the server POSTs a logout token when the person's session with the
   * app ends at the server (OpenID Connect Back-Channel Logout 1.0).
   */
  backchannelLogoutUri?: string;
  /**
   * Its authorization requests only through the PAR endpoint (RFC 9126 §6):
   * a request sent straight to /auth is refused, so none of its parameters
   * travel through the browser, where they could be read or changed.
   */
  requirePar?: boolean;
  /**
   * Its token requests only with a DPoP proof (RFC 9449 §5.2), so every
   * access and refresh token it gets is bound to its key: a token that leaks
   * is of no use without it.
   */
  requireDpop?: boolean;
  /**
   * Its authorization requests only as request objects signed with one of
   * its keys (RFC 9101 §10.5, `require_signed_request_object`): nothing on
   * the way can change their parameters, or send others in its name.
   */
  requireJar?: boolean;
  /**
   * The `sub` its people have there (OpenID Connect Core §8): `public`, the
   * user's id (the default), or `pairwise`, one of the sector, the host of
   * its redirect URIs, that apps on other hosts cannot match with theirs.
   */
  subjectType?: SubjectType;
}

export type SubjectType = 'public' | 'pairwise';

/** What `client update` may change; absent: kept. An empty shown address removes it; false a requirement. */
export type ClientChanges = Partial<
  Pick<
    NewClient,
    'name' | 'redirectUris' | 'postLogoutRedirectUris' | 'grantTypes' | 'scope' | 'idTokenSignedResponseAlg' | 'logoUri' | 'clientUri' | 'policyUri' | 'tosUri' | 'jwks' | 'backchannelLogoutUri' | 'requirePar' | 'requireDpop' | 'requireJar'
  >
>;

export interface CreatedClient {
  client_id: string;
  client_secret?: string;
}

export interface ClientView {
  clientId: string;
  name: string;
  public: boolean;
  native: boolean;
  /** How it authenticates at the token endpoint: none (public), a secret, or its keys. */
  authMethod: StoredMetadata['token_endpoint_auth_method'];
  jwks?: ClientJwks;
  redirectUris: string[];
  postLogoutRedirectUris: string[];
  grantTypes: string[];
  scope: string;
  /** The ID token's algorithm (RS256 when the client named none). */
  idTokenAlg: string;
  logoUri?: string;
  clientUri?: string;
  policyUri?: string;
  tosUri?: string;
  backchannelLogoutUri?: string;
  requirePar: boolean;
  requireDpop: boolean;
  requireJar: boolean;
  subjectType: SubjectType;
  /** For pairwise identifiers: the host they are made for (OpenID Connect Core §8.1). */
  sector?: string;
  createdAt: Date;
  /** Since when `client disable` has it refused (see Clients.disable). */
  disabledAt?: Date;
}

/** Metadata in the shape of RFC 7591 / OIDC Dynamic Registration, as oidc-provider reads it. */
export interface StoredMetadata {
  redirect_uris: string[];
  post_logout_redirect_uris: string[];
  grant_types: string[];
  response_types: string[];
  scope?: string;
  /** client_secret_basic: a secret, in either form (the library takes client_secret_post from such a client too). */
  token_endpoint_auth_method: 'none' | 'client_secret_basic' | 'private_key_jwt';
  /**
   * The public keys a private_key_jwt client signs its assertions with,
   * registered with it. Not a jwks_uri: token requests would wait on the
   * client's own server, and an operator's registration is where a key
   * change is made and seen.
   */
  jwks?: ClientJwks;
  /** Absent: `web`, oidc-provider's default. */
  application_type?: 'native';
  /** API scopes the client may obtain, space-separated; `scope` keeps the OpenID Connect ones. */
  api_scopes?: string;
  /**
   * The same per API, as resolved when the client was made: an API created
   * later that reuses a scope name gives it to nobody. Absent in clients made
   * before it existed, for which `api_scopes` counts for every API.
   */
  api_scopes_by_api?: Record<string, string>;
  logo_uri?: string;
  client_uri?: string;
  policy_uri?: string;
  tos_uri?: string;
  id_token_signed_response_alg?: string;
  backchannel_logout_uri?: string;
  /**
   * Always true beside a backchannel_logout_uri: the logout token names the
   * session (`sid`), as the app's ID tokens do, so that an app can end the
   * one local session it made from that sign-in rather than every session of
   * the person (Back-Channel Logout §2.4).
   */
  backchannel_logout_session_required?: true;
  /** RFC 9126 §6 (see NewClient.requirePar); absent: false. */
  require_pushed_authorization_requests?: true;
  /** RFC 9449 §5.2 (see NewClient.requireDpop); absent: false. */
  dpop_bound_access_tokens?: true;
  /** RFC 9101 §10.5 (see NewClient.requireJar); absent: false. */
  require_signed_request_object?: true;
  /** OpenID Connect Core §8 (see NewClient.subjectType); absent: public. */
  subject_type?: 'pairwise';
}

/**
 * The sector a registration's pairwise identifiers are made for: the host of
 * its redirect URIs, all on one (OpenID Connect Core §8.1; the library's
 * Client.sectorIdentifier reads the first); undefined for public identifiers.
 * Stored with the client when it is made (clients.pairwise_sector), and kept.
 */
function sectorOfRegistration(metadata: Pick<StoredMetadata, 'subject_type' | 'redirect_uris'>): string | undefined {
  return metadata.subject_type === 'pairwise' ? new URL(metadata.redirect_uris[0]!).host : undefined;
}

export const DEFAULT_SCOPE = 'openid profile email offline_access';

/**
 * Longer addresses are refused: browsers and proxies cut URLs at a few
 * thousand characters, and an indexed column cannot hold much more.
 */
export const MAX_URI_LENGTH = 2048;

function checkUri(uri: string, what: string): string {
  // An empty shell variable, or "" meant to remove one from a list (the list given replaces the registered one).
  if (!uri) throw new ClientError(`a ${what} cannot be empty (to change a list of them, give the addresses to keep)`);
  if (uri.length > MAX_URI_LENGTH) throw new ClientError(`a ${what} has at most ${MAX_URI_LENGTH} characters`);
  // A URI is printable ASCII (RFC 3986 §2). URL parsing would quietly drop a
  // tab or a surrounding space, so a code could go to an address other than
  // the one registered (redirect_uri is compared as a string), and a control
  // character would reach terminals (`client list`) and pages as it is.
  if (!/^[\x21-\x7e]+$/.test(uri)) {
    throw new ClientError(`${what} ${JSON.stringify(uri)} must be a URI in printable ASCII, without spaces (percent-encode other characters, RFC 3986 §2.1; an internationalized host in its xn-- form)`);
  }
  // A "%" that starts no %XX is no URI (RFC 3986 §2.1); the address the
  // library sends the browser to would carry it re-encoded (%25), not as
  // registered.
  if (/%(?![0-9A-Fa-f]{2})/.test(uri)) throw new ClientError(`${what} "${uri}" has a "%" that starts no percent-encoding (%XX, RFC 3986 §2.1)`);
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    throw new ClientError(`${what} "${uri}" is not an absolute URI`);
  }
  // Also an empty one ("…/cb#"), which URL parsing drops but the library refuses at every request.
  if (uri.includes('#')) throw new ClientError(`${what} "${uri}" must not have a fragment (RFC 6749 §3.1.2)`);
  // Port 0 is none anything listens on (RFC 6335 §6): the server refuses
  // such a return address at every request (provider/client-model.ts), so a
  // client registered with it could never be sent back to.
  if (url.port === '0') throw new ClientError(`${what} "${uri}" names port 0, on which nothing listens`);
  // A host no browser can be sent to, which reads as a pattern: addresses are
  // compared exactly (RFC 9700 §4.1.3), and an operator should not believe otherwise.
  if (url.hostname.includes('*')) throw new ClientError(`${what} "${uri}": a "*" in the host is no wildcard (addresses are compared exactly, RFC 9700 §4.1.3); register each address`);
  return uri;
}

/**
 * A return address (redirect, post-logout) as `check` takes it, written as
 * browsers read it. They read one leniently ("https:/host", "HTTPS://Host", a
 * default port, "." and ".." segments, characters they percent-encode; a
 * private-use scheme in capitals, its "." and ".." segments), and so does
 * the library when it sends the browser there, but an app's return address
 * is compared with the registered one as a string: an app that builds it
 * with the URL parser, as most do, would be refused with "unexpected return
 * address".
 */
function returnAddress(check: (uri: string, what: string) => string): (uri: string, what: string) => string {
  return (uri, what) => {
    const url = new URL(check(uri, what));
    if (!spelledAsRead(uri, url)) {
      throw new ClientError(`${what} "${uri}" is not written as browsers read it: register ${url.href} (return addresses are compared exactly)`);
    }
    return uri;
  };
}

/**
 * Whether a web address is written as the URL parser serializes it. An
 * origin alone may also leave out its "/": apps send it so as often
 * (`location.origin` has none), and the operator registers what the app sends.
 */
function spelledAsRead(uri: string, url: URL): boolean {
  if (url.href === uri) return true;
  const origin = /^[^:/?#]+:\/\/[^/?#]*(?=[?#]|$)/.exec(uri)?.[0];
  return origin !== undefined && url.href === `${origin}/${uri.slice(origin.length)}`;
}

/** Only web addresses, never javascript: or data: (pages show some of these to people). */
function checkWebUri(uri: string, what: string): string {
  const checked = checkUri(uri, what);
  if (!/^https?:$/.test(new URL(checked).protocol)) throw new ClientError(`${what} "${uri}" must be an http(s) address`);
  return checked;
}

/**
 * A web client's redirect: https, or http to this machine (development). An
 * authorization code sent over plain http to another host can be read on the
 * way (RFC 6749 §3.1.2.1, RFC 9700 §4.1.1 and OAuth 2.1 want TLS); a user name
 * or password in it would be sent to every browser.
 */
function checkWebRedirectUri(uri: string, what: string): string {
  const url = new URL(checkWebPostLogoutUri(uri, what));
  if (url.protocol !== 'https:' && !isLoopbackHost(url.hostname)) throw new ClientError(`${what} "${uri}" must be https (http only on localhost, 127.0.0.1 or [::1])`);
  return uri;
}

/** Where a web client's user lands after signing out: carries no code, so http is allowed. */
function checkWebPostLogoutUri(uri: string, what: string): string {
  const url = new URL(checkWebUri(uri, what));
  if (url.username || url.password) throw new ClientError(`${what} "${uri}" must not hold a user name or password`);
  return uri;
}

/**
 * An address shown on the consent page (logo, about, privacy, terms): only
 * what the page would show (see http/safe-url.ts), refused here rather than
 * left out there without a word.
 */
function checkShownUri(uri: string, what: string): string {
  const checked = checkWebUri(uri, what);
  const url = new URL(checked);
  if (url.protocol !== 'https:' && !isLoopbackHost(url.hostname)) throw new ClientError(`${what} "${uri}" must be https (or http on localhost), as the consent page shows no other`);
  return checked;
}

/**
 * A native app's redirect (RFC 8252 §7): a private-use scheme named after a
 * domain the app controls, in reverse order (com.example.app:/callback); a
 * loopback address over http, where any port is accepted at request time
 * (§7.3); or a claimed https address that is not loopback (§7.2).
 */
function checkNativeRedirectUri(uri: string, what: string): string {
  const url = new URL(checkUri(uri, what));
  if (url.username || url.password) throw new ClientError(`${what} "${uri}" must not hold a user name or password`);
  const scheme = url.protocol.slice(0, -1);
  if (scheme === 'http') {
    if (!isLoopbackHost(url.hostname)) throw new ClientError(`${what} "${uri}": a native app's http address must be loopback (127.0.0.1, [::1]; RFC 8252 §7.3)`);
  } else if (scheme === 'https') {
    if (isLoopbackHost(url.hostname)) throw new ClientError(`${what} "${uri}": a native app's loopback address uses http (RFC 8252 §7.3)`);
  } else if (!scheme.includes('.')) {
    throw new ClientError(`${what} "${uri}": a native app's private-use scheme must be a domain it controls in reverse order, e.g. com.example.app (RFC 8252 §7.1)`);
  }
  return uri;
}

/**
 * Where logout tokens are POSTed: an address the app's server answers on,
 * often inside the operator's network (the operator registers it, so private
 * addresses are allowed: see backchannelFetch in provider/backchannel-logout.ts).
 * Only for a confidential client: a public one (a browser or native app) has
 * no server of its own to be told; and http, which §2.2 of Back-Channel
 * Logout allows for confidential clients only, is allowed to any host (a
 * logout token is signed and ends sessions only).
 */
function checkBackchannelLogoutUri(uri: string, isPublic: boolean): string {
  if (isPublic) throw new ClientError(`a public or native client has no server to receive logout tokens: --backchannel-logout-uri is for a confidential one`);
  // The rules of a sign-out address: http(s), no fragment, no user name or password.
  return checkWebPostLogoutUri(uri, 'back-channel logout URI');
}

const MAX_CLIENT_NAME_LENGTH = 200;

/**
 * A host that is the person's own machine, however written (as the URL
 * parser serializes it): 127.0.0.0/8 and [::1], either mapped to IPv6
 * (RFC 4291 §2.5.5.2), localhost and its subdomains, with or without the
 * root's dot (RFC 6761 §6.3), and the unspecified addresses, which a
 * connection reaches the machine at.
 */
function namesTheDevice(hostname: string): boolean {
  const name = hostname.replace(/\.$/, '');
  return (
    isLoopbackHost(name) ||
    name.endsWith('.localhost') ||
    /^127\.\d+\.\d+\.\d+$/.test(name) ||
    /^\[::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}\]$/.test(name) ||
    ['0.0.0.0', '[::]', '[::ffff:0:0]'].includes(name)
  );
}

/**
 * What pairwise identifiers need: a sector, the one host of the client's
 * redirect URIs (OpenID Connect Core §8.1). Core would take several hosts,
 * or a device's sign-in without a redirect URI, with a sector_identifier_uri:
 * a document on the client's server listing its addresses, which this server
 * does not fetch (an operator's registration is where addresses are made
 * and seen). A client per host does the same.
 */
function checkSector(redirectUris: string[], grantTypes: string[]): void {
  if (!grantTypes.includes('authorization_code')) {
    throw new ClientError('pairwise identifiers are for a client that signs people in with authorization_code: they are made for the host of its redirect URIs');
  }
  if (grantTypes.includes(DEVICE_CODE_GRANT)) {
    throw new ClientError("pairwise identifiers cannot go with device_code: a device's sign-in has no redirect URI to make them for (register the device part as a client of its own)");
  }
  const hosts = new Set(redirectUris.map((uri) => new URL(uri).host));
  if (hosts.has('')) {
    throw new ClientError('pairwise identifiers need redirect URIs that name a host, which they are made for (OpenID Connect Core §8.1): a private-use scheme (com.example.app:/callback) names none; a claimed https address does');
  }
  // A loopback address names the person's own machine, every app's on it: two
  // unrelated apps there would be one sector, and see the same sub (§8).
  const device = redirectUris.map((uri) => new URL(uri).hostname).find(namesTheDevice);
  if (device !== undefined) {
    throw new ClientError(`pairwise identifiers need redirect URIs on a host of the app's, which they are made for (OpenID Connect Core §8.1): ${device} is a loopback address, every app's on the person's machine, and unrelated apps there would share their people's sub; a claimed https address names the app's own`);
  }
  if (hosts.size > 1) {
    throw new ClientError(`pairwise identifiers need the redirect URIs on one host, which they are made for (OpenID Connect Core §8.1), not ${[...hosts].join(', ')}: register a client per host`);
  }
}

/**
 * The keys a client registers to authenticate with (private_key_jwt), as
 * stored; undefined for one that uses a secret or none.
 */
function registeredKeys(input: NewClient, isPublic: boolean): Pick<StoredMetadata, 'jwks'> | undefined {
  if (input.jwks === undefined) return undefined;
  // A public client proves nothing at the token endpoint: keys it ships with would be anyone's.
  if (isPublic) throw new ClientError(`a ${input.native ? 'native' : 'public'} client has no credentials: keys (--jwks-file) are for a confidential one`);
  const jwks = clientJwks(input.jwks);
  if (typeof jwks === 'string') throw new ClientError(jwks);
  return { jwks };
}

const VIEW_COLUMNS = { clientId: true, name: true, metadata: true, clientSecretHash: true, pairwiseSector: true, createdAt: true, disabledAt: true } as const;

function toView(row: { clientId: string; name: string; metadata: unknown; clientSecretHash: string | null; pairwiseSector: string | null; createdAt: Date; disabledAt: Date | null }): ClientView {
  const metadata = row.metadata as StoredMetadata;
  return {
    clientId: row.clientId,
    name: row.name,
    public: metadata.token_endpoint_auth_method === 'none',
    native: metadata.application_type === 'native',
    authMethod: metadata.token_endpoint_auth_method,
    ...(metadata.jwks ? { jwks: metadata.jwks } : {}),
    redirectUris: metadata.redirect_uris,
    postLogoutRedirectUris: metadata.post_logout_redirect_uris,
    grantTypes: metadata.grant_types,
    scope: [metadata.scope, metadata.api_scopes].filter(Boolean).join(' '),
    idTokenAlg: metadata.id_token_signed_response_alg ?? 'RS256',
    logoUri: metadata.logo_uri,
    clientUri: metadata.client_uri,
    policyUri: metadata.policy_uri,
    tosUri: metadata.tos_uri,
    backchannelLogoutUri: metadata.backchannel_logout_uri,
    requirePar: metadata.require_pushed_authorization_requests === true,
    requireDpop: metadata.dpop_bound_access_tokens === true,
    requireJar: metadata.require_signed_request_object === true,
    // By the column, which an earlier release's `client update` leaves alone (see the schema).
    subjectType: row.pairwiseSector !== null ? 'pairwise' : 'public',
    ...(row.pairwiseSector !== null ? { sector: row.pairwiseSector } : {}),
    createdAt: row.createdAt,
    ...(row.disabledAt ? { disabledAt: row.disabledAt } : {}),
  };
}

export class Clients {
  constructor(private readonly prisma: Prisma) {}

  async create(input: NewClient): Promise<CreatedClient> {
    const { name, metadata } = await this.registration(input);
    // A new client that could never get a token is a mistake (an empty shell
    // variable, a missing flag), refused before it is made. An update may
    // leave a client so, on purpose: `--scope ""` stops everything it was
    // given (see update()).
    if (metadata.scope === undefined && metadata.api_scopes === undefined) {
      throw new ClientError('--scope names no scope: the client could ask for nothing (leave --scope out for the default, or name OpenID Connect or API scopes)');
    }
    if (metadata.grant_types.includes('refresh_token') && !metadata.grant_types.some((type) => SIGN_IN_GRANTS.includes(type))) {
      throw new ClientError('--grant-type refresh_token needs authorization_code or device_code too: refresh tokens are issued at a sign-in (client_credentials gets none)');
    }
    const clientId = randomBytes(16).toString('base64url');
    const secret = metadata.token_endpoint_auth_method === 'client_secret_basic' ? randomBytes(32).toString('base64url') : undefined;
    await this.prisma.client.create({
      data: { clientId, name, metadata: metadata as object, clientSecretHash: secret ? sha256(secret) : null, pairwiseSector: sectorOfRegistration(metadata) ?? null },
    });
    return secret ? { client_id: clientId, client_secret: secret } : { client_id: clientId };
  }

  /**
   * Changes what is given in `changes` and keeps the rest, checked as at
   * creation; the client keeps its id, secret and everything issued to it.
   * Every instance sees the change at once (announced in the same transaction).
   * Whether it is public or native is what it was made as: another kind of
   * client is another registration.
   */
  async update(clientId: string, changes: ClientChanges): Promise<ClientView> {
    // Compare-and-set on updated_at: an update that another one overtook
    // between its read and its write starts again from what that one stored,
    // so two operators changing different fields at once both keep theirs.
    for (;;) {
      const updated = await this.updateOnce(clientId, changes);
      if (updated) return updated;
    }
  }

  /** One attempt of update(): undefined when the row changed since it was read. */
  private async updateOnce(clientId: string, changes: ClientChanges): Promise<ClientView | undefined> {
    const row = await this.prisma.client.findUnique({
      where: { clientId },
      select: { name: true, metadata: true, clientSecretHash: true, pairwiseSector: true, updatedAt: true, api: { select: { identifier: true } } },
    });
    if (!row) throw new ClientError(`no client with id ${clientId}`);
    if (row.api) throw new ClientError(`client ${clientId} holds the credentials of API ${row.api.identifier}; it has nothing to update`);
    const stored = row.metadata as unknown as StoredMetadata;
    // How a client authenticates is what it was made with, as whether it is public: another is another registration.
    if (changes.jwks !== undefined && stored.token_endpoint_auth_method !== 'private_key_jwt') {
      throw new ClientError(`client ${clientId} authenticates with ${stored.token_endpoint_auth_method === 'none' ? 'nothing (it is public)' : 'a secret'}: keys are for a client made with them (client create --jwks-file)`);
    }
    const orUnset = (value: string | undefined) => (value === '' ? undefined : value);
    const { name, metadata } = await this.registration({
      name: changes.name ?? row.name,
      redirectUris: changes.redirectUris ?? stored.redirect_uris,
      // `--post-logout-redirect-uri ""` clears them.
      postLogoutRedirectUris: changes.postLogoutRedirectUris?.filter(Boolean) ?? stored.post_logout_redirect_uris,
      grantTypes: (changes.grantTypes ?? stored.grant_types) as GrantType[],
      // Unchanged API scopes are copied as stored below, not resolved again:
      // an API deleted since would make any change fail.
      scope: changes.scope ?? stored.scope ?? '',
      public: stored.token_endpoint_auth_method === 'none',
      native: stored.application_type === 'native',
      // Keys given replace those registered.
      jwks: changes.jwks ?? stored.jwks,
      idTokenSignedResponseAlg: (changes.idTokenSignedResponseAlg ?? stored.id_token_signed_response_alg) as NewClient['idTokenSignedResponseAlg'],
      logoUri: changes.logoUri !== undefined ? orUnset(changes.logoUri) : stored.logo_uri,
      clientUri: changes.clientUri !== undefined ? orUnset(changes.clientUri) : stored.client_uri,
      policyUri: changes.policyUri !== undefined ? orUnset(changes.policyUri) : stored.policy_uri,
      tosUri: changes.tosUri !== undefined ? orUnset(changes.tosUri) : stored.tos_uri,
      backchannelLogoutUri: changes.backchannelLogoutUri !== undefined ? orUnset(changes.backchannelLogoutUri) : stored.backchannel_logout_uri,
      requirePar: changes.requirePar ?? stored.require_pushed_authorization_requests === true,
      requireDpop: changes.requireDpop ?? stored.dpop_bound_access_tokens === true,
      requireJar: changes.requireJar ?? stored.require_signed_request_object === true,
      // What it was made with: another would give everyone another `sub` at the app.
      // (Its metadata says so again where an earlier release's update dropped it.)
      subjectType: row.pairwiseSector !== null ? 'pairwise' : 'public',
    }, {
      name: changes.name === undefined,
      redirectUris: changes.redirectUris === undefined,
      postLogoutRedirectUris: changes.postLogoutRedirectUris === undefined,
      logoUri: changes.logoUri === undefined,
      clientUri: changes.clientUri === undefined,
      policyUri: changes.policyUri === undefined,
      tosUri: changes.tosUri === undefined,
      backchannelLogoutUri: changes.backchannelLogoutUri === undefined,
    });
    // Pairwise identifiers are made for the host of the redirect URIs: on
    // another, everyone would have another `sub` at the app, which would know
    // none of its people again.
    const sector = row.pairwiseSector;
    if (sector !== null && sectorOfRegistration(metadata) !== sector) {
      throw new ClientError(`client ${clientId} has pairwise identifiers made for ${sector}: its redirect URIs stay on that host (on another, everyone would have another sub at the app; register a client for it)`);
    }
    if (changes.scope === undefined) {
      // The API scopes stay as resolved when they were given (see StoredMetadata.api_scopes_by_api).
      if (stored.api_scopes) metadata.api_scopes = stored.api_scopes;
      if (stored.api_scopes_by_api) metadata.api_scopes_by_api = stored.api_scopes_by_api;
    }
    // OpenID Connect scopes taken from the client are taken from its
    // consents too: refresh and UserInfo give only what the consent still
    // holds (the library's getOIDCScopeFiltered), so the scope is gone from
    // the next refresh and from UserInfo at once, not at GRANT_TTL. Without
    // offline_access the client may no longer act offline: its refresh
    // tokens end. (API scopes taken away are also refused where they are
    // asked for, at every grant: see resourceServerInfo in provider/configuration.ts.)
    const narrowing = changes.scope !== undefined;
    // A registration without `scope` allows no OpenID Connect scope (see
    // registeredScopesOnly in provider/client-model.ts).
    const oidcScopes = metadata.scope === undefined ? [] : metadata.scope.split(' ');
    // Claims consented to one by one (the claims parameter) go with the scope that releases them.
    const oidcClaims = [...claimsReleasedBy(oidcScopes)];
    // (Without the refresh_token grant too: see refreshTokensWhileOffline.)
    const endsOffline = (narrowing || changes.grantTypes !== undefined) && !(oidcScopes.includes('offline_access') && metadata.grant_types.includes('refresh_token'));
    // API scopes are narrowed in the consents the same way, per API, to what
    // the registration now allows for that API: one given back is asked for
    // again, not found in a consent kept from before.
    const apiScopesByApi = JSON.stringify(metadata.api_scopes_by_api ?? {});
    // One statement, the announcement included: on the embedded database a
    // CLI shares its session with the server, so no transaction is left open.
    const changed = await this.prisma.$queryRaw<unknown[]>`
      WITH changed AS (
        UPDATE clients SET name = ${name}, metadata = ${JSON.stringify(metadata)}::jsonb, updated_at = now()
        WHERE client_id = ${clientId} AND updated_at = ${row.updatedAt}
        RETURNING client_id
      ), narrowed AS (
        UPDATE provider_artifacts
        SET payload = jsonb_set(jsonb_set(payload, '{openid,scope}', to_jsonb(array_to_string(ARRAY(
          SELECT given FROM unnest(string_to_array(payload #>> '{openid,scope}', ' ')) AS given
          WHERE given = ANY (${oidcScopes}::text[])), ' '))),
          '{openid,claims}', coalesce((
            SELECT jsonb_agg(given) FROM jsonb_array_elements_text(coalesce(payload #> '{openid,claims}', '[]'::jsonb)) AS given
            WHERE given = ANY (${oidcClaims}::text[])), '[]'::jsonb))
          || CASE WHEN payload ? 'resources' THEN jsonb_build_object('resources', (
            SELECT coalesce(jsonb_object_agg(per_api.api, per_api.scopes), '{}'::jsonb) FROM (
              SELECT api, array_to_string(ARRAY(
                SELECT given FROM unnest(string_to_array(names, ' ')) AS given
                WHERE given = ANY (string_to_array(${apiScopesByApi}::jsonb ->> api, ' '))), ' ') AS scopes
              FROM jsonb_each_text(payload->'resources') AS consented(api, names)) AS per_api
            WHERE per_api.scopes <> '')) ELSE '{}'::jsonb END
        WHERE ${narrowing} AND kind = 'Grant' AND client_id IN (SELECT client_id FROM changed)
          -- Only the consents that hold something taken away: the others are not rewritten (nor locked).
          AND (NOT coalesce(string_to_array(payload #>> '{openid,scope}', ' ') <@ ${oidcScopes}::text[], true)
            OR NOT ARRAY(SELECT jsonb_array_elements_text(coalesce(payload #> '{openid,claims}', '[]'::jsonb))) <@ ${oidcClaims}::text[]
            OR EXISTS (SELECT 1 FROM jsonb_each_text(coalesce(payload->'resources', '{}'::jsonb)) AS consented(api, names)
                       WHERE NOT string_to_array(names, ' ') <@ coalesce(string_to_array(${apiScopesByApi}::jsonb ->> api, ' '), '{}'::text[])))
      ), offline_ended AS (
        DELETE FROM provider_artifacts
        WHERE ${endsOffline} AND kind = 'RefreshToken' AND payload->>'clientId' IN (SELECT client_id FROM changed)
      )
      SELECT client_id FROM changed, LATERAL (SELECT pg_notify(${CLIENT_CHANGES_CHANNEL}, changed.client_id)) AS announced`;
    if (changed.length === 0) return undefined;
    return toView(await this.prisma.client.findUniqueOrThrow({ where: { clientId }, select: VIEW_COLUMNS }));
  }

  /** A registration's checked name and metadata, for create() and update(). */
  private async registration(
    input: NewClient,
    kept: Partial<Record<'name' | 'redirectUris' | 'postLogoutRedirectUris' | 'logoUri' | 'clientUri' | 'policyUri' | 'tosUri' | 'backchannelLogoutUri', boolean>> = {},
  ): Promise<{ name: string; metadata: StoredMetadata }> {
    const name = input.name.trim();
    if (!name) throw new ClientError('a client needs a name');
    // Shown on every consent page, where a long name would push the rest away.
    // (A name kept from before is not checked against rules made since.)
    const problem = kept.name ? undefined : unshowable(name, 'a client name', MAX_CLIENT_NAME_LENGTH);
    if (problem) throw new ClientError(problem);
    const grantTypes = [...new Set(input.grantTypes?.length ? input.grantTypes : ['authorization_code', 'refresh_token'])];
    for (const type of grantTypes) {
      if (!GRANT_TYPES.includes(type as GrantType)) throw new ClientError(`unknown grant type "${type}" (use ${GRANT_TYPES.join(', ')})`);
    }
    // The provider refuses, at every request, a client whose addresses do not
    // fit its application type: refused here instead, when the client is made.
    // Addresses kept from before (an update that does not replace them) are
    // not checked against rules made since: they keep working as registered.
    const checkRedirect = returnAddress(input.native ? checkNativeRedirectUri : checkWebRedirectUri);
    const checkPostLogout = returnAddress(input.native ? checkNativeRedirectUri : checkWebPostLogoutUri);
    // (Each address once: the same one given twice is one registration.)
    const redirectUris = kept.redirectUris ? input.redirectUris : [...new Set(input.redirectUris.map((uri) => checkRedirect(uri, 'redirect URI')))];
    if (grantTypes.includes('authorization_code') && redirectUris.length === 0) {
      throw new ClientError('an authorization_code client needs at least one --redirect-uri');
    }
    // A native app cannot keep a secret (RFC 8252 §8.5): it is a public client.
    const isPublic = Boolean(input.public || input.native);
    if (isPublic && grantTypes.includes('client_credentials')) {
      throw new ClientError(`a ${input.native ? 'native' : 'public'} client cannot use client_credentials`);
    }
    const keys = registeredKeys(input, isPublic);
    // (A requirement kept from before is checked again: a client that lost its code flow keeps none to require PAR of.)
    if (input.requirePar && !grantTypes.includes('authorization_code')) {
      throw new ClientError('--require-par is for a client that signs people in with authorization_code: only its authorization requests can be pushed (client update --no-require-par drops the requirement)');
    }
    if (input.requireJar && !keys) {
      throw new ClientError('--require-jar is for a client made with keys (--jwks-file): its request objects are signed with one');
    }
    if (input.requireJar && !grantTypes.some((type) => SIGN_IN_GRANTS.includes(type))) {
      throw new ClientError('--require-jar is for a client that signs people in (authorization_code or device_code): only authorization requests are signed (client update --no-require-jar drops the requirement)');
    }
    if (input.subjectType === 'pairwise') checkSector(redirectUris, grantTypes);
    const scopes = [...new Set((input.scope ?? DEFAULT_SCOPE).split(/\s+/).filter(Boolean))];
    const apiScopes = scopes.filter((scope) => !OIDC_SCOPES.includes(scope));
    const byApi = await this.apisDefining(apiScopes);
    const metadata: StoredMetadata = {
      redirect_uris: redirectUris,
      post_logout_redirect_uris: kept.postLogoutRedirectUris
        ? (input.postLogoutRedirectUris ?? [])
        : [...new Set((input.postLogoutRedirectUris ?? []).map((uri) => checkPostLogout(uri, 'post-logout redirect URI')))],
      grant_types: grantTypes,
      response_types: grantTypes.includes('authorization_code') ? ['code'] : [],
      // oidc-provider refuses an empty `scope`; absent, it means "any OpenID scope".
      ...(scopes.some((scope) => OIDC_SCOPES.includes(scope)) ? { scope: scopes.filter((scope) => OIDC_SCOPES.includes(scope)).join(' ') } : {}),
      ...(apiScopes.length ? { api_scopes: apiScopes.join(' '), api_scopes_by_api: byApi } : {}),
      token_endpoint_auth_method: isPublic ? 'none' : keys ? 'private_key_jwt' : 'client_secret_basic',
      ...keys,
      ...(input.native ? { application_type: 'native' as const } : {}),
      ...(input.idTokenSignedResponseAlg ? { id_token_signed_response_alg: input.idTokenSignedResponseAlg } : {}),
      ...(input.logoUri ? { logo_uri: kept.logoUri ? input.logoUri : checkShownUri(input.logoUri, 'logo URI') } : {}),
      ...(input.clientUri ? { client_uri: kept.clientUri ? input.clientUri : checkShownUri(input.clientUri, 'client URI') } : {}),
      ...(input.policyUri ? { policy_uri: kept.policyUri ? input.policyUri : checkShownUri(input.policyUri, 'policy URI') } : {}),
      ...(input.tosUri ? { tos_uri: kept.tosUri ? input.tosUri : checkShownUri(input.tosUri, 'terms of service URI') } : {}),
      ...(input.backchannelLogoutUri
        ? {
            backchannel_logout_uri: kept.backchannelLogoutUri ? input.backchannelLogoutUri : checkBackchannelLogoutUri(input.backchannelLogoutUri, isPublic),
            backchannel_logout_session_required: true as const,
          }
        : {}),
      ...(input.requirePar ? { require_pushed_authorization_requests: true as const } : {}),
      ...(input.requireDpop ? { dpop_bound_access_tokens: true as const } : {}),
      ...(input.requireJar ? { require_signed_request_object: true as const } : {}),
      ...(input.subjectType === 'pairwise' ? { subject_type: 'pairwise' as const } : {}),
    };
    return { name, metadata };
  }

  /** Which registered APIs define each of `scopes`; a scope no API defines is refused. */
  private async apisDefining(scopes: string[]): Promise<Record<string, string>> {
    if (scopes.length === 0) return {};
    const apis = await this.prisma.api.findMany({ select: { identifier: true, scopes: true } });
    const byApi: Record<string, string> = {};
    for (const scope of scopes) {
      const defining = apis.filter((api) => (api.scopes as { name: string }[]).some((defined) => defined.name === scope));
      if (defining.length === 0) {
        throw new ClientError(`no API defines the scope "${scope}" (OpenID Connect scopes are ${OIDC_SCOPES.join(', ')}; create the API first with \`portcullis api create\`)`);
      }
      for (const api of defining) byApi[api.identifier] = byApi[api.identifier] ? `${byApi[api.identifier]} ${scope}` : scope;
    }
    return byApi;
  }

  /** One client as `list` shows it (an API's credentials too). */
  async find(clientId: string): Promise<ClientView> {
    const row = await this.prisma.client.findUnique({ where: { clientId }, select: VIEW_COLUMNS });
    if (!row) throw new ClientError(`no client with id ${clientId}`);
    return toView(row);
  }

  /**
   * One client, as `client show` tells: its registration, and how many
   * people have a consent to it in force (not withdrawn at a sign-out, not
   * expired: see `user show`). Not an API's credentials, which `api list` shows.
   */
  async show(clientId: string): Promise<ClientView & { consentedUsers: number }> {
    const [row, consented] = await this.prisma.$transaction([
      this.prisma.client.findUnique({ where: { clientId }, select: { ...VIEW_COLUMNS, api: { select: { identifier: true } } } }),
      this.prisma.$queryRaw<{ n: number }[]>`SELECT count(DISTINCT account_id)::int AS n FROM provider_artifacts
        WHERE kind = 'Grant' AND client_id = ${clientId} AND consumed_at IS NULL AND (expires_at IS NULL OR expires_at > now())`,
    ]);
    if (!row) throw new ClientError(`no client with id ${clientId}`);
    if (row.api) throw new ClientError(`client ${clientId} holds the credentials of API ${row.api.identifier}; \`portcullis api list\` shows it`);
    return { ...toView(row), consentedUsers: consented[0]?.n ?? 0 };
  }

  async list(): Promise<ClientView[]> {
    const rows = await this.prisma.client.findMany({ where: { api: null }, orderBy: { createdAt: 'asc' }, select: VIEW_COLUMNS });
    return rows.map(toView);
  }

  /**
   * A new secret for a confidential client, or for an API's introspection
   * credentials; the old one stops working at once (on every instance: the
   * change is announced in the same transaction). What was issued with the
   * old one stays valid.
   */
  async rotateSecret(clientId: string): Promise<Required<CreatedClient>> {
    // Looked up before anything is announced: only a client's id is (see client-changes.ts).
    const row = await this.prisma.client.findUnique({ where: { clientId }, select: { clientSecretHash: true, metadata: true } });
    if (!row) throw new ClientError(`no client with id ${clientId}`);
    if ((row.metadata as unknown as StoredMetadata).token_endpoint_auth_method === 'private_key_jwt') {
      throw new ClientError(`client ${clientId} authenticates with its keys: it has no secret (client update --jwks-file replaces its keys)`);
    }
    if (!row.clientSecretHash) throw new ClientError(`client ${clientId} is public: it has no secret`);
    const secret = randomBytes(32).toString('base64url');
    const [updated] = await this.prisma.$transaction([
      this.prisma.client.updateMany({ where: { clientId, clientSecretHash: { not: null } }, data: { clientSecretHash: sha256(secret) } }),
      announceClientChange(this.prisma, clientId),
    ]);
    // Deleted since it was looked up.
    if (updated.count === 0) throw new ClientError(`no client with id ${clientId}`);
    return { client_id: clientId, client_secret: secret };
  }

  /**
   * Refuses a client everywhere until enable(), as if it were not registered
   * (the provider's lookup skips it: provider/client-adapter.ts), on every
   * instance at once (announced in the same transaction): its requests get
   * invalid_client, and what was issued to it is refused where it is checked
   * (introspection, UserInfo, refresh). For a client whose secret leaked or
   * that misbehaves, while the operator finds out: its codes, access and
   * refresh tokens and its sign-ins in progress end now, so that enabling it
   * brings back none of them. (A pushed request names its client only inside
   * the request; it lives 60 s, or as long as the sign-in it began, which
   * ends.) The registration, its secret and the consents people gave it
   * stay: once enabled, it signs people in without asking again.
   */
  disable(clientId: string): Promise<{ wasDisabled: boolean; removed: Removed }> {
    return this.setDisabled(clientId, true);
  }

  /**
   * Lets a disabled client in again. What a request in flight stored for it
   * as it was disabled ends too; a client that was not disabled keeps all it has.
   */
  enable(clientId: string): Promise<{ wasDisabled: boolean; removed: Removed }> {
    return this.setDisabled(clientId, false);
  }

  private async setDisabled(clientId: string, disabled: boolean): Promise<{ wasDisabled: boolean; removed: Removed }> {
    // Looked up before anything is announced: only a client's id is (see client-changes.ts).
    const row = await this.prisma.client.findUnique({ where: { clientId }, select: { api: { select: { identifier: true } } } });
    if (!row) throw new ClientError(`no client with id ${clientId}`);
    // An API's credentials only introspect; `api delete` ends them, `client rotate-secret` changes them.
    if (row.api) throw new ClientError(`client ${clientId} holds the credentials of API ${row.api.identifier}; use \`portcullis client rotate-secret\` or \`portcullis api delete\``);
    const [before, ended] = await this.prisma.$transaction([
      // FOR UPDATE: two at once agree on which came first.
      this.prisma.$queryRaw<{ disabled_at: Date | null }[]>`SELECT disabled_at FROM clients WHERE client_id = ${clientId} FOR UPDATE`,
      // Everything issued to it but the consents (kind Grant), and its sign-ins in progress.
      this.prisma.$queryRaw<{ kind: string }[]>`
        DELETE FROM provider_artifacts
        WHERE (kind <> 'Grant' AND payload->>'clientId' = ${clientId} OR kind = 'Interaction' AND payload->'params'->>'client_id' = ${clientId})
          AND (${disabled} OR EXISTS (SELECT 1 FROM clients WHERE client_id = ${clientId} AND disabled_at IS NOT NULL))
        RETURNING kind`,
      disabled
        ? this.prisma.$executeRaw`UPDATE clients SET disabled_at = coalesce(disabled_at, now()) WHERE client_id = ${clientId}`
        : // What was issued before the disable is not honoured after (its JWTs:
          // client-adapter.ts). The disable's time, not now(): a server whose
          // clock lags the database's would otherwise issue tokens inactive
          // from their start for a while after the enable.
          this.prisma.$executeRaw`UPDATE clients SET disabled_at = NULL, revoked_at = disabled_at WHERE client_id = ${clientId} AND disabled_at IS NOT NULL`,
      announceClientChange(this.prisma, clientId),
    ]);
    // Deleted since it was looked up.
    if (before.length === 0) throw new ClientError(`no client with id ${clientId}`);
    return { wasDisabled: before[0]!.disabled_at !== null, removed: countByKind(ended) };
  }

  /** Deletes the client and everything issued to it. */
  async delete(clientId: string): Promise<void> {
    // Looked up before anything is announced: only a client's id is (see client-changes.ts).
    const row = await this.prisma.client.findUnique({ where: { clientId }, select: { api: { select: { identifier: true } } } });
    if (!row) throw new ClientError(`no client with id ${clientId}`);
    if (row.api) throw new ClientError(`client ${clientId} holds the credentials of API ${row.api.identifier}; use \`portcullis api delete\``);
    const [, deleted] = await this.prisma.$transaction([
      this.prisma.providerArtifact.deleteMany({ where: { OR: [{ clientId }, { payload: { path: ['clientId'], equals: clientId } }] } }),
      this.prisma.client.deleteMany({ where: { clientId } }),
      announceClientChange(this.prisma, clientId),
    ]);
    // Deleted since it was looked up.
    if (deleted.count === 0) throw new ClientError(`no client with id ${clientId}`);
  }
}
