// The public keys a confidential client authenticates with instead of a
// secret (private_key_jwt, RFC 7523 §2.2 and OIDC Core §9): a JWK Set
// registered with the client.
import { createPublicKey, type JsonWebKey } from 'node:crypto';

/**
 * The algorithms a client may sign its assertions with (discovery's
 * token_endpoint_auth_signing_alg_values_supported): no HMAC (that is
 * client_secret_jwt, which digested secrets cannot check), no `none`.
 */
export const CLIENT_ASSERTION_ALGS = ['RS256', 'PS256', 'ES256', 'EdDSA', 'Ed25519'] as const;

/** More keys than a rotation needs (the current one, the next, one going) is a mistake, and metadata every lookup reads. */
const MAX_KEYS = 10;
const MIN_RSA_BITS = 2048;

/** The members of a private or symmetric JWK (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2). */
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

/** The members kept of each key, by type: what verifying needs, and its name. */
const PUBLIC_MEMBERS: Record<string, string[]> = {
  RSA: ['kty', 'kid', 'use', 'alg', 'n', 'e'],
  EC: ['kty', 'kid', 'use', 'alg', 'crv', 'x', 'y'],
  OKP: ['kty', 'kid', 'use', 'alg', 'crv', 'x'],
};

/** Which of those each type of key signs with. */
const ALGS_OF: Record<string, string[]> = { RSA: ['RS256', 'PS256'], EC: ['ES256'], OKP: ['EdDSA', 'Ed25519'] };

export interface ClientJwks {
  keys: JsonWebKey[];
}

/**
 * `value` (parsed JSON: a JWK Set, or one JWK) as the key set stored for a
 * client, each key with only its public members; or why it cannot be one.
 * A private key is refused, not stripped: whoever holds the file meant to
 * register the public half, and the private one has now been seen.
 */
export function clientJwks(value: unknown): ClientJwks | string {
  const set = isObject(value) && 'kty' in value ? { keys: [value] } : value;
  if (!isObject(set) || !Array.isArray(set.keys)) return 'the keys must be a JWK Set ({"keys": [...]}) or one JWK';
  if (set.keys.length === 0) return 'the JWK Set holds no key';
  if (set.keys.length > MAX_KEYS) return `the JWK Set holds ${set.keys.length} keys; at most ${MAX_KEYS}`;
  const keys: JsonWebKey[] = [];
  const kids = new Set<string>();
  for (const [index, key] of set.keys.entries()) {
    const which = `key ${index + 1}${isObject(key) && typeof key.kid === 'string' ? ` (kid ${JSON.stringify(key.kid)})` : ''}`;
    const problem = keyProblem(key);
    if (problem) return `${which} ${problem}`;
    const jwk = key as Record<string, unknown>;
    if (typeof jwk.kid === 'string') {
      if (kids.has(jwk.kid)) return `${which}: two keys have that kid`;
      kids.add(jwk.kid);
    }
    keys.push(Object.fromEntries(PUBLIC_MEMBERS[jwk.kty as string]!.filter((member) => jwk[member] !== undefined).map((member) => [member, jwk[member]])));
  }
  return { keys };
}

/** Why `key` cannot verify a client's assertions, or undefined. */
function keyProblem(key: unknown): string | undefined {
  if (!isObject(key)) return 'is not a JWK';
  const held = PRIVATE_MEMBERS.filter((member) => member in key);
  if (held.length > 0) return `holds private key material (${held.join(', ')}): register the public key only, and treat this private key as exposed`;
  if (typeof key.kty !== 'string' || !(key.kty in PUBLIC_MEMBERS)) return 'must be an RSA, EC (P-256) or OKP (Ed25519) public key';
  if (key.kid !== undefined && (typeof key.kid !== 'string' || !/^[\x21-\x7e]{1,128}$/.test(key.kid))) return 'has a kid that is not 1 to 128 printable ASCII characters';
  if (key.use !== undefined && key.use !== 'sig') return 'is not for signatures ("use" must be "sig" or absent)';
  if (key.alg !== undefined && !(CLIENT_ASSERTION_ALGS as readonly unknown[]).includes(key.alg)) return `has alg ${JSON.stringify(key.alg)}; use ${CLIENT_ASSERTION_ALGS.join(', ')}`;
  if (key.alg !== undefined && !ALGS_OF[key.kty]!.includes(key.alg as string)) return `is an ${key.kty} key, which does not sign with ${key.alg as string}`;
  if (key.kty === 'EC' && key.crv !== 'P-256') return 'is an EC key on a curve other than P-256 (ES256)';
  if (key.kty === 'OKP' && key.crv !== 'Ed25519') return 'is an OKP key other than Ed25519';
  let parsed;
  try {
    parsed = createPublicKey({ key: key as JsonWebKey, format: 'jwk' });
  } catch {
    return 'is not a valid public key';
  }
  if (key.kty === 'RSA' && (parsed.asymmetricKeyDetails?.modulusLength ?? 0) < MIN_RSA_BITS) return `is an RSA key under ${MIN_RSA_BITS} bits`;
  return undefined;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
