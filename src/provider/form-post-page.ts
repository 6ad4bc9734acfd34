// oidc-provider writes one page of its own, which no configuration replaces:
// the form that carries a response to the app (response_mode=form_post), and
// a sign-out on to its confirmation (`/session/end` with nobody signed in,
// "Not you?" while signed in). Its script submits the form at once; without
// JavaScript a person sees it, with a Continue button. As written it has no
// language, no main landmark and no heading (axe-core: html-has-lang, WCAG
// 3.1.1 Level A; landmark-one-main; page-has-heading-one), a title in the
// library's words, and no style: a person without JavaScript saw a bare form
// unlike every other page of ours. Those are added around the library's
// form, which stays as written (its fields are escaped by the library) but
// for the words and button shown without JavaScript, and so does its script,
// whose hash the Content-Security-Policy names.
import type { KoaContextWithOIDC } from 'oidc-provider';
import { destinationOf } from '../http/safe-url.js';
import { pageFrame } from '../http/views.js';

/** The page as the library writes it (lib/response_modes/form_post.js), up to its title. */
const LIBRARY_HEAD = '<!DOCTYPE html>\n<html>\n<head>\n  <meta http-equiv="X-UA-Compatible" content="IE=edge">\n  <title>Submitting Callback</title>';
const FORM_START = '<body>\n  <form ';
const FORM_END = '</form>\n</body>';
/** The library's words and button for a person without JavaScript (blaming the browser, naming no destination). */
const NOSCRIPT = "Your browser does not support JavaScript or you've disabled it.<br/>\n      <button autofocus type=\"submit\">Continue</button>";

/**
 * The library's self-submitting page in our layout (its head, with our
 * styles, and header), with a main landmark and a heading, never cached. Anything else, a
 * page of a library version that writes it differently included, is left as
 * it is.
 */
export function accessibleFormPostPage(ctx: KoaContextWithOIDC, issuerName: string): void {
  const body = ctx.body;
  if (typeof body !== 'string' || !body.startsWith(LIBRARY_HEAD)) return;
  // Each such page carries what holds for this moment only (a code, the
  // session's xsrf secret, a device's code): never stored, as our own pages.
  // The library sends most of them no-store, but not the device page a
  // verification_uri_complete opens, which sets the session cookie too.
  ctx.set('Cache-Control', 'no-store');
  const start = body.indexOf(FORM_START);
  const end = body.lastIndexOf(FORM_END);
  if (start < 0 || end < start) return;
  // Without JavaScript the page stays, with a Continue button: the heading
  // says what it is for.
  // A sign-out on the way: at /session/end, or a resume after someone else
  // signed in, which signs the one before out first. (A device's code from
  // its verification_uri_complete, RFC 8628 §3.3.1, goes on to be confirmed.)
  const signingOut = ctx.oidc?.route === 'end_session' || body.includes(`action="${ctx.oidc?.urlFor('end_session_confirm')}"`);
  // The resume's sign-out is of the one before, and the sign-in just made
  // goes on: "Signing you out" told the person who had just signed in the opposite.
  const switching = signingOut && ctx.oidc?.route !== 'end_session';
  const title = switching ? 'Switching accounts…' : signingOut ? 'Signing you out…' : ctx.oidc?.route === 'code_verification' ? 'Checking the code…' : 'Returning you to the application…';
  // color-scheme (in the head): in dark mode the page is dark like every other of ours, not a white flash.
  const frame = pageFrame({ res: ctx.res, issuerName }, title);
  // Ours say where Continue leads (a host, or an app's scheme: no markup) and
  // give the button the primary style and spacing of our pages; not the
  // focus, as no button of ours has it when a page opens (the heading first).
  const destination = signingOut ? undefined : destinationOf(ctx.oidc?.params?.redirect_uri);
  const words = switching
    ? 'The account signed in here before is signed out first; then your sign-in goes on. Choose Continue to go on.'
    : destination ? `Choose Continue to go on to <strong class="destination">${destination}</strong>.` : 'Choose Continue to go on.';
  const noscript = `<p>${words}</p>\n      <div class="actions"><button class="primary" type="submit">Continue</button></div>`;
  ctx.body =
    `<!DOCTYPE html>\n<html lang="en">\n<head>\n${frame.head}` +
    body.slice(LIBRARY_HEAD.length, start) +
    `<body>\n${frame.header}<main>\n  <h1>${title}</h1>\n  <form ` +
    body.slice(start + FORM_START.length, end).replace(NOSCRIPT, noscript) +
    '</form>\n</main>\n</body>' +
    body.slice(end + FORM_END.length);
}
