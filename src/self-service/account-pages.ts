// The account page, /account: where a person sees the apps they let in and
// takes that back, changes their password, and sees whether two-step
// verification is on — without asking whoever runs the service. It signs
// people in as an app of this server (account-client.ts); who is signed in
// is then the browser's session here, as every app's sign-in reads it, so
// a sign-out anywhere ends it too.
import { createHash, randomBytes } from 'node:crypto';
import Router from '@koa/router';
import type Koa from 'koa';
import type { Context } from 'koa';
import type Provider from 'oidc-provider';
import { AccountError, type Accounts } from '../accounts/accounts.js';
import { passwordProblem } from '../accounts/password-policy.js';
import type { SecondFactors } from '../accounts/second-factors.js';
import type { SignInThrottle } from '../accounts/sign-in-throttle.js';
import type { Apis, ApiView } from '../apis/apis.js';
import type { Config } from '../config.js';
import { accountLabel } from '../display-text.js';
import { ClientAddresses } from '../http/client-address.js';
import { renderErrorPage, renderUnavailablePage } from '../http/error-pages.js';
import { BodyError, readForm, THREE_PASSWORDS_LIMIT } from '../http/form-body.js';
import { loggedPath } from '../http/log-redaction.js';
import { outageLog } from '../http/outage-log.js';
import { crossSitePost } from '../http/own-forms.js';
import { errorReference, requestField } from '../http/request-id.js';
import { renderPage, type PageContext } from '../http/views.js';
import { describeApiScopes, describeScopes } from '../interactions/scope-descriptions.js';
import { tooManyFailures } from '../interactions/sign-in-notice.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics/metrics.js';
import { sameDigest, sha256 } from '../persistence/hash.js';
import { storable } from '../persistence/nul.js';
import { databaseTrouble } from '../persistence/unavailable.js';
import { displayName } from '../provider/client-model.js';
import type { ProviderHost } from '../provider/host.js';
import { ACCOUNT_CALLBACK_PATH, ACCOUNT_CLIENT_ID, ACCOUNT_PATH } from './account-client.js';

export interface AccountPageDeps {
  host: ProviderHost;
  accounts: Accounts;
  secondFactors: SecondFactors;
  signInThrottle: SignInThrottle;
  apis: Apis;
  config: Config;
  logger: Logger;
  /** Counts the page's password checks with the sign-ins (a stolen session guessing shows as one). */
  metrics?: Metrics;
}

/**
 * The sign-in the account page started (its state and PKCE verifier, RFC
 * 7636), for its return to /account/callback. Signed, as the library's
 * interaction cookies, and only ever sent to the account page's paths.
 */
const SIGN_IN_COOKIE = '_account_sign_in';
const SIGN_IN_COOKIE_OPTIONS = { signed: true, httpOnly: true, sameSite: 'lax', path: '/account', overwrite: true } as const;

/**
 * What a form's answer says, carried to the page it redirects to
 * (Post/Redirect/Get, as the sign-in page's refusals: a reload does not send
 * the passwords again): why it was refused, which app's access was removed
 * (both read once, by the account page), or that a change signed the person
 * out everywhere (read by /account/done for the minute the cookie lives, so
 * that a reload shows that page again). Signed, so that only the page's own
 * forms say it.
 */
const NOTICE_COOKIE = '_account_notice';
const NOTICE_COOKIE_OPTIONS = { signed: true, httpOnly: true, sameSite: 'lax', path: '/account', overwrite: true } as const;

type Session = Awaited<ReturnType<Provider['Session']['get']>>;

/**
 * The secret the page's forms carry: a digest of the session's id, which
 * only this browser's cookie holds, so another site cannot write it into
 * a form it makes the browser post (the session cookie goes with such a
 * post: SameSite=None). A new sign-in in this browser makes a new one.
 */
const formToken = (session: Session) => sha256(`account page forms of session ${session.jti}`);

interface SignedIn {
  session: Session;
  user: NonNullable<Awaited<ReturnType<Accounts['find']>>>;
}

/** What the page says above its sections after a form's answer. */
interface Notice {
  /** The app whose access the person removed, by its name then. */
  removed: string;
}

/**
 * A change that signed the person out everywhere (a new password, or the
 * button), for the page that says so (GET /account/done), and the apps that
 * keep access all the same (at most MAX_NAMED by name, the rest counted).
 */
interface Done {
  what: 'password' | 'everywhere';
  keeping: string[];
  more: number;
}
const MAX_NAMED = 10;

/** What a form's answer carries to the next page (NOTICE_COOKIE). */
interface Carried {
  notice?: Notice;
  refusal?: FormRefusal;
  done?: Done;
  /**
   * The form token (formToken) of the session the notice and refusal are
   * for: said only to it, so that a cookie of someone else's (one a sibling
   * subdomain plants, signed for the planter's own session) puts no words
   * on the person's page. The done page's is for a session that has ended.
   */
  to?: string;
}

/** A form of the page refused, and why: carried to the page (NOTICE_COOKIE), which says so beside that form. */
interface FormRefusal {
  form: 'password' | 'two-step';
  error: string;
  /** The fields the error is about (aria-invalid): the current password, the new one, the new one again. */
  fields: ('current' | 'new' | 'again')[];
}
const FORMS = ['password', 'two-step'];
const FIELDS = ['current', 'new', 'again'];

/**
 * The account page's routes, behind what every answer of theirs needs. Not
 * as the router's own middleware: @koa/router matches a prefix's middleware
 * by case, and its routes whatever the case, so /Account would skip it.
 */
export function accountPages(deps: AccountPageDeps): Koa.Middleware {
  const { config, logger } = deps;
  const page = (ctx: Context) => ({ res: ctx.res, issuerName: config.issuerName });
  const routes = accountRoutes(deps, page).routes() as unknown as Koa.Middleware;
  const ownOrigin = new URL(config.issuer).origin;
  return async (ctx, next) => {
    if (!ACCOUNT_PATH.test(ctx.path)) return next();
    // Every answer here is one person's.
    ctx.set('Cache-Control', 'no-store');
    try {
      const site = crossSitePost(ctx, ownOrigin);
      if (site) {
        logger.info('account form posted from another site', { ...requestField(ctx), site, path: loggedPath(ctx.path) });
        ctx.status = 403;
        renderErrorPage(ctx, page(ctx), { error: 'account_cross_site_form' });
        return;
      }
      await routes(ctx, next);
    } catch (error) {
      const trouble = databaseTrouble(error);
      if (error instanceof BodyError) {
        ctx.status = 413;
        ctx.set('Connection', 'close'); // the rest of the body is not read
        renderErrorPage(ctx, page(ctx), { error: 'account_form_too_large' });
      } else if (ctx.req.aborted) {
        logger.info('account page request aborted by the client', { ...requestField(ctx), path: loggedPath(ctx.path) });
      } else if (trouble) {
        outageLog(logger).failed(trouble, { ...requestField(ctx), route: 'account', error: error instanceof Error ? `${error.name}: ${error.message}` : String(error) });
        renderUnavailablePage(ctx, page(ctx));
      } else {
        const reference = errorReference(ctx);
        logger.error('account page failed', { ...requestField(ctx), reference, error: error instanceof Error ? error.stack : String(error) });
        ctx.status = 500;
        renderErrorPage(ctx, page(ctx), { error: 'server_error' }, { reference });
      }
    }
    return undefined;
  };
}

function accountRoutes({ host, accounts, secondFactors, signInThrottle, apis, config, logger, metrics }: AccountPageDeps, page: (ctx: Context) => PageContext): Router {
  const router = new Router({ prefix: '/account' });
  const addresses = new ClientAddresses(config.trustProxy, logger);

  /**
   * Who this browser's session signed in, as an app's authorization request
   * would take it: a session a sign-out or cut-off ended is not found
   * (provider/sign-outs.ts), and one that passed the password only, of
   * someone who must enter a code, is no sign-in here either
   * (provider/second-factor-prompt.ts).
   */
  const signedIn = async (ctx: Context): Promise<SignedIn | undefined> => {
    const session = await host.current.Session.get(ctx as never);
    const accountId = session.accountId;
    if (!accountId) return undefined;
    if (!(session.amr ?? []).includes('otp') && (await accounts.requiresTotp(accountId))) return undefined;
    const user = await accounts.find(accountId);
    return user && { session, user };
  };

  /**
   * An answer of a sign-in that is not this browser's to spend (see
   * /callback): nothing of it is taken. A browser signed in all the same is
   * shown its page, as the page itself would (the answer named nobody).
   */
  const answerStale = async (ctx: Context) => {
    if (await signedIn(ctx)) return seeAccountPage(ctx);
    ctx.status = 400;
    renderErrorPage(ctx, page(ctx), { error: 'account_sign_in_stale' });
  };

  const tokenMatches = (session: Session, sent: string | undefined) => sameDigest(formToken(session), sent ?? '');

  /** Sends the browser to sign in for the account page: an authorization request of its own client, with PKCE. */
  const startSignIn = (ctx: Context) => {
    const state = randomBytes(32).toString('base64url');
    const verifier = randomBytes(32).toString('base64url');
    ctx.cookies.set(SIGN_IN_COOKIE, `${state}.${verifier}`, { ...SIGN_IN_COOKIE_OPTIONS, maxAge: config.ttl.interaction * 1000 });
    const query = new URLSearchParams({
      client_id: ACCOUNT_CLIENT_ID,
      response_type: 'code',
      scope: 'openid',
      redirect_uri: new URL(ACCOUNT_CALLBACK_PATH, config.issuer).href,
      state,
      code_challenge: s256(verifier),
      code_challenge_method: 'S256',
    });
    ctx.status = 303;
    ctx.redirect(`${host.current.pathFor('authorization')}?${query}`);
  };

  /**
   * A form of the account page, from the person signed in on it: refused
   * when nobody is signed in any more (a sign-out meanwhile) or the page
   * is of an earlier sign-in (its secret is not this session's).
   */
  const formOfSignedIn = async (ctx: Context): Promise<{ who: SignedIn; form: Record<string, string> } | undefined> => {
    const form = await readForm(ctx, THREE_PASSWORDS_LIMIT);
    const who = await signedIn(ctx);
    if (!who || !tokenMatches(who.session, form.token)) {
      ctx.status = 403;
      renderErrorPage(ctx, page(ctx), { error: who ? 'account_page_stale' : 'account_signed_out' });
      return undefined;
    }
    return { who, form };
  };

  const render = async (ctx: Context, who: SignedIn, extras: Carried = {}) => {
    const { user, session } = who;
    const [consents, totp] = await Promise.all([accounts.consentsOf(user.id), secondFactors.stateOf(user.id)]);
    ctx.type = 'html';
    ctx.body = renderPage(page(ctx), 'your-account', {
      userLabel: accountLabel(user),
      token: formToken(session),
      apps: await appsOf(consents, apis),
      totp,
      minLength: config.passwordPolicy.minLength,
      ...extras,
    });
  };

  router.get('/', async (ctx) => {
    const who = await signedIn(ctx);
    if (!who) return startSignIn(ctx);
    await render(ctx, who, carried(ctx, { to: who.session }));
  });

  // The sign-in's return (RFC 6749 §4.1.2): the code is spent here, in the
  // server (it asks for no token: the page reads the session the sign-in
  // made), and only by the browser that started it (state and PKCE, whose
  // verifier never left the server's cookie). Spent by deleting it, not as
  // the token endpoint does: a second use there is a replay that revokes
  // the grant's tokens, where here it is the same browser loading the
  // answer twice at once (a double navigation, a restored tab).
  router.get('/callback', async (ctx) => {
    const started = ctx.cookies.get(SIGN_IN_COOKIE, { signed: true });
    const [state, verifier] = started?.split('.') ?? [];
    const { query } = ctx;
    // RFC 9207 §2.4: the answer names who sent it, and it must be us (who always say so).
    const ours = state && verifier && typeof query.state === 'string' && sameDigest(state, query.state) && query.iss === config.issuer;
    // Not the sign-in this browser started last: an earlier one (two tabs
    // opened the page), or one opened again from the history.
    if (!ours) return answerStale(ctx);
    ctx.cookies.set(SIGN_IN_COOKIE, null, SIGN_IN_COOKIE_OPTIONS);
    if (typeof query.error === 'string') {
      // Cancel on the sign-in page (access_denied), or a sign-in the server
      // stopped. Cancelled at the setup of an authenticator app (after the
      // password: the session names the person), two-step verification is
      // required all the same, which the page says.
      const { accountId } = await host.current.Session.get(ctx as never);
      const totp = accountId ? await secondFactors.stateOf(accountId) : undefined;
      ctx.status = 200;
      ctx.type = 'html';
      ctx.body = renderPage(page(ctx), 'account-not-signed-in', { cancelled: query.error === 'access_denied', setupPending: Boolean(totp?.required && !totp.setUpAt) });
      return;
    }
    const code = typeof query.code === 'string' ? await host.current.AuthorizationCode.find(query.code) : undefined;
    // (The typings leave out `consumed`, which a spent code has.)
    const sound = code && !(code as unknown as { consumed?: number }).consumed && code.clientId === ACCOUNT_CLIENT_ID && code.codeChallenge === s256(verifier!);
    // Spent already: by a load of the same answer a moment before (a double navigation), say.
    if (!sound) return answerStale(ctx);
    await code.destroy();
    const who = await signedIn(ctx);
    if (who?.user.id !== code.accountId) {
      // Signed out (or in as someone else) in another tab since: sign in again.
      return startSignIn(ctx);
    }
    seeAccountPage(ctx);
  });

  // Takes back what the person gave an app, as `user revoke --client` does:
  // consents, tokens, and the app's part of their sessions (the app is told).
  router.post('/apps/remove', async (ctx) => {
    const posted = await formOfSignedIn(ctx);
    if (!posted) return;
    const { who, form } = posted;
    const clientId = form.client_id ?? '';
    if (!clientId || clientId === ACCOUNT_CLIENT_ID) {
      ctx.status = 400;
      renderErrorPage(ctx, page(ctx), { error: 'account_form_incomplete' });
      return;
    }
    // An id no client has (a NUL, which no stored id holds, among them): nothing to remove.
    const app = storable(clientId) ? await host.current.Client.find(clientId) : undefined;
    if (!app) return seeAccountPage(ctx);
    let ended: Awaited<ReturnType<Accounts['revokeClient']>>['ended'] = [];
    try {
      const revoked = await accounts.revokeClient(who.user.id, clientId);
      ended = revoked.ended;
      logger.info('access removed on the account page', { ...requestField(ctx), account: who.user.id, client: clientId, removed: revoked.removed });
    } catch (error) {
      // An app deleted meanwhile: nothing of it is left to remove.
      if (!(error instanceof AccountError)) throw error;
    }
    await tellApps(ctx, host.current, ended);
    carry(ctx, { notice: { removed: displayName(app) }, to: formToken(who.session) });
    seeAccountPage(ctx);
  });

  // A new password, given the current one: counted as a sign-in against the
  // throttle (a stolen session must not make a password-guessing oracle of
  // this form), and checked by the operator's policy. It signs the person out
  // everywhere, here too, as `user set-password` does: whoever knew the old
  // password may have signed in with it.
  router.post('/password', async (ctx) => {
    const posted = await formOfSignedIn(ctx);
    if (!posted) return;
    const { who, form } = posted;
    const current = form.current_password ?? '';
    const next = form.new_password ?? '';
    const again = form.new_password_again ?? '';
    const refuse = (error: string, fields: FormRefusal['fields']) => refuseForm(ctx, who, { form: 'password', error, fields });
    const missing = [...(current ? [] : ['current' as const]), ...(next ? [] : ['new' as const]), ...(again ? [] : ['again' as const])];
    if (missing.length) return refuse('Fill in all three password fields.', missing);
    const wrong = await currentPasswordRefused(ctx, who, current, 'password change');
    if (wrong) return refuse(wrong, wrong === WRONG_CURRENT_PASSWORD ? ['current'] : []);
    if (next !== again) return refuse('The two new passwords are not the same. Enter your current password, then the new password twice.', ['new', 'again']);
    const problem = await passwordProblem(next, who.user.email, config.passwordPolicy);
    if (problem) return refuse(`${problem.replace(/^the password/, 'The new password')}. Enter your current password, then another new password twice.`, ['new', 'again']);
    const keeping = await appsKeepingAccess(who.user.id);
    const { ended } = await accounts.setPassword(who.user.id, next);
    logger.info('password changed on the account page', { ...requestField(ctx), account: who.user.id });
    await tellApps(ctx, host.current, ended);
    showDone(ctx, { what: 'password', ...keeping });
  });

  // Two-step verification turned on by the person (the operator's `user
  // update --totp required`), given the current password, and everyone
  // signed out (Accounts.requireTotp): neither a stolen session alone nor
  // one elsewhere that passed the password only can tie the account to
  // someone else's phone. The setup is the sign-in's own
  // (provider/second-factor-prompt.ts): the page sends the browser through a
  // sign-in for itself, where the person gives the password again and sets
  // up the app, and comes back here. Left half-way, the next sign-in sets it
  // up. Turning it off is the operator's.
  router.post('/two-step', async (ctx) => {
    const posted = await formOfSignedIn(ctx);
    if (!posted) return;
    const { who, form } = posted;
    const current = form.current_password ?? '';
    if (!current) return refuseForm(ctx, who, { form: 'two-step', error: 'Enter your current password.', fields: ['current'] });
    const wrong = await currentPasswordRefused(ctx, who, current, 'two-step verification');
    if (wrong) return refuseForm(ctx, who, { form: 'two-step', error: wrong, fields: wrong === WRONG_CURRENT_PASSWORD ? ['current'] : [] });
    const { ended } = await accounts.requireTotp(who.user.id);
    logger.info('two-step verification turned on on the account page', { ...requestField(ctx), account: who.user.id });
    await tellApps(ctx, host.current, ended);
    startSignIn(ctx);
  });

  /**
   * The apps that keep what the person gave them after a sign-out
   * (offline_access), by name: signing out everywhere, a new password among
   * them, leaves their access, and the page that says it was done must not
   * let the person believe otherwise (`user set-password` tells the operator).
   */
  const appsKeepingAccess = async (userId: string): Promise<Pick<Done, 'keeping' | 'more'>> => {
    const lasting = (await accounts.consentsOf(userId)).filter((consent) => consent.scope.split(' ').includes('offline_access'));
    const names = [...new Set(lasting.map((consent) => consent.clientName ?? consent.clientId))];
    return { keeping: names.slice(0, MAX_NAMED), more: Math.max(0, names.length - MAX_NAMED) };
  };

  // The page after a change that signed the person out everywhere: the
  // form's answer redirects here (Post/Redirect/Get), so that a reload shows
  // it again rather than sending the form of a session that has ended. It
  // reads what the form carried for the minute the cookie lives, and then
  // leads to the account page.
  router.get('/done', (ctx) => {
    const { done } = carried(ctx, { keep: true, to: undefined });
    if (!done) return seeAccountPage(ctx);
    ctx.type = 'html';
    ctx.body = renderPage(page(ctx), done.what === 'password' ? 'password-changed' : 'signed-out-everywhere', { ...done });
    return undefined;
  });

  /**
   * Why the current password `given` on a form of `who`'s is refused, if it
   * is: counted as a sign-in against the throttle (a stolen session must not
   * make a password-guessing oracle of the page), so past the limit even the
   * right one is refused for a while.
   */
  const currentPasswordRefused = async (ctx: Context, who: SignedIn, given: string, action: string): Promise<string | undefined> => {
    const outcome = await signInThrottle.signIn(who.user.email, addresses.of(ctx), async () => (await accounts.checkPassword(who.user.email, given))?.accountId);
    if (outcome.refused) {
      metrics?.signIn('throttled');
      logger.warn(`${action} refused: too many failures`, { ...requestField(ctx), account: who.user.id, limits: outcome.limits.join(' '), retryAfter: outcome.retryAfter });
      return tooManyFailures(outcome.retryAfter);
    }
    if (outcome.accountId === who.user.id) return undefined;
    metrics?.signIn('wrong_credentials');
    logger.info(`${action} refused: the current password is not right`, { ...requestField(ctx), account: who.user.id });
    return WRONG_CURRENT_PASSWORD;
  };

  // Ends the person's sessions on every device, this one too, as a new
  // password does (a browser left signed in on a shared computer), with the
  // apps told; consents that outlive a sign-out (offline_access) stay, as
  // the page says: "Remove access" ends those.
  router.post('/sign-out-everywhere', async (ctx) => {
    const posted = await formOfSignedIn(ctx);
    if (!posted) return;
    const { who } = posted;
    const keeping = await appsKeepingAccess(who.user.id);
    const { ended } = await accounts.endSessions(who.user.id);
    logger.info('signed out everywhere on the account page', { ...requestField(ctx), account: who.user.id });
    await tellApps(ctx, host.current, ended);
    showDone(ctx, { what: 'everywhere', ...keeping });
  });

  return router;
}

/** The apps a person let in (Accounts.consentsOf: the account page itself is not one), each once, with what they may do, oldest first. */
async function appsOf(consents: Awaited<ReturnType<Accounts['consentsOf']>>, apis: Apis) {
  const byApp = new Map<string, { clientId: string; name: string; since: Date; scopes: Set<string>; apiScopes: Map<string, Set<string>> }>();
  for (const consent of consents) {
    const app = byApp.get(consent.clientId) ?? { clientId: consent.clientId, name: consent.clientName ?? consent.clientId, since: consent.firstGivenAt, scopes: new Set(), apiScopes: new Map() };
    for (const scope of consent.scope.split(' ').filter(Boolean)) app.scopes.add(scope);
    for (const [api, scope] of Object.entries(consent.apis)) {
      const scopes = app.apiScopes.get(api) ?? new Set<string>();
      for (const name of String(scope).split(' ').filter(Boolean)) scopes.add(name);
      app.apiScopes.set(api, scopes);
    }
    byApp.set(consent.clientId, app);
  }
  const known = new Map<string, ApiView | undefined>();
  const api = async (identifier: string) => {
    if (!known.has(identifier)) known.set(identifier, await apis.find(identifier));
    return known.get(identifier);
  };
  const apps = [];
  for (const app of byApp.values()) {
    const permissions = describeScopes(app.scopes);
    for (const [identifier, scopes] of app.apiScopes) permissions.push(...describeApiScopes(await api(identifier), scopes));
    apps.push({ clientId: app.clientId, name: app.name, since: app.since, permissions });
  }
  return apps;
}

/**
 * Back-channel logout (OpenID Connect Back-Channel Logout 1.0) to the apps
 * whose part of a session the page's form ended, as the library tells them
 * at a sign-out, and reported through the same events
 * (provider/backchannel-logout.ts logs each).
 */
async function tellApps(ctx: Context, provider: Provider, ended: { accountId: string; clientId: string; sid: string }[]): Promise<void> {
  await Promise.all(
    ended.map(async ({ accountId, clientId, sid }) => {
      const client = await provider.Client.find(clientId).catch(() => undefined);
      if (!client?.backchannelLogoutUri) return;
      try {
        // (Untyped in the library's typings; end_session calls it so.)
        await (client.backchannelLogout as (sub: string, sid: string) => Promise<void>).call(client, accountId, sid);
        provider.emit('backchannel.success', ctx, client, accountId, sid);
      } catch (error) {
        provider.emit('backchannel.error', ctx, error, client, accountId, sid);
      }
    }),
  );
}

const WRONG_CURRENT_PASSWORD = 'Your current password is not right.';

/** Refuses a form of the page: back to the page (Post/Redirect/Get), which says why beside it. */
function refuseForm(ctx: Context, who: SignedIn, refusal: FormRefusal): void {
  carry(ctx, { refusal, to: formToken(who.session) });
  seeAccountPage(ctx);
}

/** Post/Redirect/Get to the page that says the change signed the person out everywhere. */
function showDone(ctx: Context, done: Done): void {
  carry(ctx, { done });
  ctx.status = 303;
  ctx.redirect('/account/done');
}

/** What the next load of the page is to say (see NOTICE_COOKIE). */
function carry(ctx: Context, said: Carried): void {
  ctx.cookies.set(NOTICE_COOKIE, Buffer.from(JSON.stringify(said)).toString('base64url'), { ...NOTICE_COOKIE_OPTIONS, maxAge: 60_000 });
}

/**
 * What this browser was sent back with, if anything: read once, unless
 * `keep`; a notice or refusal only for the session `to` (see Carried.to).
 */
function carried(ctx: Context, { keep = false, to }: { keep?: boolean; to: Session | undefined }): Carried {
  const value = ctx.cookies.get(NOTICE_COOKIE, { signed: true });
  if (value === undefined) return {};
  if (!keep) ctx.cookies.set(NOTICE_COOKIE, null, NOTICE_COOKIE_OPTIONS);
  try {
    const { notice, refusal, done, to: addressee } = JSON.parse(Buffer.from(value, 'base64url').toString('utf8')) as Carried;
    const forThisSession = to !== undefined && typeof addressee === 'string' && sameDigest(formToken(to), addressee);
    const soundRefusal = refusal && FORMS.includes(refusal.form) && typeof refusal.error === 'string' && Array.isArray(refusal.fields) && refusal.fields.every((field) => FIELDS.includes(field));
    const soundDone = done && (done.what === 'password' || done.what === 'everywhere') && Array.isArray(done.keeping) && done.keeping.every((name) => typeof name === 'string') && Number.isInteger(done.more);
    return {
      notice: forThisSession && typeof notice?.removed === 'string' ? notice : undefined,
      refusal: forThisSession && soundRefusal ? refusal : undefined,
      done: soundDone ? done : undefined,
    };
  } catch {
    // Signed by us, so never garbled but by a change of format between versions: no message then.
    return {};
  }
}

/** Post/Redirect/Get to the account page. */
const seeAccountPage = (ctx: Context) => {
  ctx.status = 303;
  ctx.redirect('/account');
};

const s256 = (verifier: string) => createHash('sha256').update(verifier).digest('base64url');


