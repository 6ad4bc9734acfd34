// The embedded database as the server serves it to CLIs (and its own pool):
// one PGlite session behind a socket that several connections share.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { embedded as onEmbedded } from '../support/locks.js';
import { openEmbedded, type EmbeddedDatabase } from '../../src/persistence/embedded.js';

let dir: string;
let embedded: EmbeddedDatabase;

// The embedded database alone: the PostgreSQL run of the suite has nothing to add.
beforeAll(async () => {
  if (!onEmbedded) return;
  dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-socket-'));
  embedded = await openEmbedded(path.join(dir, 'data'), 'server');
  await embedded.ready();
});

afterAll(async () => {
  await embedded?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

it.skipIf(!onEmbedded)('connections querying at once each get the answer to their own query, with their own values', async () => {
  const clients = Array.from({ length: 3 }, () => new pg.Client({ connectionString: embedded.connectionString }));
  await Promise.all(clients.map((client) => client.connect()));
  try {
    // Unnamed statements with different numbers of parameters: each is Parse,
    // Bind, Describe, Execute and Sync, and the unnamed statement is the session's.
    const failures: string[] = [];
    await Promise.all(
      clients.map(async (client, which) => {
        for (let i = 0; i < 60; i++) {
          // Long enough that a query's messages reach the socket in more than one read.
          const values = Array.from({ length: which + 1 }, (_, k) => `${which}-${i}-${k}-${'x'.repeat(i % 3 === 0 ? 100_000 : 10)}`);
          const text = `SELECT concat_ws(',', ${values.map((_, k) => `$${k + 1}::text`).join(', ')}) AS joined`;
          try {
            const { rows } = await client.query<{ joined: string }>(text, values);
            if (rows[0]?.joined !== values.join(',')) failures.push(`connection ${which}, query ${i}: another answer`);
          } catch (error) {
            failures.push(`connection ${which}: ${(error as Error).message}`);
          }
        }
      }),
    );
    expect(failures).toEqual([]);
  } finally {
    await Promise.all(clients.map((client) => client.end()));
  }
});
