// Introspection of JWT access tokens (RFC 9068), which the library refuses
// (unsupported_token_type) because it does not store them. An API registered
// with JWT tokens (the default) is given client credentials "for
// introspection", and a library that introspects whatever it is handed would
// be told its valid tokens were inactive. RFC 7662 §2.2 asks whether the token
// is active: issued here, unexpired, and not withdrawn by anything the server
// knows of. A JWT is looked at as the API itself would (signature with a key
// this server publishes, issuer, `typ: at+jwt`, expiry), then through the
// same policy as a stored token (introspection.allowedPolicy in
// configuration.ts): only its API or its client is answered, and not for a
// user disabled or revoked since, nor for a client or an API deleted since,
// nor for a client disabled since (enabled again or not).
// What no JWT names, its grant and sign-in, cannot be asked: a consent
// withdrawn, a sign-out or a replayed refresh token does not end it, as it
// does not end it at the API (README, Protecting an API).
import { createLocalJWKSet, jwtVerify, type JWK, type JWTPayload } from 'jose';
import type { Client, KoaContextWithOIDC } from 'oidc-provider';
import { publicPart } from '../keys/signing-keys.js';

type AllowedPolicy = (ctx: KoaContextWithOIDC, client: Client, token: never) => Promise<boolean> | boolean;

interface AccessTokenClaims extends JWTPayload {
  client_id?: unknown;
  scope?: unknown;
  cnf?: { jkt?: unknown };
}

/**
 * After the library's introspection route: where it refused a JWT, the
 * answer for a JWT access token of this server that the caller may know
 * about; anything else (another JWT, a forged or expired one) is left for
 * followTheStandards to answer `{"active": false}`.
 */
export function introspectStructuredTokens(signingKeys: object[], issuer: string, allowedPolicy: AllowedPolicy) {
  const keys = createLocalJWKSet({ keys: (signingKeys as JWK[]).map(publicPart) });

  return async function answerForAccessTokenJwt(ctx: KoaContextWithOIDC): Promise<void> {
    const refused = ctx.body as { error?: string } | undefined;
    const { client, params } = ctx.oidc ?? {};
    if (ctx.oidc?.route !== 'introspection' || ctx.status !== 400 || refused?.error !== 'unsupported_token_type') return;
    if (!client || typeof params?.token !== 'string') return;

    let claims: AccessTokenClaims;
    try {
      ({ payload: claims } = await jwtVerify<AccessTokenClaims>(params.token, keys, { issuer, typ: 'at+jwt', requiredClaims: ['exp', 'iat', 'sub', 'client_id'] }));
    } catch {
      return;
    }
    const clientId = claims.client_id;
    if (typeof clientId !== 'string' || typeof claims.sub !== 'string') return;
    // Not a token of a client deleted since, whose stored tokens went with it (a lookup, cached).
    if (!(await ctx.oidc.provider.Client.find(clientId))) return;
    // The person's, unless it is a client's own token (client credentials: RFC 9068 §2.2 makes the client its subject).
    const token = {
      kind: 'AccessToken',
      clientId,
      aud: claims.aud,
      iat: claims.iat,
      ...(claims.sub !== clientId ? { accountId: claims.sub } : {}),
    };
    if (!(await allowedPolicy(ctx, client, token as never))) return;

    const jkt = typeof claims.cnf?.jkt === 'string' ? claims.cnf.jkt : undefined;
    ctx.status = 200;
    ctx.body = {
      active: true,
      sub: claims.sub,
      client_id: clientId,
      exp: claims.exp,
      iat: claims.iat,
      iss: claims.iss,
      jti: claims.jti,
      aud: claims.aud,
      scope: typeof claims.scope === 'string' && claims.scope ? claims.scope : undefined,
      token_type: jkt ? 'DPoP' : 'Bearer',
      cnf: jkt ? { jkt } : undefined,
    };
  };
}
