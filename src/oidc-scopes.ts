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

/** Whether every scope in `names` is an OpenID Connect scope: what such a request asks for is a token for UserInfo. */
export const onlyOpenIdConnectScopes = (names: string[]): boolean => names.every((name) => OIDC_SCOPES.includes(name));
