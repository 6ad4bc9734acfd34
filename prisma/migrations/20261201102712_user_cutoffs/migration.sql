-- Cut-offs for a user's sessions and tokens (src/accounts/accounts.ts): what
-- signed in, or was issued, before them is not honoured. A request in flight
-- when `user set-password` or `user revoke` deletes a session saves it back;
-- the cut-off still refuses it.
ALTER TABLE "users" ADD COLUMN "revoked_at" TIMESTAMPTZ(3),
ADD COLUMN "signed_out_at" TIMESTAMPTZ(3);
