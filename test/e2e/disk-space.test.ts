// When the database's disk is full every write fails while reads still work.
// Requests that write are answered 503 with Retry-After (retry once space is
// freed), not 500; readiness says the database is out of disk space; nothing
// stored before is lost; and once space is freed the server serves again
// without a restart. A start on a full disk says so in its one line.
// A real full disk: a small tmpfs holding DATA_DIR, or the PostgreSQL test
// database's tablespace (test/support/small-disk.ts).
import { spawn } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { serverDatabase, type TestDatabase } from '../support/database.js';
import { freePort, startPortcullis, TEST_ENV, type TestPortcullis } from '../support/portcullis.js';
import { databaseOn, mountSmallDisk, type SmallDisk } from '../support/small-disk.js';
import { authorizationRequest, discover, REDIRECT_URI } from '../support/relying-party.js';

// PGlite's new database takes ~40 MiB; PostgreSQL's ~8 MiB (its log stays on the server's own disk).
const DISK_MIB = 96;

let disk: SmallDisk | undefined;
let database: TestDatabase | undefined;
let pc: TestPortcullis | undefined;
let unavailable: string | undefined;

beforeAll(async () => {
  const mounted = await mountSmallDisk(DISK_MIB);
  if (typeof mounted === 'string') return void (unavailable = mounted);
  disk = mounted;
  const on = await databaseOn(disk);
  if (typeof on === 'string') return void (unavailable = on);
  database = on;
  // Sweeps every second: on the embedded database each is followed by its upkeep (a checkpoint, which on a full disk would stop the process).
  pc = await startPortcullis({ SWEEP_INTERVAL: '1s' }, database);
});

afterAll(async () => {
  await disk?.free();
  await pc?.close();
  await database?.drop();
  await disk?.unmount();
});

function introspect(token: string, robot: { client_id: string; client_secret?: string }) {
  return fetch(`${pc!.issuer}/token/introspection`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`${robot.client_id}:${robot.client_secret}`).toString('base64')}`,
    },
    body: new URLSearchParams({ token }),
  }).then((response) => response.json() as Promise<{ active: boolean }>);
}

async function readiness(): Promise<{ status: number; body: unknown }> {
  const response = await fetch(`${pc!.issuer}/readyz`);
  return { status: response.status, body: await response.json() };
}

it('a full disk under a running server: writes answered 503 with Retry-After, readiness says why, nothing lost, and serving again once space is freed', async (context) => {
  if (!pc) return context.skip(unavailable);
  const server = pc;
  const robot = await server.createClient({ name: 'Robot', grantTypes: ['client_credentials'], scope: 'openid' });
  const web = await server.createClient({ name: 'Web', redirectUris: [REDIRECT_URI] });
  const before = await server.clientCredentials(robot);
  expect(before.status).toBe(200);

  await disk!.fill();
  try {
    // Rows still fit in pages the tables have; the first that needs a new page fails.
    let refused: Awaited<ReturnType<typeof server.clientCredentials>> | undefined;
    for (let i = 0; i < 5000 && !refused; i++) {
      const answer = await server.clientCredentials(robot);
      expect(answer.status, JSON.stringify(answer.body)).not.toBe(500);
      if (answer.status !== 200) refused = answer;
    }
    expect(refused?.status).toBe(503);
    expect(refused?.body).toMatchObject({ error: 'temporarily_unavailable' });
    expect(refused?.body.access_token).toBeUndefined();
    expect(refused?.headers.get('retry-after')).toBe('5');

    // A person starting a sign-in gets the page that says to try again, not an error page of ours.
    const { url } = await authorizationRequest(await discover(server.issuer, web.client_id, web.client_secret), 'openid');
    const page = await fetch(url, { redirect: 'manual' });
    expect(page.status).toBe(503);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(page.headers.get('retry-after')).toBe('5');
    expect(await page.text()).toContain(`<a class="button" href="${url.pathname}${url.search.replace(/&/g, '&amp;')}">Try again</a>`);

    // A few sweeps while the disk is full: the server goes on answering.
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    // Reads still work: a token stored before is still valid.
    expect(await introspect(before.body.access_token as string, robot)).toMatchObject({ active: true });
    expect(await readiness()).toEqual({ status: 503, body: { status: 'unavailable', reason: 'the database is out of disk space' } });
    expect((await fetch(`${server.issuer}/healthz`)).status).toBe(200);
    // The other test files' databases, on the server's own disk, can still be
    // dropped: the checkpoint DROP DATABASE waits for has nothing of this
    // database left to write into the holes a full disk has no room for.
    if (server.database.kind === 'postgres') await (await serverDatabase('portcullis_aside')).drop();
    // One line per request, no stack trace.
    const lines = server.errors.filter((line) => line.includes('"database out of space"'));
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.filter((line) => line.includes('    at '))).toEqual([]);
    expect(server.errors.filter((line) => !line.includes('"database out of space"'))).toEqual([]);
  } finally {
    await disk!.free();
  }

  // The embedded database's disk is this machine's: readiness sees the space
  // at once. A PostgreSQL server's is not: readiness trusts writes again 10 s
  // after the last one failed, and requests meanwhile show whether they work.
  const deadline = Date.now() + 20_000;
  while ((await readiness()).status !== 200 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 250));
  expect(await readiness()).toEqual({ status: 200, body: { status: 'ready' } });
  const after = await server.clientCredentials(robot);
  expect(after.status).toBe(200);
  expect(await introspect(after.body.access_token as string, robot)).toMatchObject({ active: true });
  expect(await introspect(before.body.access_token as string, robot)).toMatchObject({ active: true });
});

it('a server started on a full disk says the disk is full, in one line', async (context) => {
  if (!pc) return context.skip(unavailable);
  // The embedded database's directory is the server's to name; a PostgreSQL
  // server's disk is not visible from here (its own error says "No space left").
  if (pc.database.kind !== 'pglite') return context.skip('the embedded database only');
  await disk!.fill();
  try {
    const dataDir = path.join(disk!.dir, 'fresh');
    const { DATABASE_URL: _, ...inherited } = process.env;
    const port = String(await freePort());
    const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
        env: { ...inherited, ...TEST_ENV, DATA_DIR: dataDir, PORT: port, ISSUER: `http://localhost:${port}` },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (chunk) => (stderr += chunk));
      child.once('exit', (exit) => resolve({ code: exit, stderr }));
    });
    expect(code).toBe(1);
    expect(stderr).toContain(`portcullis: failed to start: cannot open the embedded database in DATA_DIR (${dataDir}): `);
    expect(stderr).toMatch(/; the disk holding it is full \(\d+\.\d MiB free\); free some space and start again\n/);
    expect(stderr).not.toContain('    at ');
  } finally {
    await disk!.free();
  }
});
