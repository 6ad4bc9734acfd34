// oidc-provider Configuration built from our Config and services. Protocol
// behaviour is the library's; this file chooses among its options and fills
// the hooks they name (resource servers, an earlier consent, error pages).
import type { AdapterPayload, Client, Configuration, KoaContextWithOIDC } from 'oidc-provider';
import { errors } from 'oidc-provider';
import type { Accounts } from '../accounts/accounts.js';
import type { SignInThrottle } from '../accounts/sign-in-throttle.js';
import { sectorOf, type Subjects } from '../accounts/subjects.js';
import type { Apis } from '../apis/apis.js';
import type { Config } from '../config.js';
import { CLIENT_ASSERTION_ALGS } from '../clients/client-keys.js';
import { accountLabel } from '../display-text.js';
import { faultReference, renderErrorPage, renderUnavailablePage, type FailedSignOut } from '../http/error-pages.js';
import { requestField } from '../http/request-id.js';
import { destinationOf } from '../http/safe-url.js';
import { renderPage } from '../http/views.js';
import { CookieSigner } from '../keys/cookie-signer.js';
import { SIGNING_ALGS } from '../keys/signing-keys.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics/metrics.js';
import { OIDC_CLAIMS, OIDC_SCOPES, onlyOpenIdConnectScopes } from '../oidc-scopes.js';
import type { Prisma, Sql } from '../persistence/database.js';
import { databaseTrouble } from '../persistence/unavailable.js';
import { answerBodyTooLarge, BODY_TOO_LARGE, isBodyTooLarge } from './body-limit.js';
import { backchannelFetch } from './backchannel-logout.js';
import { ArtifactAdapter, signInOf, withdrawnAt, type SignInEnded } from './adapter.js';
import { findGrantId } from './artifacts.js';
import { ACCOUNT_CLIENT_ID, accountClient } from '../self-service/account-client.js';
import { assertClaimsParameter, claimsOfConsentedScopesGiven } from './claims-parameter.js';
import type { BrowserBinding } from './browser-binding.js';
import { ClientAdapter } from './client-adapter.js';
import { linkableApplication } from './client-model.js';
import { DevicePolling, deviceFlowPages, UserCodes } from './device-flow.js';
import { invalidRequestPage, NOT_UTF8_PARAMETERS, parametersAreUtf8 } from './request-encoding.js';
import { interactionPolicyWithSecondFactor } from './second-factor-prompt.js';
import { interactionPolicyWithAccountSelection } from './select-account.js';
import { AssertionRefused } from './standards.js';
import { REQUEST_OBJECT_ALGS, assertRequestObject, parametersSent } from './request-objects.js';
import { resourceServers } from './resource-servers.js';
import { NOT_YOURS_TO_REVOKE } from './structured-access-tokens.js';
import type { NotifiedCache } from '../persistence/notified-cache.js';
import type { SecretSealer } from '../keys/sealed-secrets.js';

export interface ProviderServices {
  config: Config;
  prisma: Prisma;
  sql: Sql;
  clientCache: NotifiedCache<AdapterPayload>;
  accounts: Accounts;
  apis: Apis;
  logger: Logger;
  signingKeys: object[];
  cookieKeys: string[];
  /** The `sub` each client knows a person by (accounts/subjects.ts). */
  subjects: Subjects;
  /** 32 bytes, the same on every instance: DPoP nonces one instance issues, another accepts. */
  dpopNonceSecret: Buffer;
  /** Seals what a stored payload must keep but not in the plain (see interaction-payloads.ts). */
  sealer: SecretSealer;
  /** Binds each sign-in in progress to the browser that started it (browser-binding.ts). */
  browsers: BrowserBinding;
  /** Counts requests and events, when metrics are served (METRICS_PORT). */
  metrics?: Metrics;
  /** Counts failed sign-ins, and wrong user codes at /device (device-flow.ts). */
  signInThrottle: SignInThrottle;
}

export function buildConfiguration(services: ProviderServices): Configuration {
  const { config, sql, accounts, apis, logger } = services;
  const clientAdapter = new ClientAdapter(sql, services.clientCache);
  const userCodes = new UserCodes(services.sealer.keyedDigests('device user codes v1'), services.signInThrottle, logger);
  const polls = new ArtifactAdapter('DevicePoll', sql);
  const polling = new DevicePolling((id, payload, expiresIn) => polls.claim(id, payload, expiresIn));
  const page = (ctx: KoaContextWithOIDC) => ({ res: ctx.res, issuerName: config.issuerName });
  // A refresh token used again within REFRESH_TOKEN_REUSE_INTERVAL: no replay
  // by the rule the operator chose, but the one case where a thief's use goes
  // unnoticed, so the trail has it (ids only).
  const logReuse = (ctx: KoaContextWithOIDC | undefined) => {
    const grant = (ctx?.oidc?.entities?.RotatedRefreshToken as { grantId?: string } | undefined)?.grantId;
    logger.info('refresh token used again within its reuse interval', { ...requestField(ctx), client: ctx?.oidc?.client?.clientId, grant });
  };
  // One sign-in's tokens revoked where the library would have ended a whole
  // grant (signInOf in adapter.ts), so no grant.revoked comes (provider.ts
  // logs those): said here, ids only. A code or refresh token presented
  // again is taken for theft (RFC 9700 §4.14.2), so worth a warning.
  const logSignInEnded = (ctx: KoaContextWithOIDC | undefined, { grantId, client, consent }: SignInEnded) => {
    const route = ctx?.oidc?.route;
    // A sign-out names the app that asked for it, but ends every app's sign-in in the session: the grant's own.
    const fields = { ...requestField(ctx), route, client: client ?? ctx?.oidc?.client?.clientId, grant: grantId };
    if (route === 'token') {
      logger.warn('tokens revoked: a code or refresh token was used twice', fields);
      services.metrics?.grantRevoked('replay');
    } else if (route === 'revocation') {
      const token = (ctx!.oidc.entities.RefreshToken ?? ctx!.oidc.entities.AccessToken) as { kind?: string } | undefined;
      logger.info('tokens revoked', { ...fields, presented: token?.kind });
    } else {
      logger.info('tokens revoked at sign-out', { ...fields, consent });
      services.metrics?.grantRevoked('other');
    }
  };


  return {
    adapter: (name: string) =>
      name === 'Client'
        ? clientAdapter
        : new ArtifactAdapter(name, sql, services.sealer, {
            refreshTokenReuseInterval: config.refreshTokenReuseInterval,
            onReuse: logReuse,
            onSignInEnded: logSignInEnded,
            sessionMaxAge: config.ttl.sessionMaxAge,
            browsers: services.browsers,
            userCodes,
            polling,
          }),
    // The account page (self-service/account-client.ts); every other client is in the database.
    clients: [accountClient(config.issuer, config.issuerName)],
    clientDefaults: {
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      // What OpenID Connect Registration §2 says a client that names no
      // algorithm expects, and what Core §15.1 makes every OP support: RP
      // libraries told nothing else (openid-client v5, express-openid-connect)
      // refuse any other. ES256 or EdDSA is a client's choice (--id-token-alg).
      id_token_signed_response_alg: 'RS256',
    },
    // What our clients can use: secrets are kept only as digests (see
    // compareDigestedSecrets in client-model.ts), so client_secret_jwt (an HMAC keyed
    // with the plain secret) cannot be checked; a client made with keys
    // (clients/client-keys.ts) signs its assertions (private_key_jwt, RFC 7523;
    // each assertion is used once, see replay-detection.ts). Discovery
    // advertises only these.
    clientAuthMethods: ['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'none'],
    // A client assertion is for this server only: its sole audience is our
    // issuer identifier (RFC 7523bis), never an endpoint's address nor a list
    // with others, which another server the client talks to could make it
    // sign (naming an address of ours as its own endpoint) and then replay
    // here: the audience injection 7523bis closes. And it is made for the
    // request: one valid for more than an hour, or issued in the future,
    // could be kept and used later.
    assertJwtClientAuthClaimsAndHeader: async (_ctx, claims) => {
      const audiences = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
      if (audiences.length !== 1 || audiences[0] !== config.issuer) {
        throw new AssertionRefused(`the client assertion's audience (aud) must be the issuer identifier, ${config.issuer}, alone`);
      }
      const now = Date.now() / 1000;
      if (typeof claims.exp === 'number' && claims.exp > now + MAX_ASSERTION_LIFETIME) {
        throw new AssertionRefused('the client assertion expires more than an hour from now (exp): make one for each request');
      }
      if (typeof claims.iat === 'number' && claims.iat > now + ASSERTION_CLOCK_SKEW) {
        throw new AssertionRefused('the client assertion was issued in the future (iat)');
      }
    },
    // RFC 8414 §2 reads a missing list as client_secret_basic only. A public
    // client may revoke its tokens; introspection refuses it (invalid_client,
    // see refusePublicClients in standards.ts), so `none` is not offered there.
    // prompt_values_supported: Initiating User Registration via OpenID Connect
    // §4.2; any other prompt value (create) is refused as invalid_request.
    discovery: {
      prompt_values_supported: ['none', 'login', 'consent', 'select_account'],
      introspection_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'private_key_jwt'],
      revocation_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'none'],
      // RFC 8414 §2: present wherever private_key_jwt is offered.
      introspection_endpoint_auth_signing_alg_values_supported: [...CLIENT_ASSERTION_ALGS],
      revocation_endpoint_auth_signing_alg_values_supported: [...CLIENT_ASSERTION_ALGS],
    },
    // The library's default rule, made ours (it warns until one is given): a
    // browser may call UserInfo for any client, and the token, revocation and
    // PAR endpoints only for a public client (a single-page app), always from
    // the origin of one of the client's redirect URIs. A confidential client's
    // secret never belongs in a browser.
    clientBasedCORS: (ctx, origin, client) =>
      origin !== 'null' &&
      (ctx.oidc.route === 'userinfo' || client.clientAuthMethod === 'none') &&
      client.redirectUris!.some((uri) => URL.parse(uri)?.origin === origin),
    // Not a code or token issued before a `client disable` its client was
    // enabled again after: the disable deleted the stored ones, but one a
    // request in flight stored after is refused here (refresh, code exchange,
    // UserInfo; the library has loaded the client) and at introspection.
    findAccount: (ctx, sub, token) => (token && ctx.oidc?.client && !stillIssuedTo(ctx.oidc.client, token) ? undefined : accounts.findAccount(ctx, sub, token)),
    claims: OIDC_CLAIMS,
    // OpenID Connect Core §8: the user's id for every client, or one per
    // sector for a client registered with pairwise identifiers (the library
    // asks for it wherever it writes a `sub`: ID and logout tokens, UserInfo,
    // introspection, JWT access tokens, and its checks of an id_token_hint
    // and of a claims parameter's sub value).
    subjectTypes: ['public', 'pairwise'],
    pairwiseIdentifier: async (_ctx, accountId, client) => services.subjects.of(accountId, sectorOf(client)),
    // `api`, `api_since`: set by ClientAdapter on the credentials of a registered API;
    // `tokens_since`, on a client enabled again after `client disable`.
    // `pairwise_sector`: the sector a pairwise client's identifiers are made for (ClientAdapter).
    // `api_scopes` (and per API, `api_scopes_by_api`): the API scopes a client
    // may obtain (`scope` holds only OpenID Connect scopes, which the library
    // validates against `scopes`).
    extraClientMetadata: { properties: ['api', 'api_since', 'tokens_since', 'api_scopes', 'api_scopes_by_api', 'pairwise_sector'] },
    scopes: OIDC_SCOPES,
    // The ID token carries the claims of the scopes granted (name, email, ...),
    // as well as UserInfo: RP libraries (Auth.js, express-openid-connect) take
    // the person's profile from the ID token. Core §5.4 has them returned from
    // UserInfo when an access token is issued, and does not keep them out of
    // the ID token; the token goes from us to the client directly.
    conformIdTokenClaims: false,
    // Checks of the request as a whole, which the library runs after its own
    // checks of scope, redirect URI and resource, at the authorization and PAR
    // endpoints (one per parameter name, in this order): parameters that are
    // not UTF-8 (sentAsUtf8), a request for nothing this server grants
    // (requestSomethingGrantable), a redirect URI left out where it may not be
    // (redirectUriWhereRequired).
    extraParams: { state: sentAsUtf8, scope: requestSomethingGrantable, redirect_uri: redirectUriWhereRequired },
    responseTypes: ['code'],
    // RFC 6749 §3.1.2.3: a client that registered exactly one redirect URI
    // may leave it out of an OAuth request, and then of its code exchange
    // (§4.1.3). The library takes its omission at any code exchange, which
    // OpenID Connect Core §3.1.3.2 allows and RFC 6749 §4.1.3 does not where
    // the authorization request named it: harmless, the code can only have
    // gone to that one URI. An OpenID request needs it all the same (Core
    // §3.1.2.1), as does a native app's: redirectUriWhereRequired.
    allowOmittingSingleRegisteredRedirectUri: true,
    // S256 only; required for public clients (RFC 9700 §2.1.1), honoured when
    // any client sends it, and required of every client with PKCE_REQUIRED=all
    // (OAuth 2.1's rule: a confidential client then cannot forget it either).
    pkce: { required: (_ctx, client) => config.pkceRequired === 'all' || client.clientAuthMethod === 'none' },
    // OpenID Connect Core §3.1.2.1 and RP-Initiated Logout §2: the
    // authorization and logout endpoints take POST as well as GET.
    enableHttpPostMethods: true,
    cookies: {
      keys: new CookieSigner(services.cookieKeys),
      // The session cookie (long) must go with an authorization request that
      // another site's page POSTs here, or the request would not find the
      // person signed in (single sign-on, prompt=none): SameSite=None, which
      // the library requires for POST. Browsers take it only with Secure, which
      // an https issuer's cookies carry; an http issuer's (local development)
      // cannot, and are sent as Lax instead (see laxCookiesOverHttp in
      // issuer-origin.ts). Interaction cookies (short) only ever go to our own pages.
      long: { signed: true, httpOnly: true, sameSite: 'none' },
      short: { signed: true, httpOnly: true, sameSite: 'lax' },
      // An https issuer's session cookie is a __Host- cookie (RFC 6265bis
      // §4.1.3.2): a browser takes it only Secure, for Path=/ and from this
      // host itself, so a page on a sibling subdomain cannot plant a session
      // of its choosing (signing the person in as someone else). Interaction
      // cookies are scoped to their interaction's path, which the prefix does
      // not allow: a sibling could plant them, so an interaction answers only
      // the browser that made it (browser-binding.ts). An http issuer (local
      // development) cannot set Secure cookies, so its cookie keeps the
      // library's name.
      names: {
        session: new URL(config.issuer).protocol === 'https:' ? '__Host-session' : '_session',
        interaction: '_interaction',
        resume: '_interaction_resume',
      },
    },
    jwks: { keys: services.signingKeys as never },
    enabledJWA: {
      clientAuthSigningAlgValues: [...CLIENT_ASSERTION_ALGS],
      idTokenSigningAlgValues: [...SIGNING_ALGS],
      userinfoSigningAlgValues: [...SIGNING_ALGS],
      introspectionSigningAlgValues: [...SIGNING_ALGS],
      authorizationSigningAlgValues: [...SIGNING_ALGS],
      requestObjectSigningAlgValues: [...REQUEST_OBJECT_ALGS],
    },
    features: {
      devInteractions: { enabled: false },
      // A client learns only about the tokens issued to it, and an API only
      // about the tokens meant for it (RFC 7662 §4): the library's default
      // lets any confidential client introspect any token. A public client
      // proves no identity, and RFC 7662 §2.1 requires some authorization at
      // this endpoint, against token scanning: its answer is replaced by
      // invalid_client whatever the token (refusePublicClients, standards.ts),
      // and this rule keeps the answer it replaces empty.
      introspection: {
        enabled: true,
        allowedPolicy: async (ctx, client, token) => {
          if (client.clientAuthMethod === 'none') return false;
          // Not a token of a user disabled, revoked or deleted since, which a
          // request in flight stored after the command ended it: UserInfo and
          // refresh refuse it (findAccount), and so does introspection, which
          // asks the library's findAccount nothing. Asked last, beside the
          // API's: a lookup (cached on PostgreSQL, see accounts.ts).
          const accountId = 'accountId' in token ? token.accountId : undefined;
          const honoured = () => (accountId ? accounts.honours(accountId, token.iat) : true);
          const { api, api_since: since = 0 } = client as unknown as { api?: string; api_since?: number };
          // Not a token issued before this API was made: one of an API deleted
          // under the same identifier that outlived it (written while the
          // delete ran) is not this API's.
          // Nor a token of a client deleted since: `client delete` deletes its
          // tokens, but one a token request in flight stored after is not
          // gone with them (UserInfo refuses it too: the library looks the
          // client up there). A lookup in the cache of clients. Nor one
          // issued before a `client disable` its client was enabled again
          // after: the disable ended its stored tokens, not its JWTs.
          const issuedTo = () => ctx.oidc.provider.Client.find(token.clientId!).then((holder) => holder !== undefined && stillIssuedTo(holder, token));
          if (api) return token.kind !== 'RefreshToken' && audiences(token).includes(api) && (token.iat ?? 0) >= since && (await issuedTo()) && (await honoured());
          if (token.clientId !== client.clientId || !stillIssuedTo(client, token)) return false;
          // Its client is not told a token for an API deleted since is
          // active: `api delete` revokes them, but one issued while it ran
          // is stored after (only tokens for an API have an audience).
          const held = await Promise.all([
            honoured(),
            ...(token.kind === 'RefreshToken' ? [] : audiences(token)).map((identifier) => apis.heldSince(identifier, token.iat ?? 0)),
          ]);
          return held.every(Boolean);
        },
      },
      // RFC 7009 §2.1: a token issued to another client is not revoked, and
      // the client is told so; a public client, which proves no identity,
      // learns nothing either way.
      revocation: {
        enabled: true,
        allowedPolicy: async (ctx, client, token) => {
          if (token.clientId === client.clientId) return true;
          if (client.clientAuthMethod === 'none') return false;
          throw new errors.InvalidRequest(NOT_YOURS_TO_REVOKE);
        },
      },
      userinfo: { enabled: true },
      // OpenID Connect Core §5.5: single claims asked for by name, for the ID
      // token or UserInfo; only those a client's scopes release, and no
      // essential acr (claims-parameter.ts). Consent lists them as it lists scopes.
      claimsParameter: { enabled: true, assertClaimsParameter },
      // OpenID Connect Core §6.1, RFC 9101: the parameters as a JWT the
      // client signed with a key it registered, at /auth (`request`), PAR
      // and /device/auth (request-objects.ts). Not by reference (OIDC Core
      // §6.2's request_uri, which we would have to fetch from wherever the
      // client says): a pushed request is the way to keep them off the URL.
      requestObjects: { enabled: true, requireSignedRequestObject: false, assertJwtClaimsAndHeader: assertRequestObject },
      // RFC 9449: a client that sends a DPoP proof gets access tokens bound to
      // its key (a public client's refresh tokens too), which an API accepts
      // only with a proof of that key (examples/resource-server/protect.ts).
      // Every proof is used once (the replay check is atomic, see replay-detection.ts).
      // Nonces are offered, not required: a client whose clock is off by more
      // than the library's 5-minute window is told to use one (use_dpop_nonce)
      // rather than refused outright.
      dPoP: { enabled: true, nonceSecret: services.dpopNonceSecret, requireNonce: () => false, allowReplay: false },
      clientCredentials: { enabled: true },
      // RFC 8707: `resource` names a registered API; its tokens carry it as
      // `aud`, only its scopes, and its format and lifetime.
      resourceIndicators: {
        enabled: true,
        // At the token endpoint, without `resource`, use the one the grant was
        // for (the first, where it was for several); unless the request's
        // `scope` names only OpenID Connect scopes, openid among them (a refresh
        // narrowing its scope, RFC 6749 §6): then the token is for UserInfo,
        // which takes no token with an API's audience, and there is no other
        // way to get one from a grant for an API. A token request that
        // itself names several is refused (invalid_target, as the library
        // refuses it for client credentials): a token is for one API, and
        // taking the first would drop the others, unknown or malformed ones
        // included, without a word (RFC 8707 §2). The library passes the
        // request's own array as `oneOf` when the request named several, and
        // the grant's otherwise: the same array is the request's.
        defaultResource: async (ctx, _client, oneOf) => (oneOf !== undefined && oneOf === ctx.oidc.params?.resource ? oneOf : oneOf?.[0]),
        useGrantedResource: async (ctx) => !asksOnlyForOpenIdScopes(ctx),
        getResourceServerInfo: resourceServers(apis, config.signingAlg),
      },
      rpInitiatedLogout: {
        enabled: true,
        logoutSource: async (ctx, form) => {
          ctx.type = 'html';
          ctx.set('Cache-Control', 'no-store');
          // The library has checked post_logout_redirect_uri against the client's registration by now.
          const returnsTo = ctx.oidc.client ? destinationOf(ctx.oidc.params?.post_logout_redirect_uri) : undefined;
          // Who is signed in here, so that the choice is made knowing whom it
          // signs out: the app's id_token_hint may name someone else (an old
          // token, another person's), and the library signs out whoever is
          // signed in on the device all the same (RP-Initiated Logout §2
          // leaves it to the person to confirm).
          const accountId = ctx.oidc.session?.accountId;
          const signedIn = accountId ? await accounts.find(accountId) : undefined;
          // (As the client the hint was issued to knows the person: the library took the client from it.)
          const hinted = (ctx.oidc.entities.IdTokenHint as { payload?: { sub?: unknown } } | undefined)?.payload?.sub;
          ctx.body = renderPage(page(ctx), 'logout', {
            form,
            clientName: ctx.oidc.client?.clientName,
            returnsTo,
            signedInAs: signedIn && accountLabel(signedIn),
            hintNamesSomeoneElse: Boolean(signedIn && hinted !== undefined && hinted !== services.subjects.of(signedIn.id, sectorOf(ctx.oidc.client))),
          });
        },
        // Reached after either choice on the logout page: "Stay signed in"
        // ends only the asking client's part of the session (if a client
        // asked), so the page says what is true of the session now.
        postLogoutSuccessSource: async (ctx) => {
          const session = await ctx.oidc.provider.Session.get(ctx);
          ctx.type = 'html';
          ctx.body = renderPage(page(ctx), 'signed-out', {
            clientName: ctx.oidc.client?.clientName,
            // The way back to the app that asked, where it registered a home page (it gave no address to return to).
            application: linkableApplication(ctx.oidc.client),
            stillSignedIn: Boolean(session.accountId),
          });
        },
      },
      // Apps that registered a back-channel logout URI are told, with a
      // logout token naming the person and the session (`sid`, which their
      // ID tokens carry too), when the session with them ends at a sign-out
      // here: see backchannel-logout.ts.
      backchannelLogout: { enabled: true },
      // RFC 8628, for apps on devices without a browser (device-flow.ts):
      // clients registered with the device_code grant ask at /device/auth,
      // and the person enters the code at /device. Codes of eight letters
      // that are no vowels (no words spelt, none mistaken for a digit).
      deviceFlow: {
        enabled: true,
        charset: 'base-20',
        mask: '****-****',
        // Nothing about the device is kept: no page shows it.
        deviceInfo: () => ({}),
        ...deviceFlowPages(page, accounts),
      },
    },
    fetch: backchannelFetch,
    interactions: { policy: claimsOfConsentedScopesGiven(interactionPolicyWithSecondFactor(interactionPolicyWithAccountSelection(services.subjects), accounts)), url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    // Refresh tokens: with offline_access, for clients allowed the grant; a
    // new one on every use, and a reused one revokes its sign-in's tokens
    // (RFC 9700 §4.14.2), unless used again within REFRESH_TOKEN_REUSE_INTERVAL
    // of its first use (a response lost on the way, two tabs at once: see
    // adapter.ts).
    issueRefreshToken: async (_ctx, client, code) =>
      client.grantTypeAllowed('refresh_token') && code.scopes.has('offline_access'),
    rotateRefreshToken: true,
    // A revocation, a replay or a sign-out ends one sign-in's tokens (signInOf
    // in adapter.ts), not the grant, which the person's sign-ins on other
    // devices share; a sign-out withdraws the consent from new sign-ins
    // there. A token without its sign-in's uid: the library's default (the
    // grant too), but at the revocation endpoint, which never ends a consent.
    revokeGrantPolicy: (ctx) => ctx.oidc.route !== 'revocation' && signInOf(ctx) === undefined,
    // A client-credentials token's subject is the client itself (RFC 9068 §2.2),
    // so introspection names it as it does the person for other tokens.
    extraTokenClaims: async (_ctx, token) => (token.kind === 'ClientCredentials' ? { sub: token.clientId } : undefined),
    // Consent is remembered per person and client, beyond the browser session
    // that gave it: look the grant up in the database when the session has none.
    loadExistingGrant: async (ctx) => {
      const clientId = ctx.oidc.client!.clientId;
      const session = ctx.oidc.session!;
      const accountId = session.accountId;
      // A grant is only reused for the person and client it was given by.
      const load = async (grantId: string | undefined) => {
        const grant = grantId ? await ctx.oidc.provider.Grant.find(grantId) : undefined;
        return grant && grant.accountId === accountId && grant.clientId === clientId ? grant : undefined;
      };
      const given = ctx.oidc.result?.consent?.grantId;
      if (given) return load(given);
      const held = session.grantIdFor(clientId);
      const grant = await load(held);
      // A consent withdrawn at a sign-out in another browser (adapter.ts,
      // SQL.withdrawConsent) stays with the sign-ins that held it then, not
      // with one made since in this browser (prompt=login, another account
      // and back), which is asked again as any new sign-in is.
      const withdrawn = held === undefined ? undefined : withdrawnAt(held);
      if (grant && (withdrawn === undefined || (session.loginTs ?? 0) < withdrawn)) return grant;
      const found = accountId ? await load(await findGrantId(sql, accountId, clientId)) : undefined;
      // The account page is the server itself: nobody is asked to let it know who they are.
      return found ?? (clientId === ACCOUNT_CLIENT_ID && accountId ? accountPageGrant(ctx.oidc.provider, accountId) : undefined);
    },
    // A consent given with offline_access outlives sign-outs: a code that
    // does not expire with the session marks the session's hold on its grant
    // as one a sign-out leaves (the library's persistsLogout). The library
    // asks only whether this request's scopes name offline_access; but a
    // consent is remembered across sessions (loadExistingGrant above), and a
    // sign-in elsewhere that reuses it without asking for offline_access
    // again would end it when signed out of: one sign-out ending an app's
    // offline access everywhere. The grant's scopes count too.
    // (A device's sign-in, RFC 8628, is the browser session's it was
    // approved in, as an app's sign-in there: without offline_access,
    // signing out of that browser ends it.)
    expiresWithSession: async (ctx, code) =>
      !code.scopes.has('offline_access') && !(ctx.oidc.entities.Grant?.getOIDCScope() ?? '').split(' ').includes('offline_access'),
    ttl: {
      // A registered API's own lifetime wins over the default (portcullis api create --ttl).
      AccessToken: (ctx, token) => withinGrant(ctx, token.resourceServer?.accessTokenTTL ?? config.ttl.accessToken),
      AuthorizationCode: (ctx) => withinGrant(ctx, config.ttl.authorizationCode),
      ClientCredentials: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? config.ttl.accessToken,
      IdToken: config.ttl.idToken,
      Interaction: config.ttl.interaction,
      // A session nobody has signed in to yet (the sign-out page's form secret,
      // asked for by anyone without a cookie) is kept as long as an
      // interaction, not SESSION_TTL: a request with no cookie could otherwise
      // pin a row for two weeks. Signing in saves it again, for SESSION_TTL.
      Session: (_ctx, session) => (session.accountId ? config.ttl.session : Math.min(config.ttl.interaction, config.ttl.session)),
      Grant: config.ttl.grant,
      // Ten minutes to pick up a phone, sign in and consent (the library's
      // default, RFC 8628 §3.2 leaves it to us): a code that lives longer is
      // longer to guess at.
      DeviceCode: 600,
      RefreshToken: (ctx) => withinGrant(ctx, config.ttl.refreshToken),
    },
    // Called for a request that prefers HTML. Only the endpoints a browser is
    // sent to answer with a page; the others answer OAuth error JSON whatever
    // the Accept header (RFC 6749 §5.2, RFC 6750 §3, RFC 7662 §2.3): clients
    // such as Java's HttpURLConnection send one that ranks text/html first.
    renderError: async (ctx, out, error) => {
      if (!BROWSER_ROUTES.has(ctx.oidc?.route)) {
        ctx.body = out; // (a server_error is logged by its event, see provider.ts)
        return;
      }
      if (out.error === 'server_error' && databaseTrouble(error)) {
        // Not a fault to report: logged once by the server_error event (provider.ts).
        renderUnavailablePage(ctx, page(ctx));
        return;
      }
      let shown = error instanceof errors.SessionNotFound ? { error: 'session_not_found' } : out;
      if (isBodyTooLarge(error)) {
        answerBodyTooLarge(ctx);
        shown = { error: 'invalid_request', error_description: BODY_TOO_LARGE };
      }
      const application = linkableApplication(ctx.oidc?.client);
      renderErrorPage(ctx, page(ctx), shown, { reference: faultReference(ctx, out.error, error), signOut: failedSignOut(ctx), application });
    },
  };
}

/**
 * For an error answering a sign-out request or its confirmation: whether the
 * person is signed in (the session is the library's first step on both
 * routes; without it, as for any other route, nothing is said of it).
 */
function failedSignOut(ctx: KoaContextWithOIDC): FailedSignOut | undefined {
  const route = ctx.oidc?.route;
  const session = ctx.oidc?.session as { accountId?: string } | undefined;
  if ((route !== 'end_session' && route !== 'end_session_confirm') || !session) return undefined;
  return { signedIn: Boolean(session.accountId), signOutUrl: ctx.oidc.urlFor('end_session') };
}

/** Whether a token request's `scope` names openid and no scope but OpenID Connect's (see useGrantedResource). */
function asksOnlyForOpenIdScopes(ctx: KoaContextWithOIDC): boolean {
  const scope = ctx.oidc.params?.scope;
  if (typeof scope !== 'string') return false;
  const scopes = scope.split(' ').filter(Boolean);
  return scopes.includes('openid') && onlyOpenIdConnectScopes(scopes);
}

/** How far a client's clock may run ahead of ours, in seconds. */
const ASSERTION_CLOCK_SKEW = 60;
/** How far ahead a client assertion may expire, in seconds (clock skew included). */
const MAX_ASSERTION_LIFETIME = 3600 + ASSERTION_CLOCK_SKEW;

/** The account page's grant (self-service/account-client.ts): who the person is, and nothing more. */
async function accountPageGrant(provider: KoaContextWithOIDC['oidc']['provider'], accountId: string) {
  const grant = new provider.Grant({ accountId, clientId: ACCOUNT_CLIENT_ID });
  grant.addOIDCScope('openid');
  await grant.save();
  return grant;
}

/**
 * A token or code lives no longer than the consent (Grant) it was issued
 * under: once the grant is gone the library refuses them anyway (refresh,
 * code exchange, introspection, UserInfo), and their `exp` should say when
 * they stop working (RFC 7662 §2.2; a JWT access token is checked by its
 * `exp` alone). At least a second: the library takes only positive lifetimes.
 */
function withinGrant(ctx: KoaContextWithOIDC | undefined, seconds: number): number {
  const grant = ctx?.oidc?.entities?.Grant as { exp?: number } | undefined;
  if (typeof grant?.exp !== 'number') return seconds;
  return Math.max(1, Math.min(seconds, grant.exp - Math.floor(Date.now() / 1000)));
}

/** See extraParams: an API's scopes were checked with its `resource` (getResourceServerInfo). */
async function requestSomethingGrantable(ctx: KoaContextWithOIDC, scope: unknown): Promise<void> {
  if (ctx.oidc.params?.resource !== undefined) return;
  // By now the library has dropped unknown scopes, and offline_access unless
  // consent is asked for (prompt=consent), which alone grants no access.
  if (typeof scope === 'string' && scope.split(' ').some((name) => GRANTING_SCOPES.includes(name))) return;
  // No scope member: the request's own scopes are gone by now.
  throw new errors.InvalidScope(`request at least one of the scopes ${GRANTING_SCOPES.join(', ')}, or an API's scopes with its resource`, undefined as unknown as string);
}

/** See request-encoding.ts. A page: the state, changed, cannot go back to the client. */
async function sentAsUtf8(ctx: KoaContextWithOIDC): Promise<void> {
  if (!parametersAreUtf8(ctx)) throw invalidRequestPage(NOT_UTF8_PARAMETERS);
}

/**
 * See allowOmittingSingleRegisteredRedirectUri: by now the library has filled
 * in a client's only redirect URI, so whether the request named one is read
 * from the request itself, as the library reads it (an empty value is none),
 * or from its request object.
 * A pushed request was checked when it was pushed. Required in an OpenID
 * request, and of a native app, whose loopback port is chosen at request time
 * (RFC 8252 §7.3): the registered URI has none. A page, not a redirect: the
 * request gave no address to send it to (as for any request without one).
 */
async function redirectUriWhereRequired(ctx: KoaContextWithOIDC, _value: unknown, client?: Client): Promise<void> {
  // A device authorization request (RFC 8628 §3.1) sends nobody anywhere.
  if (ctx.oidc.entities.PushedAuthorizationRequest || ctx.oidc.route === 'device_authorization') return;
  const sent = parametersSent(ctx);
  if (typeof sent?.redirect_uri === 'string' && sent.redirect_uri !== '') return;
  const scope = ctx.oidc.params?.scope;
  const openid = typeof scope === 'string' && scope.split(' ').includes('openid');
  if (openid || client?.applicationType === 'native') throw invalidRequestPage("missing required parameter 'redirect_uri'");
}

/** The OpenID Connect scopes that grant something by themselves. */
const GRANTING_SCOPES = OIDC_SCOPES.filter((scope) => scope !== 'offline_access');

/**
 * Where a browser is sent: the provider's routes for people, and ours (no
 * provider route: the interaction pages). The other routes serve clients and APIs.
 */
const BROWSER_ROUTES = new Set<string | undefined>([
  undefined,
  'authorization',
  'resume',
  'end_session',
  'end_session_confirm',
  'end_session_success',
  'code_verification',
  'device_resume',
]);

/** Whether a code or token was issued at or after its client's `tokens_since` (set by `client enable`, see client-adapter.ts). */
function stillIssuedTo(client: Client, token: { iat?: number }): boolean {
  return (token.iat ?? 0) >= ((client as unknown as { tokens_since?: number }).tokens_since ?? 0);
}

function audiences(token: { aud?: string | string[] }): string[] {
  if (!token.aud) return [];
  return Array.isArray(token.aud) ? token.aud : [token.aud];
}
