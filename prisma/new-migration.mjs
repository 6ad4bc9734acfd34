#!/usr/bin/env node
// Authors a migration from the committed schema to the working one:
//   npm run migration:new -- add_apis
// `prisma migrate dev` would need a shadow database through the adapter, which
// does not work offline; diffing two schema files needs no database at all.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const name = process.argv[2];
if (!name || !/^[a-z0-9_]+$/.test(name)) {
  console.error('usage: npm run migration:new -- <snake_case_name>');
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
const stamp = new Date().toISOString().replace(/\D/g, '').slice(0, 14);
const dir = path.join(here, 'migrations', `${stamp}_${name}`);
mkdirSync(dir, { recursive: true });
writeFileSync(path.join(dir, 'migration.sql'), diff.stdout.replace(/^Loaded Prisma config.*\n/m, ''));
console.log(`wrote ${path.relative(process.cwd(), dir)}/migration.sql — review it before committing`);
