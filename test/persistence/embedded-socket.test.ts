// The embedded database as the server serves it to CLIs (and its own pool):
// one PGlite session behind a socket that several connections share.
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
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

/** Frontend protocol messages, as a client library writes them. */
const message = (type: string, ...parts: Buffer[]) => {
  const body = Buffer.concat(parts);
  const length = Buffer.alloc(4);
  length.writeInt32BE(body.length + 4);
  return Buffer.concat([Buffer.from(type), length, body]);
};
const cstring = (text: string) => Buffer.from(`${text}\0`);
const int16 = (value: number) => Buffer.from([value >> 8, value & 0xff]);
const int32 = (value: number) => {
  const out = Buffer.alloc(4);
  out.writeInt32BE(value);
  return out;
};

it.skipIf(!onEmbedded)('a connection that goes away in the middle of a query leaves the others to go on', async () => {
  const url = new URL(embedded.connectionString);
  const socketPath = path.join(url.searchParams.get('host')!, `.s.PGSQL.${url.searchParams.get('port')}`);
  const socket = net.connect(socketPath);
  const ready = new Promise<void>((resolve, reject) => {
    let received = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      // ReadyForQuery ('Z', length 5, status) after the startup exchange.
      if (received.includes(Buffer.from([0x5a, 0, 0, 0, 5]))) resolve();
    });
    socket.on('error', reject);
  });
  const startup = Buffer.concat([int32(196608), cstring('user'), cstring('postgres'), cstring('database'), cstring('postgres'), Buffer.from([0])]);
  socket.write(Buffer.concat([int32(startup.length + 4), startup]));
  await ready;
  // Parse and Bind of an unnamed statement, and never the Sync that ends them.
  socket.write(
    Buffer.concat([
      message('P', cstring(''), cstring('SELECT $1::text AS half'), int16(0)),
      message('B', cstring(''), cstring(''), int16(0), int16(1), int32(1), Buffer.from('x'), int16(0)),
    ]),
  );
  await new Promise((resolve) => setTimeout(resolve, 200));
  socket.destroy();
  const client = new pg.Client({ connectionString: embedded.connectionString });
  await client.connect();
  try {
    const { rows } = await client.query<{ answer: string }>('SELECT $1::text AS answer', ['whole']);
    expect(rows).toEqual([{ answer: 'whole' }]);
  } finally {
    await client.end();
  }
}, 15_000);
