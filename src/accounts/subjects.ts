// Subject identifiers (OpenID Connect Core §8): the `sub` an app knows a
// person by. Public, the default: the user's id, the same at every app.
// Pairwise (a client made with `--subject-type pairwise`): one per sector,
// the host of the client's redirect URIs (§8.1), so that apps on different
// hosts cannot tell, by comparing what they hold, that they serve the same
// person, while an organisation's apps on one host still can.
//
// A pairwise identifier is the user's id (a UUID: 16 bytes, one AES block)
// encrypted with AES-256 under a key derived for the sector from a secret the
// database keeps sealed (keys/server-secrets.ts). One block under a block
// cipher is a pseudorandom permutation: the same person has the same
// identifier at every app of a sector, unrelated ones in other sectors, and
// no identifier says anything of another without the secret. Unlike a hash
// (§8.1's example), the secret turns it back into the user's id, which the
// server needs where an app's identifier is all it has: introspecting a JWT
// access token, whose `sub` is its client's (was its person disabled
// since?), an id_token_hint, and an operator handed an identifier by an app.
import { createCipheriv, createDecipheriv, createHmac } from 'node:crypto';

/**
 * What the library's Client model says of its subject type: pairwise, with
 * `pairwise_sector` the sector stored when the client was made, or public
 * (provider/client-adapter.ts gives it both from the same column).
 */
export interface SubjectTypeOf {
  subjectType?: string;
  pairwise_sector?: unknown;
}

/** The sector of a client with pairwise identifiers; undefined for a public one. */
export function sectorOf(client: SubjectTypeOf | undefined): string | undefined {
  if (client?.subjectType !== 'pairwise') return undefined;
  if (typeof client.pairwise_sector !== 'string') throw new TypeError('a pairwise client without its sector: see provider/client-adapter.ts');
  return client.pairwise_sector;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** 16 bytes in base64url, unpadded. */
const PAIRWISE = /^[A-Za-z0-9_-]{22}$/;

export class Subjects {
  private readonly sectorKeys = new Map<string, Buffer>();

  /** `secret`: the 32 bytes loadServerSecret keeps for 'pairwise subjects'. */
  constructor(private readonly secret: Buffer) {}

  /** The `sub` of `accountId` for a client of `sector` (undefined: public, the id itself). */
  of(accountId: string, sector: string | undefined): string {
    if (sector === undefined) return accountId;
    // Only users' ids (UUIDs, lower case as stored) reach here: anything else is a bug, not a person.
    if (!UUID.test(accountId)) throw new TypeError('a pairwise subject is made from a user id');
    const cipher = createCipheriv('aes-256-ecb', this.keyFor(sector), null).setAutoPadding(false);
    const block = Buffer.from(accountId.replaceAll('-', ''), 'hex');
    return Buffer.concat([cipher.update(block), cipher.final()]).toString('base64url');
  }

  /** The user id `sub` names for a client of `sector`; undefined if it is no identifier of that sector's making. */
  accountOf(sub: string, sector: string | undefined): string | undefined {
    if (sector === undefined) return UUID.test(sub) ? sub : undefined;
    if (!PAIRWISE.test(sub)) return undefined;
    const block = Buffer.from(sub, 'base64url');
    // Base64url has four spellings of the last character's two spare bits: only ours is one.
    if (block.toString('base64url') !== sub) return undefined;
    const decipher = createDecipheriv('aes-256-ecb', this.keyFor(sector), null).setAutoPadding(false);
    const hex = Buffer.concat([decipher.update(block), decipher.final()]).toString('hex');
    const id = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
    // Any 22 characters decrypt to 16 bytes: only an existing user's id names
    // anyone, which the caller finds out by looking it up.
    return id;
  }

  private keyFor(sector: string): Buffer {
    let key = this.sectorKeys.get(sector);
    if (!key) {
      key = createHmac('sha256', this.secret).update(`pairwise subject v1\0${sector}`).digest();
      this.sectorKeys.set(sector, key);
    }
    return key;
  }
}
