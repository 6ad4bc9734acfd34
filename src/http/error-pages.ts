// What a person sees when a browser request fails: what happened and what to do,
// in words, with a short reference instead of internals.
import type { Context } from 'koa';
import type { AuthorizationForm } from '../interactions/restart.js';
import { databaseTrouble, UNAVAILABLE_RETRY_AFTER } from '../persistence/unavailable.js';
import { ACCOUNT_PATH as ACCOUNT_PAGE } from '../self-service/account-client.js';
import { errorReference } from './request-id.js';
import { isolated, renderPage, type PageContext } from './views.js';

interface Explanation {
  heading: string;
  message: string;
  advice: string;
}

const START_AGAIN = 'Go back to the application and start signing in again.';

/** The library's words for a post_logout_redirect_uri the client did not register (lib/actions/end_session.js). */
const UNREGISTERED_RETURN = 'post_logout_redirect_uri not registered';

const explanations: Record<string, Explanation> = {
  invalid_client: {
    heading: 'Unknown application',
    message: 'The application that sent you here is not registered.',
    advice: 'Contact the application\'s developer; there is nothing you can do from here.',
  },
  invalid_redirect_uri: {
    heading: 'Unexpected return address',
    message: 'The application asked to send you back to an address it did not register, so we stopped here to keep you safe.',
    advice: 'Contact the application\'s developer.',
  },
  registration_changed: {
    heading: 'The application changed its settings',
    message: 'While you were signing in, the application that sent you here changed its registration: the address it asked to send you back to is no longer one of its own, so we stopped here to keep you safe.',
    advice: START_AGAIN,
  },
  session_not_found: {
    heading: 'Your sign-in expired',
    message: 'We could not find your sign-in in progress: it is already finished (if you went back a page, go forward again), you signed out meanwhile (in another tab, say), it took too long, or your browser did not keep our cookie.',
    advice: START_AGAIN,
  },
  cookies_blocked: {
    heading: 'Your browser did not keep our cookie',
    message: 'Signing in needs a cookie from this site, and your browser sent none back: it blocks cookies here (a setting, an extension, or a private window that refuses them), or this address was opened in another browser than the one you started in.',
    advice: 'Allow cookies for this site, then go back to the application and start signing in again.',
  },
  invalid_request: {
    heading: 'The request could not be understood',
    message: 'The application sent an incomplete or malformed request.',
    advice: START_AGAIN,
  },
  form_too_large: {
    heading: 'What you sent is too long',
    message: 'The form held more than we accept: none of our forms needs that much.',
    advice: START_AGAIN,
  },
  cross_site_form: {
    heading: 'This form did not come from our page',
    message: 'Another site sent this form in your name, so we stopped here to keep you safe.',
    advice: START_AGAIN,
  },
  // The account page's (self-service/account-pages.ts): each leads back to it.
  account_cross_site_form: {
    heading: 'This form did not come from our page',
    message: 'Another site sent this form in your name, so we stopped here to keep you safe. Nothing was changed.',
    advice: 'Make the change on your account page itself.',
  },
  account_form_too_large: {
    heading: 'What you sent is too long',
    message: 'The form held more than we accept: none of our forms needs that much. Nothing was changed.',
    advice: 'Go back to your account page and try again.',
  },
  account_form_incomplete: {
    heading: 'The form was incomplete',
    message: 'The form did not say what to change, so nothing was changed.',
    advice: 'Go back to your account page and try again.',
  },
  account_page_stale: {
    heading: 'This account page is out of date',
    message: 'It belongs to an earlier sign-in in this browser, so nothing was changed.',
    advice: 'Open your account page again and make the change there.',
  },
  account_signed_out: {
    heading: 'You are signed out',
    message: 'You signed out (in another tab, say), or your sign-in ended, so nothing was changed.',
    advice: 'Sign in again on your account page and make the change there.',
  },
  account_sign_in_stale: {
    heading: 'This sign-in link is out of date',
    message: 'It belongs to a sign-in to your account page that is over (the link was used already, or opened again from your history), or another site sent you here.',
    advice: 'Open your account page again.',
  },
  account_method_not_allowed: {
    heading: 'This page cannot be opened this way',
    message: 'This address takes only the forms of your account page, not a link or bookmark.',
    advice: 'Open your account page itself.',
  },
  not_found: {
    heading: 'Page not found',
    message: 'There is nothing at this address.',
    // Mostly a mistyped or cut address: no sign-in was under way to start again.
    advice: 'Check the address, or go back to the application you came from.',
  },
  method_not_allowed: {
    heading: 'This page cannot be opened this way',
    message: 'This address takes only the forms of the sign-in and sign-out pages, not a link or bookmark.',
    advice: START_AGAIN,
  },
  temporarily_unavailable: {
    heading: 'We cannot sign you in right now',
    message: 'Part of our service is not answering at the moment.',
    advice: 'Try again in a minute.',
  },
  server_error: {
    heading: 'Something went wrong on our side',
    message: 'We could not complete your request.',
    advice: 'Try again in a moment. If it keeps happening, contact the administrator with the reference below.',
  },
};

/**
 * A sign-out confirmation whose form secret is not the session's, by the
 * library's words (shared/xsrf.js): replaced by a newer page, or none pending.
 */
const STALE_SIGN_OUT_PAGE = new Map([
  ['xsrf token invalid', 'This sign-out page was opened again, in another tab or window, and only the newest one can sign you out.'],
  ['could not find logout details', 'This sign-out page has expired, or you already signed out (in another tab or window, say).'],
]);

/** method_not_allowed at an address that a link opens (sent a form, or another method). */
const OPENED_BY_LINKS: Explanation = {
  ...explanations.method_not_allowed!,
  message: 'This address is opened by following a link, not by sending a form to it.',
};

export interface ErrorOut {
  error: string;
  error_description?: string;
}

/** The error each request's page showed, for the metrics (see shownError). */
const shownErrors = new WeakMap<object, string>();

/** The error code of the error page rendered for this request, if one was. */
export function shownError(ctx: object): string | undefined {
  return shownErrors.get(ctx);
}

/** Records the error a page of another kind showed (the device code entry page, provider/device-flow.ts), for the metrics. */
export function noteShownError(ctx: object, code: string): void {
  shownErrors.set(ctx, code);
}

/**
 * A sign-out request that failed (a stale id_token_hint, a return address the
 * app did not register): whether the person is still signed in, and where a
 * sign-out of their own starts (the confirmation page, with its form secret).
 */
export interface FailedSignOut {
  signedIn: boolean;
  signOutUrl: string;
}

/** An error page's way on: a link, drawn as the primary button. */
interface Action {
  url: string;
  label: string;
}

/**
 * A step of a sign-in in progress in this browser, other than the one asked
 * for (see interactions/current-sign-in.ts): where it goes on, and for which app.
 */
export interface SignInInProgress {
  url: string;
  clientName: string;
}

/** The app whose request failed, where it registered a home page a link may lead to (safe-url.ts). */
export interface Application {
  name: string;
  homePage: string;
}

export interface ErrorPageExtras {
  /** The short reference of a server error, also in the log. */
  reference?: string;
  signOut?: FailedSignOut;
  inProgress?: SignInInProgress;
  application?: Application;
  /** The form that starts an expired sign-in again (interactions/restart.ts). */
  restart?: { form: AuthorizationForm; clientName: string };
}

/**
 * The reference a page shows for a server error, the one its log line names
 * (provider.ts); none for another error, nor for the database away, which is
 * a 503 to retry, not a fault of ours to report.
 */
export function faultReference(ctx: { state: { errorReference?: unknown } }, code: string | undefined, error: unknown): string | undefined {
  return code === 'server_error' && !databaseTrouble(error) ? errorReference(ctx) : undefined;
}

/** Renders the error page for an OAuth-style error, as HTML on ctx. */
export function renderErrorPage(ctx: Context, page: PageContext, out: ErrorOut, { reference, signOut, inProgress, application, restart }: ErrorPageExtras = {}): void {
  const known = explanations[out.error];
  let explanation = known ?? {
    heading: 'We could not complete your request',
    message: out.error_description ?? out.error,
    advice: START_AGAIN,
  };
  // At the logout endpoint an unknown client is mostly a stale or foreign
  // id_token_hint (one of another server, or of a deleted app).
  if (signOut && out.error === 'invalid_client') {
    explanation = { ...explanation, message: 'We could not tell which application sent you here to sign out: it named an application, or a sign-in, that we do not know.' };
  }
  // A sign-out page's form holds a secret that the next load of the page
  // replaces: one opened twice (a double click on the app's sign-out link,
  // another tab) signs out only from the newer one. Nothing the app did.
  const stale = signOut && out.error === 'invalid_request' ? STALE_SIGN_OUT_PAGE.get(out.error_description ?? '') : undefined;
  if (stale) explanation = { ...explanation, heading: 'This sign-out page is out of date', message: stale };
  // The app's mistake at sign-out that /auth names as such: an address to return to that it did not register.
  if (signOut && out.error === 'invalid_request' && out.error_description === UNREGISTERED_RETURN) {
    explanation = { ...explanations.invalid_redirect_uri!, message: 'The application asked to send you back, once signed out, to an address it did not register, so we stopped here to keep you safe.' };
  }
  // The method was wrong for the address: a page for links, or one that takes only our forms (the account page's its own).
  if (out.error === 'method_not_allowed' && /\bGET\b/.test(ctx.response.get('Allow'))) explanation = OPENED_BY_LINKS;
  else if (out.error === 'method_not_allowed' && ACCOUNT_PAGE.test(ctx.path)) explanation = explanations.account_method_not_allowed!;
  let action: Action | undefined;
  let startAgain: AuthorizationForm | undefined;
  // Nobody should walk away from a shared computer believing they signed out,
  // nor be left without a way to: the app's request failed, theirs need not.
  if (signOut?.signedIn) {
    explanation = {
      heading: 'We could not sign you out',
      message: `${explanation.message} You are still signed in.`,
      advice: `To sign out of ${isolated(page.issuerName)} on this device anyway, use the button below.`,
    };
    action = { url: signOut.signOutUrl, label: 'Sign out' };
  } else if (signOut) {
    explanation = { ...explanation, advice: `You are not signed in to ${isolated(page.issuerName)} on this device: there is nothing to sign out of.` };
  } else if (inProgress && out.error === 'session_not_found') {
    // Mostly Back from the next step: the page went back to a step already
    // done, whose sign-in goes on under another address.
    explanation = {
      heading: 'This sign-in page is out of date',
      message: `It belongs to a step of signing in that is already done or has expired. A sign-in to ${isolated(inProgress.clientName)} is still in progress in this browser.`,
      advice: 'Continue it with the button below, or go back to the application and start again.',
    };
    action = { url: inProgress.url, label: 'Continue signing in' };
  } else if (restart && out.error === 'session_not_found') {
    // The page was left open past the sign-in's time, mostly: its form
    // carried the request, which starts again as the application would.
    explanation = { ...explanation, advice: `Start signing in to ${isolated(restart.clientName)} again with the button below.` };
    startAgain = restart.form;
  } else if (inProgress && out.error === 'form_too_large') {
    // The form was refused, not the sign-in: it goes on.
    explanation = { ...explanation, advice: 'Go back to the form and try again.' };
    action = { url: inProgress.url, label: 'Back to signing in' };
  }
  // The account page's errors lead back to it.
  if (!action && ACCOUNT_PAGE.test(ctx.path)) action = { url: '/account', label: 'Open your account page' };
  // Told to go back to the application, a person is given the way there
  // (not where the advice is to try again).
  if (!action && application && out.error !== 'server_error') {
    action = { url: application.homePage, label: `Go to ${isolated(application.name)}` };
    if (explanation.advice === START_AGAIN) explanation = { ...explanation, advice: `Go back to ${isolated(application.name)} and start signing in again.` };
  }
  // Our own descriptions are safe to show (escaped); internal errors are not.
  // They are the protocol's words, for the app's developer: beside the
  // explanation, not in the alert a screen reader announces.
  const details = known && out.error !== 'server_error' ? out.error_description : undefined;
  showExplanation(ctx, page, out.error, explanation, { details, reference, action, startAgain });
}

function showExplanation(ctx: Context, page: PageContext, code: string, explanation: Explanation, extra: { details?: string; reference?: string; action?: Action; startAgain?: AuthorizationForm } = {}): void {
  shownErrors.set(ctx, code);
  ctx.type = 'html';
  ctx.set('Cache-Control', 'no-store');
  ctx.body = renderPage(page, 'error', { ...explanation, ...extra });
}

/**
 * Someone signing out whom the database fails must not walk away from a
 * shared computer believing they did (the sign-out page and its confirmation;
 * /session/end/success comes after the sign-out, and is any other page).
 */
const SIGNING_OUT = /^\/session\/end(\/confirm)?\/?$/i;
const NOT_SIGNED_OUT: Explanation = {
  heading: 'We cannot sign you out right now',
  message: 'Part of our service is not answering at the moment, so we could not finish signing you out: you may still be signed in.',
  advice: 'Try again in a minute.',
};

// The account page's (self-service/account-pages.ts).
const ACCOUNT_UNAVAILABLE: Explanation = {
  heading: 'We cannot open your account page right now',
  message: 'Part of our service is not answering at the moment.',
  advice: 'Try again in a minute.',
};
/**
 * A change the account page's form asked for is made in one transaction: one
 * the database failed was not made, or was made whole (an answer lost after
 * the commit), which the account page shows once it opens again.
 */
const CHANGE_NOT_MADE: Explanation = {
  heading: 'We could not make your change right now',
  message: 'Part of our service is not answering at the moment, so your change was most likely not made.',
  advice: 'Try again in a minute: your account page then shows what is in effect.',
};

/** The page for a request the database could not serve (see persistence/unavailable.ts): 503, try again. */
export function renderUnavailablePage(ctx: Context, page: PageContext): void {
  ctx.status = 503;
  ctx.set('Retry-After', UNAVAILABLE_RETRY_AFTER);
  const retry = retryOf(ctx);
  const action = retry ? { url: retry, label: 'Try again' } : undefined;
  if (SIGNING_OUT.test(ctx.path)) showExplanation(ctx, page, 'temporarily_unavailable', NOT_SIGNED_OUT, { action });
  else if (ACCOUNT_PAGE.test(ctx.path)) showExplanation(ctx, page, 'temporarily_unavailable', ctx.method === 'POST' ? CHANGE_NOT_MADE : ACCOUNT_UNAVAILABLE, { action: action ?? { url: '/account', label: 'Back to your account page' } });
  else showExplanation(ctx, page, 'temporarily_unavailable', explanations.temporarily_unavailable!, { action });
}

/**
 * Where trying again starts: the same address for a link followed (GET), the
 * sign-in in progress for a form sent there (its page again, not the form
 * resent: that would send the password again), the sign-out page for a
 * sign-out confirmed. A path of ours only: never `//host`, which a browser
 * reads as another site.
 */
function retryOf(ctx: Context): string | undefined {
  const url = ctx.method === 'GET' ? ctx.originalUrl : (INTERACTION.exec(ctx.path)?.[0] ?? (SIGNING_OUT.test(ctx.path) ? '/session/end' : undefined));
  return url?.startsWith('/') && !url.startsWith('//') ? url : undefined;
}

const INTERACTION = /^\/interaction\/[\w-]+/;
