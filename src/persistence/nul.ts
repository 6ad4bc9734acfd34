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
