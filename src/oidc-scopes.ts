/**
 * The OpenID Connect scopes Portcullis serves, and the claims each releases
 * (OIDC Core §5.4). `amr` (OIDC Core §2, values of RFC 8176: `pwd`) is in the
 * ID token only: how the person signed in, which the sign-in records and an
 * app may require (a password, not yet a second factor); no account has it.
 */
export const OIDC_CLAIMS = {
  openid: ['sub', 'amr'],
  profile: ['name', 'updated_at'],
  email: ['email', 'email_verified'],
};

export const OIDC_SCOPES = ['openid', 'offline_access', 'profile', 'email'];

/**
 * Claims about the sign-in rather than the person, which any OpenID request
 * may ask for by the claims parameter: oidc-provider never asks consent for
 * them (its consent policy, as NON_REJECTABLE_CLAIMS).
 */
export const SIGN_IN_CLAIMS = ['sub', 'sid', 'auth_time', 'acr', 'amr', 'iss'];

/** The claims about the person that the OpenID Connect scopes among `scopes` release (OIDC_CLAIMS). */
export function claimsReleasedBy(scopes: Iterable<string>): Set<string> {
  const released = new Set<string>();
  for (const scope of scopes) {
    if (!Object.hasOwn(OIDC_CLAIMS, scope)) continue;
    for (const claim of OIDC_CLAIMS[scope as keyof typeof OIDC_CLAIMS]) if (!SIGN_IN_CLAIMS.includes(claim)) released.add(claim);
  }
  return released;
}

/** Whether every scope in `names` is an OpenID Connect scope: what such a request asks for is a token for UserInfo. */
export const onlyOpenIdConnectScopes = (names: string[]): boolean => names.every((name) => OIDC_SCOPES.includes(name));
