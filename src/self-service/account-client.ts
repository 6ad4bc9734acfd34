// The account page (account-pages.ts) is an app of this server like any
// other, as Keycloak's account console is: it sends the person through an
// authorization request, so that signing in there is the very sign-in apps
// get (password, the second step, throttles, single sign-on), with nothing
// of our own to keep in step with it. It is a public client of the
// provider's static list, which no `portcullis client` command lists or
// changes, and it is never asked for consent (provider/configuration.ts,
// loadExistingGrant): it is the server itself.
import type { ClientMetadata } from 'oidc-provider';

export const ACCOUNT_CLIENT_ID = 'portcullis-account';

/** The account page's paths (self-service/account-pages.ts), whatever the case, as the routers match them. */
export const ACCOUNT_PATH = /^\/account(\/|$)/i;

/** Where the account page's sign-in comes back to. */
export const ACCOUNT_CALLBACK_PATH = '/account/callback';

/** The account page's registration: a public client (PKCE) that only ever asks for `openid`. */
export function accountClient(issuer: string, issuerName: string): ClientMetadata {
  return {
    client_id: ACCOUNT_CLIENT_ID,
    // Named on the sign-in page ("to continue to …").
    client_name: `your ${issuerName} account page`,
    token_endpoint_auth_method: 'none',
    grant_types: ['authorization_code'],
    response_types: ['code'],
    scope: 'openid',
    redirect_uris: [new URL(ACCOUNT_CALLBACK_PATH, issuer).href],
    // No API, pairwise sector or cut-off of its own (see client-adapter.ts).
  };
}
