// What text a person typed may hold, for names shown on pages and in tokens,
// and for passwords typed into the sign-in form.

/** Control characters (C0, DEL, C1): no form sends them, and no page shows them. */
export const CONTROL_CHARACTERS = /\p{Cc}/u;

/**
 * What a name shown on the consent page or put in an ID token must not hold:
 * control characters; format characters (Unicode Cf), among them the
 * bidirectional overrides and isolates that would reorder the text around
 * them (a client name that reads as another's), zero-width spaces and marks,
 * and the byte order mark; and line and paragraph separators, which break the
 * line a name is shown on. The zero-width non-joiner and joiner are the
 * exception: Persian and Indic names, and emoji sequences, are written with
 * them.
 */
const UNSHOWABLE = /\p{Cc}|(?![\u200C\u200D])\p{Cf}|\p{Zl}|\p{Zp}/u;

/**
 * Something a reader sees: a letter, digit, punctuation mark or symbol (not
 * only spaces, marks or joiners), other than the Hangul fillers and the blank
 * braille pattern, letters and a symbol that draw nothing.
 */
const VISIBLE = /(?![\u115F\u1160\u3164\uFFA0\u2800])[\p{L}\p{N}\p{P}\p{S}]/u;

/**
 * What lays a name out as something else: two blanks in a row of which one is
 * not the plain space (a browser collapses only runs of those; forty
 * ideographic or em spaces, or braille blanks, push the rest of a name onto a
 * line of its own, where it reads as the page's words), and more than six
 * combining marks on one character (Tibetan and Hebrew stack five; more is
 * drawn as a scribble over the line). Looked for with the joiners and the
 * combining grapheme joiner taken out, which draw nothing and would otherwise
 * split a run.
 */
const BLANK = '[\\p{Zs}\\u115F\\u1160\\u3164\\uFFA0\\u2800]';
const MISLAID = new RegExp(`(?! )${BLANK}${BLANK}|${BLANK}(?! )${BLANK}|\\p{M}{7}`, 'u');
const DRAWS_NOTHING = /[\u200C\u200D\u034F]/gu;

/** The most characters of a name shown on the consent page, where a long one would push the rest away. */
export const MAX_SHOWN_NAME_LENGTH = 200;

/**
 * Why `text`, to be shown on the pages, cannot be (`what` names it), or
 * undefined when it can.
 */
export function unshowable(text: string, what: string, maxLength = MAX_SHOWN_NAME_LENGTH, layout = true): string | undefined {
  // Characters as a person counts them, near enough: code points (an emoji
  // is one, not the two UTF-16 units of its length), as passwords are counted.
  if (text.length > maxLength && [...text].length > maxLength) return `${what} has at most ${maxLength} characters`;
  if (UNSHOWABLE.test(text)) return `${what} must not contain control characters, invisible format characters (such as bidirectional overrides or zero-width spaces) or line separators`;
  if (text && !VISIBLE.test(text)) return `${what} must show at least one letter, digit or symbol`;
  if (layout && MISLAID.test(text.replace(DRAWS_NOTHING, ''))) return `${what} must not hold two spaces in a row other than plain ones, or more than six combining marks on one character`;
  return undefined;
}

/**
 * `message`, fit for a terminal: a refused value quoted in it may hold control
 * characters (an escape sequence would be run by the terminal), bidirectional
 * overrides or other invisible ones; each is written as its code point
 * instead (\u{1b}). Line breaks between lines of the message stay, and so
 * do the joiners names may be written with (see UNSHOWABLE).
 */
export function terminalSafe(message: string): string {
  return message.replace(/(?!\n)(?![\u200C\u200D])[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu, (character) => `\\u{${character.codePointAt(0)!.toString(16)}}`);
}

/**
 * How a person is named on a page (views/account.eta): their name and email,
 * or the email alone; `you` for nobody known. Two parts, so that the page
 * isolates the name alone: a right-to-left name isolated with its email would
 * carry the email's parentheses into its own direction, "(email) name".
 */
export interface AccountLabel {
  name?: string;
  email?: string;
}

export function accountLabel(user: { name?: string | null; email: string } | undefined): AccountLabel {
  if (!user) return {};
  return user.name ? { name: user.name, email: user.email } : { email: user.email };
}

/** `text` as a regular expression matching it literally. */
export const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
