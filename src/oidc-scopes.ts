/** The OpenID Connect scopes Portcullis serves, and the claims each releases (OIDC Core §5.4). */
export const OIDC_CLAIMS = {
  openid: ['sub'],
  profile: ['name', 'updated_at'],
  email: ['email', 'email_verified'],
};

export const OIDC_SCOPES = ['openid', 'offline_access', 'profile', 'email'];

/** Whether every scope in `names` is an OpenID Connect scope: what such a request asks for is a token for UserInfo. */
export const onlyOpenIdConnectScopes = (names: string[]): boolean => names.every((name) => OIDC_SCOPES.includes(name));
