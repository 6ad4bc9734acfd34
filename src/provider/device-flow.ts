// The OAuth 2.0 Device Authorization Grant (RFC 8628): an app on a device
// without a browser, or without a keyboard (a TV, a command-line tool), asks
// for a code at /device/auth and shows the person a short user code; the
// person enters it at /device in any browser, signs in and consents as for any
// app, and the device, polling the token endpoint, gets its tokens.
//
// The library runs the flow; what it leaves to the host is here: the pages
// (in our layout, not the library's), keeping user codes out of the database
// in the plain, limiting how many codes one can guess at, and how often a
// device polls.
import type { AdapterPayload, Configuration, KoaContextWithOIDC, Provider } from 'oidc-provider';
import { errors } from 'oidc-provider';
import type Koa from 'koa';
import type { Accounts } from '../accounts/accounts.js';
import type { SignInThrottle } from '../accounts/sign-in-throttle.js';
import { accountLabel } from '../display-text.js';
import { faultReference, noteShownError } from '../http/error-pages.js';
import { rewriteFormForTheLibrary } from '../http/form-body.js';
import { routePattern } from '../http/methods.js';
import { requestField } from '../http/request-id.js';
import { renderPage, type PageContext } from '../http/views.js';
import type { Logger } from '../logger.js';
import { answerBodyTooLarge, isBodyTooLarge } from './body-limit.js';
import { displayName } from './client-model.js';

type DeviceFlowFeature = NonNullable<NonNullable<Configuration['features']>['deviceFlow']>;

/** Refused at /device: the client address entered too many wrong codes (RFC 8628 §5.1). */
export class TooManyWrongCodes extends errors.OIDCProviderError {
  constructor(readonly retryAfter: number) {
    super(429, 'too_many_attempts');
    this.error_description = 'too many wrong user codes were entered from this network';
  }
}

/**
 * How a DeviceCode's user code is kept and found (provider/adapter.ts). A
 * user code is eight letters of twenty (about 35 bits, RFC 8628 §6.1):
 * stored in the plain, or as a plain hash, a database dump would give every
 * live code away at once, so the row keeps a keyed digest only. And since
 * anyone can type codes at /device, wrong ones are counted per client
 * address, against the sign-in throttle's per-address limit.
 */
export class UserCodes {
  /** `digests`: a code's keyed digest under each encryption key, the current one's first (SecretSealer.keyedDigests). */
  constructor(
    readonly digests: (normalized: string) => string[],
    private readonly throttle: SignInThrottle,
    private readonly logger: Logger,
  ) {}

  /** The digest a code is stored under: the current encryption key's. */
  digest(normalized: string): string {
    return this.digests(normalized)[0]!;
  }

  /** `find` (the stored code, or undefined) for a code entered in `request`, counted by its address; refused with TooManyWrongCodes past the limit. */
  async enter<T>(request: KoaContextWithOIDC | undefined, find: () => Promise<T | undefined>): Promise<T | undefined> {
    const outcome = await this.throttle.enterUserCode(request?.ip ?? '', find);
    if (outcome.refused) {
      // As a refused sign-in is: someone may be guessing (no address: the
      // count's key is a digest, and the address alone proves nothing).
      this.logger.warn('user code refused: too many wrong codes', { ...requestField(request), retryAfter: outcome.retryAfter });
      throw new TooManyWrongCodes(outcome.retryAfter);
    }
    return outcome.found;
  }
}

/** How long a device waits between polls, in seconds: the device authorization response's `interval` (RFC 8628 §3.2; also what a client told nothing waits). */
export const POLLING_INTERVAL = 5;

/**
 * Paces a device's polls of the token endpoint (RFC 8628 §3.5): a poll that
 * would be told authorization_pending, sooner than the interval after the
 * last such poll, is told slow_down instead (and is to wait 5 s longer from
 * then on). The last poll is a row (`claim`, one statement that stores
 * it unless a live one is there), so every instance sees it. A second of
 * slack for the network's jitter: a client that waits the interval after
 * each answer, as openid-client does, is never told to slow down.
 */
export class DevicePolling {
  constructor(private readonly claim: (id: string, payload: AdapterPayload, expiresIn: number) => Promise<boolean>) {}

  /** Refuses with slow_down a poll of `deviceCode` (its `code`, live until `expiresAt`) by `client` that came too soon. */
  async pace(deviceCode: string, code: AdapterPayload, expiresAt: Date | null, client: string | undefined): Promise<void> {
    // Only a code still waiting for the person, and only when its own client
    // polls: another client presenting it is told invalid_grant by the
    // library, and must not use up the device's turn.
    if (code.accountId || code.error || code.clientId !== client) return;
    if (expiresAt && expiresAt.getTime() <= Date.now()) return;
    if (!(await this.claim(`poll of ${deviceCode}`, { iat: Math.floor(Date.now() / 1000) }, POLLING_INTERVAL - 1))) {
      throw new errors.SlowDown();
    }
  }
}

/**
 * A browser with no session of ours (cookies blocked, or its session ended
 * while the page was open) that sends the code form or opens a sign-in's
 * page under /device: the library's error handler gives the page it renders
 * a new form secret in the session, after its session middleware decided
 * that the new, untouched session need not be saved, and its last step then
 * calls persist() on a session never stored, which throws (a 500). A new
 * session at these routes is marked touched from the start, so that the
 * session middleware stores it and sets its cookie, as it does when the code
 * page is opened: the page rendered then works when sent again.
 */
export function keepNewSessionsOfDevicePages(provider: Provider): void {
  type SessionGet = (ctx: KoaContextWithOIDC) => Promise<{ new?: boolean; touched?: boolean }>;
  const Session = provider.Session as unknown as { get: SessionGet };
  const get = Session.get.bind(Session);
  Session.get = async (ctx) => {
    const session = await get(ctx);
    const route = ctx.oidc?.route;
    if (session.new && (route === 'code_verification' || route === 'device_resume')) session.touched = true;
    return session;
  };
}

/** The library's words for a form whose secret is missing or wrong (lib/shared/xsrf.js, lib/actions/code_verification.js). */
const FORM_SECRET_ERRORS = new Set(['xsrf token invalid', 'could not find device form details']);

/** Once the code is confirmed, it is used up: what went wrong after that is ended only by starting again on the device. */
const START_AGAIN = 'This sign-in has ended. If your device did not connect, start again on it to get a new code.';

/**
 * What the code entry page says about the error the library re-renders it
 * with in `ctx`, undefined for none; `codeWrong` where the code entered (or
 * left out) is what was wrong, for the field to be marked invalid.
 */
function problemOf(error: unknown, ctx: KoaContextWithOIDC): { problem: string; cancelled?: true; codeWrong?: true } | undefined {
  if (!error) return undefined;
  if (error instanceof TooManyWrongCodes) {
    const minutes = Math.max(1, Math.ceil(error.retryAfter / 60));
    return { problem: `Too many wrong codes were entered from your network. Try again in ${minutes === 1 ? 'a minute' : `${minutes} minutes`}.` };
  }
  // The library's own errors for this page (lib/helpers/re_render_errors.js), by name: it exports none of them.
  const name = (error as Error).name;
  if (name === 'AbortedError') {
    // Cancel at the code, or Deny at consent: the person chose not to connect it.
    return { problem: 'You chose not to connect it, so the device cannot use your account. To connect it, start again on the device.', cancelled: true };
  }
  // After the code was confirmed (its sign-in expired, the app's
  // registration changed, the page of a connected device reloaded), or a
  // confirmation that failed after the code was marked: the code is used up.
  const confirmed = ctx.oidc.route === 'device_resume' || (ctx.oidc.entities.DeviceCode as { inFlight?: boolean } | undefined)?.inFlight === true;
  if (confirmed) return { problem: START_AGAIN };
  switch (name) {
    case 'NoCodeError':
      return { problem: 'Enter the code your device shows.', codeWrong: true };
    case 'NotFoundError':
      return { problem: 'That code is not right. Check it against the one your device shows and try again.', codeWrong: true };
    case 'ExpiredError':
      return { problem: 'That code has expired. Start again on your device to get a new one.', codeWrong: true };
    case 'AlreadyUsedError':
      return { problem: 'That code has been used already. Start again on your device to get a new one.', codeWrong: true };
  }
  if (isBodyTooLarge(error)) return { problem: 'What you sent is too long: enter only the code your device shows.', codeWrong: true };
  // The page's secret missing or wrong: a page kept open past its session, or from another browser.
  if (error instanceof errors.InvalidRequest && FORM_SECRET_ERRORS.has(String(error.error_description))) {
    return { problem: 'This page was open too long, or in another window. Enter the code again.' };
  }
  if (error instanceof errors.InvalidRequest) return { problem: 'That code could not be read. Enter it as your device shows it.', codeWrong: true };
  return { problem: 'The code could not be checked. Try again in a moment.' };
}

/** The library's page hooks, rendering views/device.eta. */
export function deviceFlowPages(
  page: (ctx: KoaContextWithOIDC) => PageContext,
  accounts: Pick<Accounts, 'find'>,
): Pick<DeviceFlowFeature, 'userCodeInputSource' | 'userCodeConfirmSource' | 'successSource'> {
  const answer = (ctx: KoaContextWithOIDC, data: Record<string, unknown>) => {
    ctx.type = 'html';
    ctx.set('Cache-Control', 'no-store');
    ctx.body = renderPage(page(ctx), 'device', { action: ctx.oidc.urlFor('code_verification'), ...data });
  };
  // The forms' secret is the one the library keeps in the session for this
  // page (its own form carries the same), checked when the form comes back.
  const secretOf = (ctx: KoaContextWithOIDC) => (ctx.oidc.session?.state as { secret?: string } | undefined)?.secret;
  return {
    userCodeInputSource: async (ctx, _form, out, error) => {
      const problem = problemOf(error, ctx);
      if (out?.error) noteShownError(ctx, out.error);
      // A fault of ours, as on any error page: the reference its log line names.
      const reference = faultReference(ctx, out?.error, error);
      if (error instanceof TooManyWrongCodes) ctx.set('Retry-After', String(error.retryAfter));
      if (isBodyTooLarge(error)) answerBodyTooLarge(ctx);
      // A wrong code stays in the field, to be corrected; the library passes it on its error.
      const typed = (error as { userCode?: unknown } | undefined)?.userCode;
      answer(ctx, { step: 'enter', xsrf: secretOf(ctx), userCode: typeof typed === 'string' ? typed : undefined, reference, ...problem });
    },
    userCodeConfirmSource: async (ctx, _form, client, _deviceInfo, userCode) => {
      // Whom the device will be signed in as, when someone is signed in here
      // already: Continue may then connect it without another page (a
      // consent given before), so the person sees it before they choose.
      const accountId = ctx.oidc.session?.accountId;
      const signedIn = accountId ? await accounts.find(accountId) : undefined;
      answer(ctx, { step: 'confirm', xsrf: secretOf(ctx), userCode, clientName: displayName(client), signedInAs: signedIn && accountLabel(signedIn) });
    },
    successSource: async (ctx) => {
      answer(ctx, { step: 'done', clientName: ctx.oidc.client ? displayName(ctx.oidc.client) : undefined });
    },
  };
}

/**
 * A user code as people type it, before the library reads it (RFC 8628 §6.1:
 * be lenient with what is typed). The library upper-cases ASCII letters and
 * drops every other character, so a code typed in full-width letters, as a
 * Chinese or Japanese input method types in its full-width mode
 * (ＨＶＬＴ－ＫＴＪＸ), came to nothing: "That code is not right". Folded
 * (NFKC) in the query of `/device?user_code=…` and in the posted form, which
 * the library reads itself and checks against its Content-Length: a folded
 * code is never longer (one folding to more is left as typed), and the form
 * is made up to its length with empty `&` fields, which parse to nothing.
 */
export function foldUserCodes(provider: Provider): Koa.Middleware {
  const route = routePattern(provider, 'code_verification');
  return (ctx, next) => {
    if (!route.test(ctx.path)) return next();
    if (ctx.method === 'GET' && ctx.querystring.includes('user_code=')) {
      ctx.querystring = foldedUserCode(ctx.querystring);
    } else if (ctx.method === 'POST' && ctx.is('application/x-www-form-urlencoded')) {
      rewriteFormForTheLibrary(ctx.req, FOLDED_FORM_BYTES, (form) => foldedUserCode(form).padEnd(form.length, '&'));
    }
    return next();
  };
}

/** The most of a posted form looked into: the code page's is a few hundred bytes. */
const FOLDED_FORM_BYTES = 8 * 1024;


function foldedUserCode(form: string): string {
  const field = /(^|&)user_code=([^&]*)/.exec(form);
  if (!field) return form;
  const sent = field[2]!;
  let typed: string;
  try {
    typed = decodeURIComponent(sent.replace(/\+/g, ' '));
  } catch {
    return form;
  }
  const folded = encodeURIComponent(typed.normalize('NFKC'));
  if (folded.length > sent.length) return form;
  const start = field.index + field[1]!.length + 'user_code='.length;
  return `${form.slice(0, start)}${folded}${form.slice(start + sent.length)}`;
}
