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
 * Whether a presented digest or MAC is the expected one, compared in constant
 * time: only the length, which a digest's kind makes public, may show.
 */
export function sameDigest(expected: string, presented: string): boolean {
  const a = Buffer.from(expected);
  const b = Buffer.from(presented);
  return a.length === b.length && timingSafeEqual(a, b);
}
