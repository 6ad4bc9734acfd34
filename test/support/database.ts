// A fresh, empty database per test file: a temporary PGlite directory, or a
// new database on the PostgreSQL server named by TEST_DATABASE_URL.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';

export interface TestDatabase {
  kind: 'pglite' | 'postgres';
  env: Record<string, string>;
  drop(): Promise<void>;
}

/** The test PostgreSQL server (TEST_DATABASE_URL). */
export const SERVER_URL = process.env.TEST_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';

export async function freshDatabase(): Promise<TestDatabase> {
  if ((process.env.TEST_DATABASE ?? 'pglite') === 'pglite') {
    // Short path: the Unix socket lives inside it and socket paths are limited to ~100 bytes.
    const dir = await mkdtemp(path.join(os.tmpdir(), 'pc-'));
    return { kind: 'pglite', env: { DATA_DIR: dir }, drop: () => rm(dir, { recursive: true, force: true }) };
  }
  return serverDatabase('portcullis_test');
}

/**
 * A new database on the test PostgreSQL server, named `prefix` and a random
 * suffix; with `tablespaceAt`, every file of it in a tablespace made there
 * for it (a directory the server may write), dropped with it.
 */
export async function serverDatabase(prefix: string, tablespaceAt?: string): Promise<TestDatabase> {
  const name = `${prefix}_${randomBytes(6).toString('hex')}`;
  const run = async (statements: string[]) => {
    const admin = new pg.Client({ connectionString: SERVER_URL });
    await admin.connect();
    try {
      for (const statement of statements) await admin.query(statement);
    } finally {
      await admin.end();
    }
  };
  // CREATE DATABASE copies the template through shared buffers and leaves the
  // new files sparse until a checkpoint writes them. On a disk a test fills,
  // every checkpoint would then fail for want of space for those holes, and
  // with it every other test file's DROP DATABASE (which waits for one):
  // the CHECKPOINT writes them while there is room.
  await run(
    tablespaceAt
      ? [`CREATE TABLESPACE ${name} LOCATION '${tablespaceAt}'`, `CREATE DATABASE ${name} TABLESPACE ${name}`, 'CHECKPOINT']
      : [`CREATE DATABASE ${name}`],
  );
  const url = new URL(SERVER_URL);
  url.pathname = `/${name}`;
  return {
    kind: 'postgres',
    env: { DATABASE_URL: url.toString() },
    drop: () => run([`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`, ...(tablespaceAt ? [`DROP TABLESPACE IF EXISTS ${name}`] : [])]),
  };
}
