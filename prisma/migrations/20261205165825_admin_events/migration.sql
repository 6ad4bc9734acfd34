-- The audit trail of the CLI: each command that may change something, who
-- ran it (user@host), when, its arguments as typed, and how it ended: "ok",
-- or "failed: " and why (`portcullis audit list`). Additive: an instance of
-- an earlier release ignores the table.
CREATE TABLE "admin_events" (
    "id" BIGSERIAL NOT NULL,
    "at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "actor" TEXT NOT NULL,
    "command" TEXT NOT NULL,
    "arguments" JSONB NOT NULL,
    "outcome" TEXT NOT NULL,

    CONSTRAINT "admin_events_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "admin_events_at_idx" ON "admin_events"("at");

