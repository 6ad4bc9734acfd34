import { hash } from 'node:crypto';
import type Provider from 'oidc-provider';
import type { ArtifactAdapter } from './adapter.js';

/**
 * What must be used once is checked once (RFC 9449 §11.1 for DPoP proofs,
 * RFC 7523 §3 for the client assertions of private_key_jwt; attestations
 * are off here but would be served the same way). The library checks with a lookup and
 * then a save, so a proof sent in several requests at once passed in all of
 * them (11 tokens from one proof, measured). The check is one conditional
 * insert instead. The row's id is the library's own, a digest of issuer (the
 * client) and jti.
 *
 * The library asks for a row until `exp`: for a DPoP proof, the end of its
 * acceptance window (now + 5 minutes). But a proof is accepted while its
 * `iat` is within 5 minutes of the clock either way, so one made 5 minutes
 * ahead stays acceptable for 10: every row is kept for the window past `exp`.
 */
const REPLAY_WINDOW = 300;

export function checkReplaysAtomically(provider: Provider, replays: ArtifactAdapter): void {
  const ReplayDetection = provider.ReplayDetection as unknown as { unique(iss: string, jti: string, exp: number): Promise<boolean> };
  ReplayDetection.unique = (iss, jti, exp) => {
    const now = Math.floor(Date.now() / 1000);
    const until = Math.max(now, exp) + REPLAY_WINDOW;
    // Until then by the clock of every instance that may be shown the proof again, the database's included.
    return replays.claim(hash('sha256', `${iss}${jti}`, 'base64url'), { iss, iat: now, exp: until, kind: 'ReplayDetection' }, until - now, until);
  };
}
