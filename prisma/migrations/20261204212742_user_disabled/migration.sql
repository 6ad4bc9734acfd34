-- A user an operator has disabled (`portcullis user disable`): refused at
-- sign-in and by every lookup of the account (src/accounts/accounts.ts) until
-- `user enable` clears it.
ALTER TABLE "users" ADD COLUMN "disabled_at" TIMESTAMPTZ(3);
