// Signs and checks oidc-provider's cookies with the cookie keys, in Keygrip's
// format (HMAC-SHA1, base64url without padding), so that cookies signed by
// either verify with the other and sessions survive an upgrade. Keygrip itself
// compares through tsscmp: 32 fresh random bytes and two more HMACs for every
// comparison, several per request on the login pages (about 0.6 ms of the
// main thread per login in a profile). Equal-length digests compared with
// timingSafeEqual are as constant-time, for one HMAC per key.
import { createHmac, createSecretKey, type KeyObject } from 'node:crypto';
import { sameDigest } from '../persistence/hash.js';

export class CookieSigner {
  private readonly keys: KeyObject[];

  /** `keys[0]` signs; every key verifies (rotation). */
  constructor(keys: readonly string[]) {
    if (keys.length === 0) throw new Error('at least one cookie key is needed');
    this.keys = keys.map((key) => createSecretKey(Buffer.from(key)));
  }

  sign(data: string): string {
    return digest(this.keys[0]!, data);
  }

  verify(data: string, signature: string): boolean {
    return this.index(data, signature) > -1;
  }

  /** Which key made `signature` for `data`, or -1. */
  index(data: string, signature: string): number {
    if (typeof signature !== 'string') return -1;
    for (let i = 0; i < this.keys.length; i++) {
      if (sameDigest(digest(this.keys[i]!, data), signature)) return i;
    }
    return -1;
  }
}

const digest = (key: KeyObject, data: string) => createHmac('sha1', key).update(data).digest('base64url');
