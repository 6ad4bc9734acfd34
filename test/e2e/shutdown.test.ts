// Shutting down while a request is still being handled: its client may have
// hung up already, but its handler goes on, and the database must stay open
// until it has finished (src/http/in-flight.ts).
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { expect, it } from 'vitest';
import { embedded, heldAtTheLock } from '../support/locks.js';
import { startPortcullis, type TestPortcullis } from '../support/portcullis.js';


it.skipIf(embedded)('a request whose client hung up finishes its writes before the database closes', async () => {
  const pc = await startPortcullis();
  const admin = pc.outsideConnection();
  await admin.connect();
  try {
    const robot = await pc.createClient({ name: 'Robot', grantTypes: ['client_credentials'] });
    // The server has not looked this client up yet: its first token request
    // reads the clients table (held here), then writes the token.
    await admin.query('BEGIN');
    await admin.query('LOCK TABLE clients IN ACCESS EXCLUSIVE MODE');
    const hangUp = new AbortController();
    const request = tokenRequest(pc, robot, { signal: hangUp.signal }).then(
      () => 'answered',
      () => 'hung up',
    );
    await heldAtTheLock(admin);
    hangUp.abort();
    expect(await request).toBe('hung up');

    let closed = false;
    const closing = pc.server.close().then(() => (closed = true));
    await sleep(300);
    expect(closed).toBe(false); // the handler still waits for its lookup
    await admin.query('COMMIT');
    await closing;

    expect(pc.errors).toEqual([]);
    const { rows } = await admin.query<{ n: number }>(`SELECT count(*)::int AS n FROM provider_artifacts WHERE kind = 'ClientCredentials'`);
    expect(rows[0]!.n).toBe(1);
  } finally {
    await admin.end();
    await pc.close();
  }
});

it.skipIf(embedded)('a kept-alive connection whose response began before shutdown does not hold it up', async () => {
  const pc = await startPortcullis();
  const admin = pc.outsideConnection();
  await admin.connect();
  const agent = new http.Agent({ keepAlive: true });
  try {
    const robot = await pc.createClient({ name: 'Robot', grantTypes: ['client_credentials'] });
    await admin.query('BEGIN');
    await admin.query('LOCK TABLE clients IN ACCESS EXCLUSIVE MODE');
    // A proxy's connection: kept alive after its response, never closed by the client.
    const answered = tokenRequest(pc, robot, { agent });
    await heldAtTheLock(admin);

    const closing = pc.server.close();
    await sleep(100);
    await admin.query('COMMIT');
    expect((await answered).status).toBe(200);
    // Node would keep that connection open for its keep-alive timeout (65 s) and
    // server.close() would wait for it; shutdown closes it once it is idle.
    const started = Date.now();
    await closing;
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(pc.errors).toEqual([]);
  } finally {
    agent.destroy();
    await admin.end();
    await pc.close();
  }
});


/** POST /token client_credentials over node:http, on `agent` if given; `signal` hangs up. */
function tokenRequest(
  pc: TestPortcullis,
  client: { client_id: string; client_secret?: string },
  options: { agent?: http.Agent; signal?: AbortSignal },
): Promise<{ status: number }> {
  return new Promise((resolve, reject) => {
    const request = http.request(`${pc.issuer}/token`, {
      method: 'POST',
      ...options,
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from(`${client.client_id}:${client.client_secret}`).toString('base64')}`,
      },
    });
    request.on('response', (response) => {
      response.resume();
      response.on('end', () => resolve({ status: response.statusCode ?? 0 }));
    });
    request.on('error', reject);
    request.end('grant_type=client_credentials');
  });
}
