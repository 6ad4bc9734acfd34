-- Failed sign-in counters (src/accounts/sign-in-throttle.ts): one row per
-- digest of an email or a client address, deleted by the sweeper once its
-- window has ended.
CREATE TABLE "sign_in_failures" (
    "key" TEXT NOT NULL,
    "failures" INTEGER NOT NULL,
    "expires_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "sign_in_failures_pkey" PRIMARY KEY ("key")
);

CREATE INDEX "sign_in_failures_expires_at_idx" ON "sign_in_failures"("expires_at");
