// Access-token protection for a Koa API, against a Portcullis issuer.
// JWT access tokens (RFC 9068) are verified offline against the issuer's JWKS;
// opaque ones are introspected (RFC 7662) with the API's own credentials.
// A token bound to a client's key (DPoP, RFC 9449) is accepted only with a
// proof of that key, never as a plain Bearer token. Failures answer 401/403
// with the WWW-Authenticate header of RFC 6750 §3 (RFC 9449 §7.1 for DPoP).
import { createRemoteJWKSet, errors as joseErrors, jwtVerify, type JWTPayload } from 'jose';
import type { Context, Middleware, Next } from 'koa';
import { DPOP_ALGORITHMS, DpopProofs, ProofError } from './dpop.js';

export interface ProtectOptions {
  /** The Portcullis issuer, e.g. http://localhost:3000 */
  issuer: string;
  /** This API's identifier, as registered with `portcullis api create --identifier`. */
  audience: string;
  /** Credentials printed by `portcullis api create`; needed only for opaque tokens. */
  introspection?: { clientId: string; clientSecret: string };
  /**
   * This API's origin as clients call it (`https://api.example.com`), which
   * DPoP proofs name. Defaults to the request's own origin: set it when a
   * proxy in front changes the scheme or host.
   */
  origin?: string;
  /**
   * How long a fetched JWKS is trusted, in milliseconds (default 60 s, the
   * max-age Portcullis serves it with by default). A key retired with
   * `portcullis keys retire --compromised` stops verifying here within this
   * long. jose ignores Cache-Control and would otherwise keep a JWKS for 10
   * minutes, refetching earlier only for a `kid` it does not know.
   */
  jwksMaxAge?: number;
}

export interface AccessToken {
  sub?: string;
  client_id?: string;
  scope: string[];
  exp?: number;
  /** The thumbprint of the key the token is bound to (`cnf.jkt`), for a DPoP-bound token. */
  jkt?: string;
  claims: JWTPayload | Record<string, unknown>;
}

type Scheme = 'Bearer' | 'DPoP';

/** Verifies an access token for this API; what requireToken needs besides. */
export interface TokenVerifier {
  (token: string): Promise<AccessToken>;
  /** ProtectOptions.origin, without a trailing slash. */
  readonly origin?: string;
  /** The DPoP proofs this API has accepted, so that none is accepted twice. */
  readonly proofs: DpopProofs;
}

class TokenError extends Error {
  constructor(
    readonly status: 400 | 401 | 403,
    readonly code: 'invalid_request' | 'invalid_token' | 'insufficient_scope' | 'invalid_dpop_proof' | undefined,
    description: string,
    readonly scope?: string,
  ) {
    super(description);
  }
}

/**
 * The token could not be checked: the issuer (discovery, its JWKS or its
 * introspection endpoint) did not answer, or not as it should. Not the
 * token's fault, so not invalid_token, which tells a client to throw a good
 * token away: 503, and the client may retry.
 */
class CheckUnavailable extends Error {}

/** How long the issuer is given to answer a fetch. */
const ISSUER_TIMEOUT_MS = 5_000;
/**
 * A token whose `kid` the cached JWKS lacks makes jose fetch it again, but
 * not within this long of the last fetch (jose's default is 30 s). After
 * `portcullis keys rotate --now` new tokens carry a new key at once: 5 s
 * refuses them for at most that long, and a stream of made-up kids still
 * costs the issuer no more than one JWKS fetch per 5 s.
 */
const JWKS_COOLDOWN_MS = 5_000;

interface IssuerMetadata {
  issuer: string;
  jwks_uri: string;
  introspection_endpoint: string;
}

const JWT_SHAPE = /^[\w-]+\.[\w-]+\.[\w-]+$/;
const ALGORITHMS = ['ES256', 'EdDSA', 'RS256'];

export function createTokenVerifier(options: ProtectOptions): TokenVerifier {
  const issuer = options.issuer.replace(/\/+$/, '');
  let metadata: Promise<IssuerMetadata> | undefined;
  let jwks: ReturnType<typeof createRemoteJWKSet> | undefined;

  const discover = () =>
    (metadata ??= fetch(`${issuer}/.well-known/openid-configuration`, { signal: AbortSignal.timeout(ISSUER_TIMEOUT_MS) })
      .then(async (response) => {
        if (!response.ok) throw new CheckUnavailable(`discovery answered ${response.status}`);
        const found = (await response.json()) as IssuerMetadata;
        // RFC 8414 §3.3: the document must name the issuer it was fetched
        // for, or its JWKS and endpoints are some other issuer's.
        if (found.issuer !== issuer) throw new CheckUnavailable(`discovery names the issuer ${JSON.stringify(found.issuer)}, not ${issuer}`);
        return found;
      })
      .catch((error: unknown) => {
        metadata = undefined; // tried again by the next request
        throw unavailable(error, 'discovery');
      }));

  async function verifyJwt(token: string): Promise<AccessToken> {
    jwks ??= createRemoteJWKSet(new URL((await discover()).jwks_uri), {
      cacheMaxAge: options.jwksMaxAge ?? 60_000,
      cooldownDuration: JWKS_COOLDOWN_MS,
      timeoutDuration: ISSUER_TIMEOUT_MS,
    });
    try {
      // RFC 9068 §4: typ at+jwt, our issuer, our audience, an asymmetric
      // algorithm, not expired; and §2.2's required claims there (jose
      // checks exp only where a token has one).
      const { payload } = await jwtVerify(token, jwks, {
        issuer,
        audience: options.audience,
        typ: 'at+jwt',
        algorithms: ALGORITHMS,
        requiredClaims: ['exp', 'iat', 'jti', 'client_id'],
      });
      return { sub: payload.sub, client_id: payload.client_id as string | undefined, scope: scopesOf(payload.scope), exp: payload.exp, jkt: jktOf(payload.cnf), claims: payload };
    } catch (error) {
      // The JWKS could not be fetched (jose's own errors for that, and a plain
      // JOSEError for an answer other than 200), or the network failed.
      if (error instanceof joseErrors.JWKSTimeout || error instanceof joseErrors.JWKSInvalid || error?.constructor === joseErrors.JOSEError || !(error instanceof joseErrors.JOSEError)) {
        throw unavailable(error, 'the JWKS');
      }
      throw new TokenError(401, 'invalid_token', describeJoseError(error));
    }
  }

  async function introspect(token: string): Promise<AccessToken> {
    if (!options.introspection) throw new TokenError(401, 'invalid_token', 'opaque tokens are not accepted here');
    const { clientId, clientSecret } = options.introspection;
    const endpoint = (await discover()).introspection_endpoint;
    const response = await fetch(endpoint, {
      method: 'POST',
      signal: AbortSignal.timeout(ISSUER_TIMEOUT_MS),
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(clientSecret)}`).toString('base64')}`,
      },
      body: new URLSearchParams({ token, token_type_hint: 'access_token' }).toString(),
    }).catch((error: unknown) => {
      throw unavailable(error, 'introspection');
    });
    // A 401 here means this API's own credentials were refused: a setup to fix, not a bad token.
    if (!response.ok) throw new CheckUnavailable(`introspection answered ${response.status}`);
    const result = (await response.json().catch((error: unknown) => {
      throw unavailable(error, 'introspection');
    })) as Record<string, unknown>;
    if (result.active !== true) throw new TokenError(401, 'invalid_token', 'the token is not active');
    const audiences = Array.isArray(result.aud) ? result.aud : [result.aud];
    if (!audiences.includes(options.audience)) throw new TokenError(401, 'invalid_token', 'the token is not meant for this API');
    if (result.iss !== undefined && result.iss !== issuer) throw new TokenError(401, 'invalid_token', 'the token is from another issuer');
    return {
      sub: result.sub as string | undefined,
      client_id: result.client_id as string | undefined,
      scope: scopesOf(result.scope),
      exp: result.exp as number | undefined,
      jkt: jktOf(result.cnf),
      claims: result,
    };
  }

  const verify = (token: string) => (JWT_SHAPE.test(token) ? verifyJwt(token) : introspect(token));
  return Object.assign(verify, { origin: options.origin?.replace(/\/+$/, ''), proofs: new DpopProofs() });
}

/** Koa middleware: a valid token for this API with every scope in `required`, else 401/403. */
export function requireToken(verify: TokenVerifier, ...required: string[]): Middleware {
  return async (ctx: Context, next: Next) => {
    const header = ctx.get('authorization');
    const named = /^(Bearer|DPoP)(?: |$)/i.exec(header)?.[1];
    const scheme: Scheme | undefined = named ? (named.toLowerCase() === 'dpop' ? 'DPoP' : 'Bearer') : undefined;
    // One or more spaces after the scheme (RFC 9110 §11.4, RFC 6750 §2.1: 1*SP).
    const match = /^(?:Bearer|DPoP) +([\w.~+/-]+=*)$/i.exec(header);
    try {
      // RFC 6750 §3.1: no error code when the request carried no token at all,
      // or only credentials of another scheme (Basic, ...); a Bearer or DPoP
      // header that is not `scheme token` is a malformed request (400).
      if (!scheme) throw new TokenError(401, undefined, 'an access token is required');
      if (!match) throw new TokenError(400, 'invalid_request', `malformed Authorization header: expected "${scheme} <token>"`);
      const accessToken = match[1]!;
      const token = await verify(accessToken);
      if (token.jkt) {
        // RFC 9449 §7.2: a bound token presented as Bearer is refused, or its binding would mean nothing.
        if (scheme !== 'DPoP') throw new TokenError(401, 'invalid_token', 'the token is DPoP-bound: send it with the DPoP scheme and a proof');
        // originalUrl: the path as the client sent it, also when a router mounted this under a prefix.
        const url = `${verify.origin ?? `${ctx.protocol}://${ctx.host}`}${ctx.originalUrl}`;
        await verify.proofs.check(ctx.req.headers.dpop, { method: ctx.method, url, accessToken, jkt: token.jkt }).catch((error: unknown) => {
          throw error instanceof ProofError ? new TokenError(401, 'invalid_dpop_proof', error.message) : error;
        });
      } else if (scheme === 'DPoP') {
        throw new TokenError(401, 'invalid_token', 'the token is not DPoP-bound: send it with the Bearer scheme');
      }
      const missing = required.filter((scope) => !token.scope.includes(scope));
      if (missing.length) throw new TokenError(403, 'insufficient_scope', `requires ${required.join(' ')}`, required.join(' '));
      ctx.state.token = token;
    } catch (error) {
      if (error instanceof CheckUnavailable) {
        ctx.status = 503;
        ctx.set('Retry-After', '5');
        ctx.body = { error: 'temporarily_unavailable', error_description: `the token could not be checked: ${error.message}` };
        return;
      }
      if (!(error instanceof TokenError)) throw error;
      ctx.status = error.status;
      ctx.set('WWW-Authenticate', challenges(error, scheme));
      ctx.body = { error: error.code ?? 'unauthorized', error_description: error.message };
      return;
    }
    await next();
  };
}

/**
 * The challenge for the scheme the client used. A refused Bearer request (or
 * one without a token) is also told that DPoP is accepted, and with which
 * algorithms (RFC 9449 §7.1): the token may be one that needs it.
 */
function challenges(error: TokenError, scheme: Scheme | undefined): string[] {
  const params = [`realm="api"`];
  if (error.code) params.push(`error="${error.code}"`, `error_description="${error.message.replace(/["\\]/g, '')}"`);
  if (error.scope) params.push(`scope="${error.scope}"`);
  const algs = `algs="${DPOP_ALGORITHMS.join(' ')}"`;
  if (scheme === 'DPoP') return [`DPoP ${[...params, algs].join(', ')}`];
  const bearer = `Bearer ${params.join(', ')}`;
  return error.status === 401 ? [bearer, `DPoP realm="api", ${algs}`] : [bearer];
}

/** An issuer that did not answer, as a CheckUnavailable saying which part. */
function unavailable(error: unknown, what: string): CheckUnavailable {
  if (error instanceof CheckUnavailable) return error;
  const timedOut = error instanceof joseErrors.JWKSTimeout || (error instanceof DOMException && error.name === 'TimeoutError');
  return new CheckUnavailable(`${what} ${timedOut ? 'did not answer in time' : 'could not be fetched'}`);
}

function jktOf(cnf: unknown): string | undefined {
  const jkt = (cnf as { jkt?: unknown } | undefined)?.jkt;
  return typeof jkt === 'string' ? jkt : undefined;
}

function scopesOf(scope: unknown): string[] {
  return typeof scope === 'string' ? scope.split(' ').filter(Boolean) : [];
}

function describeJoseError(error: joseErrors.JOSEError): string {
  if (error instanceof joseErrors.JWTExpired) return 'the token has expired';
  if (error instanceof joseErrors.JWTClaimValidationFailed) return `the token's ${error.claim} claim is not accepted`;
  if (error instanceof joseErrors.JWKSNoMatchingKey) return 'the token was not signed by a key of the issuer';
  if (error instanceof joseErrors.JWSSignatureVerificationFailed) return 'the token signature is invalid';
  if (error instanceof joseErrors.JOSEAlgNotAllowed) return 'the token algorithm is not accepted';
  return 'the token is invalid';
}
