// CPU per statement: Prisma's query path against pg on the same pool, for the
// decision recorded in src/persistence/database.ts.
//   node --import tsx bench/query-cost.ts [--database-url postgresql://postgres@127.0.0.1:5432/postgres]
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { PrismaClient } from '../src/generated/prisma/client.js';
import { migrate } from '../src/persistence/migrations.js';

const { values } = parseArgs({ options: { 'database-url': { type: 'string' } } });
const server = new URL(values['database-url'] ?? 'postgresql://postgres@127.0.0.1:5432/postgres');
const name = `portcullis_query_cost_${randomBytes(4).toString('hex')}`;
const admin = new pg.Client({ connectionString: server.href });
await admin.connect();
await admin.query(`CREATE DATABASE ${name}`);
const url = new URL(server.href);
url.pathname = `/${name}`;

const CONCURRENCY = 8;
const OPERATIONS = 4000;

async function measure(label: string, operation: () => Promise<unknown>): Promise<void> {
  for (let i = 0; i < 300; i++) await operation(); // warm-up
  const cpu = process.cpuUsage();
  const started = performance.now();
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    for (let i = 0; i < OPERATIONS / CONCURRENCY; i++) await operation();
  }));
  const elapsed = performance.now() - started;
  const used = process.cpuUsage(cpu);
  console.log(`${label.padEnd(34)} ${((OPERATIONS / elapsed) * 1000).toFixed(0).padStart(6)} statements/s  ${((used.user + used.system) / OPERATIONS).toFixed(0).padStart(4)} µs CPU each`);
}

try {
  await migrate(url.href);
  const pool = new pg.Pool({ connectionString: url.href, max: CONCURRENCY });
  pool.on('error', () => undefined); // the DROP below ends connections Prisma may still hold
  const prisma = new PrismaClient({ adapter: new PrismaPg(pool) });
  await prisma.providerArtifact.create({ data: { kind: 'AccessToken', id: 'x', payload: { kind: 'AccessToken' } } });
  console.log(`Node ${process.version}, ${OPERATIONS} point lookups at ${CONCURRENCY} concurrent, one pool`);
  await measure('prisma findUnique', () => prisma.providerArtifact.findUnique({ where: { id_kind: { id: 'x', kind: 'AccessToken' } }, select: { payload: true } }));
  await measure('prisma $queryRaw', () => prisma.$queryRaw`SELECT payload FROM provider_artifacts WHERE id = ${'x'} AND kind = ${'AccessToken'}`);
  await measure('pg, named statement', () => pool.query({ name: 'lookup', text: 'SELECT payload FROM provider_artifacts WHERE id = $1 AND kind = $2', values: ['x', 'AccessToken'] }));
  await prisma.$disconnect();
  await pool.end();
} finally {
  await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.end();
}
