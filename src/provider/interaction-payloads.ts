import type { AdapterPayload } from 'oidc-provider';
import { sha256 } from '../persistence/hash.js';

// An interaction's payload names live ids besides its own: its uid again, in
// the address the sign-in resumes at (`returnTo`, .../auth/:uid); the
// session's id (the session cookie's value) in `session.cookie`, which the
// library writes for an app that wants it and never reads; and, for a pushed
// authorization request, that request's id (`parJti`, the end of its
// request_uri), which the library reads back to use the request up. The uid
// is put back from the id it is found by; the session's id is not kept; the
// pushed request's id is kept sealed, bound to the interaction. `{uid}` cannot
// occur in an address the library built: URLs percent-encode braces.
const UID_IN_RETURN_TO = '{uid}';

/** Seals and opens a value bound to a context (keys/sealed-secrets.ts). */
export interface PayloadSealer {
  seal(plaintext: string, context: string): string;
  open(sealed: string, context: string): string;
}

/** What a device code's sealed id is sealed for: its own row's (findByUserCode), and an interaction's (withoutLiveIds). */
export const DEVICE_CODE_CONTEXT = 'device code of a user code';
const deviceCodeContext = (uid: string) => `device code of interaction ${sha256(uid)}`;

const parContext = (uid: string) => `pushed request of interaction ${sha256(uid)}`;

/** Stands for a device code sealed with a key dropped since: no device code is (those are base64url). */
const NO_DEVICE_CODE = 'sealed with a key no longer configured';

export function withoutLiveIds(payload: AdapterPayload, uid: string, sealer: PayloadSealer | undefined): AdapterPayload {
  const { returnTo, session, parJti } = payload as { returnTo?: unknown; session?: Record<string, unknown>; parJti?: unknown };
  const stored: AdapterPayload = { ...payload };
  if (typeof returnTo === 'string') stored.returnTo = returnTo.split(uid).join(UID_IN_RETURN_TO);
  if (session && 'cookie' in session) {
    const { cookie, ...rest } = session;
    void cookie;
    (stored as { session?: unknown }).session = rest;
  }
  if (typeof parJti === 'string') (stored as { parJti?: string }).parJti = sealer!.seal(parJti, parContext(uid));
  // A device's sign-in names its device code, which is what the device
  // presents for its tokens (RFC 8628 §3.4): sealed, as the code's own row
  // keeps only its hash.
  const { deviceCode } = payload as { deviceCode?: unknown };
  if (typeof deviceCode === 'string') (stored as { deviceCode?: string }).deviceCode = sealer!.seal(deviceCode, deviceCodeContext(uid));
  return stored;
}

export function withLiveIds(payload: AdapterPayload, uid: string, sealer: PayloadSealer | undefined): AdapterPayload {
  const { returnTo, parJti } = payload as { returnTo?: unknown; parJti?: unknown };
  const live: AdapterPayload = { ...payload, jti: uid };
  if (typeof returnTo === 'string') live.returnTo = returnTo.split(UID_IN_RETURN_TO).join(uid);
  if (typeof parJti === 'string') {
    // One that no configured encryption key opens (dropped since) is left out:
    // the pushed request then is not used up here, and stays until it expires.
    try {
      (live as { parJti?: string }).parJti = sealer!.open(parJti, parContext(uid));
    } catch {
      delete (live as { parJti?: string }).parJti;
    }
  }
  const { deviceCode } = payload as { deviceCode?: unknown };
  if (typeof deviceCode === 'string') {
    // Unopened, the sign-in stays a device's, with a code no device holds: it
    // finds no code, and ends as one whose code expired. (Left out, it would
    // be taken for an app's sign-in, and end as one whose app's registration
    // changed: it has no redirect_uri.)
    try {
      (live as { deviceCode?: string }).deviceCode = sealer!.open(deviceCode, deviceCodeContext(uid));
    } catch {
      (live as { deviceCode?: string }).deviceCode = NO_DEVICE_CODE;
    }
  }
  return live;
}
