import { hash, timingSafeEqual } from 'node:crypto';

/**
 * SHA-256, base64url. Token ids, codes and client secrets are 128+ bit random
 * values, so a fast hash is enough to make a database dump useless while
 * keeping lookups by id a single indexed equality.
 */
export function sha256(value: string): string {
  return hash('sha256', value, 'base64url');
}

/**
 * sha256() in SQL, of the text `expression` yields: for a statement that
 * finds a row by the digest of an id it reads (a token row's grant_id names
 * its grant, stored under the digest).
 */
export function sha256Sql(expression: string): string {
  return `rtrim(translate(encode(sha256(convert_to(${expression}, 'UTF8')), 'base64'), '+/', '-_'), '=')`;
}

/**
 * Whether a presented digest or MAC is the expected one, compared in constant
 * time: only the length, which a digest's kind makes public, may show.
 */
export function sameDigest(expected: string, presented: string): boolean {
  const a = Buffer.from(expected);
  const b = Buffer.from(presented);
  return a.length === b.length && timingSafeEqual(a, b);
}
