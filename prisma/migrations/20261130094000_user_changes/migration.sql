-- Servers cache accounts (src/accounts/accounts.ts): announce every change to
-- a user, made by Portcullis or by anyone else with SQL, so no server keeps
-- serving a changed or deleted one. Inserts need no announcement: only rows
-- that were found are cached.
CREATE FUNCTION "portcullis_announce_user_change"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('portcullis_user_changes', OLD."id"::text);
  RETURN NULL;
END
$$;

CREATE TRIGGER "users_announce_change"
AFTER UPDATE OR DELETE ON "users"
FOR EACH ROW EXECUTE FUNCTION "portcullis_announce_user_change"();
