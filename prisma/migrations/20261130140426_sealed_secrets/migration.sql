-- Private signing keys move out of "jwk" (now the public JWK only) into
-- "private_jwk", sealed with the server's encryption key. Existing rows are
-- sealed by the first server or CLI that starts after this migration
-- (ensureSigningKeys); cookie keys are sealed in place the same way.
ALTER TABLE "signing_keys" ADD COLUMN "private_jwk" TEXT;
