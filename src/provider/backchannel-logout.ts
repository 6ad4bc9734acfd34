// OpenID Connect Back-Channel Logout 1.0: when a person's session with an app
// ends here (a sign-out at /session/end), the library POSTs a logout token to
// each app of the session that registered a backchannel_logout_uri (`client
// create --backchannel-logout-uri`), and waits up to 2.5 s for each, in
// parallel, before answering the person. What it leaves to the host: where
// those requests may go, and telling the operator how they fared.
import type Provider from 'oidc-provider';
import type { Configuration } from 'oidc-provider';
import type { Logger } from '../logger.js';
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
    return globalThis.fetch(url, unguarded);
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
  provider.on('backchannel.success', (_ctx, client, _accountId, sid) => {
    if (!sid) return; // skipped, see below

    logger.info('back-channel logout delivered', { client: client.clientId });
    metrics?.backchannelLogout('delivered');
  });
  provider.on('backchannel.error', (_ctx, error, client) => {
    const code = (error.cause as { code?: unknown } | undefined)?.code;
    const reason = error.name === 'TimeoutError' ? 'no answer within 2.5 s' : typeof code === 'string' ? `${error.message} (${code})` : error.message;
    logger.warn('back-channel logout failed: the app was not told that the session ended', { client: client.clientId, uri: client.backchannelLogoutUri, reason });
    metrics?.backchannelLogout('failed');
  });
}

/**
 * The library tells every app the session has an entry for, and makes an
 * empty entry for any app that merely asked about the session (a `prompt=
 * select_account` page, say): a logout token without `sid` for an app the
 * person never signed in to from this browser, which such an app would take
 * for "end every session of this person", on their other devices too. Only
 * an app that signed in here has the session's `sid` for it (the library
 * sets it as the sign-in completes): the others are not told.
 */
function skipAppsNeverSignedIn(provider: Provider): void {
  type Told = (this: unknown, sub: string, sid?: string) => Promise<void>;
  const prototype = provider.Client.prototype as unknown as { backchannelLogout: Told };
  const tell = prototype.backchannelLogout;
  prototype.backchannelLogout = function (sub, sid) {
    return sid ? tell.call(this, sub, sid) : Promise.resolve();
  };
}
