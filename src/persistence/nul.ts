// PostgreSQL's text cannot hold U+0000, and jsonb refuses the `\u0000` escape
// in a string. Such a character can only come from a request (a parameter, a
// form field): nothing stored holds one, so a lookup by it finds nothing, and
// a value that holds one cannot be saved. Checked before the statement, so
// that the request gets a clear answer instead of the database's error (500).

/** Whether `text` can be compared with or stored in a text column. */
export function storable(text: string): boolean {
  return !text.includes('\u0000');
}

// A `\u0000` escape as JSON.stringify writes it: its backslash preceded by an
// even number of backslashes (an odd number would make it a literal "\u0000").
const NUL_ESCAPE = /(?:^|[^\\])(?:\\\\)*\\u0000/;

/** Whether JSON text written by JSON.stringify holds a U+0000 anywhere, which jsonb refuses. */
export function jsonHoldsNul(json: string): boolean {
  // The plain search is enough almost always; the pattern rules out a literal backslash-u0000.
  return json.includes('\\u0000') && NUL_ESCAPE.test(json);
}

// JSON.stringify writes a surrogate escaped only where it is alone (RFC 8259
// §8.2 lets a string hold one): a pair is written as the character it makes.
const SURROGATE_ESCAPE = /(?:^|[^\\])(?:\\\\)*\\ud[89a-f][0-9a-f]{2}/;

/**
 * Whether JSON text written by JSON.stringify holds a lone surrogate, which
 * jsonb refuses too ("invalid input syntax for type json"). A query or form
 * cannot carry one (bytes that are not UTF-8 become U+FFFD); a request
 * object's JSON can.
 */
export function jsonHoldsLoneSurrogate(json: string): boolean {
  return json.includes('\\ud') && SURROGATE_ESCAPE.test(json);
}

/**
 * Why a payload's JSON (as JSON.stringify writes it) cannot be stored, as the
 * request whose parameters put it there is told; undefined if it can.
 */
export function unstorableParameters(json: string): string | undefined {
  if (jsonHoldsNul(json)) return 'request parameters must not contain the NUL character';
  if (jsonHoldsLoneSurrogate(json)) return 'request parameters must not contain a lone surrogate (U+D800 to U+DFFF, which is no character alone)';
  return undefined;
}
