-- AlterTable
ALTER TABLE "provider_artifacts" DROP CONSTRAINT "provider_artifacts_pkey",
ADD CONSTRAINT "provider_artifacts_pkey" PRIMARY KEY ("id", "kind");

