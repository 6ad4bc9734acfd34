-- When a client enabled again (`portcullis client enable`) had been
-- disabled: the JWT access tokens issued to it before are not stored
-- anywhere, so the disable could not end them; introspection answers them inactive
-- (src/provider/configuration.ts, introspection.allowedPolicy).
ALTER TABLE "clients" ADD COLUMN "revoked_at" TIMESTAMPTZ(3);
