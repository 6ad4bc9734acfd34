// prompt=select_account (OpenID Connect Core §3.1.2.1): the app asks that the
// person choose which account to go on with. oidc-provider knows the prompt's
// name and error (account_selection_required) but has no such prompt in its
// policy, so the request was refused as an unsupported prompt value.
//
// Someone signed in is shown the choice first (interactions/routes.ts: go on
// as themselves, or sign in as someone else). Without a session the sign-in
// page is the choice: the sign-in's result answers this prompt as well.
import { interactionPolicy } from 'oidc-provider';
import { sectorOf, type Subjects } from '../accounts/subjects.js';
import { subjectRequiredBy } from './claims-parameter.js';

export const SELECT_ACCOUNT = 'select_account';

/** The library's policy (login, then consent), with the choice of account ahead of both. */
export function interactionPolicyWithAccountSelection(subjects: Subjects): interactionPolicy.Prompt[] {
  const { Prompt, Check, base } = interactionPolicy;
  const policy = base();
  const selectAccount = new Prompt({ name: SELECT_ACCOUNT, requestable: true });
  // The prompt's own check asks whenever the prompt was requested; this one
  // only when someone is signed in (otherwise the sign-in comes first, and
  // answers it), and only when that is the person an id_token_hint (or the
  // claims parameter's sub value) names: going on as someone else would give
  // the app a code for another person than it asked for (Core §3.1.2.1).
  // The sign-in comes first then too, asked for by the library's own login
  // checks of the hint and the claim, and the sign-in refuses anyone but the
  // person named (interactions/routes.ts).
  selectAccount.checks.remove(`${SELECT_ACCOUNT}_prompt`);
  selectAccount.checks.push(
    new Check(`${SELECT_ACCOUNT}_prompt`, 'account selection was requested', ({ oidc }) => {
      const accountId = oidc.session?.accountId;
      if (!oidc.prompts.has(SELECT_ACCOUNT) || !oidc.promptPending(SELECT_ACCOUNT) || !accountId) return false;
      // Verified by the library on the authorization request (its checkIdTokenHint). Both name the person as the client knows them.
      const hinted = (oidc.entities as { IdTokenHint?: { payload: { sub?: unknown } } }).IdTokenHint?.payload.sub;
      const required = subjectRequiredBy(oidc.params as Record<string, unknown>);
      const sub = subjects.of(accountId, sectorOf(oidc.client));
      return (hinted === undefined || hinted === sub) && (required === undefined || required === sub);
    }),
  );
  policy.add(selectAccount, 0);
  return policy;
}

/** Whether an authorization request asked for the choice of account. */
export function asksToSelectAccount(params: Record<string, unknown>): boolean {
  return typeof params.prompt === 'string' && params.prompt.split(' ').includes(SELECT_ACCOUNT);
}
