// The pages oidc-provider leaves to the host: login and consent, after the
// shape of its example/routes/koa.js. GET shows the page for the current
// prompt; POSTs finish the prompt and hand the browser back to the provider.
import { randomUUID } from 'node:crypto';
import Router from '@koa/router';
import type { Context, Next } from 'koa';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { errors, type InteractionResults } from 'oidc-provider';
import type Provider from 'oidc-provider';
import { emailAddressIn, type Accounts } from '../accounts/accounts.js';
import type { DeviceCookies } from '../accounts/device-cookies.js';
import { sectorOf, type Subjects } from '../accounts/subjects.js';
import { MAX_CONSECUTIVE_FAILURES, type CodeOutcome, type SecondFactors } from '../accounts/second-factors.js';
import { codeIn } from '../accounts/totp.js';
import type { SignInThrottle } from '../accounts/sign-in-throttle.js';
import type { Apis } from '../apis/apis.js';
import type { Config } from '../config.js';
import { ClientAddresses } from '../http/client-address.js';
import { errorReference, requestField } from '../http/request-id.js';
import { outageLog } from '../http/outage-log.js';
import { renderErrorPage, renderUnavailablePage } from '../http/error-pages.js';
import { BodyError, readForm } from '../http/form-body.js';
import { crossSitePost } from '../http/own-forms.js';
import { interactionReference, loggedPath } from '../http/log-redaction.js';
import { destinationOf, logoUrl, safeUrl } from '../http/safe-url.js';
import { renderPage } from '../http/views.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics/metrics.js';
import type { Sql } from '../persistence/database.js';
import { sha256 } from '../persistence/hash.js';
import { databaseTrouble } from '../persistence/unavailable.js';
import { mayUseInteraction, type ArtifactAdapter } from '../provider/adapter.js';
import { dropUnusedGrant } from '../provider/artifacts.js';
import { claimsRequestedIn, subjectRequiredBy } from '../provider/claims-parameter.js';
import { accountLabel } from '../display-text.js';
import type { BrowserBinding } from '../provider/browser-binding.js';
import { displayName, grantableApiScopes, linkableApplication } from '../provider/client-model.js';
import type { ProviderHost } from '../provider/host.js';
import { outgrownRequest, type RegistrationChange } from '../provider/registration-changes.js';
import { SECOND_FACTOR, TWO_FACTOR_AMR } from '../provider/second-factor-prompt.js';
import { asksToSelectAccount, SELECT_ACCOUNT } from '../provider/select-account.js';
import { authenticatorSetup } from './authenticator-setup.js';
import { claimsReleasedBy, OIDC_SCOPES } from '../oidc-scopes.js';
import { CurrentSignIn } from './current-sign-in.js';
import { FinishedSteps, renderFinishedStep, type Outcome } from './finished-steps.js';
import { authorizationForm, requestFields, restartForm, restartOf, type AuthorizationForm } from './restart.js';
import { describeApiScopes, describeClaims, describeScopes } from './scope-descriptions.js';
import { SIGN_IN_NOTICE_COOKIE, SignInNotices, tooManyFailures, type Refusal } from './sign-in-notice.js';

export interface InteractionDeps {
  host: ProviderHost;
  /** The `sub` each client knows a person by (accounts/subjects.ts). */
  subjects: Subjects;
  accounts: Accounts;
  /** People's TOTP keys, the sign-in's second step (accounts/second-factors.ts). */
  secondFactors: SecondFactors;
  signInThrottle: SignInThrottle;
  deviceCookies: DeviceCookies;
  signInNotices: SignInNotices;
  /** Which browser made each sign-in in progress (provider/browser-binding.ts). */
  browsers: BrowserBinding;
  apis: Apis;
  config: Config;
  logger: Logger;
  metrics?: Metrics;
  sql: Sql;
}

// Deliberately one message for both failures, so that the page does not tell
// which emails have accounts.
const WRONG_CREDENTIALS = 'The email or password is not right. Check both and try again.';
/** A field left empty: which one, and the words that say so (WCAG 3.3.1, 3.3.3: not "not right"). */
const incomplete = (email: string) =>
  email ? { missing: ['password'], error: 'Enter your password.' } : { missing: ['email', 'password'], error: 'Enter your email and password.' };
// Said only to someone who gave the right password (see Accounts.checkPassword).
const DISABLED = 'This account is disabled. Ask whoever runs this service to enable it again.';
const NO_CODE = 'Enter the 6-digit code from your authenticator app.';
// One message for a code that is wrong and one used already (the same code
// again within its 30 seconds, a second sign-in right after the first).
const WRONG_CODE = 'That code is not right, or was used already. Enter the code your authenticator app shows now.';
const LOCKED = 'Too many wrong codes. Ask whoever runs this service to reset your two-step verification.';

type Interaction = Awaited<ReturnType<Provider['interactionDetails']>>;

/**
 * What provider.interactionFinished does, with the interaction this request
 * already loaded (details() below): the library's own would load it, and its
 * session, again — a statement or two more per sign-in and consent. The same
 * steps: the result (merged with the previous submission unless asked not to,
 * or an error), saved for the rest of the interaction's lifetime, and a 303 to
 * the authorization endpoint, which resumes the request.
 */
async function finish(ctx: Context, interaction: Interaction, result: InteractionResults, { mergeWithLastSubmission }: { mergeWithLastSubmission: boolean }) {
  interaction.result = mergeWithLastSubmission && !('error' in result) ? { ...interaction.lastSubmission, ...result } : result;
  await saveForItsLifetime(interaction);
  ctx.status = 303; // kept by redirect(): the browser follows it with a GET
  ctx.redirect(interaction.returnTo);
}

/** Saves the interaction for the rest of its lifetime (it keeps its expiry). */
function saveForItsLifetime(interaction: Interaction) {
  return interaction.save(interaction.exp - Math.floor(Date.now() / 1000));
}

/** The id of the grant a consent in this interaction creates (see POST /confirm). */
const grantIdFor = (uid: string) => sha256(`grant of interaction ${uid}`);

/**
 * The browser's device cookie (accounts/device-cookies.ts): earned with a
 * right password, it lets this browser sign in to that account while others'
 * guesses hold the email locked. It carries its own MAC (so it outlives
 * COOKIE_KEYS rotations), and is sent only with posts from our own pages
 * (SameSite=Strict) to the interaction routes.
 */
const DEVICE_COOKIE = '_device';
const DEVICE_COOKIE_OPTIONS = { httpOnly: true, sameSite: 'strict', path: '/interaction/', maxAge: 180 * 24 * 3600 * 1000, overwrite: true } as const;

/**
 * The same authorization request, asking for a fresh sign-in (OIDC Core
 * §3.1.2.1 prompt=login): how someone who is not the person signed in on
 * this browser signs in as themselves. login_hint is left out, since it
 * names the other person to the form; id_token_hint stays, as the app's
 * requirement: if it named someone else, the app gets login_required.
 * A form to the authorization endpoint (see authorizationForm).
 */
function signInAgain(provider: Provider, params: Record<string, unknown>): AuthorizationForm {
  const fields = requestFields(params, ['prompt', 'login_hint']);
  // Signing in is the choice of account: prompt=select_account would only ask it again.
  const others = typeof params.prompt === 'string' ? params.prompt.split(' ').filter((prompt) => prompt && prompt !== 'login' && prompt !== SELECT_ACCOUNT) : [];
  fields.push(['prompt', ['login', ...others].join(' ')]);
  return authorizationForm(provider, fields);
}

/**
 * The subject of a request's id_token_hint. The library verified the token
 * (signature, issuer, audience) when it took the request; its subject is the
 * person as the client knows them (accounts/subjects.ts).
 */
function hintedSubject(hint: unknown): string | undefined {
  if (typeof hint !== 'string') return undefined;
  const { sub } = decodeJwt(hint);
  return typeof sub === 'string' ? sub : undefined;
}

/**
 * Whether the sign-in is a device's (RFC 8628, provider/device-flow.ts):
 * begun at /device, not by an authorization request, so it has no request
 * to send again ("Use another account", restart.ts) and no app to go back
 * to; its end is a page saying the device is connected.
 */
const forDevice = (interaction: Interaction) => typeof (interaction as { deviceCode?: unknown }).deviceCode === 'string';

/** Whether the sign-in's request came through the PAR endpoint (the library keeps its request_uri's id as parJti). */
const pushed = (interaction: Interaction) => (interaction as { parJti?: unknown }).parJti !== undefined;

/**
 * Whether the sign-in's request came to /auth as a request object: the
 * library keeps the names of its parameters as `trusted` (and of a pushed
 * request's, signed or not, from a confidential client).
 */
const requestObject = (interaction: Interaction) => !pushed(interaction) && Array.isArray(interaction.trusted) && interaction.trusted.length > 0;

/**
 * Whether the sign-in's parameters came signed by the client (a request
 * object, sent to /auth or pushed). A pushed request is looked up: kept
 * while the sign-in lasts, it holds the object, or the unsecured JWT the
 * library made of plain parameters (`alg: none`).
 */
async function cameSigned(provider: Provider, interaction: Interaction): Promise<boolean> {
  if (!pushed(interaction)) return requestObject(interaction);
  const parJti = (interaction as { parJti?: string }).parJti!;
  const stored = await provider.PushedAuthorizationRequest.find(parJti).catch(() => undefined);
  if (typeof stored?.request !== 'string') return true; // Gone: as the library would take it.
  try {
    return decodeProtectedHeader(stored.request).alg !== 'none';
  } catch {
    return false;
  }
}

/**
 * Whether "Use another account" goes on in this sign-in (anotherAccountLink)
 * rather than sending its request to /auth again (signInAgain): a device's,
 * which has no request to send, and a pushed request's (RFC 9126): its
 * parameters are kept off the browser, its request_uri was used once, and a
 * client registered with --require-par would be refused the request sent
 * again, its person sent back to the app with an error; and a request
 * object's (RFC 9101), whose parameters would go again unsigned (refused to
 * a client registered with --require-jar).
 */
const switchesInPlace = (interaction: Interaction) => forDevice(interaction) || pushed(interaction) || requestObject(interaction);

/**
 * "Use another account" in a device's, pushed or signed request's sign-in: its own
 * sign-in page (a link, `?account=other`), whose sign-in ends the session of
 * whoever is signed in here, as signing in with prompt=login does; the
 * request goes on for the one who signed in (the library signs the other out
 * first).
 */
const OTHER_ACCOUNT = 'other';
const anotherAccountLink = (interaction: Interaction) => ({ href: `/interaction/${encodeURIComponent(interaction.uid)}?account=${OTHER_ACCOUNT}` });

/** The form whose post a step's outcome answered, for those worth sending again (see showFinished). */
const ANSWER_OF: Partial<Record<Outcome, string[]>> = { allowed: ['/confirm'], signed_in: ['/login', '/select', '/totp'] };

/** The prompts that have a page here; any other is a WrongPrompt. */
const PAGES = new Set(['login', SELECT_ACCOUNT, SECOND_FACTOR, 'consent']);

class WrongPrompt extends Error {
  override name = 'WrongPrompt';
}

/**
 * A consent refused because the sign-in ended while it was given (a sign-out,
 * `user revoke`): the sign-in expired as far as the page can say, even where
 * this browser finished the step before (a form sent twice).
 */
class EndedMeanwhile extends errors.SessionNotFound {}

/** A sign-in whose request the client's registration no longer allows (provider/registration-changes.ts). */
class RequestOutgrown extends Error {
  override name = 'RequestOutgrown';
  constructor(
    readonly interaction: Interaction,
    readonly change: RegistrationChange,
  ) {
    super(change.description);
  }
}

export function interactionRoutes({ host, subjects, accounts, secondFactors, signInThrottle, deviceCookies, signInNotices, browsers, apis, config, logger, metrics, sql }: InteractionDeps): Router {
  const router = new Router({ prefix: '/interaction/:uid' });
  const current = new CurrentSignIn(sql, browsers, logger, PAGES);
  const finished = new FinishedSteps(config.ttl.interaction);
  const addresses = new ClientAddresses(config.trustProxy, logger);
  /** Notes `interaction` as finished by this browser, its answer on the way to the app (finished-steps.ts). */
  const noteFinished = (ctx: Context, interaction: Interaction, outcome: Outcome) =>
    finished.note(ctx, interaction.uid, { clientId: String(interaction.params.client_id), outcome, device: forDevice(interaction) });
  const page = (ctx: Context) => ({ res: ctx.res, issuerName: config.issuerName });

  router.use(async (ctx: Context, next: Next) => {
    ctx.set('Cache-Control', 'no-store');
    try {
      await next();
    } catch (error) {
      const trouble = databaseTrouble(error);
      if (error instanceof errors.SessionNotFound && ctx.method === 'GET' && !ctx.get('Cookie') && (await liveInteraction(ctx.params.uid!))) {
        // A sign-in that goes on, and the browser sent none of our cookies
        // to its page: it keeps none for this site (blocked), or the address
        // was opened in another browser. "Your sign-in expired" would be no
        // help: starting again loops. (An expired one has lost its cookies too.)
        ctx.status = 400;
        renderErrorPage(ctx, page(ctx), { error: 'cookies_blocked' });
      } else if (error instanceof errors.SessionNotFound && !(error instanceof EndedMeanwhile) && (await showFinished(ctx, error))) {
        // A step this browser finished, opened again: said so (finished-steps.ts).
      } else if (error instanceof errors.SessionNotFound || error instanceof WrongPrompt) {
        ctx.status = 400;
        // A form of a sign-in that is gone (expired, signed out meanwhile)
        // brought back its request: the page offers to start it again (restart.ts).
        const restart = error instanceof errors.SessionNotFound && ctx.method === 'POST' ? await restartForm(host.current, (await readForm(ctx).catch(() => undefined))?.restart) : undefined;
        renderErrorPage(ctx, page(ctx), { error: 'session_not_found' }, { inProgress: await wayOn(ctx, error), restart });
      } else if (error instanceof RequestOutgrown) {
        const { interaction, change } = error;
        logger.info('sign-in stopped: the client registration changed meanwhile', { ...requestField(ctx), interaction: interactionReference(interaction.uid), client: String(interaction.params.client_id), error: change.error });
        // Told to the client as the library would tell it of a new request
        // (RFC 6749 §4.1.2.1), unless its address is what was removed.
        if (change.redirectable) {
          await finish(ctx, interaction, { error: change.error, error_description: change.description }, { mergeWithLastSubmission: false });
          noteFinished(ctx, interaction, 'ended');
        } else {
          ctx.status = 400;
          renderErrorPage(ctx, page(ctx), { error: 'registration_changed', error_description: change.description });
        }
      } else if (error instanceof errors.OIDCProviderError) {
        ctx.status = error.statusCode;
        renderErrorPage(ctx, page(ctx), { error: error.error, error_description: error.error_description });
      } else if (error instanceof BodyError) {
        // Checked before the abort below: a body cut short by us is not the browser going away.
        ctx.status = 413;
        ctx.set('Connection', 'close'); // the rest of the body is not read
        renderErrorPage(ctx, page(ctx), { error: 'form_too_large' }, { inProgress: await current.offer(ctx, host.current, ctx.params.uid!) });
      } else if (ctx.req.aborted) {
        // The browser went away mid-request (its body's stream fails with
        // ECONNRESET): nothing to answer, nothing wrong here.
        logger.info('interaction request aborted by the client', { ...requestField(ctx), path: loggedPath(ctx.path) });
      } else if (trouble) {
        outageLog(logger).failed(trouble, { ...requestField(ctx), route: 'interaction', error: error instanceof Error ? `${error.name}: ${error.message}` : String(error) });
        renderUnavailablePage(ctx, page(ctx));
      } else {
        const reference = errorReference(ctx);
        logger.error('interaction failed', { ...requestField(ctx), reference, error: error instanceof Error ? error.stack : String(error) });
        ctx.status = 500;
        renderErrorPage(ctx, page(ctx), { error: 'server_error' }, { reference });
      }
    }
  });

  // The forms are posted by our own pages only (http/own-forms.ts): without
  // that, the interaction's uid would be all that stands in the way of a
  // form another page on the same site posts.
  const ownOrigin = new URL(config.issuer).origin;
  router.use(async (ctx: Context, next: Next) => {
    const site = crossSitePost(ctx, ownOrigin);
    if (site) {
      logger.info('interaction form posted from another site', { ...requestField(ctx), site, path: loggedPath(ctx.path) });
      ctx.status = 403;
      renderErrorPage(ctx, page(ctx), { error: 'cross_site_form' });
      return;
    }
    await next();
  });

  const liveInteraction = async (uid: string) => Boolean(await host.current.Interaction.find(uid).catch(() => undefined));

  const details = async (ctx: Context, expected?: string) => {
    const provider = host.current;
    // Looked up together: one statement finds the interaction and its browser binding.
    const [interaction, mayUse] = await Promise.all([
      provider.interactionDetails(ctx.req, ctx.res),
      mayUseInteraction(sql, ctx.params.uid!, browsers.of(ctx)),
    ]);
    if (interaction.uid !== ctx.params.uid) throw new errors.SessionNotFound('interaction does not match this browser');
    if (!mayUse) {
      // Its cookies came from elsewhere: planted by a related site, perhaps,
      // to have this person sign in for someone else's browser. Info, not
      // warn: any client can make such requests at will.
      logger.info('sign-in opened in a browser other than the one that started it', { ...requestField(ctx), interaction: interactionReference(interaction.uid) });
      throw new errors.SessionNotFound('interaction started in another browser');
    }
    if (expected && interaction.prompt.name !== expected) throw new WrongPrompt(expected);
    const client = await provider.Client.find(String(interaction.params.client_id));
    if (!client) throw new errors.InvalidClient('client not found');
    // The client as registered now: `client update` may have removed the
    // redirect URI or a scope since the request arrived.
    // (How the request came is looked up only where the client requires it signed.)
    const signed = client.requireSignedRequestObject ? await cameSigned(provider, interaction) : false;
    const change = outgrownRequest(client, interaction.params, { device: forDevice(interaction), pushed: pushed(interaction), signed });
    if (change) throw new RequestOutgrown(interaction, change);
    return { provider, interaction, client };
  };

  /**
   * Where a step that is not this one goes on (see current-sign-in.ts): an
   * ended step's, the one this browser was shown last; a form sent to a live
   * step it is not for (WrongPrompt), that step's page. Not a page that cannot
   * show its own step: it would lead back to itself.
   */
  const wayOn = async (ctx: Context, error: unknown) => {
    const shown = error instanceof WrongPrompt ? (ctx.method === 'POST' ? ctx.params.uid : undefined) : current.named(ctx);
    if (!shown || (error instanceof errors.SessionNotFound && shown === ctx.params.uid)) return undefined;
    return current.offer(ctx, host.current, shown);
  };

  /**
   * The page of a step this browser finished, if it did (and its app is
   * still registered): what happened, and the way on. The same answer sent
   * again there (a second click, whose first answer the browser dropped) is
   * offered its request again, as the app may never have had the answer;
   * not another answer (Deny after Allow went through in another tab), which
   * the request sent again would overrule.
   */
  const showFinished = async (ctx: Context, error: unknown): Promise<boolean> => {
    const step = finished.of(ctx, ctx.params.uid!);
    if (!step) return false;
    const provider = host.current;
    const client = await provider.Client.find(step.clientId).catch(() => undefined);
    if (!client) return false;
    const restart = ctx.method === 'POST' && ANSWER_OF[step.outcome]?.includes(ctx.path.slice(ctx.path.lastIndexOf('/')))
      ? (await readForm(ctx).catch(() => undefined))?.restart
      : undefined;
    // The request of the app the step was for: a form's field is the browser's to change.
    const sameApp = typeof restart === 'string' && new URLSearchParams(restart).get('client_id') === step.clientId;
    const startAgain = sameApp ? (await restartForm(provider, restart))?.form : undefined;
    ctx.status = 200;
    renderFinishedStep(ctx, page(ctx), { step, clientName: displayName(client), homePage: linkableApplication(client)?.homePage, inProgress: await wayOn(ctx, error), startAgain });
    return true;
  };

  /**
   * The sign-in page. Someone already signed in on this browser (a request
   * with prompt=login, "Not you?") is named: signing in as anyone else ends
   * their session here (the library asks the browser to, see POST /login).
   */
  const showLogin = async (ctx: Context, interaction: Interaction, clientName: string, fields: { email?: string; error?: string; missing?: string[]; throttled?: boolean; disabled?: boolean } = {}) => {
    const signedIn = interaction.session?.accountId ? await accounts.find(interaction.session.accountId) : undefined;
    ctx.type = 'html';
    ctx.body = renderPage(page(ctx), 'login', {
      uid: interaction.uid,
      clientName,
      signedInAs: signedIn && accountLabel(signedIn),
      restart: restartOf(interaction),
      device: forDevice(interaction),
      ...fields,
    });
  };

  /**
   * A refused sign-in is answered with a redirect to its page, which says why
   * (Post/Redirect/Get, see sign-in-notice.ts): the page that follows can be
   * reloaded, and gone back to, without sending the password again.
   */
  const refuseSignIn = (ctx: Context, interaction: Interaction, email: string, refusal: Refusal) => {
    const { uid } = interaction;
    ctx.cookies.set(SIGN_IN_NOTICE_COOKIE, signInNotices.seal(uid, { refusal, email }), SignInNotices.cookieOptions(uid, ctx.secure));
    ctx.status = 303;
    // Back to the sign-in page it came from: "Use another account"'s, at a later step (switchesInPlace).
    ctx.redirect(switchesInPlace(interaction) && interaction.prompt.name !== 'login' ? anotherAccountLink(interaction).href : `/interaction/${encodeURIComponent(uid)}`);
  };

  /** A refused code, answered as a refused sign-in is: a redirect to the code's page, which says why. */
  const refuseCode = (ctx: Context, interaction: Interaction, refusal: Refusal) => {
    const { uid } = interaction;
    ctx.cookies.set(SIGN_IN_NOTICE_COOKIE, signInNotices.seal(uid, { refusal, email: '' }), SignInNotices.cookieOptions(uid, ctx.secure));
    ctx.status = 303;
    ctx.redirect(`/interaction/${encodeURIComponent(uid)}`);
  };

  /** The sign-in page's fields for the notice a refused sign-in left, read once; undefined without one. */
  const takeNotice = (ctx: Context, uid: string) => {
    // A HEAD (a link checker, a preview) shows nothing: the notice waits for the GET.
    if (ctx.method !== 'GET') return undefined;
    const cookie = ctx.cookies.get(SIGN_IN_NOTICE_COOKIE);
    if (cookie === undefined) return undefined;
    ctx.cookies.set(SIGN_IN_NOTICE_COOKIE, null, SignInNotices.cookieOptions(uid, ctx.secure));
    const notice = signInNotices.open(uid, cookie);
    if (!notice) return undefined;
    const { refusal, email } = notice;
    if (refusal.reason === 'incomplete') return { email, ...incomplete(email) };
    if (refusal.reason === 'wrong_credentials') return { email, error: WRONG_CREDENTIALS };
    if (refusal.reason === 'disabled') return { email, error: DISABLED, disabled: true };
    if (refusal.reason === 'no_code') return { email, error: NO_CODE };
    if (refusal.reason === 'wrong_code') return { email, error: WRONG_CODE };
    if (refusal.reason === 'locked') return { email, error: LOCKED, throttled: true };
    const wait = refusal.until - Math.floor(Date.now() / 1000);
    // Seen after the wait is over (the page opened again later): nothing to say.
    return wait > 0 ? { email, error: tooManyFailures(wait), throttled: true } : { email };
  };

  router.get('/', async (ctx) => {
    const { provider, interaction, client } = await details(ctx);
    if (PAGES.has(interaction.prompt.name)) current.mark(ctx, interaction.uid, interaction.exp);
    const clientName = displayName(client);
    const switching = switchesInPlace(interaction) && ctx.query.account === OTHER_ACCOUNT && PAGES.has(interaction.prompt.name);
    if (interaction.prompt.name === 'login' || switching) {
      // The app's login_hint, as sent. Not the email of the person an
      // id_token_hint names: the library takes an expired hint too, so an app
      // (or whoever holds one of its ID tokens) would read the email of
      // everyone who ever signed in to it off this page, scope or no scope.
      // Only an email address: anything else (an opaque id, or text with a
      // bidirectional override that shows as another address) would keep the
      // focus from the email field, whose browser check then names a character
      // nobody can see.
      const sent = interaction.params.login_hint;
      // As stored: an internationalized domain in its xn-- form, which shows a
      // look-alike (a Cyrillic а) for what it is.
      const hint = typeof sent === 'string' ? emailAddressIn(sent) : undefined;
      // (Not when someone else signs in to a device's sign-in: the hint most often names whom they replace.)
      return showLogin(ctx, interaction, clientName, takeNotice(ctx, interaction.uid) ?? { email: switching ? undefined : hint });
    }
    if (interaction.prompt.name === SECOND_FACTOR) {
      const { user, sessionUid } = await secondStepOf(interaction);
      // A key is shown until a code of it is entered; one set up, never again.
      const step = await secondFactors.stepFor(user.id, sessionUid);
      if (step.kind === 'not_required') return passWithoutCode(ctx, interaction, user.id);
      const notice = takeNotice(ctx, interaction.uid);
      ctx.type = 'html';
      ctx.body = renderPage(page(ctx), 'second-factor', {
        uid: interaction.uid,
        clientName,
        userLabel: accountLabel(user),
        setup: step.kind === 'setup' && (await authenticatorSetup(step.key, config.issuerName, user.email)),
        error: notice?.error,
        throttled: notice?.throttled,
        switchAccount: switchesInPlace(interaction) ? anotherAccountLink(interaction) : signInAgain(provider, interaction.params),
        restart: restartOf(interaction),
        device: forDevice(interaction),
      });
      return;
    }
    if (interaction.prompt.name === SELECT_ACCOUNT) {
      const user = interaction.session?.accountId ? await accounts.find(interaction.session.accountId) : undefined;
      ctx.type = 'html';
      ctx.body = renderPage(page(ctx), 'select-account', {
        uid: interaction.uid,
        clientName,
        userLabel: accountLabel(user),
        switchAccount: switchesInPlace(interaction) ? anotherAccountLink(interaction) : signInAgain(provider, interaction.params),
        restart: restartOf(interaction),
        device: forDevice(interaction),
      });
      return;
    }
    if (interaction.prompt.name === 'consent') {
      const detailsOf = interaction.prompt.details as {
        missingOIDCScope?: string[];
        missingOIDCClaims?: string[];
        missingResourceScopes?: Record<string, string[]>;
      };
      const user = interaction.session?.accountId ? await accounts.find(interaction.session.accountId) : undefined;
      const apiPermissions = await Promise.all(
        Object.entries(detailsOf.missingResourceScopes ?? {}).map(async ([indicator, scopes]) =>
          describeApiScopes(await apis.find(indicator), scopes),
        ),
      );
      // A claim the scopes asked for release is described by the scope's words alone.
      const releasedByScopes = claimsReleasedBy(detailsOf.missingOIDCScope ?? []);
      const missing = [
        ...describeScopes(detailsOf.missingOIDCScope ?? []),
        ...describeClaims((detailsOf.missingOIDCClaims ?? []).filter((claim) => !releasedByScopes.has(claim))),
        ...apiPermissions.flat(),
      ];
      // Asked again for access the person already gave (prompt=consent, or a
      // native app, which is asked every time: RFC 8252 §8.6): the page lists
      // what the request asks for, not an empty list. Asked for more, it lists
      // the more, and then what the request asks for that was given before:
      // Allow then keeps that too (offline_access: after sign-outs as well),
      // and the person should see all they are agreeing to.
      const requested = await describeRequested(interaction.params);
      const permissions = missing.length > 0 ? missing : requested;
      const alreadyGiven = missing.length > 0 ? requested.filter((permission) => !missing.includes(permission)) : [];
      ctx.type = 'html';
      ctx.body = renderPage(page(ctx), 'consent', {
        uid: interaction.uid,
        clientName,
        userLabel: accountLabel(user),
        permissions: [...new Set(permissions)],
        alreadyGiven: [...new Set(alreadyGiven)],
        askedEveryTime: client.applicationType === 'native',
        // A consent with offline_access outlives sign-outs; the others end
        // with the sign-in they were given in (see honourSignOuts).
        keptAfterSignOut: String(interaction.params.scope ?? '').split(' ').includes('offline_access'),
        returnsTo: destinationOf(interaction.params.redirect_uri),
        logoUri: logoUrl(client.logoUri),
        switchAccount: switchesInPlace(interaction) ? anotherAccountLink(interaction) : signInAgain(provider, interaction.params),
        device: forDevice(interaction),
        clientUri: safeUrl(client.clientUri),
        policyUri: safeUrl(client.policyUri),
        tosUri: safeUrl(client.tosUri),
        restart: restartOf(interaction),
      });
      return;
    }
    throw new WrongPrompt(interaction.prompt.name);
  });

  /** What an authorization request asks for: its OpenID scopes and claims, and the scopes of each API it names. */
  const describeRequested = async (params: Record<string, unknown>): Promise<string[]> => {
    const scopes = typeof params.scope === 'string' ? params.scope.split(' ').filter(Boolean) : [];
    const releasedByScopes = claimsReleasedBy(scopes);
    const described = [
      ...describeScopes(scopes.filter((scope) => OIDC_SCOPES.includes(scope))),
      ...describeClaims(claimsRequestedIn(params).filter((claim) => !releasedByScopes.has(claim))),
    ];
    // resource may be repeated (RFC 8707): every API named is described, or
    // the page would hide what the person gives all but one of them.
    const resources = (Array.isArray(params.resource) ? params.resource : [params.resource]).filter((one): one is string => typeof one === 'string');
    for (const resource of new Set(resources)) {
      const api = await apis.find(resource);
      if (!api) continue;
      described.push(...describeApiScopes(api, scopes.filter((scope) => api.scopes.some((known) => known.name === scope))));
    }
    return described;
  };

  // The address a failed sign-in's page had before it redirected (0.5.12 and
  // earlier answered the POST with the page): opened again from history or a
  // bookmark, it leads back to the sign-in in progress rather than to a 405.
  router.get('/login', (ctx) => {
    ctx.status = 303;
    ctx.redirect(`/interaction/${encodeURIComponent(ctx.params.uid!)}`);
  });

  router.post('/login', async (ctx) => {
    const { interaction, client } = await details(ctx);
    // A device's, pushed or signed request's sign-in takes a sign-in at any of its steps ("Use another account", see switchesInPlace).
    if (interaction.prompt.name !== 'login' && !(switchesInPlace(interaction) && PAGES.has(interaction.prompt.name))) throw new WrongPrompt('login');
    const form = await readForm(ctx);
    const email = form.email?.trim() ?? '';
    const password = form.password ?? '';
    if (!email || !password) {
      metrics?.signIn('wrong_credentials');
      return refuseSignIn(ctx, interaction, email, { reason: 'incomplete' });
    }
    // The sign-in's time is taken before the password is read: a new password
    // set in a later second (its cut-off, see Accounts.isSignedIn) then
    // refuses a session signed in with the old one.
    const signedInAt = Math.floor(Date.now() / 1000);
    let checked: Awaited<ReturnType<typeof accounts.checkPassword>>;
    const deviceCookie = ctx.cookies.get(DEVICE_COOKIE);
    // One more statement, only for a browser that shows a device cookie.
    const browser = deviceCookie ? deviceCookies.recognise(deviceCookie, await accounts.credentialOf(email)) : undefined;
    const outcome = await signInThrottle.signIn(email, addresses.of(ctx), async () => (checked = await accounts.checkPassword(email, password))?.accountId, browser);
    if (outcome.refused) {
      metrics?.signIn('throttled');
      logger.warn('sign-in refused: too many failures', { ...requestField(ctx), interaction: interactionReference(interaction.uid), client: client.clientId, limits: outcome.limits.join(' '), retryAfter: outcome.retryAfter });
      return refuseSignIn(ctx, interaction, email, { reason: 'throttled', until: Math.floor(Date.now() / 1000) + outcome.retryAfter });
    }
    const { accountId } = outcome;
    if (!accountId) {
      metrics?.signIn('wrong_credentials');
      logger.info('login failed', { ...requestField(ctx), interaction: interactionReference(interaction.uid), client: client.clientId });
      return refuseSignIn(ctx, interaction, email, { reason: 'wrong_credentials' });
    }
    if (checked!.disabled) {
      metrics?.signIn('refused');
      logger.info('login refused: the user is disabled', { ...requestField(ctx), interaction: interactionReference(interaction.uid), account: accountId, client: client.clientId });
      return refuseSignIn(ctx, interaction, email, { reason: 'disabled' });
    }
    // OpenID Connect Core §3.1.2.1: a request whose id_token_hint names
    // someone else gets an error, not the code of whoever signed in; so does
    // one whose claims parameter asks for another subject (§5.5.1), which the
    // library would otherwise answer with the sign-in page again, for ever.
    // (With a session and prompt=none the library checks both itself.)
    const hinted = hintedSubject(interaction.params.id_token_hint);
    const required = subjectRequiredBy(interaction.params);
    const sub = subjects.of(accountId, sectorOf(client));
    if ((hinted !== undefined && hinted !== sub) || (required !== undefined && required !== sub)) {
      const named = hinted !== undefined && hinted !== sub ? 'id_token_hint names' : "claims parameter's sub value names";
      metrics?.signIn('refused');
      logger.info(`login refused: not the person the ${named}`, { ...requestField(ctx), interaction: interactionReference(interaction.uid) });
      const error = { error: 'login_required', error_description: `the End-User who signed in is not the one the ${named}` };
      await finish(ctx, interaction, error, { mergeWithLastSubmission: false });
      noteFinished(ctx, interaction, 'ended');
      return;
    }
    // `credential` (see Accounts.checkPassword) lets the resume check the password too (provider/sign-outs.ts).
    const login = { accountId, amr: ['pwd'], ts: signedInAt, credential: checked!.credential };
    // Signing in chose the account, where the app asked for that choice.
    const chosen = asksToSelectAccount(interaction.params) ? { [SELECT_ACCOUNT]: {} } : {};
    await finish(ctx, interaction, { login, ...chosen }, { mergeWithLastSubmission: false });
    // `user set-password` deletes the sign-ins in progress with the old
    // password, in its transaction: one saved after that is undone here.
    if (!(await accounts.passwordStands(accountId, checked!.credential))) {
      interaction.result = undefined;
      await saveForItsLifetime(interaction);
      metrics?.signIn('refused');
      logger.info('login failed: the password changed meanwhile', { ...requestField(ctx), interaction: interactionReference(interaction.uid) });
      return refuseSignIn(ctx, interaction, email, { reason: 'wrong_credentials' });
    }
    ctx.cookies.set(DEVICE_COOKIE, deviceCookies.issue(checked!.credential, browser), DEVICE_COOKIE_OPTIONS);
    noteFinished(ctx, interaction, 'signed_in');
    metrics?.signIn('success');
    logger.info('signed in', { ...requestField(ctx), interaction: interactionReference(interaction.uid), account: accountId, client: client.clientId });
  });

  // The second step (provider/second-factor-prompt.ts): a TOTP code of the
  // person the password signed in. Wrong codes count against the account and
  // this address (sign-in-throttle.ts, secondStep), so guessing the million
  // codes stops as guessing passwords does; never a browser's own count: the
  // device cookie came with the password, which a guesser here already has.
  router.post('/totp', async (ctx) => {
    const { interaction, client } = await details(ctx, SECOND_FACTOR);
    const form = await readForm(ctx);
    const { user, sessionUid } = await secondStepOf(interaction);
    // From the database (not the cache the prompt reads): `--totp off` since the page was shown is heeded at once.
    const state = await secondFactors.stateOf(user.id);
    if (!state.required) return passWithoutCode(ctx, interaction, user.id);
    const logged = { ...requestField(ctx), interaction: interactionReference(interaction.uid), account: user.id, client: client.clientId };
    const typed = form.code ?? '';
    if (!typed.trim()) return refuseCode(ctx, interaction, { reason: 'no_code' });
    // Said as such, and not counted by the throttle: waiting out its window would not help.
    if (state.locked) return refuseLocked(ctx, interaction, logged);
    const code = codeIn(typed);
    const at = Date.now();
    let taken = 'wrong' as CodeOutcome; // (set by the throttle's callback, which TypeScript does not follow)
    const outcome = await signInThrottle.secondStep(user.id, addresses.of(ctx), async () => {
      if (code !== undefined) taken = await secondFactors.take(user.id, sessionUid, code, at);
      return taken === 'taken' ? user.id : undefined;
    });
    if (outcome.refused) {
      metrics?.secondFactor('throttled');
      logger.warn('verification code refused: too many failures', { ...logged, limits: outcome.limits.join(' '), retryAfter: outcome.retryAfter });
      return refuseCode(ctx, interaction, { reason: 'throttled', until: Math.floor(Date.now() / 1000) + outcome.retryAfter });
    }
    if (taken === 'locked') return refuseLocked(ctx, interaction, logged);
    metrics?.secondFactor(taken);
    if (taken === 'wrong') {
      logger.info('verification code wrong or used before', logged);
      return refuseCode(ctx, interaction, { reason: 'wrong_code' });
    }
    // Signed in now: the time the app's max_age is held to (auth_time).
    await finishSecondStep(ctx, interaction, user.id, TWO_FACTOR_AMR, Math.floor(at / 1000));
    logger.info('verification code taken', logged);
  });

  /** A code refused because the step is locked (accounts/second-factors.ts, MAX_CONSECUTIVE_FAILURES): said, counted and logged. */
  const refuseLocked = (ctx: Context, interaction: Interaction, logged: Record<string, unknown>) => {
    metrics?.secondFactor('locked');
    logger.warn(`verification code refused: locked after ${MAX_CONSECUTIVE_FAILURES} wrong codes in a row, until user reset-totp`, logged);
    refuseCode(ctx, interaction, { reason: 'locked' });
  };

  /** The person the password signed in, and their session's uid, at the second step. */
  const secondStepOf = async (interaction: Interaction) => {
    const accountId = interaction.session?.accountId;
    const user = accountId ? await accounts.find(accountId) : undefined;
    const sessionUid = interaction.session?.uid;
    if (!user || !sessionUid) throw new errors.SessionNotFound('no account in session');
    return { user, sessionUid };
  };

  /**
   * Ends the second step, signed in with `amr` at `signedInAt` (epoch
   * seconds; the password's time if undefined), in the session the password
   * signed in. That session is looked up first, as any is (its password's
   * time against the cut-offs): signed out since (`user set-password`,
   * `revoke`), it is gone, and nobody is signed in. The resume looks it up
   * again.
   */
  const finishSecondStep = async (ctx: Context, interaction: Interaction, accountId: string, amr: string[], signedInAt?: number) => {
    const session = await host.current.Session.findByUid(interaction.session!.uid!);
    if (session?.accountId !== accountId) throw new errors.SessionNotFound('the session ended while the code was entered');
    await finish(ctx, interaction, { login: { accountId, amr, ts: signedInAt ?? session.loginTs } }, { mergeWithLastSubmission: true });
    noteFinished(ctx, interaction, 'signed_in');
  };

  /** The step, asked for when TOTP was required, with `--totp off` since: passed as the password left it. */
  const passWithoutCode = async (ctx: Context, interaction: Interaction, accountId: string) => {
    logger.info('verification code no longer required', { ...requestField(ctx), interaction: interactionReference(interaction.uid), account: accountId });
    await finishSecondStep(ctx, interaction, accountId, interaction.session?.amr ?? ['pwd']);
  };

  router.post('/select', async (ctx) => {
    const { interaction } = await details(ctx, SELECT_ACCOUNT);
    await readForm(ctx); // no fields: read for its limit (413), as every form here
    await finish(ctx, interaction, { [SELECT_ACCOUNT]: {} }, { mergeWithLastSubmission: true });
    noteFinished(ctx, interaction, 'signed_in');
  });

  router.post('/confirm', async (ctx) => {
    const { provider, interaction, client } = await details(ctx, 'consent');
    await readForm(ctx); // no fields: read for its limit (413), as every form here
    const accountId = interaction.session?.accountId;
    if (!accountId) throw new errors.SessionNotFound('no account in session');
    const clientId = String(interaction.params.client_id);
    const existing = interaction.grantId ? await provider.Grant.find(interaction.grantId) : undefined;
    // A new grant's id comes from the interaction, so that consent posted
    // more than once at once (a double click) saves one grant, not several of
    // which all but one would be left unused for their whole lifetime. A grant
    // id is no credential: nothing is gained by knowing it.
    const grant = existing ?? Object.assign(new provider.Grant({ accountId, clientId }), { jti: grantIdFor(interaction.uid) });
    const missing = interaction.prompt.details as {
      missingOIDCScope?: string[];
      missingOIDCClaims?: string[];
      missingResourceScopes?: Record<string, string[]>;
    };
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    // An API's scopes are saved only as far as they can still be given: an
    // API deleted, or a scope taken from the client, while the page was open
    // would otherwise be remembered as consented to, and given without asking
    // once the scope (or an API of that identifier) came back. The resume
    // then refuses the request (invalid_target, invalid_scope: see
    // resourceServerInfo), as it would a new one. An API made again under
    // the identifier since the request began is not the one the page
    // described: nothing of it is saved, and the resume asks again.
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
      const api = await apis.findHeldSince(indicator, interaction.iat ?? 0);
      const grantable = api ? grantableApiScopes(client, api.identifier, api.scopes.map((scope) => scope.name)) : [];
      const given = scopes.filter((scope) => grantable.includes(scope));
      if (given.length > 0) grant.addResourceScope(indicator, given.join(' '));
    }
    // A consent given now is remembered for GRANT_TTL from now, as the README
    // says, also when it is asked again (prompt=consent) or adds scopes: the
    // library would keep the grant's first expiry, and the tokens of this
    // consent, which live no longer than their grant, would die with it.
    if (existing) existing.exp = Math.floor(Date.now() / 1000) + config.ttl.grant;
    // (Given again where a sign-out elsewhere withdrew it, it is remembered again: artifact-writer.ts.)
    const grantId = await grant.save();
    // `user revoke` (or delete) deletes the account's grants and
    // interactions in its transaction: a grant saved after that would bring
    // the consent back. This interaction gone once the grant is saved, and a
    // revoke since it began (its second counts), mean one came meanwhile: the
    // grant is undone, and the person starts again (signed out). Gone without
    // a revoke is a double submit, or set-password (checked below).
    // (The revocation first: its read waits for a revoke still open.)
    if ((await accounts.revokedSince(accountId, interaction.iat ?? 0)) && !(await provider.Interaction.find(interaction.uid))) {
      await grant.destroy();
      logger.info('consent refused: the account was signed out meanwhile', { ...requestField(ctx), interaction: interactionReference(interaction.uid) });
      throw new EndedMeanwhile('the account was signed out while consent was given');
    }
    await finish(ctx, interaction, { consent: { grantId } }, { mergeWithLastSubmission: true });
    // A sign-out withdraws the consents its session gave, those still
    // waiting for their resume included (the adapter's signOut reads them
    // once the session's rows are ended). One whose reading came before this
    // save did not see it: the session is found ended here instead, and the
    // consent is withdrawn as the sign-out would have withdrawn it, and only
    // this sign-in's tokens end (not another browser's that uses the same
    // consent; nor one holding offline_access, which outlives a sign-out:
    // this request may have reused a consent given it elsewhere). The
    // provider's lookup, which also refuses a session of an account
    // set-password signed out since (honourSignOuts): set-password ends such
    // consents as a sign-out does.
    const sessionUid = interaction.session?.uid;
    const outlivesSignOut = grant.getOIDCScope().split(' ').includes('offline_access');
    if (sessionUid && !outlivesSignOut && !(await provider.Session.findByUid(sessionUid))) {
      await (provider.Grant.adapter as ArtifactAdapter).endAtSignOutOf(grantId, sessionUid);
      logger.info('consent refused: the session was signed out meanwhile', { ...requestField(ctx), interaction: interactionReference(interaction.uid) });
      throw new EndedMeanwhile('the session was signed out while consent was given');
    }
    noteFinished(ctx, interaction, 'allowed');
    metrics?.consent('allow');
  });

  router.post('/abort', async (ctx) => {
    const { interaction } = await details(ctx);
    await readForm(ctx); // no fields: read for its limit (413), as every form here
    // Deny after Allow on the same page (another tab, a change of mind
    // before the redirect): the last answer is the person's. A first consent
    // Allow saved would otherwise stay, and skip the page next time. Only
    // while nothing is issued under it: another sign-in of the person may
    // have been given it meanwhile (remembered consent), and used it. Its id
    // is the interaction's, whatever the result says (Allow may still be
    // saving it). Scopes Allow added to a consent given before stay: others
    // may be using them too.
    if (interaction.prompt.name === 'consent' && interaction.grantId !== grantIdFor(interaction.uid)) {
      await dropUnusedGrant(sql, grantIdFor(interaction.uid));
    }
    await finish(ctx, interaction, { error: 'access_denied', error_description: 'End-User denied the request' }, { mergeWithLastSubmission: false });
    // The login page's Cancel comes here too: only the consent page's is a decision.
    noteFinished(ctx, interaction, interaction.prompt.name === 'consent' ? 'declined' : 'cancelled');
    if (interaction.prompt.name === 'consent') metrics?.consent('deny');
  });

  return router;
}
