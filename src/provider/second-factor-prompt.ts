// The sign-in's second step (accounts/second-factors.ts) as a prompt of the
// library's policy, after the sign-in and before consent: a person who must
// enter a TOTP code and whose session has not (its amr names no `otp`) is
// asked for one before any app is given a code, at every authorization
// request of that browser (prompt=none: interaction_required). So a session
// that passed the password only is no sign-in for any app, and a requirement
// set by `user update --totp required` reaches the sessions signed in before
// it, at their next request.
import { interactionPolicy } from 'oidc-provider';
import type { Accounts } from '../accounts/accounts.js';

export const SECOND_FACTOR = 'totp';

/**
 * What a session that passed the code says it signed in with (RFC 8176):
 * a password, a one-time password, and so more than one factor.
 */
export const TWO_FACTOR_AMR = ['pwd', 'otp', 'mfa'];

/** `policy` with the second step ahead of consent. */
export function interactionPolicyWithSecondFactor(policy: interactionPolicy.Prompt[], accounts: Accounts): interactionPolicy.Prompt[] {
  const { Prompt, Check } = interactionPolicy;
  const secondFactor = new Prompt(
    { name: SECOND_FACTOR, requestable: false },
    // The library's own words for interaction_required: an app is not told that the person uses TOTP.
    new Check('totp_required', 'interaction is required from the end-user', 'interaction_required', async ({ oidc }) => {
      const accountId = oidc.session?.accountId;
      if (!accountId || (oidc.session.amr ?? []).includes('otp')) return false;
      return accounts.requiresTotp(accountId);
    }),
  );
  const consent = policy.findIndex((prompt) => prompt.name === 'consent');
  if (consent < 0) throw new Error("oidc-provider's policy has no consent prompt to put the second step before");
  policy.splice(consent, 0, secondFactor);
  return policy;
}
