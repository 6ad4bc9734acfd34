-- The delay a `keys rotate` asked for, in seconds, from a key's creation to
-- its activation (0 for --now), so that a server holding rotations to its own
-- KEY_ACTIVATION_DELAY (src/keys/signing-keys.ts, holdBackScheduledKeys) moves
-- only rotations that said how long they meant to wait: not first keys, nor
-- earlier releases' rotations, whose created_at came from another clock.
ALTER TABLE "signing_keys" ADD COLUMN "activation_delay" INTEGER;
