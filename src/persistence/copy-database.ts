// Copies everything one Portcullis database holds into a new, empty PostgreSQL
// database: the way off the embedded database (`portcullis copy --to`). Both
// are PostgreSQL and both get the same migrations, so rows travel as
// PostgreSQL's own JSON of them (row_to_json, json_populate_recordset): every
// type comes back as it was (timestamps to the millisecond, JSON documents,
// the audit trail's bigint ids), with no JavaScript conversion between.
// Sealed keys and digests are copied as they are: the target needs the same
// encryption key, and then every session, consent and token goes on working.
import pg from 'pg';
import { encodingProblem, migrateWithin } from './migrations.js';

/** The copy cannot be made, or failed; the target is left as it was. */
export class CopyError extends Error {
  override name = 'CopyError';
}

export interface CopiedTable {
  table: string;
  rows: number;
}

const CONNECT_MS = 20_000;

/** Rows per round trip: a few MiB of JSON at most (an artifact's payload is a few KiB). */
const BATCH = 500;

/**
 * Copies every table of `source` (but the migration record, which the
 * target's own migrations write) into `target`, which must hold no table. The
 * source is read in one snapshot, and the target is migrated and written in
 * one transaction: a failure leaves it as it was, empty, to take the copy
 * again. `onTable` hears of each table once it is copied (before the commit).
 */
export async function copyDatabase(source: string, target: string, onTable: (copied: CopiedTable) => void = () => undefined): Promise<CopiedTable[]> {
  // Limited like a server's connections (DATABASE_TIMEOUT's default): a host that drops packets is not waited on for minutes.
  const to = new pg.Client({ connectionString: target, connectionTimeoutMillis: CONNECT_MS });
  const from = new pg.Client({ connectionString: source });
  // A connection lost meanwhile (a failover, a terminated backend) fails the
  // statement in flight; the client also emits 'error', which unheard would
  // end the process with a stack trace instead of the message below.
  for (const client of [to, from]) client.on('error', () => undefined);
  await to.connect().catch((error: Error) => {
    throw new CopyError(`cannot reach the database at --to: ${error.message}`);
  });
  let reading = false;
  try {
    // Before anything is written: what the migrations would refuse as "not new".
    const { rows: encoding } = await to.query<{ server_encoding: string }>('SHOW server_encoding');
    const problem = encodingProblem(encoding[0]!.server_encoding);
    if (problem) throw new CopyError(`the database at --to ${problem}`);
    await from.connect().catch((error: Error) => {
      throw new CopyError(`cannot read the embedded database: ${error.message}`);
    });
    // One snapshot of the source, so that rows written meanwhile (there
    // should be none: the caller makes sure no server writes) cannot leave a
    // token without its grant.
    await from.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    reading = true;
    // Read committed whatever the database's default: the check for tables,
    // made once the lock is ours, must see what a copy before it committed.
    await to.query('BEGIN ISOLATION LEVEL READ COMMITTED');
    try {
      await migrateWithin(to, () => refuseAnyTable(to));
      const tables = await tablesInOrder(to);
      const unknown = (await ourTables(from)).filter((name) => !tables.includes(name));
      if (unknown.length > 0) throw new CopyError(`the source database holds tables this release does not make (${unknown.join(', ')}): copy with the release that made them`);
      const copied: CopiedTable[] = [];
      for (const table of tables) {
        const rows = await copyTable(from, to, table);
        copied.push({ table, rows });
        onTable({ table, rows });
      }
      await restartSequences(to);
      await to.query('COMMIT').catch((error: Error) => {
        // The commit may have been made before its answer was lost.
        throw new CopyError(
          `the copy's commit got no answer (${error.message}): if the database at --to now holds tables, the copy is there whole; if not, it holds nothing, and takes the copy again`,
        );
      });
      return copied;
    } catch (error) {
      await to.query('ROLLBACK').catch(() => undefined);
      if (error instanceof CopyError) throw error;
      throw new CopyError(`the copy failed, and the database at --to is left as it was, empty: ${(error as Error).message}`, { cause: error });
    }
  } finally {
    // Ended explicitly: the embedded database's socket connections share its
    // one session, which the audit record is written in next.
    if (reading) await from.query('ROLLBACK').catch(() => undefined);
    await Promise.all([to.end().catch(() => undefined), from.end().catch(() => undefined)]);
  }
}

/**
 * The target must be new: a table of any kind there would be another
 * application's, or a Portcullis deployment's (its own keys, which the copied
 * ones would join). Checked under the migration lock, so that two copies, or
 * a copy and a server's first start, cannot both find it empty.
 */
async function refuseAnyTable(to: pg.Client): Promise<void> {
  const { rows } = await to.query<{ tablename: string }>('SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename');
  if (rows.length === 0) return;
  const names = rows.map((row) => row.tablename);
  throw new CopyError(
    `the database at --to is not empty (it holds ${names.length} table(s): ${names.slice(0, 5).join(', ')}${names.length > 5 ? ', …' : ''}): ` +
      'give the copy a new database of its own (CREATE DATABASE), which nothing else uses',
  );
}

/**
 * The target's tables, each after those it refers to (foreign keys), so that
 * rows go in without deferring constraints, which ours are not declared to
 * allow.
 */
async function tablesInOrder(client: pg.Client): Promise<string[]> {
  const tables = await ourTables(client);
  const { rows: references } = await client.query<{ child: string; parent: string }>(
    `SELECT c.conrelid::regclass::text AS child, c.confrelid::regclass::text AS parent
       FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
      WHERE c.contype = 'f' AND n.nspname = current_schema()`,
  );
  const parents = new Map<string, string[]>();
  for (const { child, parent } of references) {
    const name = unquoted(child);
    if (unquoted(parent) !== name) parents.set(name, [...(parents.get(name) ?? []), unquoted(parent)]);
  }
  const ordered: string[] = [];
  const visit = (name: string, path: string[]) => {
    if (ordered.includes(name)) return;
    if (path.includes(name)) throw new CopyError(`the tables refer to each other in a cycle (${[...path, name].join(' → ')}): this release cannot copy them`);
    for (const parent of parents.get(name) ?? []) visit(parent, [...path, name]);
    ordered.push(name);
  };
  for (const name of tables) visit(name, []);
  return ordered;
}

/** The tables of `client`'s database but the migration record, by name. */
async function ourTables(client: pg.Client): Promise<string[]> {
  const { rows } = await client.query<{ tablename: string }>(
    `SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename <> '_prisma_migrations' ORDER BY tablename`,
  );
  return rows.map((row) => row.tablename);
}

/** A regclass's text is quoted where the name needs it ("Mixed"); pg_tables' is not. */
const unquoted = (name: string) => (name.startsWith('"') ? name.slice(1, -1).replace(/""/g, '"') : name);

async function copyTable(from: pg.Client, to: pg.Client, table: string): Promise<number> {
  const name = pg.escapeIdentifier(table);
  const { rows: columns } = await to.query<{ column_name: string }>(
    `SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position`,
    [table],
  );
  const list = columns.map((column) => pg.escapeIdentifier(column.column_name)).join(', ');
  const cursor = pg.escapeIdentifier(`copy_${table}`);
  await from.query(`DECLARE ${cursor} NO SCROLL CURSOR FOR SELECT row_to_json(t)::text AS row FROM ${name} t`);
  let count = 0;
  for (;;) {
    const { rows } = await from.query<{ row: string }>(`FETCH ${BATCH} FROM ${cursor}`);
    if (rows.length === 0) break;
    const inserted = await to.query(`INSERT INTO ${name} (${list}) SELECT ${list} FROM json_populate_recordset(NULL::${name}, $1::json)`, [
      `[${rows.map((row) => row.row).join(',')}]`,
    ]);
    count += inserted.rowCount ?? 0;
  }
  await from.query(`CLOSE ${cursor}`);
  const { rows: counted } = await from.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${name}`);
  if (counted[0]!.n !== count) throw new CopyError(`${table}: ${count} row(s) copied of ${counted[0]!.n}`);
  return count;
}

/** Serial columns (the audit trail's ids) go on after the highest id copied, not from 1. */
async function restartSequences(client: pg.Client): Promise<void> {
  const { rows } = await client.query<{ table_name: string; column_name: string }>(
    `SELECT table_name, column_name FROM information_schema.columns
      WHERE table_schema = current_schema() AND column_default LIKE 'nextval(%'`,
  );
  for (const { table_name: table, column_name: column } of rows) {
    const [t, c] = [pg.escapeIdentifier(table), pg.escapeIdentifier(column)];
    await client.query(`SELECT setval(pg_get_serial_sequence($1, $2), coalesce((SELECT max(${c}) FROM ${t}), 0) + 1, false)`, [t, column]);
  }
}
