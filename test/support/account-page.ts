// The account page (/account) as tests read and drive it: who is on it, its
// forms, and the apps whose tokens it ends.
import * as oidc from 'openid-client';
import { expect } from 'vitest';
import type { TestPortcullis } from './portcullis.js';
import { pageKind, signIn } from './relying-party.js';
import { UserAgent, type Page } from './user-agent.js';

export const ACCOUNT_PASSWORD = 'a long enough password';
export const ACCOUNT_HEADING = '<h1>Your account</h1>';

export const isAccountPage = (page: Page) => page.status === 200 && page.html.includes(ACCOUNT_HEADING);

/** The people of one test file: each a new `name-N@example.com` with ACCOUNT_PASSWORD. */
export function peopleOf(pc: () => TestPortcullis) {
  let made = 0;
  return async (name: string): Promise<string> => {
    const email = `${name.toLowerCase()}-${++made}@example.com`;
    await pc().createUser(email, ACCOUNT_PASSWORD, name);
    return email;
  };
}

/** Opens /account in `ua` and signs in there: the account page. */
export async function openSignedIn(pc: TestPortcullis, ua: UserAgent, email: string, password = ACCOUNT_PASSWORD): Promise<Page> {
  const login = await ua.open(`${pc.issuer}/account`);
  expect(pageKind(login)).toBe('login');
  const page = await signIn(ua, login, email, password);
  expect(isAccountPage(page), page.html.slice(0, 1500)).toBe(true);
  return page;
}

/** Posts the page's password form. */
export function changePassword(ua: UserAgent, page: Page, current: string, next: string, again = next): Promise<Page> {
  return ua.post(page, '/account/password', { ...UserAgent.formFields(page, '/account/password'), current_password: current, new_password: next, new_password_again: again });
}

/** A refresh of `token` by `rp`: 'refreshed', or the OAuth error it got. */
export function refreshOutcome(rp: oidc.Configuration, token: string): Promise<string> {
  return oidc.refreshTokenGrant(rp, token).then(
    () => 'refreshed',
    (error: { error?: string }) => error.error ?? String(error),
  );
}
