// What the setup page shows of a new TOTP key (accounts/totp.ts): a QR code
// of its otpauth:// URI for a phone's camera, the same URI as a link for an
// app on the device itself, and the key as text for typing in by hand.
import QRCode from 'qrcode';
import { base32, keyUri } from '../accounts/totp.js';

export interface AuthenticatorSetup {
  /**
   * The QR code: the SVG's viewBox and its content (paths made here from our
   * own URI, nothing of the request's), for the page to wrap in an <svg> with
   * its own attributes (a name for screen readers).
   */
  qr: { viewBox: string; body: string };
  uri: string;
  /** The base32 key in groups of four, as apps' "enter a setup key" forms show it. */
  groupedKey: string;
}

export async function authenticatorSetup(key: Buffer, issuerName: string, email: string): Promise<AuthenticatorSetup> {
  const uri = keyUri(key, issuerName, email);
  // Error correction M: a phone reads it off a screen at a glance; the
  // viewBox scales it, and the page sets its size.
  const svg = await QRCode.toString(uri, { type: 'svg', errorCorrectionLevel: 'M', margin: 2 });
  const parsed = /^<svg [^>]*viewBox="([\d .]+)"[^>]*>([\s\S]*)<\/svg>\s*$/.exec(svg);
  if (!parsed) throw new Error('the QR code library made an SVG of another shape than expected');
  return { qr: { viewBox: parsed[1]!, body: parsed[2]! }, uri, groupedKey: base32(key).replace(/(.{4})(?=.)/g, '$1 ') };
}
