import type { ApiView } from '../apis/apis.js';
import { SIGN_IN_CLAIMS } from '../oidc-scopes.js';

// Requested scopes in the words a person reads on the consent page.
const DESCRIPTIONS: Record<string, string> = {
  openid: 'Confirm that it is you when you sign in',
  profile: 'See your name',
  email: 'See your email address and whether it is verified',
  // Honest about what lasts: a grant with offline_access outlives signing out
  // (the provider keeps it, see README) until the person removes the app on their
  // account page (self-service/account-pages.ts) or the operator revokes it.
  offline_access: 'Keep access while you are not using it, even after you sign out',
};

const CLAIM_DESCRIPTIONS: Record<string, string> = {
  name: 'See your name',
  email: 'See your email address',
  email_verified: 'See whether your email address is verified',
  updated_at: 'See when your profile last changed',
};

export function describeScopes(scopes: Iterable<string>): string[] {
  return [...scopes].map((scope) => DESCRIPTIONS[scope] ?? `Use the permission “${scope}”`);
}

/** An API's scopes: its registered description, or the scope named with the API it belongs to. */
export function describeApiScopes(api: ApiView | undefined, scopes: Iterable<string>): string[] {
  return [...scopes].map((name) => {
    const described = api?.scopes.find((scope) => scope.name === name)?.description;
    return described ? `${described} (${api!.name})` : `Use the permission “${name}” on ${api?.name ?? 'an API'}`;
  });
}

export function describeClaims(claims: Iterable<string>): string[] {
  return [...claims].filter((claim) => !SIGN_IN_CLAIMS.includes(claim)).map((claim) => CLAIM_DESCRIPTIONS[claim] ?? `See your “${claim}”`);
}
