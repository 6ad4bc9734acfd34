-- AlterTable
ALTER TABLE "clients" ADD COLUMN     "pairwise_sector" TEXT;


-- A pairwise client registered before the column (its metadata says so) keeps
-- its sector: the host of its redirect URIs, as written (src/clients/clients.ts).
UPDATE "clients"
SET "pairwise_sector" = substring("metadata"->'redirect_uris'->>0 FROM '^[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)')
WHERE "metadata"->>'subject_type' = 'pairwise' AND "pairwise_sector" IS NULL;
