// Requested scopes in the words a person reads on the consent page.
const DESCRIPTIONS: Record<string, string> = {
  openid: 'Confirm that it is you when you sign in',
  profile: 'See your name',
  email: 'See your email address and whether it is verified',
  offline_access: 'Keep access while you are not using it, until you sign out of it or revoke it',
};

const CLAIM_DESCRIPTIONS: Record<string, string> = {
  name: 'See your name',
  email: 'See your email address',
  email_verified: 'See whether your email address is verified',
};

export function describeScopes(scopes: Iterable<string>): string[] {
  return [...scopes].map((scope) => DESCRIPTIONS[scope] ?? `Use the permission “${scope}”`);
}

export function describeClaims(claims: Iterable<string>): string[] {
  return [...claims].filter((claim) => claim !== 'sub').map((claim) => CLAIM_DESCRIPTIONS[claim] ?? `See your “${claim}”`);
}
