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
// nor for a client disabled since (enabled again or not), nor once its client
// revoked it (RFC 7009: its `jti` is kept, until it expires, as revoked).
// What no JWT names, its grant and sign-in, cannot be asked: a consent
// withdrawn, a sign-out or a replayed refresh token does not end it, as it
// does not end it at the API (README, Protecting an API).
import { createLocalJWKSet, jwtVerify, type JWK, type JWTPayload } from 'jose';
import type { AdapterPayload, Client, KoaContextWithOIDC } from 'oidc-provider';
import { sectorOf, type Subjects } from '../accounts/subjects.js';
import { publicPart } from '../keys/signing-keys.js';

/** Why a confidential client may not revoke another client's token (RFC 7009 §2.1). */
export const NOT_YOURS_TO_REVOKE = 'client is not authorized to revoke the presented token';

/** Where revoked JWT access tokens are kept (an artifact adapter's calls): by `jti`, until the token expires. */
export interface RevokedTokens {
  claim(id: string, payload: AdapterPayload, expiresIn: number, until?: number): Promise<boolean>;
  find(id: string): Promise<AdapterPayload | undefined>;
}

type AllowedPolicy = (ctx: KoaContextWithOIDC, client: Client, token: never) => Promise<boolean> | boolean;

interface AccessTokenClaims extends JWTPayload {
  client_id?: unknown;
  scope?: unknown;
  cnf?: { jkt?: unknown };
}

/**
 * After the library's introspection and revocation routes: where introspection
 * refused a JWT, the answer for a JWT access token of this server that the
 * caller may know about; anything else (another JWT, a forged or expired one)
 * is left for followTheStandards to answer `{"active": false}`. Where
 * revocation refused one, the token is kept as revoked when it is the
 * revoking client's own, and another's is refused as a stored token would be.
 */
export function structuredAccessTokens(
  signingKeys: object[],
  issuer: string,
  allowedPolicy: AllowedPolicy,
  revoked: RevokedTokens,
  onRevoked: (ctx: KoaContextWithOIDC) => void,
  subjects: Subjects,
) {
  const keys = createLocalJWKSet({ keys: (signingKeys as JWK[]).map(publicPart) });

  /** The claims of `token` if it is an unexpired JWT access token of this server's, with the claims the answers need. */
  async function verified(token: string): Promise<AccessTokenClaims & { client_id: string; sub: string } | undefined> {
    try {
      const { payload } = await jwtVerify<AccessTokenClaims>(token, keys, { issuer, typ: 'at+jwt', requiredClaims: ['exp', 'iat', 'sub', 'client_id', 'jti'] });
      if (typeof payload.client_id !== 'string' || typeof payload.sub !== 'string' || typeof payload.jti !== 'string') return undefined;
      return payload as AccessTokenClaims & { client_id: string; sub: string };
    } catch {
      return undefined;
    }
  }

  return async function answerForAccessTokenJwt(ctx: KoaContextWithOIDC): Promise<void> {
    const route = ctx.oidc?.route;
    if (route !== 'introspection' && route !== 'revocation') return;
    const refused = ctx.body as { error?: string } | undefined;
    if (ctx.status !== 400 || refused?.error !== 'unsupported_token_type') return;
    const { client, params } = ctx.oidc;
    if (!client || typeof params?.token !== 'string') return;
    const claims = await verified(params.token);
    if (!claims) return;
    if (route === 'revocation') {
      // As for a stored token (the library's revocation.allowedPolicy in
      // configuration.ts): only the client's own is revoked; another's is
      // refused to a confidential client, and answered 200 to a public one.
      if (claims.client_id === client.clientId) {
        // Kept by its id alone, until the token expires (by this instance's
        // clock, which judged it unexpired, and the database's): nothing else
        // of it is needed.
        await revoked.claim(claims.jti!, {}, claims.exp! - Date.now() / 1000, claims.exp);
        onRevoked(ctx);
      } else if (client.clientAuthMethod !== 'none') {
        ctx.body = { error: 'invalid_request', error_description: NOT_YOURS_TO_REVOKE };
      }
      return;
    }

    const clientId = claims.client_id;
    // Not a token of a client deleted since, whose stored tokens went with it (a lookup, cached).
    const holder = await ctx.oidc.provider.Client.find(clientId);
    if (!holder) return;
    // The person's, unless it is a client's own token (client credentials:
    // RFC 9068 §2.2 makes the client its subject). The `sub` is the person as
    // the token's client knows them: its user id, or its pairwise identifier,
    // turned back into the user id here (one that names nobody is no token of ours).
    let accountId: string | undefined;
    if (claims.sub !== clientId) {
      accountId = subjects.accountOf(claims.sub, sectorOf(holder));
      if (accountId === undefined) return;
    }
    const token = { kind: 'AccessToken', clientId, aud: claims.aud, iat: claims.iat, ...(accountId ? { accountId } : {}) };
    if (!(await allowedPolicy(ctx, client, token as never))) return;
    if (await revoked.find(claims.jti!)) return;

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
