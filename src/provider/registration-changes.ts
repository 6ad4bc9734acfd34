// A sign-in in progress, and a code issued but not yet exchanged, are held to
// the client's registration as it is now, not as it was when they began: an
// operator who removes a redirect URI (a compromised one, say) or a scope
// with `client update` must not see codes go there, or the scope given, for
// the rest of INTERACTION_TTL. The library checks the registration when an
// authorization request arrives, but not again when it resumes after the
// sign-in and consent pages, nor at the code exchange, which compares the
// redirect_uri with the code's only; nor when a sign-out is confirmed, which
// goes to the post_logout_redirect_uri checked when it was asked for. (Changes
// to a client's API scopes are checked at the resume already:
// resourceServerInfo in configuration.ts.)
import Provider, { errors, type AuthorizationCode, type Client, type KoaContextWithOIDC, type RefreshToken } from 'oidc-provider';
import { DEVICE_CODE_GRANT } from '../clients/clients.js';
import { SIGNING_ALGS } from '../keys/signing-keys.js';
import { OIDC_SCOPES } from '../oidc-scopes.js';
import { claimsReleasedTo, claimsRequestedIn } from './claims-parameter.js';

/** What in an authorization request the client's registration no longer allows. */
export interface RegistrationChange {
  /** The OAuth error code. */
  error: 'invalid_redirect_uri' | 'unauthorized_client' | 'invalid_scope' | 'invalid_request';
  description: string;
  /**
   * Whether the error may go to the request's redirect_uri (RFC 6749
   * §4.1.2.1): not when that address is what was removed.
   */
  redirectable: boolean;
}

/**
 * What in the authorization request `params` (an interaction's; a device's
 * request, `device`) the client's current registration no longer allows, or
 * undefined. In the library's
 * order: the address first, since without a registered one no error can be
 * sent back to the client.
 */
export function outgrownRequest(client: Client, params: Record<string, unknown>, { device = false, pushed = false, signed = false } = {}): RegistrationChange | undefined {
  // A device's sign-in (RFC 8628) names no address: its error goes to the device, which polls for it.
  if (device) {
    if (!client.grantTypeAllowed(DEVICE_CODE_GRANT)) {
      return { error: 'unauthorized_client', description: 'the client may no longer use the device authorization grant', redirectable: true };
    }
  } else {
    const redirectUri = typeof params.redirect_uri === 'string' ? params.redirect_uri : undefined;
    if (redirectUri === undefined || !client.redirectUriAllowed(redirectUri)) {
      return { error: 'invalid_redirect_uri', description: 'the redirect_uri of this request is no longer registered for the client', redirectable: false };
    }
  }
  if (!device && !client.grantTypeAllowed('authorization_code')) {
    return { error: 'unauthorized_client', description: 'the client may no longer use the authorization code flow', redirectable: true };
  }
  // --require-par registered since the request came straight to /auth: refused as /auth now refuses it.
  if (!device && !pushed && client.requirePushedAuthorizationRequests) {
    return { error: 'invalid_request', description: 'the client must now push its authorization requests (PAR, RFC 9126)', redirectable: true };
  }
  // --require-jar registered since the request came unsigned (straight to
  // /auth, or pushed): refused as /auth now refuses it. (A device's request
  // does not say whether it came signed.)
  if (!device && !signed && client.requireSignedRequestObject) {
    return { error: 'invalid_request', description: 'the client must now sign its authorization requests (request objects, RFC 9101)', redirectable: true };
  }
  // The library's allowlist check (checkScope): OpenID Connect scopes only,
  // as a registration with none holds a blank list (client-model.ts).
  const allowed = new Set(String(client.scope ?? '').split(' '));
  const requested = typeof params.scope === 'string' ? params.scope.split(' ') : [];
  const removed = requested.filter((scope) => OIDC_SCOPES.includes(scope) && !allowed.has(scope));
  if (removed.length > 0) {
    return { error: 'invalid_scope', description: `requested scope is no longer allowed for the client: ${removed.join(' ')}`, redirectable: true };
  }
  // Nor the claims of such a scope asked for one by one (the claims
  // parameter, narrowed to the registration when the request was taken:
  // claims-parameter.ts). Refused rather than left out: the consent page
  // the person may be on listed them.
  const released = claimsReleasedTo(client);
  const withdrawn = claimsRequestedIn(params).filter((claim) => !released.has(claim));
  if (withdrawn.length > 0) {
    return { error: 'invalid_request', description: `requested claims are no longer released to the client: ${withdrawn.join(' ')}`, redirectable: true };
  }
  return undefined;
}

/**
 * A code is exchanged only while the address it was sent to is still
 * registered for the client: one sent to an address removed since may have
 * gone to whoever holds that address now. Wraps the model's lookup, which the
 * exchange makes (findGrantSource) after authenticating the client and
 * before anything is consumed, so a refused exchange changes nothing.
 */
export function codesForRegisteredAddresses(provider: Provider): void {
  afterFind<AuthorizationCode>(provider.AuthorizationCode, async (code) => {
    const client = Provider.ctx?.oidc?.client;
    // Another client's code is the library's to refuse (client mismatch).
    if (code && client && code.clientId === client.clientId && !client.redirectUriAllowed(String(code.redirectUri))) {
      throw new errors.InvalidGrant('the redirect_uri the authorization code was issued to is no longer registered for the client');
    }
    return code;
  });
}

/**
 * A refresh token works only while its client may still act offline: its
 * registration allows the refresh_token grant and the offline_access scope.
 * `client update` deletes the client's refresh tokens when it takes either
 * away, but a refresh in flight stores its rotated token after that delete;
 * looked up, such a token is not found (invalid_grant at the token endpoint,
 * inactive at introspection), whenever it was stored.
 */
export function refreshTokensWhileOffline(provider: Provider): void {
  afterFind<RefreshToken>(provider.RefreshToken, async (token) => {
    // Revoking one still revokes it, and its sign-in's tokens (RFC 7009 §2.1): hidden
    // from revocation it would stay stored, and work again were the grant or
    // scope given back.
    if (!token?.clientId || Provider.ctx?.oidc?.route === 'revocation') return token;
    const current = Provider.ctx?.oidc?.client;
    const client = current?.clientId === token.clientId ? current : await provider.Client.find(token.clientId);
    // A client deleted since is the library's to refuse.
    if (!client) return token;
    const offline = client.grantTypeAllowed('refresh_token') && String(client.scope ?? '').split(' ').includes('offline_access');
    return offline ? token : undefined;
  });
}


/**
 * An ID token this server signed stays good as an id_token_hint (at sign-out,
 * with prompt=none) after `client update --id-token-alg` changes the
 * algorithm its client's ID tokens are signed with: the library verifies a
 * hint with the client's algorithm as it is now, so every person signed in
 * before the change could no longer sign out of the app without a "We could
 * not sign you out" page. Verified with the algorithm its header names, one
 * of ours only, against our own keys (which hold no HMAC secret), as strictly
 * otherwise (issuer, audience, signature).
 */
export function idTokenHintsOfEarlierAlgorithms(provider: Provider): void {
  type Validate = (jwt: string, client: Client) => Promise<unknown>;
  const IdToken = provider.IdToken as unknown as { validate: Validate };
  const validate = IdToken.validate.bind(IdToken);
  IdToken.validate = (jwt, client) => {
    const alg = headerAlg(jwt);
    if (alg === undefined || alg === client.idTokenSignedResponseAlg || !(SIGNING_ALGS as readonly string[]).includes(alg)) return validate(jwt, client);
    // The client as registered, but for the algorithm: what validate reads of it is that and its id.
    return validate(jwt, Object.create(client, { idTokenSignedResponseAlg: { value: alg } }) as Client);
  };
}

/** The `alg` of a JWS in compact form, if its header says one. */
function headerAlg(jwt: string): string | undefined {
  try {
    const { alg } = JSON.parse(Buffer.from(jwt.split('.')[0]!, 'base64url').toString('utf8')) as { alg?: unknown };
    return typeof alg === 'string' ? alg : undefined;
  } catch {
    return undefined;
  }
}

/** Puts `check` behind a model's lookup: what it answers (or throws) is what the library finds. */
function afterFind<T>(model: unknown, check: (found: T | undefined) => Promise<T | undefined>): void {
  type Find = (id: string, options?: { ignoreExpiration?: boolean }) => Promise<T | undefined>;
  const Model = model as { find: Find };
  const find = Model.find.bind(Model);
  Model.find = async (id, options) => check(await find(id, options));
}

/** `uri` without its `state` parameter, its query written as URLSearchParams writes it (as the library's redirect does). */
function withoutState(uri: string): string | undefined {
  try {
    const url = new URL(uri);
    url.searchParams.delete('state');
    url.search = url.searchParams.toString();
    return url.href;
  } catch {
    return undefined;
  }
}

/**
 * A confirmed sign-out goes back to the app only at an address the app still
 * registers: one removed while the confirmation page was open is not sent the
 * person, who lands on the signed-out page instead (signed out all the same).
 * For the end_session_confirm route's answer, whose client the library found
 * anew (its registration now); before the registered query is restored
 * (keepRedirectUriQuery in standards.ts), so the Location is the library's.
 */
export function signOutsToRegisteredAddresses(ctx: KoaContextWithOIDC): void {
  const location = ctx.response.get('Location');
  if (ctx.status !== 303 || !location) return;
  // Our own pages are not the client's to register: the signed-out page, and
  // the authorization request a "Not you?" sign-out goes on to (sign-outs.ts).
  if (location.startsWith('/') || location.startsWith(`${ctx.oidc.issuer}/`)) return;
  const signedOut = ctx.oidc.urlFor('end_session_success');
  const sent = withoutState(location);
  const registered = ctx.oidc.client?.postLogoutRedirectUris ?? [];
  if (sent !== undefined && registered.some((uri) => withoutState(uri) === sent)) return;
  ctx.redirect(signedOut);
}
