// Time-based one-time passwords (RFC 6238 over RFC 4226's HOTP) with the
// parameters every authenticator app takes without asking: HMAC-SHA1, six
// digits, thirty-second steps, a 160-bit key (RFC 4226 §4 R6) given to the
// app as base32 (RFC 4648 §6) in an otpauth:// URI, the form Google
// Authenticator defined and the others (Authy, 1Password, FreeOTP, Aegis) read.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

const DIGITS = 6;
const PERIOD_SECONDS = 30;
const KEY_BYTES = 20;
/**
 * Steps either side of now whose code is taken: a phone's clock a little off,
 * or a code typed as it changed (RFC 6238 §5.2 recommends at most one).
 */
const DRIFT_STEPS = 1;

export const newTotpKey = (): Buffer => randomBytes(KEY_BYTES);

/** The time step `at` (ms since the epoch) falls in. */
export const stepAt = (at: number): number => Math.floor(at / 1000 / PERIOD_SECONDS);

/** The code of `step` (RFC 4226 §5.3: dynamic truncation of the HMAC of the counter). */
export function codeOf(key: Buffer, step: number): string {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = createHmac('sha1', key).update(counter).digest();
  const offset = mac[mac.length - 1]! & 0x0f;
  const value = mac.readUInt32BE(offset) & 0x7fffffff;
  return String(value % 10 ** DIGITS).padStart(DIGITS, '0');
}

/** What a person typed, as a code: digits only (spaces, as apps show "123 456", left out), or undefined. */
export function codeIn(typed: string): string | undefined {
  const code = typed.replace(/[\s-]/g, '');
  return new RegExp(`^\\d{${DIGITS}}$`).test(code) ? code : undefined;
}

/**
 * The step whose code `code` is, among those around `at` later than
 * `after` (the last step taken: a code is taken once, RFC 6238 §5.2), or
 * undefined. Every candidate is compared, in constant time.
 */
export function matchingStep(key: Buffer, code: string, at: number, after: number | null): number | undefined {
  const now = stepAt(at);
  let found: number | undefined;
  for (let step = now - DRIFT_STEPS; step <= now + DRIFT_STEPS; step++) {
    const matches = timingSafeEqual(Buffer.from(codeOf(key, step)), Buffer.from(code.padEnd(DIGITS).slice(0, DIGITS)));
    if (matches && (after === null || step > after) && found === undefined) found = step;
  }
  return found;
}

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** RFC 4648 §6 base32, without padding (as otpauth URIs carry keys). */
export function base32(bytes: Buffer): string {
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += BASE32[(value << (5 - bits)) & 31];
  return out;
}

/**
 * The otpauth:// URI an authenticator app takes (by QR code, or as a link on
 * the phone itself): labelled "issuer:account", with the issuer repeated as a
 * parameter, which apps prefer to the label's, and the parameters spelled out.
 */
export function keyUri(key: Buffer, issuer: string, account: string): string {
  // Neither part of the label may hold a colon (the Key Uri Format): apps split it at the first.
  const label = `${encodeURIComponent(issuer.replace(/:/g, ''))}:${encodeURIComponent(account.replace(/:/g, ''))}`;
  const params = new URLSearchParams({ secret: base32(key), issuer, algorithm: 'SHA1', digits: String(DIGITS), period: String(PERIOD_SECONDS) });
  return `otpauth://totp/${label}?${params.toString().replace(/\+/g, '%20')}`;
}
