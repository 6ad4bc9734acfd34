import type Provider from 'oidc-provider';
import type { Accounts } from '../accounts/accounts.js';

/**
 * A session of a person an operator signed out (`user set-password`, `user
 * revoke`) or deleted is not found, whatever row a request in flight saved
 * back after the sessions were deleted (the library saves the session at the
 * end of every request): the library then starts a new, empty session and
 * the person signs in again. Refusing the account instead (findAccount) would
 * leave a session that names an account and has none, which the library's
 * consent check does not expect. So is a session signed in to more than
 * `maxAge` seconds ago (SESSION_MAX_AGE): the library's own lifetime is
 * renewed by every use, so a session used often enough would last for ever.
 */
export function honourSignOuts(provider: Provider, accounts: Accounts, maxAge: number): void {
  // (The library's typings make find generic over the class; these are Sessions.)
  type SessionLookup = (id: string) => Promise<{ accountId?: string; loginTs?: number } | undefined>;
  const Session = provider.Session as unknown as { find: SessionLookup; findByUid: SessionLookup };
  const find = Session.find.bind(Session);
  const findByUid = Session.findByUid.bind(Session);
  const tooOld = (loginTs: number | undefined) => typeof loginTs === 'number' && loginTs + maxAge <= Date.now() / 1000;
  const stands = async (session: Awaited<ReturnType<SessionLookup>>) =>
    session?.accountId && (tooOld(session.loginTs) || !(await accounts.isSignedIn(session.accountId, session.loginTs))) ? undefined : session;
  Session.find = async (id) => stands(await find(id));
  Session.findByUid = async (uid) => stands(await findByUid(uid));
  // A finished sign-in waiting to be resumed (/auth/:uid) stands only as a
  // session would, and only while the password it checked is the account's
  // (a resume sent before the sign-in's own check of that has answered): the
  // resume signs the person in and goes on to a code in the same request,
  // before any session is looked up again.
  type Login = { accountId?: string; ts?: number; credential?: string };
  type InteractionLookup = (id: string) => Promise<{ result?: { login?: Login } } | undefined>;
  const Interaction = provider.Interaction as unknown as { find: InteractionLookup };
  const findInteraction = Interaction.find.bind(Interaction);
  const loginStands = async ({ accountId, ts, credential }: Login) =>
    !accountId ||
    ((await accounts.isSignedIn(accountId, ts)) && (credential === undefined || (await accounts.passwordStands(accountId, credential))));
  Interaction.find = async (id) => {
    const interaction = await findInteraction(id);
    const login = interaction?.result?.login;
    return login && !(await loginStands(login)) ? undefined : interaction;
  };
}
