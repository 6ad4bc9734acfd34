-- AlterTable
ALTER TABLE "clients" ADD COLUMN     "pairwise_sector" TEXT;

