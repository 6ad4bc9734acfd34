#!/usr/bin/env node
// Authors a migration from the committed schema to the working one:
//   npm run migration:new -- add_apis
//   npm run migration:new -- user_triggers --empty   (SQL the schema cannot say, written by hand)
// `prisma migrate dev` would need a shadow database through the adapter, which
// does not work offline; diffing two schema files needs no database at all.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
const empty = args.includes('--empty');
const [name, ...rest] = args.filter((arg) => arg !== '--empty');
if (!name || rest.length > 0 || !/^[a-z0-9_]+$/.test(name)) {
  console.error('usage: npm run migration:new -- <snake_case_name> [--empty]');
  process.exit(2);
}
const here = path.dirname(fileURLToPath(import.meta.url));
const previous = path.join(mkdtempSync(path.join(os.tmpdir(), 'schema-')), 'schema.prisma');
writeFileSync(previous, execFileSync('git', ['show', 'HEAD:prisma/schema.prisma'], { cwd: here }));
const diff = spawnSync(process.execPath, [path.join(here, 'cli.mjs'), 'migrate', 'diff', '--from-schema-datamodel', previous,
  '--to-schema-datamodel', path.join(here, 'schema.prisma'), '--script'], { encoding: 'utf8' });
if (diff.status !== 0) {
  console.error(diff.stderr);
  process.exit(1);
}
const script = diff.stdout.replace(/^Loaded Prisma config.*\n/m, '');
// Every migration in the folder is applied at the next start, an empty one too:
// without a schema change one is written only when asked for (--empty).
const statements = script.split('\n').filter((line) => line.trim() !== '' && !line.trim().startsWith('--'));
if (statements.length === 0 && !empty) {
  console.error('prisma/schema.prisma has not changed since the last commit: no migration written (--empty writes one to fill in by hand)');
  process.exit(1);
}
const stamp = new Date().toISOString().replace(/\D/g, '').slice(0, 14);
const dir = path.join(here, 'migrations', `${stamp}_${name}`);
mkdirSync(dir, { recursive: true });
writeFileSync(path.join(dir, 'migration.sql'), script);
console.log(`wrote ${path.relative(process.cwd(), dir)}/migration.sql — review it before committing`);
