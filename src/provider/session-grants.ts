// Which grant an authorization request uses. Consent is remembered per person
// and client: someone who allowed an app in one browser is not asked again in
// another, until the consent expires (GRANT_TTL) or is withdrawn. But each
// browser session holds a grant of its own, a copy of the consent remembered,
// as the library's own grants are per session. What is revoked with a grant
// (a code or refresh token used twice, a token revoked by the app, a sign-out)
// then ends what that sign-in was given, not the app's tokens on the person's
// other devices: RFC 6749 §4.1.2 and RFC 7009 §2.1 revoke what was issued
// under that authorization. One shared grant did the latter (two reviews
// found an app's "sign out on this device" signing the person out of it everywhere).
import type { Grant, KoaContextWithOIDC } from 'oidc-provider';
import type { Sql } from '../persistence/database.js';
import { sha256 } from '../persistence/hash.js';
import { findGrantId } from './artifacts.js';

/**
 * The grant for this request (the library's loadExistingGrant): the consent
 * just given, else the session's own grant, else, for a session that has
 * none yet, a copy of the consent the person gave the client most recently,
 * made the session's own. Undefined when there is none (or the session's was
 * revoked): the library then starts an empty one, and asks.
 */
export async function loadSessionGrant(ctx: KoaContextWithOIDC, sql: Sql): Promise<Grant | undefined> {
  const { provider, client, session, result } = ctx.oidc;
  const clientId = client!.clientId;
  const { accountId, uid } = session!;
  const consented = result?.consent?.grantId;
  if (consented) return givenBy(await provider.Grant.find(consented), accountId, clientId);
  // A session whose grant was revoked (a refresh token used twice, or
  // revoked by the app) asks again (README: Refresh tokens, Revocation).
  const own = session!.grantIdFor(clientId);
  if (own) return givenBy(await provider.Grant.find(own), accountId, clientId);
  if (!accountId) return undefined;
  const rememberedId = await findGrantId(sql, accountId, clientId);
  const remembered = rememberedId ? givenBy(await provider.Grant.find(rememberedId), accountId, clientId) : undefined;
  if (!remembered) return undefined;
  const copy = new provider.Grant({ accountId, clientId });
  // One copy per session and client, however many requests make it at once
  // (silent authorizations in several frames): one id, so one row, which
  // every code they issue names and the session's sign-out ends.
  copy.jti = sha256(`grant of session ${uid} for client ${clientId}`);
  copy.openid = structuredClone(remembered.openid);
  copy.resources = structuredClone(remembered.resources);
  copy.rejected = structuredClone(remembered.rejected);
  // As old as the consent it copies: GRANT_TTL counts from when the person
  // last allowed it, not from each new browser.
  copy.exp = remembered.exp;
  await copy.save();
  return copy;
}

/** A grant is only used for the person and client it was given by. */
function givenBy(grant: Grant | undefined, accountId: string | undefined, clientId: string): Grant | undefined {
  return grant && grant.accountId === accountId && grant.clientId === clientId ? grant : undefined;
}
