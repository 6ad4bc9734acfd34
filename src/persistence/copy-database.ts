// Copies everything one Portcullis database holds into a new, empty PostgreSQL
// database: the way off the embedded database (`portcullis copy --to`). Both
// are PostgreSQL and both get the same migrations, so rows travel as
// PostgreSQL's own JSON of them (row_to_json, json_populate_recordset): every
// type comes back as it was (timestamps to the millisecond, JSON documents,
// the audit trail's bigint ids), with no JavaScript conversion between.
// Sealed keys and digests are copied as they are: the target needs the same
// encryption key, and then every session, consent and token goes on working.
import pg from 'pg';
import { migrate, MigrationError } from './migrations.js';

/** The copy cannot be made, or failed; the target is left without the copied rows. */
export class CopyError extends Error {
  override name = 'CopyError';
}

export interface CopiedTable {
  table: string;
  rows: number;
}

/** Rows per round trip: a few MiB of JSON at most (an artifact's payload is a few KiB). */
const BATCH = 500;

/**
 * Copies every table of `source` (but the migration record, which the target's
 * own migration writes) into `target`, which must be new (prepareTarget). The source
 * is read in one snapshot; the target is written in one transaction, so a
 * failure leaves it with the schema and no rows. `onTable` hears of each
 * table once it is copied.
 */
export async function copyDatabase(source: string, target: string, onTable: (copied: CopiedTable) => void = () => undefined): Promise<CopiedTable[]> {
  const to = new pg.Client({ connectionString: target });
  await to.connect().catch((error: Error) => {
    throw new CopyError(`cannot reach the database at --to: ${error.message}`);
  });
  const from = new pg.Client({ connectionString: source });
  try {
    await from.connect();
    await prepareTarget(to, target);
    const tables = await tablesInOrder(to);
    const { rows: sourceTables } = await from.query<{ tablename: string }>(
      `SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename <> '_prisma_migrations'`,
    );
    const missing = sourceTables.map((row) => row.tablename).filter((name) => !tables.includes(name));
    if (missing.length > 0) throw new CopyError(`the source database holds tables this release does not make (${missing.join(', ')}): copy with the release that made them`);

    // One snapshot of the source, so that rows written meanwhile (there
    // should be none: the caller makes sure no server writes) cannot leave a
    // token without its grant.
    await from.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    await to.query('BEGIN');
    const copied: CopiedTable[] = [];
    try {
      for (const table of tables) {
        const rows = await copyTable(from, to, table);
        copied.push({ table, rows });
        onTable({ table, rows });
      }
      await restartSequences(to);
      await to.query('COMMIT');
    } catch (error) {
      await to.query('ROLLBACK').catch(() => undefined);
      if (error instanceof CopyError) throw error;
      throw new CopyError(`the copy failed, and the database at --to holds no row of it (only the schema): ${(error as Error).message}`, { cause: error });
    } finally {
      await from.query('ROLLBACK').catch(() => undefined);
    }
    return copied;
  } finally {
    await Promise.all([to.end().catch(() => undefined), from.end().catch(() => undefined)]);
  }
}

/**
 * Gives the target this release's schema. It must be new: no tables at all, or
 * only Portcullis's, migrated to this release and holding no row (a
 * `portcullis migrate` run on it first, or a copy that failed and left the
 * schema), so that nothing already there is mixed with what is copied.
 */
async function prepareTarget(to: pg.Client, target: string): Promise<void> {
  const { rows } = await to.query<{ recorded: boolean; tables: string[] }>(
    `SELECT to_regclass('"_prisma_migrations"') IS NOT NULL AS recorded,
            coalesce((SELECT array_agg(tablename::text ORDER BY tablename) FROM pg_tables WHERE schemaname = current_schema()), '{}')::text[] AS tables`,
  );
  const { recorded, tables } = rows[0]!;
  const notNew = (what: string) =>
    new CopyError(`the database at --to ${what}: give the copy a new database of its own (CREATE DATABASE), which nothing is copied over`);
  // Names, emails and the audit trail are Unicode: another encoding would refuse some row midway.
  const { rows: encoding } = await to.query<{ server_encoding: string }>('SHOW server_encoding');
  if (encoding[0]!.server_encoding !== 'UTF8') {
    throw new CopyError(`the database at --to is encoded ${encoding[0]!.server_encoding}, which cannot hold every name and email: make it with CREATE DATABASE … ENCODING 'UTF8'`);
  }
  if (tables.length > 0 && !recorded) throw notNew(`holds ${tables.length} table(s) of another application (${tables.slice(0, 5).join(', ')}${tables.length > 5 ? ', …' : ''})`);
  const migrated = await migrate(target, { onlyNewDatabase: true }).catch((error: unknown) => {
    throw error instanceof MigrationError ? notNew(`is not new: ${error.message}`) : error;
  });
  if (migrated.unknown.length > 0) throw notNew(`was migrated by a newer release (${migrated.unknown.join(', ')})`);
  for (const table of await tablesInOrder(to)) {
    const { rows: any } = await to.query(`SELECT 1 FROM ${pg.escapeIdentifier(table)} LIMIT 1`);
    if (any.length > 0) throw notNew(`already holds rows (in ${table})`);
  }
}

/**
 * The target's tables, each after those it refers to (foreign keys), so that
 * rows go in without deferring constraints, which ours are not declared to
 * allow.
 */
async function tablesInOrder(client: pg.Client): Promise<string[]> {
  const { rows: tables } = await client.query<{ name: string }>(
    `SELECT tablename AS name FROM pg_tables WHERE schemaname = current_schema() AND tablename <> '_prisma_migrations' ORDER BY tablename`,
  );
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
  for (const { name } of tables) visit(name, []);
  return ordered;
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
