// The library's Client model, fitted to how Portcullis stores and serves clients.
import type Provider from 'oidc-provider';
import { errors, type AdapterPayload } from 'oidc-provider';
import { safeUrl } from '../http/safe-url.js';
import { sameDigest, sha256 } from '../persistence/hash.js';
import type { NotifiedCache } from '../persistence/notified-cache.js';

/** How the pages name an app: its registered name, or its id (a name is optional metadata). */
export function displayName(client: { clientName?: string; clientId: string }): string {
  return client.clientName ?? client.clientId;
}

/**
 * An app a page may lead back to: its name, and the home page it registered
 * (`--client-uri`), where that is an address a page may link to
 * (http/safe-url.ts). Undefined without one.
 */
export function linkableApplication(client: { clientName?: string; clientId: string; clientUri?: string } | undefined): { name: string; homePage: string } | undefined {
  const homePage = safeUrl(client?.clientUri);
  return client && homePage ? { name: displayName(client), homePage } : undefined;
}

/**
 * The API scopes (of `apiScopes`, the API's own) the client may be given for
 * the API `identifier`, as its registration says now: the scopes registered
 * for that API, or, in a registration from before they were kept per API,
 * its API scopes as a whole (see StoredMetadata.api_scopes_by_api).
 */
export function grantableApiScopes(client: object, identifier: string, apiScopes: string[]): string[] {
  const registered = client as { api_scopes?: string; api_scopes_by_api?: Record<string, string> };
  const names = registered.api_scopes_by_api ? registered.api_scopes_by_api[identifier] : registered.api_scopes;
  const allowed = new Set(String(names ?? '').split(' '));
  return apiScopes.filter((scope) => allowed.has(scope));
}

/** All of the below, in the order they wrap the model's lookup. */
export function adaptClientModel(provider: Provider, clientCache: NotifiedCache<AdapterPayload>): void {
  compareDigestedSecrets(provider);
  registeredScopesOnly(provider);
  refuseUnauthorizedResponseTypes(provider);
  keepBuiltClients(provider, clientCache);
  sidInEveryIdToken(provider);
  refuseLoopbackPortZero(provider);
}

/**
 * Every ID token carries `sid`, the sign-in's session id for that app: the
 * library adds it only for an app registered for back-channel logout, while
 * Back-Channel Logout 1.0 §2.1, which discovery says we support
 * (backchannel_logout_session_supported), has it "also included in ID Tokens
 * issued by the OP". An app that registers a back-channel logout URI later
 * can then match the sessions it began before to the logout tokens it gets.
 */
function sidInEveryIdToken(provider: Provider): void {
  provider.Client.prototype.includeSid = () => true;
}

/**
 * Client secrets are stored as SHA-256 digests (see ClientAdapter), so the
 * presented secret is digested before the constant-time comparison. Our
 * clients authenticate with client_secret_basic/post only, the one place the
 * library compares secrets; HS* algorithms (which need the plain secret) are
 * not offered to them.
 */
function compareDigestedSecrets(provider: Provider): void {
  provider.Client.prototype.compareClientSecret = function compareClientSecret(this: { clientSecret?: string }, actual: string) {
    if (typeof this.clientSecret !== 'string' || typeof actual !== 'string') return false;
    return sameDigest(this.clientSecret, sha256(actual));
  };
}

/**
 * A client registered without any OpenID Connect scope (only an API's, or
 * none) may ask for none: the library reads a missing `scope` as "any of the
 * provider's scopes", and refuses an empty one in the metadata. The blank
 * allowlist set here on the built client, after the metadata was validated,
 * is one the library's checks (authorization request, client credentials)
 * treat as a list that names no scope, so asking for one is invalid_scope.
 * (Scopes of APIs are checked against `api_scopes`, see configuration.ts.)
 */
function registeredScopesOnly(provider: Provider): void {
  const Client = provider.Client;
  const find = Client.find.bind(Client);
  Client.find = async (id: string) => {
    const client = await find(id);
    if (client && client.scope === undefined) (client as { scope?: string }).scope = ' ';
    return client;
  };
}

/**
 * A native app comes back on whatever loopback port it opened (RFC 8252
 * §7.3), which the library accepts for any port: also 0, which no socket
 * listens on (RFC 6335 §6: reserved), so the browser was sent nowhere with
 * the code or the error. Port 0 is refused as any other unregistered address.
 */
function refuseLoopbackPortZero(provider: Provider): void {
  const prototype = provider.Client.prototype as unknown as Record<'redirectUriAllowed' | 'postLogoutRedirectUriAllowed', (value: string) => boolean>;
  for (const method of ['redirectUriAllowed', 'postLogoutRedirectUriAllowed'] as const) {
    const allowed = prototype[method];
    prototype[method] = function allowedUnlessPortZero(value: string) {
      return !namesPortZero(value) && allowed.call(this, value);
    };
  }
}

function namesPortZero(value: string): boolean {
  return URL.parse(value)?.port === '0';
}

/**
 * RFC 6749 §4.1.2.1: a client that may not use the authorization code flow (a
 * client-credentials-only client) is told unauthorized_client; the library
 * answers invalid_request. It asks the client model only at that check (the
 * response type itself is known to be supported by then), so the model
 * answers with the error instead of false; the library redirects it to the
 * client as it would its own.
 */
function refuseUnauthorizedResponseTypes(provider: Provider): void {
  const prototype = provider.Client.prototype as unknown as { responseTypeAllowed(type: string): boolean };
  const allowed = prototype.responseTypeAllowed;
  prototype.responseTypeAllowed = function responseTypeAllowed(type: string) {
    if (allowed.call(this, type)) return true;
    throw new errors.UnauthorizedClient('requested response_type is not allowed for this client');
  };
}

/**
 * oidc-provider builds a Client once per distinct metadata, and finds it again
 * on every request by a SHA-256 of the JSON of what the adapter returned: about
 * 3 µs of the main thread's 125 µs per client-credentials grant. The client
 * cache (NotifiedCache) holds one frozen object per client until the client
 * changes, so the built Client is kept per that object instead, and lives as
 * long as it. A change gives a new object, hence a new Client. Where nothing is
 * cached (PGlite, the change feed down, a client not looked up yet) the
 * library finds the client as it always does, with one lookup.
 */
function keepBuiltClients(provider: Provider, clientCache: NotifiedCache<AdapterPayload>): void {
  const Client = provider.Client;
  const find = Client.find.bind(Client);
  const built = new WeakMap<object, ReturnType<typeof find>>();
  Client.find = (id: string) => {
    const metadata = typeof id === 'string' ? clientCache.peek(id) : undefined;
    if (!metadata) return find(id);
    let client = built.get(metadata);
    if (!client) {
      client = find(id);
      built.set(metadata, client);
      // Metadata the library refuses is not remembered: the next request asks again.
      client.catch(() => built.delete(metadata));
    }
    return client;
  };
}
