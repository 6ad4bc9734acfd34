-- A client an operator has disabled (`portcullis client disable`): the
-- provider's client lookup (src/provider/client-adapter.ts) finds no such
-- client until `client enable` clears it.
ALTER TABLE "clients" ADD COLUMN "disabled_at" TIMESTAMPTZ(3);
