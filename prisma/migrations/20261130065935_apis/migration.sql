-- CreateTable
CREATE TABLE "apis" (
    "identifier" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "scopes" JSONB NOT NULL,
    "token_format" TEXT NOT NULL,
    "access_token_ttl" INTEGER NOT NULL,
    "client_id" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "apis_pkey" PRIMARY KEY ("identifier")
);

-- CreateIndex
CREATE UNIQUE INDEX "apis_client_id_key" ON "apis"("client_id");

-- AddForeignKey
ALTER TABLE "apis" ADD CONSTRAINT "apis_client_id_fkey" FOREIGN KEY ("client_id") REFERENCES "clients"("client_id") ON DELETE CASCADE ON UPDATE CASCADE;

