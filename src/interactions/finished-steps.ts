// Which steps of a sign-in this browser finished lately, for the page such a
// step's address shows when it is opened again.
//
// A step (the sign-in page, the consent page) ends with its answer, and its
// address with it. Back from the application opens that address again, and
// so does a form sent twice (a double click on Allow) whose first answer the
// browser dropped for the second's. Both were told "Your sign-in expired",
// which was not so, with no way on. A cookie sent to the interaction paths
// names the last few steps this browser finished, with their app and how
// they ended, so that the page says what happened and offers the way on. It
// changes only the words of a page and its link onward, never what a request
// may do. Signed, as the library's interaction cookies: a related site cannot
// forge one (it could plant one taken from another browser, which would say
// what that browser did). A sign-out on this browser forgets them.
import type { Context } from 'koa';
import type { SignInInProgress } from '../http/error-pages.js';
import { isolated, renderPage, type PageContext } from '../http/views.js';
import type { AuthorizationForm } from './restart.js';

/** How a step ended: as its page's answer was sent to the app. */
export type Outcome = 'signed_in' | 'allowed' | 'declined' | 'cancelled' | 'ended';

export interface FinishedStep {
  clientId: string;
  outcome: Outcome;
  /** A device's sign-in (RFC 8628): the app goes on on the device, not in this browser. */
  device: boolean;
}

/** uid, client_id, outcome, device (0 or 1), and until when it is told (seconds since the epoch). */
type Entry = [string, string, Outcome, 0 | 1, number];

const COOKIE = '_interaction_done';
const OPTIONS = { signed: true, httpOnly: true, sameSite: 'lax', path: '/interaction/', overwrite: true } as const;
/** Back reaches the consent page, then the sign-in page: a few steps cover a sign-in and then some. */
const KEPT = 4;
/** A cookie holds about 4 KiB; the oldest steps go first past this. */
const MAX_VALUE_LENGTH = 2048;
const OUTCOMES: ReadonlySet<string> = new Set<Outcome>(['signed_in', 'allowed', 'declined', 'cancelled', 'ended']);

export class FinishedSteps {
  /** `toldFor`: how long, in seconds, a finished step's page says so (INTERACTION_TTL: as long as a step lasts unfinished). */
  constructor(private readonly toldFor: number) {}

  /** Notes interaction `uid` as finished by this browser, with `step`'s app and outcome. */
  note(ctx: Context, uid: string, step: FinishedStep): void {
    const now = Math.floor(Date.now() / 1000);
    const until = now + this.toldFor;
    const latest: Entry = [uid, step.clientId, step.outcome, step.device ? 1 : 0, until];
    let entries = [...this.entries(ctx, now).filter(([named]) => named !== uid), latest].slice(-KEPT);
    let value = encode(entries);
    while (value.length > MAX_VALUE_LENGTH && entries.length > 1) value = encode((entries = entries.slice(1)));
    if (value.length <= MAX_VALUE_LENGTH) ctx.cookies.set(COOKIE, value, { ...OPTIONS, maxAge: this.toldFor * 1000 });
  }

  /** The step `uid` if this browser finished it lately. */
  of(ctx: Context, uid: string): FinishedStep | undefined {
    const entry = this.entries(ctx, Math.floor(Date.now() / 1000)).find(([named]) => named === uid);
    return entry && { clientId: entry[1], outcome: entry[2], device: entry[3] === 1 };
  }

  /** The cookie's unexpired entries; none where it is missing, unsigned or not ours. */
  private entries(ctx: Context, now: number): Entry[] {
    const value = ctx.cookies.get(COOKIE, { signed: true });
    if (!value) return [];
    let parsed: unknown;
    try {
      parsed = JSON.parse(Buffer.from(value, 'base64url').toString('utf8'));
    } catch {
      return [];
    }
    return Array.isArray(parsed) ? parsed.filter((entry): entry is Entry => isEntry(entry) && entry[4] > now) : [];
  }
}

/**
 * Forgets the steps this browser finished: at a sign-out, whose person they
 * were. (Asked from a page outside the interaction paths, which does not see
 * the cookie: it is cleared whether it is there or not.)
 */
export function forgetFinishedSteps(ctx: Context): void {
  ctx.cookies.set(COOKIE, null, OPTIONS);
}

const encode = (entries: Entry[]) => Buffer.from(JSON.stringify(entries)).toString('base64url');

function isEntry(value: unknown): value is Entry {
  return Array.isArray(value) && value.length === 5 && typeof value[0] === 'string' && typeof value[1] === 'string'
    && typeof value[2] === 'string' && OUTCOMES.has(value[2]) && (value[3] === 0 || value[3] === 1) && typeof value[4] === 'number';
}

const TOLD: Record<Outcome, (app: string) => { heading: string; message: string }> = {
  signed_in: (app) => ({ heading: 'You already signed in', message: `You signed in to ${app} from this page already.` }),
  allowed: (app) => ({ heading: 'You already allowed this', message: `You allowed ${app} from this page already.` }),
  declined: (app) => ({ heading: 'You already declined this', message: `You declined what ${app} asked for from this page already.` }),
  cancelled: (app) => ({ heading: 'You already cancelled this sign-in', message: `You cancelled signing in to ${app} from this page already.` }),
  ended: (app) => ({ heading: 'This sign-in has ended', message: `This sign-in to ${app} has ended, and ${app} was told why.` }),
};

export interface FinishedStepPage {
  step: FinishedStep;
  clientName: string;
  /** The app's home page, where it registered one a link may lead to (http/safe-url.ts). */
  homePage?: string;
  /** Another step of a sign-in still going on in this browser (current-sign-in.ts). */
  inProgress?: SignInInProgress;
  /** The request again, where the form sent again carried it and the app may not have had its answer (a second click). */
  startAgain?: AuthorizationForm;
}

/** The page for a step this browser finished, opened again: what happened, and the way on. */
export function renderFinishedStep(ctx: Context, page: PageContext, { step, clientName, homePage, inProgress, startAgain }: FinishedStepPage): void {
  const app = isolated(clientName);
  const { heading, message } = TOLD[step.outcome](app);
  // Only an answer the app was to go on with is worth sending again.
  const goesOn = step.outcome === 'signed_in' || step.outcome === 'allowed';
  ctx.type = 'html';
  ctx.set('Cache-Control', 'no-store');
  ctx.body = renderPage(page, 'finished', {
    heading,
    message,
    app,
    inProgress,
    device: step.device,
    // A device goes on once its consent is given; a sign-in alone may yet be declined.
    deviceGoesOn: step.device && step.outcome === 'allowed',
    deviceTold: step.device && !goesOn,
    startAgain: goesOn && !step.device ? startAgain : undefined,
    homePage,
  });
}
