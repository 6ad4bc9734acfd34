// The statements the artifact adapter (adapter.ts) runs on provider_artifacts,
// by name, so that the pg pool prepares each once per connection. Ids are
// digests (persistence/hash.ts): a statement is handed the digest, never the id.
import { sha256Sql } from '../persistence/hash.js';

export const SQL = {
  // By digest alone, every kind at once (see ArtifactAdapter.find), with the grant the token
  // belongs to: its key is the SHA-256 (base64url) of grant_id, as persistence/hash.ts's sha256().
  // The grant is a LATERAL ... LIMIT 1 so that it is always one primary-key
  // probe per token found: as a plain join, a generic plan made without
  // statistics (autovacuum off, or before the first analyze) hashed every
  // grant in the table on every call.
  find: {
    name: 'artifact-find-many',
    text: `SELECT t.id, t.kind, t.payload, t.expires_at, t.consumed_at,
                  EXTRACT(EPOCH FROM now() - t.consumed_at) AS consumed_ago,
                  g.payload AS grant_payload, g.expires_at AS grant_expires_at, g.consumed_at AS grant_consumed_at
           FROM provider_artifacts t
           LEFT JOIN LATERAL (
             SELECT payload, expires_at, consumed_at FROM provider_artifacts
             WHERE kind = 'Grant'
               AND id = ${sha256Sql('t.grant_id')}
             LIMIT 1
           ) g ON true
           WHERE t.id = ANY($1::text[])`,
  },
  // A session's uid stays when its id is replaced (see replaceSession): the
  // ended rows of its earlier ids keep it, and only the live one is found.
  findByUid: {
    name: 'artifact-find-uid',
    text: `SELECT payload, expires_at, consumed_at FROM provider_artifacts
           WHERE kind = $1 AND uid = $2 AND (kind <> 'Session' OR consumed_at IS NULL) LIMIT 1`,
  },
  // Live ones first: one that expired (not swept yet) and a live one with
  // the same code are two (see ArtifactAdapter.findByUserCode).
  findByUserCode: {
    name: 'artifact-find-user-code',
    text: `SELECT payload, expires_at, consumed_at FROM provider_artifacts WHERE kind = $1 AND user_code = ANY($2::text[])
           ORDER BY expires_at > now() DESC LIMIT 2`,
  },
  // Stores a row for $4 milliseconds, and at least until $5 (epoch seconds,
  // or null), unless a live one is there: one statement, so of two at once
  // exactly one stores it, the other waiting on the first's row lock and
  // then finding it. Timed by the database's clock, which every instance
  // shares: a device's polls (device-flow.ts) may reach two instances whose
  // clocks differ by more than the slack. $5 is for a row that must outlive a
  // moment an instance judges by its own clock (a token's exp).
  claim: {
    name: 'artifact-claim',
    text: `INSERT INTO provider_artifacts (kind, id, payload, expires_at)
           VALUES ($1, $2, $3::jsonb, GREATEST(now() + $4 * interval '1 millisecond', to_timestamp($5::double precision)))
           ON CONFLICT (id, kind) DO UPDATE SET payload = EXCLUDED.payload, expires_at = EXCLUDED.expires_at, consumed_at = NULL
           WHERE provider_artifacts.expires_at <= now()
           RETURNING 1`,
  },
  // A session saved (see ArtifactAdapter.upsert): of the form states $5 (the sign-out
  // page's, the device page's) that the saving route does not own, those
  // stored meanwhile stay, unless the payload names its own. Never an ended
  // session (as in the writer's upsert).
  saveSessionKeeping: {
    name: 'artifact-save-session-keeping',
    text: `INSERT INTO provider_artifacts (kind, id, payload, uid, expires_at) VALUES ('Session', $1, $2::jsonb, $3, $4)
           ON CONFLICT (id, kind) DO UPDATE SET
             payload = EXCLUDED.payload || coalesce((
               SELECT jsonb_object_agg(key, provider_artifacts.payload -> key) FROM unnest($5::text[]) AS key
               WHERE provider_artifacts.payload ? key AND NOT EXCLUDED.payload ? key), '{}'::jsonb),
             uid = EXCLUDED.uid, expires_at = EXCLUDED.expires_at
           WHERE provider_artifacts.consumed_at IS NULL`,
  },
  // The pushed request a sign-in in progress began with, kept at least as long as it (see ArtifactAdapter.upsert).
  keepPushedRequest: {
    name: 'artifact-keep-pushed-request',
    text: `UPDATE provider_artifacts SET expires_at = GREATEST(expires_at, $2) WHERE kind = 'PushedAuthorizationRequest' AND id = $1`,
  },
  // An interaction saved by our pages (see ArtifactAdapter.upsert): its row only, if it is still there.
  updateInteraction: {
    name: 'artifact-update-interaction',
    text: `UPDATE provider_artifacts SET payload = $2::jsonb, expires_at = $3, uid = $4, grant_id = $5
           WHERE kind = 'Interaction' AND id = $1 RETURNING 1`,
  },
  grantOf: { name: 'artifact-grant-of', text: `SELECT grant_id, payload->>'sessionUid' AS session_uid FROM provider_artifacts WHERE kind = $1 AND id = $2` },
  destroy: { name: 'artifact-destroy', text: 'DELETE FROM provider_artifacts WHERE kind = $1 AND id = $2 RETURNING 1' },
  // Sessions are ended, not deleted (see ArtifactAdapter.replaceSession and signOut): an ended
  // row is emptied, keeps its uid, and goes within the hour.
  // The old row is locked first: a sign-out that got there before has marked
  // it (and this finds nothing to replace); one that comes after waits, then
  // sees the new row (signOut's next pass). A row another request replaced a
  // moment ago (two tabs finishing at once) still has its successor made: the
  // library gives each its own session, and a sign-out ends them all (uid).
  // The new row keeps the old one's form states $6, as saveSessionKeeping does.
  replaceSession: {
    name: 'artifact-replace-session',
    text: `WITH old AS (
             SELECT id, payload FROM provider_artifacts
             WHERE kind = 'Session' AND id = $1 AND NOT (payload ? 'signedOut')
             FOR UPDATE
           ), ended AS (
             UPDATE provider_artifacts a SET consumed_at = now(), payload = '{}'::jsonb,
                    expires_at = LEAST(a.expires_at, now() + interval '1 hour')
             FROM old WHERE a.kind = 'Session' AND a.id = old.id AND a.consumed_at IS NULL
           )
           INSERT INTO provider_artifacts (kind, id, payload, uid, expires_at)
           SELECT 'Session', $2, $3::jsonb || coalesce((
                    SELECT jsonb_object_agg(key, old.payload -> key) FROM unnest($6::text[]) AS key
                    WHERE old.payload ? key AND NOT $3::jsonb ? key), '{}'::jsonb),
                  $4, $5 FROM old
           ON CONFLICT (id, kind) DO NOTHING
           RETURNING 1`,
  },
  sessionUid: { name: 'artifact-session-uid', text: `SELECT uid FROM provider_artifacts WHERE kind = 'Session' AND id = $1` },
  // Answers what each row held before: its authorizations name grants.
  signOut: {
    name: 'artifact-sign-out',
    text: `WITH ending AS (
             SELECT id, payload FROM provider_artifacts
             WHERE kind = 'Session' AND (id = $1 OR uid = $2) AND NOT (payload ? 'signedOut')
             FOR UPDATE
           )
           UPDATE provider_artifacts a SET consumed_at = COALESCE(a.consumed_at, now()), payload = '{"signedOut": true}'::jsonb,
                  expires_at = LEAST(a.expires_at, now() + interval '1 hour')
           FROM ending WHERE a.kind = 'Session' AND a.id = ending.id
           RETURNING ending.payload AS payload`,
  },
  // The consents given in a session's interactions that have not been
  // resumed yet: a resume would have named their grants in the session.
  pendingConsents: {
    name: 'artifact-pending-consents',
    text: `SELECT payload #>> '{result,consent,grantId}' AS grant_id, payload #>> '{params,scope}' AS scope FROM provider_artifacts
           WHERE kind = 'Interaction' AND uid = $1 AND payload #> '{result,consent,grantId}' IS NOT NULL`,
  },
  revoke: { name: 'artifact-revoke', text: 'DELETE FROM provider_artifacts WHERE grant_id = $1 AND kind = ANY($2::text[])' },
  // Those of one browser session ($3): one sign-in's code and the tokens from it and its refreshes.
  revokeSignIn: {
    name: 'artifact-revoke-sign-in',
    text: `DELETE FROM provider_artifacts WHERE grant_id = $1 AND kind = ANY($2::text[]) AND payload->>'sessionUid' = $3`,
  },
  // A consent signed out of, withdrawn: a Grant's consumed_at, so that no
  // new sign-in finds it (grant-of-account-client in artifacts.ts), nor a
  // sign-in since in a browser whose session names it (loadExistingGrant in
  // configuration.ts), while the sign-ins in other browsers that hold it go
  // on. Those were made before now, so none outlives SESSION_MAX_AGE ($2 s)
  // from now, nor needs the consent longer: it expires then (the row, for
  // the sweeper, and its exp, which caps what is issued under it). (Whether
  // a session still names it cannot be asked cheaply: sessions are not
  // filed by account.) Not one that holds offline_access now: Allow in
  // another browser may have given it since the sign-out asked
  // (adapter.ts, keptAtSignOut). Answers the grant's client, for the audit trail.
  withdrawConsent: {
    name: 'artifact-withdraw-consent',
    text: `UPDATE provider_artifacts SET consumed_at = COALESCE(consumed_at, now()),
                  expires_at = LEAST(expires_at, now() + $2::int * interval '1 second'),
                  payload = CASE WHEN jsonb_typeof(payload->'exp') = 'number'
                    THEN jsonb_set(payload, '{exp}', to_jsonb(LEAST((payload->>'exp')::numeric, floor(extract(epoch FROM now())) + $2::int)))
                    ELSE payload END
           WHERE kind = 'Grant' AND id = $1
             AND NOT ('offline_access' = ANY (string_to_array(coalesce(payload #>> '{openid,scope}', ''), ' ')))
           RETURNING client_id`,
  },
  // Of these grants (by digest), those that hold offline_access now.
  offlineGrants: {
    name: 'artifact-offline-grants',
    text: `SELECT payload->>'jti' AS jti FROM provider_artifacts
           WHERE kind = 'Grant' AND id = ANY($1::text[])
             AND 'offline_access' = ANY (string_to_array(coalesce(payload #>> '{openid,scope}', ''), ' '))`,
  },
} as const;
