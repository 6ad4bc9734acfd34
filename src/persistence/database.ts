// The one module that knows which database is behind Prisma: a PostgreSQL server
// (DATABASE_URL) or the embedded PGlite. Everything else receives a `Database`.
import { PrismaPg } from '@prisma/adapter-pg';
import type { Config } from '../config.js';
import { PrismaClient } from '../generated/prisma/client.js';
import { openEmbedded } from './embedded.js';
import { migrate, type MigrationResult } from './migrations.js';

export type Prisma = PrismaClient;

export interface Database {
  prisma: PrismaClient;
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
  const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString, max }) });
  return {
    prisma,
    kind: database.kind,
    migrate: () => migrate(connectionString),
    async close() {
      await prisma.$disconnect();
      await embedded?.close();
    },
  };
}
