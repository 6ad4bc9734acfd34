// The public keys a confidential client authenticates with instead of a
// secret (private_key_jwt, RFC 7523 §2.2 and OIDC Core §9): a JWK Set
// registered with the client.
import { checkPrimeSync, createPublicKey, type JsonWebKey } from 'node:crypto';

/**
 * The algorithms a client may sign its assertions with (discovery's
 * token_endpoint_auth_signing_alg_values_supported): no HMAC (that is
 * client_secret_jwt, which digested secrets cannot check), no `none`.
 */
export const CLIENT_ASSERTION_ALGS = ['RS256', 'PS256', 'ES256', 'EdDSA', 'Ed25519'] as const;

/** More keys than a rotation needs (the current one, the next, one going) is a mistake, and metadata every lookup reads. */
const MAX_KEYS = 10;
const MIN_RSA_BITS = 2048;
/** Larger is no key anyone uses, and checking its modulus would take the CLI minutes. */
const MAX_RSA_BITS = 8192;

/** The members holding a key's numbers, by type: base64url without padding (RFC 7518 §2, §6.2.1, §6.3.1; RFC 8037 §2). */
const NUMBER_MEMBERS: Record<string, string[]> = { RSA: ['n', 'e'], EC: ['x', 'y'], OKP: ['x'] };
const BASE64URL = /^[A-Za-z0-9_-]+$/;

/** Base64url as RFC 7515 §2 has it, in its one spelling: what decodes and encodes back to the same text. */
const isBase64url = (text: string) => BASE64URL.test(text) && Buffer.from(text, 'base64url').toString('base64url') === text;

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

/**
 * The key set the library verifies assertions with: an Ed25519 key's `alg`
 * left out. "EdDSA" and "Ed25519" name one algorithm for such a key (RFC 9864
 * §2.2 deprecates the first for the second), and the library takes a key for
 * an assertion's `alg` only where the key's own is the same string: a key
 * registered as "EdDSA" refused openid-client v6, which signs as "Ed25519".
 * No other algorithm signs with an Ed25519 key, so nothing else is let in.
 * The registration keeps the key as given (`client show`).
 */
export function verifyingJwks(jwks: ClientJwks): ClientJwks {
  return { keys: jwks.keys.map(({ alg, ...key }) => (key.kty === 'OKP' ? key : { ...key, ...(alg === undefined ? {} : { alg }) })) };
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
  // Node's decoder skips what is not base64url: the key would work here, and be stored (and shown) as no JWK.
  const garbled = NUMBER_MEMBERS[key.kty]!.find((member) => typeof key[member] !== 'string' || !isBase64url(key[member] as string));
  if (garbled) return `has a "${garbled}" that is not base64url (RFC 7518: A-Z, a-z, 0-9, - and _, no padding)`;
  let parsed;
  try {
    parsed = createPublicKey({ key: key as JsonWebKey, format: 'jwk' });
  } catch {
    return 'is not a valid public key';
  }
  if (key.kty === 'RSA') {
    const bits = parsed.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits < MIN_RSA_BITS || bits > MAX_RSA_BITS) return `is an RSA key of ${bits} bits; use ${MIN_RSA_BITS} to ${MAX_RSA_BITS}`;
    return rsaProblem(fromBase64url(key.n as string), fromBase64url(key.e as string));
  }
  if (key.kty === 'OKP') return ed25519Problem(Buffer.from(key.x as string, 'base64url'));
  return undefined;
}

/**
 * What makes an RSA public key one anybody can forge signatures for, or
 * that can verify none: an exponent of 1 (the signature is then the padded
 * digest itself), even, or outside what signers use and OpenSSL takes (odd,
 * 65537 up to 2^32: SP 800-56B §6.2.1 begins there); a modulus whose
 * factors are no secret: even, prime, a square, or with a small factor
 * (every prime under 2^16 is tried).
 */
function rsaProblem(n: bigint, e: bigint): string | undefined {
  if (e % 2n === 0n || e < 65537n || e >= 2n ** 32n) return 'is an RSA key whose public exponent is not an odd number from 65537 to 2^32 (use 65537)';
  // The cheap tests first; then two rounds of Miller-Rabin, which a real modulus fails at once.
  if (SMALL_PRIMES.some((prime) => n % prime === 0n) || isSquare(n) || checkPrimeSync(n, { checks: 2 })) {
    return 'is not a usable RSA public key (its modulus is prime, a square or has a small factor: anyone could sign with it)';
  }
  return undefined;
}

/** The primes under 2^16 (2 among them), by a sieve made once. */
const SMALL_PRIMES: bigint[] = (() => {
  const limit = 1 << 16;
  const composite = new Uint8Array(limit);
  const primes: bigint[] = [];
  for (let i = 2; i < limit; i++) {
    if (composite[i]) continue;
    primes.push(BigInt(i));
    for (let j = i * i; j < limit; j += i) composite[j] = 1;
  }
  return primes;
})();

/** Whether `n` is a perfect square (Newton's integer square root). */
function isSquare(n: bigint): boolean {
  if (n < 2n) return true;
  let x = 1n << BigInt(Math.ceil(n.toString(2).length / 2));
  for (;;) {
    const next = (x + n / x) >> 1n;
    if (next >= x) break;
    x = next;
  }
  return x * x === n;
}

function fromBase64url(text: string): bigint {
  const hex = Buffer.from(text, 'base64url').toString('hex');
  return hex ? BigInt(`0x${hex}`) : 0n;
}

// Ed25519 (RFC 8032 §5.1): the curve -x² + y² = 1 + d·x²·y² over p = 2^255 − 19.
const P = 2n ** 255n - 19n;
const D = mod(-121665n * inverse(121666n));
const SQRT_MINUS_ONE = power(2n, (P - 1n) / 4n);

/**
 * Why the encoded Ed25519 public key `x` (32 bytes) verifies nothing, or
 * forged signatures, or undefined: it must decode to a point (RFC 8032
 * §5.1.3, canonically), and not one of small order, eight times which is
 * the identity (three doublings). A public key of small order verifies
 * signatures made without any private key (R the identity, S zero: for
 * every message, or one in eight).
 */
function ed25519Problem(x: Buffer): string | undefined {
  const point = decodePoint(x);
  if (!point) return 'is not a valid Ed25519 public key (no point of the curve, or not in its one encoding)';
  let multiple = point;
  for (let i = 0; i < 3; i++) multiple = double(multiple);
  if (multiple[0] === 0n && multiple[1] === 1n) return 'is not a usable Ed25519 public key (a point of small order, which verifies forged signatures)';
  return undefined;
}

/** The point `encoded` stands for (RFC 8032 §5.1.3), or undefined. */
function decodePoint(encoded: Buffer): [bigint, bigint] | undefined {
  if (encoded.length !== 32) return undefined;
  const bytes = Buffer.from(encoded);
  const sign = bytes[31]! >> 7;
  bytes[31]! &= 0x7f;
  const y = BigInt(`0x${Buffer.from(bytes).reverse().toString('hex')}`);
  if (y >= P) return undefined;
  const u = mod(y * y - 1n);
  const v = mod(D * y * y + 1n);
  let x = mod(u * power(v, 3n) * power(u * power(v, 7n), (P - 5n) / 8n));
  if (mod(v * x * x) !== u) {
    if (mod(v * x * x) !== mod(-u)) return undefined; // no point has this y
    x = mod(x * SQRT_MINUS_ONE);
  }
  if (x === 0n && sign === 1) return undefined;
  if (Number(x & 1n) !== sign) x = P - x;
  return [x, y];
}

/** Doubling on the (complete) twisted Edwards curve with a = −1. */
function double([x, y]: [bigint, bigint]): [bigint, bigint] {
  const t = mod(D * x * x * y * y);
  return [mod(2n * x * y * inverse(1n + t)), mod((y * y + x * x) * inverse(1n - t))];
}

function mod(a: bigint): bigint {
  const r = a % P;
  return r < 0n ? r + P : r;
}

function power(base: bigint, exponent: bigint): bigint {
  let result = 1n;
  let b = mod(base);
  for (let e = exponent; e > 0n; e >>= 1n) {
    if (e & 1n) result = (result * b) % P;
    b = (b * b) % P;
  }
  return result;
}

function inverse(a: bigint): bigint {
  return power(a, P - 2n);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
