// Renders views/*.eta with auto-escaping into the shared layout.
import type { ServerResponse } from 'node:http';
import { fileURLToPath } from 'node:url';
import { Eta } from 'eta';
import { allowInlineStyle, allowInlineStyleToo } from './security-headers.js';

const eta = new Eta({
  views: fileURLToPath(new URL('../../views', import.meta.url)),
  autoEscape: true,
  // Read once: an edit to views/ shows after a restart, as one to src/ does.
  cache: true,
});

export interface PageContext {
  res: ServerResponse;
  issuerName: string;
}

/** Renders `view`; every page has `isolates` (isolatesAsElements, below) for its sentences that name someone. */
export function renderPage(page: PageContext, view: string, data: Record<string, unknown>): string {
  return eta.render(view, { isolates: isolatesAsElements, ...data, issuerName: page.issuerName, nonce: allowInlineStyle(page.res) });
}

/**
 * A name inside our sentences, isolated (FSI … PDI, a <bdi> element on the
 * page: isolatesAsElements below): a right-to-left name keeps its own order,
 * and does not reorder the words around it.
 */
export const isolated = (name: string) => `\u2068${name}\u2069`;

/** An isolated name inside a sentence (FSI … PDI, see isolated); one never holds either (display-text.ts). */
const ISOLATED = /\u2068([^\u2068\u2069]*)\u2069/g;

/**
 * `text` for the page (escaped), its isolated names as <bdi> elements: the
 * page isolates them as the marks would, and a screen reader, which may read
 * the marks out or put them into a link's name, meets none. A title, which
 * holds no markup, keeps the marks.
 */
export function isolatesAsElements(text: string): string {
  // Escaped as `<%=` escapes, the marks left as they are (they are not markup).
  return eta.config.escapeFunction(text).replace(ISOLATED, '<bdi>$1</bdi>');
}

/**
 * What our layout puts around a page's content (views/head.eta, inside
 * <head>, with the styles, and views/header.eta), for a page the library wrote
 * (provider/form-post-page.ts): its styles allowed beside what the response's
 * policy allows already.
 */
export function pageFrame(page: PageContext, title: string): { head: string; header: string } {
  const data = { title, issuerName: page.issuerName, nonce: allowInlineStyleToo(page.res) };
  return { head: eta.render('head', data), header: eta.render('header', data) };
}
