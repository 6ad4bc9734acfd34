-- Most rows are tokens, which have no uid, user code or account column: index
-- only the rows that have a value, so that saving a token maintains three
-- indexes instead of six. Every lookup compares the column with `=` (or `<`),
-- which implies IS NOT NULL, so the planner still uses these.
-- Prisma 6's schema language cannot express a predicate; schema.prisma keeps
-- the plain @@index lines with a note. A generated migration that turns these
-- back into plain indexes is wrong: drop those statements from it.
DROP INDEX "provider_artifacts_grant_id_idx";
CREATE INDEX "provider_artifacts_grant_id_idx" ON "provider_artifacts"("grant_id") WHERE "grant_id" IS NOT NULL;
DROP INDEX "provider_artifacts_kind_uid_idx";
CREATE INDEX "provider_artifacts_kind_uid_idx" ON "provider_artifacts"("kind", "uid") WHERE "uid" IS NOT NULL;
DROP INDEX "provider_artifacts_kind_user_code_idx";
CREATE INDEX "provider_artifacts_kind_user_code_idx" ON "provider_artifacts"("kind", "user_code") WHERE "user_code" IS NOT NULL;
DROP INDEX "provider_artifacts_kind_account_id_client_id_idx";
CREATE INDEX "provider_artifacts_kind_account_id_client_id_idx" ON "provider_artifacts"("kind", "account_id", "client_id") WHERE "account_id" IS NOT NULL;
DROP INDEX "provider_artifacts_expires_at_idx";
CREATE INDEX "provider_artifacts_expires_at_idx" ON "provider_artifacts"("expires_at") WHERE "expires_at" IS NOT NULL;

-- Rows come and go by the thousand per minute under load (a refresh consumes
-- one token and writes two): vacuum and analyze after 2% churn rather than
-- the default 20% / 10%, so dead rows and stale statistics do not pile up
-- between runs. Free space on each page lets a consumption (consumed_at, not
-- indexed) be a HOT update that touches no index.
ALTER TABLE "provider_artifacts" SET (
  autovacuum_vacuum_scale_factor = 0.02,
  autovacuum_analyze_scale_factor = 0.02,
  fillfactor = 90
);
