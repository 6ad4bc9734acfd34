// Shutting down while a request is still being handled: its client may have
// hung up already, but its handler goes on, and the database must stay open
// until it has finished (src/http/in-flight.ts).
import { spawn } from 'node:child_process';
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { expect, it } from 'vitest';
import { freshDatabase } from '../support/database.js';
import { dbRelay } from '../support/db-relay.js';
import { embedded, heldAtTheLock } from '../support/locks.js';
import { freePort, runCli, startPortcullis, TEST_ENV } from '../support/portcullis.js';
import { discover, logIn, REDIRECT_URI } from '../support/relying-party.js';
import { sha256 } from '../support/digest.js';
import { UserAgent } from '../support/user-agent.js';


it.skipIf(embedded)('a request whose client hung up is let finish before the database closes, and stores no token it would never receive', async () => {
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
    expect(rows[0]!.n).toBe(0);
  } finally {
    await admin.end();
    await pc.close();
  }
});

it.skipIf(embedded)('a refresh whose client hung up before its tokens were stored leaves the refresh token unused, for the retry the client makes', async () => {
  const pc = await startPortcullis();
  const admin = pc.outsideConnection();
  await admin.connect();
  try {
    const dana = { email: 'dana@example.com', password: 'danas long password' };
    await pc.createUser(dana.email, dana.password);
    const app = await pc.createClient({ name: 'Notes', redirectUris: [REDIRECT_URI] });
    const rp = await discover(pc.issuer, app.client_id, app.client_secret);
    const { tokens } = await logIn(new UserAgent(), rp, 'openid offline_access', dana, { prompt: 'consent' });
    const presented = await admin.query<{ n: number }>(`SELECT count(*)::int AS n FROM provider_artifacts WHERE kind = 'RefreshToken'`);
    // The refresh reads the token (held here), then would spend it on new ones.
    await admin.query('BEGIN');
    await admin.query('LOCK TABLE provider_artifacts IN ACCESS EXCLUSIVE MODE');
    const hangUp = new AbortController();
    const refresh = tokenRequest(pc, app, { signal: hangUp.signal }, new URLSearchParams({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token! }).toString()).then(
      () => 'answered',
      () => 'hung up',
    );
    await heldAtTheLock(admin);
    hangUp.abort();
    expect(await refresh).toBe('hung up');
    await sleep(300); // for the reset to reach the server
    await admin.query('COMMIT');
    await pc.server.close(); // once the refresh's handler has finished

    const { rows } = await admin.query<{ consumed: boolean }>(`SELECT consumed_at IS NOT NULL AS consumed FROM provider_artifacts WHERE id = $1`, [sha256(tokens.refresh_token!)]);
    expect(rows).toEqual([{ consumed: false }]);
    const after = await admin.query<{ n: number }>(`SELECT count(*)::int AS n FROM provider_artifacts WHERE kind = 'RefreshToken'`);
    expect(after.rows[0]!.n).toBe(presented.rows[0]!.n);
    expect(pc.errors).toEqual([]);
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
    // Answered during the shutdown: it says the connection ends, as it then does.
    expect(await answered).toEqual({ status: 200, connection: 'close' });
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

/** A server as `npm start` runs it, in its own process, to be stopped by a signal. */
async function spawnServer() {
  const database = await freshDatabase();
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const env = { ...TEST_ENV, ...database.env, PORT: String(port), HOST: '127.0.0.1', ISSUER: issuer, LOG_LEVEL: 'info' };
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const server = { issuer, output: '', exited: new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code))) };
  child.stdout.on('data', (chunk) => (server.output += chunk));
  child.stderr.on('data', (chunk) => (server.output += chunk));
  const stopped = async () => {
    child.kill('SIGKILL');
    await server.exited;
    await database.drop();
  };
  try {
    for (let tries = 0; !server.output.includes('portcullis listening'); tries++) {
      if (tries > 600) throw new Error(`server did not start: ${server.output}`);
      await sleep(100);
    }
    const created = await runCli(['client', 'create', '--name', 'Robot', '--grant-type', 'client_credentials', '--json'], env);
    expect(created.code, created.stderr).toBe(0);
    const robot = JSON.parse(created.stdout) as { client_id: string; client_secret: string };
    /** Sends SIGTERM and returns once the server has begun to shut down. */
    const terminate = async () => {
      child.kill('SIGTERM');
      for (let tries = 0; !server.output.includes('shutting down'); tries++) {
        if (tries > 100) throw new Error(`SIGTERM was not handled: ${server.output}`);
        await sleep(20);
      }
    };
    return Object.assign(server, { robot, terminate, stopped });
  } catch (error) {
    await stopped();
    throw error;
  }
}

const WAITED_FOR_KEPT_ALIVE = 'answering requests already sent on kept-alive connections';

it('without SHUTDOWN_DELAY, a request a client sends on its kept-alive connection as SIGTERM arrives is answered, not reset', async () => {
  const server = await spawnServer();
  const { issuer, robot } = server;
  // One connection, kept alive between requests, as a proxy's or an app's HTTP client keeps it.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const sockets = new Set<unknown>();
  agent.on('free', (socket) => sockets.add(socket));
  try {
    expect(await tokenRequest({ issuer }, robot, { agent })).toEqual({ status: 200, connection: 'keep-alive' });
    await server.terminate();
    await sleep(100);
    // The refresh or code exchange the client was sending as the signal
    // came: answered on that same connection, which then closes.
    expect(await tokenRequest({ issuer }, robot, { agent })).toEqual({ status: 200, connection: 'close' });
    expect(sockets.size).toBe(1);
    expect(await server.exited).toBe(0);
    await expect(tokenRequest({ issuer }, robot, { agent })).rejects.toThrow();
    expect(server.output).toContain(WAITED_FOR_KEPT_ALIVE);
    expect(server.output).not.toMatch(/"level":"error"/);
  } finally {
    agent.destroy();
    await server.stopped();
  }
});

it('a stop by signal does not wait for kept-alive connections the clients have closed', async () => {
  const server = await spawnServer();
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    expect(await tokenRequest(server, server.robot, { agent })).toEqual({ status: 200, connection: 'keep-alive' });
    // The client is done with the server (curl exiting, a browser tab closed).
    agent.destroy();
    await sleep(200); // for the close to reach the server
    await server.terminate();
    expect(await server.exited).toBe(0);
    expect(server.output).not.toContain(WAITED_FOR_KEPT_ALIVE);
    expect(server.output).not.toMatch(/"level":"error"/);
  } finally {
    await server.stopped();
  }
});

it('with SHUTDOWN_DELAY, a stopping server serves on for that long with /readyz at 503, then stops listening', async () => {
  const pc = await startPortcullis({ SHUTDOWN_DELAY: '2s' });
  try {
    const robot = await pc.createClient({ name: 'Robot', grantTypes: ['client_credentials'] });
    expect((await fetch(`${pc.issuer}/readyz`)).status).toBe(200);
    const started = Date.now();
    let closed = false;
    const closing = pc.server.close().then(() => (closed = true));

    const ready = await fetch(`${pc.issuer}/readyz`);
    expect(ready.status).toBe(503);
    expect(await ready.json()).toEqual({ status: 'unavailable', reason: 'shutting down' });
    expect(ready.headers.get('connection')).toBe('close');
    // Alive (no restart), and still answering what a load balancer sends meanwhile.
    expect((await fetch(`${pc.issuer}/healthz`)).status).toBe(200);
    expect(await tokenRequest(pc, robot, {})).toEqual({ status: 200, connection: 'close' });
    expect(closed).toBe(false);

    await closing;
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_900);
    await expect(fetch(`${pc.issuer}/healthz`)).rejects.toThrow();
    expect(pc.log.some((line) => line.includes('serving on until the shutdown delay ends') && line.includes('"seconds":2'))).toBe(true);
    expect(pc.errors).toEqual([]);
  } finally {
    await pc.close();
  }
});

it.skipIf(embedded)('a database that does not answer: the start waits and says so; SIGTERM exits within seconds, a second signal at once', async () => {
  const database = await freshDatabase();
  const relay = await dbRelay({ host: '127.0.0.1', port: 5432 });
  try {
    const url = new URL(database.env.DATABASE_URL!);
    url.port = String(relay.port);
    /** The server as a process, ready to serve, on the database through the relay; `frozen`: the relay is frozen, and the start is only watched waiting. */
    const serve = async (frozen = false) => {
      const port = await freePort();
      const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
        env: { ...process.env, ...TEST_ENV, DATABASE_URL: url.toString(), PORT: String(port), HOST: '127.0.0.1', DATABASE_TIMEOUT: '2s', LOG_LEVEL: 'debug' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      child.stdout.on('data', (chunk) => (output += chunk));
      child.stderr.on('data', (chunk) => (output += chunk));
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      if (frozen) {
        // A database that takes the connection and never answers: the start waits, and says so.
        for (let tries = 0; !output.includes('still starting: waiting for the database at DATABASE_URL to answer'); tries++) {
          if (tries > 200) throw new Error(`no word of the wait: ${output}`);
          await sleep(100);
        }
        child.kill('SIGKILL');
        await exited;
        return undefined;
      }
      // Started: its last line is out (the health probe answers earlier, before the signal handlers are set),
      // and the sweep it starts with has ended: one caught by the freeze is work in
      // flight, waited for until its statement times out, and the pool then has
      // nothing left to close (a loaded machine once showed that instead).
      for (let tries = 0; ; tries++) {
        if (output.includes('portcullis listening') && output.includes('expired rows swept')) break;
        if (tries > 300) throw new Error(`server did not start: ${output}`);
        await sleep(100);
      }
      return { child, exited, output: () => output };
    };

    relay.freeze();
    await serve(true);
    relay.restore();

    const patient = (await serve())!;
    relay.freeze();
    let started = Date.now();
    patient.child.kill('SIGTERM');
    expect(await patient.exited).toBe(0);
    // The pool's close waits on the frozen database for at most 5 s (the rest: a loaded machine's slack).
    expect(Date.now() - started).toBeLessThan(12_000);
    expect(patient.output()).toContain('the database did not close in time');

    relay.restore();
    const impatient = (await serve())!;
    relay.freeze();
    impatient.child.kill('SIGTERM');
    // The server times signals as it handles them: wait until it has handled the first
    // (on a loaded machine that can be late, and the third would then seem to follow it at once).
    for (let tries = 0; !impatient.output().includes('shutting down'); tries++) {
      if (tries > 100) throw new Error(`the first SIGTERM was not handled: ${impatient.output()}`);
      await sleep(50);
    }
    // A signal within a second of the first is the same one delivered twice (npm passes it on).
    await sleep(300);
    impatient.child.kill('SIGTERM');
    await sleep(1_200);
    started = Date.now();
    impatient.child.kill('SIGTERM');
    expect(await impatient.exited).toBe(1);
    expect(Date.now() - started).toBeLessThan(3_000);
  } finally {
    relay.restore();
    await relay.close();
    await database.drop();
  }
});

/** POST /token client_credentials over node:http, on `agent` if given; `signal` hangs up. */
function tokenRequest(
  pc: { issuer: string },
  client: { client_id: string; client_secret?: string },
  options: { agent?: http.Agent; signal?: AbortSignal },
  form = 'grant_type=client_credentials',
): Promise<{ status: number; connection?: string }> {
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
      response.on('end', () => resolve({ status: response.statusCode ?? 0, connection: response.headers.connection }));
    });
    request.on('error', reject);
    request.end(form);
  });
}
