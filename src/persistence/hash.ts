import { hash } from 'node:crypto';

/**
 * SHA-256, base64url. Token ids, codes and client secrets are 128+ bit random
 * values, so a fast hash is enough to make a database dump useless while
 * keeping lookups by id a single indexed equality.
 */
export function sha256(value: string): string {
  return hash('sha256', value, 'base64url');
}
