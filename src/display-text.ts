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

/** Something a reader sees: a letter, digit, punctuation mark or symbol (not only spaces, marks or joiners). */
const VISIBLE = /[\p{L}\p{N}\p{P}\p{S}]/u;

/** The most characters of a name shown on the consent page, where a long one would push the rest away. */
export const MAX_SHOWN_NAME_LENGTH = 200;

/**
 * Why `text`, to be shown on the pages, cannot be (`what` names it), or
 * undefined when it can.
 */
export function unshowable(text: string, what: string, maxLength = MAX_SHOWN_NAME_LENGTH): string | undefined {
  if (text.length > maxLength) return `${what} has at most ${maxLength} characters`;
  if (UNSHOWABLE.test(text)) return `${what} must not contain control characters, invisible format characters (such as bidirectional overrides or zero-width spaces) or line separators`;
  if (text && !VISIBLE.test(text)) return `${what} must show at least one letter, digit or symbol`;
  return undefined;
}
