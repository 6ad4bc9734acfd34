// Which sign-in in progress a browser is in, for the page an ended step shows.
//
// Each step of a sign-in (the sign-in page, the consent page) is an
// interaction of its own, whose uid is in the page's address and which ends
// when the step is done. Back from the consent page therefore opens the
// sign-in page's address again, whose interaction has ended, and nothing in
// that request names the one that goes on: the library's cookies are scoped
// to each interaction's path, and uids are stored only hashed. So a cookie
// sent to every interaction path names the step whose page this browser was
// shown last (in any tab), and the page of an ended step offers the way on.
// A pointer, not a credential: it is offered only while the interaction it
// names is live and bound to this browser (browser-binding.ts), which a
// related site that planted a pointer cannot arrange, and opening it is
// checked as ever. Signed and Lax, as the library's interaction cookies.
import type { Context } from 'koa';
import type Provider from 'oidc-provider';
import type { SignInInProgress } from '../http/error-pages.js';
import type { Logger } from '../logger.js';
import { requestField } from '../http/request-id.js';
import type { Sql } from '../persistence/database.js';
import { mayUseInteraction } from '../provider/adapter.js';
import type { BrowserBinding } from '../provider/browser-binding.js';
import { displayName } from '../provider/client-model.js';

const COOKIE = '_interaction_current';
const OPTIONS = { signed: true, httpOnly: true, sameSite: 'lax', path: '/interaction/', overwrite: true } as const;
/** The library's uids (nanoid), with room to spare; anything else in the cookie is ignored. */
const UID = /^[A-Za-z0-9_-]{1,64}$/;

export class CurrentSignIn {
  constructor(
    private readonly sql: Sql,
    private readonly browsers: BrowserBinding,
    private readonly logger: Logger,
    /** The prompts that have a page: a step of another leads nowhere. */
    private readonly pages: ReadonlySet<string>,
  ) {}

  /** Names interaction `uid`, whose page is being shown, as this browser's current step until it expires (`exp`, seconds). */
  mark(ctx: Context, uid: string, exp: number): void {
    const maxAge = (exp - Math.floor(Date.now() / 1000)) * 1000;
    if (maxAge > 0) ctx.cookies.set(COOKIE, uid, { ...OPTIONS, maxAge });
  }

  /** The step this browser was last shown, if its cookie is sound. */
  named(ctx: Context): string | undefined {
    const uid = ctx.cookies.get(COOKIE, { signed: true });
    return uid && UID.test(uid) ? uid : undefined;
  }

  /**
   * The way on to interaction `uid`, if it is live, this browser's and a step
   * with a page, named by its app. Nothing when that cannot be told: the page
   * then says only that the sign-in expired.
   */
  async offer(ctx: Context, provider: Provider, uid: string): Promise<SignInInProgress | undefined> {
    try {
      const [interaction, mayUse] = await Promise.all([provider.Interaction.find(uid), mayUseInteraction(this.sql, uid, this.browsers.of(ctx))]);
      if (!interaction || !mayUse || !this.pages.has(interaction.prompt.name)) return undefined;
      const client = await provider.Client.find(String(interaction.params.client_id));
      if (!client) return undefined;
      return { url: `/interaction/${uid}`, clientName: displayName(client) };
    } catch (error) {
      this.logger.warn('could not look up the sign-in in progress', { ...requestField(ctx), error: error instanceof Error ? `${error.name}: ${error.message}` : String(error) });
      return undefined;
    }
  }
}
