// DPoP proofs at a protected resource (RFC 9449 §4.3, §7.1). A DPoP-bound
// access token names the thumbprint of its client's key (`cnf.jkt`); each
// request must carry a fresh proof, signed with that key, for this very
// request (method, URL) and this very token (`ath`). A stolen token is
// useless without the key.
import { hash } from 'node:crypto';
import { calculateJwkThumbprint, EmbeddedJWK, errors as joseErrors, jwtVerify, type JWK } from 'jose';

/** The algorithms Portcullis accepts for proofs (its `dpop_signing_alg_values_supported`). */
export const DPOP_ALGORITHMS = ['ES256', 'EdDSA', 'Ed25519'];

/** How far a proof's `iat` may be from our clock, either way, in seconds (as Portcullis allows). */
const IAT_WINDOW = 300;
/** How long each generation of remembered proofs lasts (see DpopProofs.remember). */
const GENERATION = 2 * IAT_WINDOW;

export class ProofError extends Error {}

export interface ProofRequest {
  method: string;
  /** The URL the request was sent to, as the client saw it; query and fragment are ignored. */
  url: string;
  /** The access token presented with the proof. */
  accessToken: string;
  /** The thumbprint the access token is bound to. */
  jkt: string;
}

/**
 * Checks DPoP proofs for one API process. A proof is accepted once: it is
 * remembered (as a digest of key and jti, whatever their length) for at
 * least as long as its `iat` could still be accepted, in two generations of
 * IAT_WINDOW × 2 each: the older is dropped whole when a new one starts, so
 * forgetting costs nothing per request. Memory grows with the rate of DPoP
 * requests, about 100 bytes each for 10 to 20 minutes. The memory is per
 * process: several instances behind a balancer each keep their own, so a
 * proof replayed to another instance within the window is not caught there
 * (RFC 9449 §11.1 lets an API use nonces of its own for that).
 */
export class DpopProofs {
  private current = new Set<string>();
  private previous = new Set<string>();
  private generationEnds: number;

  constructor(private readonly now: () => number = () => Math.floor(Date.now() / 1000)) {
    this.generationEnds = now() + GENERATION;
  }

  /** The proof in the request's `DPoP` header values, checked against `request`; throws ProofError. */
  async check(headerValues: string | string[] | undefined, request: ProofRequest): Promise<void> {
    const proof = single(headerValues);
    let payload: Record<string, unknown>;
    let thumbprint: string;
    try {
      const verified = await jwtVerify(proof, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: DPOP_ALGORITHMS });
      payload = verified.payload;
      thumbprint = await calculateJwkThumbprint(verified.protectedHeader.jwk as JWK);
    } catch (error) {
      if (error instanceof joseErrors.JOSEError) throw new ProofError(describe(error));
      // WebCrypto refuses a malformed key (a point off the curve) with errors of its own.
      if (error instanceof DOMException || error instanceof TypeError) throw new ProofError('the DPoP proof key is invalid');
      throw error;
    }
    if (typeof payload.jti !== 'string' || !payload.jti) throw new ProofError('the DPoP proof has no jti');
    if (typeof payload.iat !== 'number') throw new ProofError('the DPoP proof has no iat');
    const now = this.now();
    if (Math.abs(now - payload.iat) > IAT_WINDOW) throw new ProofError('the DPoP proof is not recent');
    if (payload.htm !== request.method) throw new ProofError('the DPoP proof was made for another method');
    const expected = withoutQuery(request.url);
    if (!expected) throw new ProofError('the request URL is not valid');
    if (typeof payload.htu !== 'string' || withoutQuery(payload.htu) !== expected) {
      throw new ProofError('the DPoP proof was made for another URL');
    }
    if (payload.ath !== sha256(request.accessToken)) {
      throw new ProofError('the DPoP proof was made for another access token');
    }
    if (thumbprint !== request.jkt) throw new ProofError('the DPoP proof is not signed with the key the token is bound to');
    this.remember(sha256(`${request.jkt}.${payload.jti}`), now);
  }

  /**
   * A proof first seen at t is acceptable until its iat + IAT_WINDOW, at most
   * t + 2 × IAT_WINDOW (an iat that far ahead): it stays in `current` or
   * `previous` for at least one GENERATION of that length.
   */
  private remember(digest: string, now: number): void {
    if (now >= this.generationEnds) {
      // A whole generation (or more) passed: what `previous` held can no longer be accepted.
      this.previous = now >= this.generationEnds + GENERATION ? new Set() : this.current;
      this.current = new Set();
      this.generationEnds = now + GENERATION;
    }
    if (this.current.has(digest) || this.previous.has(digest)) throw new ProofError('the DPoP proof was already used');
    this.current.add(digest);
  }
}

/** Exactly one proof (RFC 9449 §4.3 check 1); Node joins repeated headers with ", ". */
function single(values: string | string[] | undefined): string {
  const all = (Array.isArray(values) ? values : values === undefined ? [] : [values]).flatMap((value) => value.split(','));
  if (all.length === 0 || !all[0]!.trim()) throw new ProofError('a DPoP proof is required with a DPoP-bound token');
  if (all.length > 1) throw new ProofError('send exactly one DPoP proof');
  return all[0]!.trim();
}

/** A URL without query and fragment, normalised (RFC 9449 §4.3 check 9: RFC 3986 §6.2.2 and §6.2.3). */
function withoutQuery(url: string): string | undefined {
  const parsed = URL.parse(url);
  if (!parsed) return undefined;
  parsed.search = '';
  parsed.hash = '';
  return parsed.href;
}

/** SHA-256, base64url: how `ath` names the token, and how a seen proof is remembered. */
function sha256(value: string): string {
  return hash('sha256', value, 'base64url');
}

function describe(error: joseErrors.JOSEError): string {
  if (error instanceof joseErrors.JOSEAlgNotAllowed) return 'the DPoP proof algorithm is not accepted';
  if (error instanceof joseErrors.JWSSignatureVerificationFailed) return 'the DPoP proof signature is invalid';
  if (error instanceof joseErrors.JWTClaimValidationFailed) return `the DPoP proof's ${error.claim} is not accepted`;
  return 'the DPoP proof is invalid';
}
