// Applies prisma/migrations/*/migration.sql in order, recording each in Prisma's
// own `_prisma_migrations` table with Prisma's checksum (SHA-256 of the file), so
// `prisma migrate status` agrees with us. We apply them ourselves rather than
// spawning the Prisma CLI because its schema engine would have to be loaded at
// every start, and the embedded database is only reachable from this process.
import { createHash, randomUUID } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

export const MIGRATIONS_DIR = fileURLToPath(new URL('../../prisma/migrations', import.meta.url));

// Prisma's advisory lock key, so that we and `prisma migrate deploy` exclude each other.
const ADVISORY_LOCK_KEY = 72707369;

export class MigrationError extends Error {
  override name = 'MigrationError';
}

interface Migration {
  name: string;
  sql: string;
  checksum: string;
}

async function readMigrations(dir: string): Promise<Migration[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const names = entries.filter((entry) => entry.isDirectory()).map((entry) => entry.name).sort();
  return Promise.all(
    names.map(async (name) => {
      const sql = await readFile(path.join(dir, name, 'migration.sql'), 'utf8');
      return { name, sql, checksum: createHash('sha256').update(sql).digest('hex') };
    }),
  );
}

export interface MigrationResult {
  applied: string[];
  alreadyApplied: number;
  /** Migrations the database records that this release does not have: a newer release applied them. */
  unknown: string[];
}

const NOT_OURS =
  "the database holds tables, or migrations, but none of Portcullis's: check DATABASE_URL (or DATA_DIR); Portcullis wants a database of its own, " +
  'and only `portcullis migrate` or a server start would add its tables to this one';

/**
 * What is wrong with a database encoded `encoding` (its server_encoding), or
 * undefined for UTF-8. Names, emails and request parameters (a `state`, a
 * `nonce`) may hold any character; in another encoding the statement storing
 * one it lacks fails, and the request with it (a 500, a CLI error).
 */
export function encodingProblem(encoding: string): string | undefined {
  if (encoding === 'UTF8') return undefined;
  return `is encoded ${encoding}, which cannot hold every name, email and request parameter Portcullis stores: make a database with CREATE DATABASE … ENCODING 'UTF8' TEMPLATE template0`;
}

export interface MigrateOptions {
  /**
   * Apply migrations only to a database that holds none yet, and refuse one
   * an earlier release migrated (MigrationError): a CLI command's. Servers of
   * that release may still run on it, and a change they do not expect is to
   * come from `portcullis migrate` or a start of this release, which say
   * what they applied, not from whatever command an operator tried first.
   */
  onlyNewDatabase?: boolean;
}

/** Prisma's record of applied migrations, as `prisma migrate deploy` makes it. */
const CREATE_RECORD_TABLE = `CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
  "id" VARCHAR(36) PRIMARY KEY NOT NULL,
  "checksum" VARCHAR(64) NOT NULL,
  "finished_at" TIMESTAMPTZ,
  "migration_name" VARCHAR(255) NOT NULL,
  "logs" TEXT,
  "rolled_back_at" TIMESTAMPTZ,
  "started_at" TIMESTAMPTZ NOT NULL DEFAULT now(),
  "applied_steps_count" INTEGER NOT NULL DEFAULT 0
)`;

/** Runs one migration and records it, in whatever transaction `client` is in. */
async function apply(client: pg.Client, migration: Migration): Promise<void> {
  await client.query(migration.sql);
  await client.query(
    `INSERT INTO "_prisma_migrations" (id, checksum, finished_at, migration_name, applied_steps_count)
     VALUES ($1, $2, now(), $3, 1)`,
    [randomUUID(), migration.checksum, migration.name],
  );
}

/**
 * Gives a database that holds nothing every migration of this release, inside
 * the transaction `client` holds, which its caller commits or rolls back whole
 * (copy-database.ts). It takes the lock migrate() takes and holds it till
 * then, so that a server or CLI started meanwhile waits for the outcome;
 * `check` runs under the lock first (that the database is still empty).
 */
export async function migrateWithin(client: pg.Client, check: () => Promise<void>, dir = MIGRATIONS_DIR): Promise<void> {
  await client.query('SELECT pg_advisory_xact_lock($1)', [ADVISORY_LOCK_KEY]);
  await check();
  await client.query(CREATE_RECORD_TABLE);
  for (const migration of await readMigrations(dir)) await apply(client, migration);
}

/** Brings the database to the newest migration. Safe to run from several instances at once. */
export async function migrate(connectionString: string, options: MigrateOptions = {}, dir = MIGRATIONS_DIR): Promise<MigrationResult> {
  const migrations = await readMigrations(dir);
  const client = new pg.Client({ connectionString });
  // A connection lost meanwhile fails the statement in flight, which says so;
  // the 'error' event it also emits would, unheard, end the process.
  client.on('error', () => undefined);
  await client.connect();
  try {
    await client.query('SELECT pg_advisory_lock($1)', [ADVISORY_LOCK_KEY]);
    const { rows: found } = await client.query<{ recorded: boolean; tables: number; encoding: string }>(
      `SELECT to_regclass('"_prisma_migrations"') IS NOT NULL AS recorded,
              (SELECT count(*)::int FROM pg_tables WHERE schemaname = current_schema() AND tablename <> '_prisma_migrations') AS tables,
              current_setting('server_encoding') AS encoding`,
    );
    // "New" is empty: tables without a migration table are another
    // application's (a DATABASE_URL pointing elsewhere), which a command such
    // as `client list` must not fill with ours.
    if (options.onlyNewDatabase && !found[0]!.recorded && found[0]!.tables > 0) throw new MigrationError(NOT_OURS);
    // Refused before it holds anything of ours; one that already does is warned of at every start (server.ts).
    const encoding = encodingProblem(found[0]!.encoding);
    const ours = migrations.map((migration) => migration.name);
    const holdsOurs = async () =>
      ((await client.query('SELECT 1 FROM "_prisma_migrations" WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL AND migration_name = ANY($1) LIMIT 1', [ours])).rowCount ?? 0) > 0;
    if (encoding && (!found[0]!.recorded || !(await holdsOurs()))) {
      throw new MigrationError(`the database ${encoding}`);
    }
    await client.query(CREATE_RECORD_TABLE);
    const { rows } = await client.query<{ migration_name: string; checksum: string; finished_at: Date | null }>(
      'SELECT migration_name, checksum, finished_at FROM "_prisma_migrations" WHERE rolled_back_at IS NULL',
    );
    const recorded = new Map(rows.map((row) => [row.migration_name, row]));
    // What is recorded first: a database in a state to resolve by hand says so, whatever else is pending.
    for (const migration of migrations) {
      const record = recorded.get(migration.name);
      if (record && !record.finished_at) {
        // Never one of ours (each commits with its record, or leaves no
        // trace): another tool's, `prisma migrate deploy` say, stopped midway.
        throw new MigrationError(
          `migration ${migration.name} was started by another tool and did not finish: undo what it did (prisma/migrations/${migration.name}/migration.sql), ` +
            `mark it rolled back (UPDATE "_prisma_migrations" SET rolled_back_at = now() WHERE migration_name = '${migration.name}' AND finished_at IS NULL), then start again`,
        );
      }
      if (record && record.checksum !== migration.checksum) {
        throw new MigrationError(`migration ${migration.name} was changed after it was applied`);
      }
    }
    // One this release does not have, left unfinished: a newer release's
    // `prisma migrate deploy` stopped midway. Not "applied by a newer
    // release" (as a finished one is, below): the schema is half changed.
    const known = new Set(migrations.map((migration) => migration.name));
    const unfinished = rows.find((row) => !row.finished_at && !known.has(row.migration_name));
    if (unfinished) {
      const name = unfinished.migration_name;
      throw new MigrationError(
        `migration ${name}, which this release does not have, was started by another tool and did not finish: finish it with the release that has it, ` +
          `or undo what it did (that release's prisma/migrations/${name}/migration.sql) and mark it rolled back (UPDATE "_prisma_migrations" SET rolled_back_at = now() WHERE migration_name = '${name}' AND finished_at IS NULL), then start again`,
      );
    }
    const pending = migrations.filter((migration) => !recorded.has(migration.name));
    // Another Prisma application's migrations, none of ours: not "behind", elsewhere.
    if (options.onlyNewDatabase && recorded.size > 0 && pending.length === migrations.length) throw new MigrationError(NOT_OURS);
    if (options.onlyNewDatabase && recorded.size > 0 && pending.length > 0) {
      throw new MigrationError(
        `the database is behind this release: ${pending.length} migration(s) not applied yet (${pending.map((migration) => migration.name).join(', ')}); ` +
          'commands but `migrate` apply none to a database that holds some already, on which servers of an earlier release may run: ' +
          "read this release's upgrade notes (README, Operating it), then run `portcullis migrate`, or start this release's server",
      );
    }
    const applied: string[] = [];
    for (const migration of pending) {
      // Each migration and its record commit together: a failure leaves no trace.
      await client.query('BEGIN');
      try {
        await apply(client, migration);
        await client.query('COMMIT');
      } catch (error) {
        await client.query('ROLLBACK');
        // Those applied before it stay applied (each its own transaction): named, as no log line will.
        const before = applied.length > 0 ? ` (applied before it: ${applied.join(', ')})` : '';
        throw new MigrationError(`migration ${migration.name} failed: ${(error as Error).message}${before}`);
      }
      applied.push(migration.name);
    }
    const unknown = rows.filter((row) => !known.has(row.migration_name)).map((row) => row.migration_name).sort();
    return { applied, alreadyApplied: migrations.length - applied.length, unknown };
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [ADVISORY_LOCK_KEY]).catch(() => undefined);
    await client.end();
  }
}
