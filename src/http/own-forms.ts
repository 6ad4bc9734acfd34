// Forms our pages post (sign-in, consent, the account page) are taken only
// from our own pages. SameSite=Lax cookies go with a form another site posts
// from the same site (a sibling subdomain, or another port over http), and
// an https issuer's session cookie is SameSite=None (provider/configuration.ts).
// A browser says where a form came from (Fetch Metadata): only our own
// origin's is taken, and a post the person made themselves ('none': a reload
// of a form's answer, which some browsers mark so). A browser without Fetch
// Metadata (Safari before 16.4) still sends Origin with a POST: another
// origin there is refused too. `Origin: null` says nothing (our pages'
// no-referrer policy makes some browsers send it for their own forms), and
// clients that send neither header (scripts) are judged by what else the
// form must carry.
import type { Context } from 'koa';

/**
 * Where a POST came from when that is another site, in a few words for the
 * log; undefined for our own pages' forms and anything that is not a POST.
 */
export function crossSitePost(ctx: Context, ownOrigin: string): string | undefined {
  if (ctx.method !== 'POST') return undefined;
  const site = ctx.get('Sec-Fetch-Site');
  const origin = ctx.get('Origin');
  const crossSite = site !== '' ? site !== 'same-origin' && site !== 'none' : origin !== '' && origin !== 'null' && origin !== ownOrigin;
  return crossSite ? (site || 'no Sec-Fetch-Site, another Origin').slice(0, 40) : undefined;
}
