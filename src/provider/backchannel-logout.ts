// OpenID Connect Back-Channel Logout 1.0: when a person's session with an app
// ends here (a sign-out at /session/end), the library POSTs a logout token to
// each app of the session that registered a backchannel_logout_uri (`client
// create --backchannel-logout-uri`), and waits up to 2.5 s for each, in
// parallel, before answering the person. What it leaves to the host: where
// those requests may go, and telling the operator how they fared.
import type Provider from 'oidc-provider';
import type { Configuration } from 'oidc-provider';
import { whyNotDelivered } from '../clients/logout-tokens.js';
import type { Logger } from '../logger.js';
import { requestField } from '../http/request-id.js';
import type { Metrics } from '../metrics/metrics.js';

type Fetch = NonNullable<Configuration['fetch']>;

/**
 * The library's outgoing requests. It guards them against special-use
 * addresses (loopback, private networks), rightly for addresses a client
 * registers itself; here only an operator registers clients, and an app's
 * back-channel logout URI is most often inside the operator's network
 * (http://app.internal/backchannel-logout), which the guard refuses. So a
 * logout token goes wherever the operator registered; any other request
 * (none is made with this configuration: no jwks_uri, no dynamic
 * registration, no sector_identifier_uri) keeps the guard.
 */
export const backchannelFetch: Fetch = (url, init) => {
  if (init?.body instanceof URLSearchParams && init.body.has('logout_token')) {
    const { dispatcher: _specialUseGuard, ...unguarded } = init as RequestInit & { dispatcher?: unknown };
    // The library reads only the status: the body is let go at once, not
    // left holding its connection until garbage collection.
    return globalThis.fetch(url, unguarded).then((response) => {
      void response.body?.cancel().catch(() => undefined);
      return response;
    });
  }
  return globalThis.fetch(url, init);
};

/**
 * One log line per logout token, with the app and, for one that failed, why
 * (its answer's status, or what stopped the request): an app that was not
 * told keeps its own session, so the operator should hear of it. Never the
 * token, nor the session's id.
 */
export function reportBackchannelLogouts(provider: Provider, logger: Logger, metrics?: Metrics): void {
  skipAppsNeverSignedIn(provider);
  provider.on('backchannel.success', (ctx, client, _accountId, sid) => {
    if (!sid) return; // not sent, see skipAppsNeverSignedIn
    logger.info('back-channel logout delivered', { ...requestField(ctx), client: client.clientId });
    metrics?.backchannelLogout('delivered');
  });
  // (Nothing here may throw: the library awaits these deliveries before it answers the sign-out.)
  provider.on('backchannel.error', (ctx, error, client) => {
    logger.warn('back-channel logout failed: the app was not told that the session ended', {
      ...requestField(ctx),
      client: client.clientId,
      // Not the query, which may hold a secret (as the request log leaves query strings out).
      uri: addressWithoutQuery(client.backchannelLogoutUri),
      reason: whyNotDelivered(error),
    });
    metrics?.backchannelLogout('failed');
  });
}

const addressWithoutQuery = (uri: string | undefined) => {
  if (!URL.canParse(uri ?? '')) return undefined;
  const url = new URL(uri!);
  return `${url.origin}${url.pathname}`;
};

/**
 * The library tells every app the session has an entry for, and makes an
 * empty entry for any app that merely asked about the session (a `prompt=
 * select_account` page of an app the person has no consent to, say): a
 * logout token without `sid`, which such an app would take for "end every
 * session of this person", on their other devices too. The library gives an
 * entry a `sid` once the app signs in with the session, or asks it with a
 * consent of the person's in force: only those are told (the latter with a
 * sid the app never saw, which ends nothing there).
 */
function skipAppsNeverSignedIn(provider: Provider): void {
  type Told = (this: unknown, sub: string, sid?: string) => Promise<void>;
  const prototype = provider.Client.prototype as unknown as { backchannelLogout?: Told };
  const tell = prototype.backchannelLogout;
  // A method of the library's, not of its documented interface: a release
  // without it must not quietly bring the sid-less tokens back.
  if (typeof tell !== 'function') throw new Error('oidc-provider\'s Client has no backchannelLogout method: see provider/backchannel-logout.ts');
  prototype.backchannelLogout = function (sub, sid) {
    return sid ? tell.call(this, sub, sid) : Promise.resolve();
  };
}
