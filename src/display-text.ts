// What text a person typed may hold, for names shown on pages and in tokens,
// and for passwords typed into the sign-in form.

/** Control characters (C0, DEL, C1): no form sends them, and no page shows them. */
export const CONTROL_CHARACTERS = /\p{Cc}/u;

/**
 * What a name shown on the consent page or put in an ID token must not hold:
 * control characters, and bidirectional overrides and isolates, which would
 * reorder the text shown around them (a client name that reads as another's).
 */
export const UNSHOWABLE = /\p{Cc}|[\u202A-\u202E\u2066-\u2069]/u;

/** The most characters of a name shown on the consent page, where a long one would push the rest away. */
export const MAX_SHOWN_NAME_LENGTH = 200;

/**
 * Why `text`, to be shown on the pages, cannot be (`what` names it), or
 * undefined when it can.
 */
export function unshowable(text: string, what: string, maxLength = MAX_SHOWN_NAME_LENGTH): string | undefined {
  if (text.length > maxLength) return `${what} has at most ${maxLength} characters`;
  if (UNSHOWABLE.test(text)) return `${what} must not contain control characters or bidirectional overrides`;
  return undefined;
}
