// The one module that knows which database is behind Prisma: a PostgreSQL server
// (DATABASE_URL) or the embedded PGlite. Everything else receives a `Database`.
import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import type { Config } from '../config.js';
import { PrismaClient } from '../generated/prisma/client.js';
import { openEmbedded } from './embedded.js';
import { migrate, type MigrationResult } from './migrations.js';

export type Prisma = PrismaClient;

/** A SQL statement with a stable name, so PostgreSQL can plan it once per connection. */
export interface Statement {
  name: string;
  text: string;
}

/** Runs hot-path statements on the pool Prisma uses. */
export interface Sql {
  query<Row extends object = Record<string, unknown>>(statement: Statement, values: unknown[]): Promise<{ rows: Row[]; rowCount: number }>;
}

export interface Database {
  prisma: PrismaClient;
  /**
   * The pg pool Prisma runs on, for the few statements on the token hot path
   * (see provider/adapter.ts): Prisma's JS query path costs ~430 µs of CPU per
   * statement on these machines against ~80 µs for the same statement through pg.
   */
  sql: Sql;
  kind: Config['database']['kind'];
  migrate(): Promise<MigrationResult>;
  close(): Promise<void>;
}

export async function openDatabase(database: Config['database']): Promise<Database> {
  const embedded = database.kind === 'embedded' ? await openEmbedded(database.dataDir) : undefined;
  const connectionString = embedded ? embedded.connectionString : (database as { url: string }).url;
  // PGlite runs one query at a time whatever the pool size; one connection
  // avoids interleaving through its multiplexer.
  const max = database.kind === 'postgres' ? database.poolSize : 1;
  const pool = new pg.Pool({ connectionString, max });
  // An idle client's error (the server restarted) must not crash the process; the pool replaces it.
  pool.on('error', () => undefined);
  const prisma = new PrismaClient({ adapter: new PrismaPg(pool) });
  // Named (prepared) statements live in the server session; PGlite has one
  // session for every socket connection, where a reconnect would find them
  // already prepared, so the embedded database gets unnamed statements.
  const prepare = database.kind === 'postgres';
  const sql: Sql = {
    async query<Row extends object>(statement: Statement, values: unknown[]) {
      const result = await pool.query<Row>(prepare ? { name: statement.name, text: statement.text, values } : { text: statement.text, values });
      return { rows: result.rows, rowCount: result.rowCount ?? 0 };
    },
  };
  return {
    prisma,
    sql,
    kind: database.kind,
    migrate: () => migrate(connectionString),
    async close() {
      await prisma.$disconnect();
      await pool.end();
      await embedded?.close();
    },
  };
}
