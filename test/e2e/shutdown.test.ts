// Shutting down while a request is still being handled: its client may have
// hung up already, but its handler goes on, and the database must stay open
// until it has finished (src/http/in-flight.ts).
import { setTimeout as sleep } from 'node:timers/promises';
import { expect, it } from 'vitest';
import { startPortcullis } from '../support/portcullis.js';

// PGlite runs every connection in one session: an outside transaction cannot
// hold a lock against the server's statements there.
const embedded = (process.env.TEST_DATABASE ?? 'pglite') === 'pglite';

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
    const request = fetch(`${pc.issuer}/token`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from(`${robot.client_id}:${robot.client_secret}`).toString('base64')}`,
      },
      body: 'grant_type=client_credentials',
      signal: hangUp.signal,
    }).then(
      () => 'answered',
      () => 'hung up',
    );
    const waiting = async () =>
      (await admin.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`)).rows[0]!.n;
    for (let tries = 0; (await waiting()) === 0; tries++) {
      if (tries > 200) throw new Error('the token request never reached the database');
      await sleep(10);
    }
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
