// Database round trips per operation, on a second Portcullis whose PostgreSQL
// connections pass through a counting relay; the timed process is untouched.
import { authorize, Browser, tokenRequest, type Client, type Person } from './browser.js';
import { startTripCounter, type TripCount } from './db-trips.js';
import { LOGIN_SCOPE, REDIRECT_URI } from './fixtures.js';
import { log } from './log.js';
import type { Harness, Target } from './measurement.js';
import type { ScenarioName } from './options.js';
import { freePort, PORTCULLIS_MAIN, Service, sleep } from './processes.js';
import type { ScenarioReport } from './report.js';

export async function countRoundTrips(
  harness: Harness,
  env: Record<string, string>,
  databaseUrl: string,
  client: Client,
  people: Person[],
  scenarios: Map<ScenarioName, ScenarioReport>,
  main: Target,
  accessTokensOf: (target: Target) => Promise<string[]>,
): Promise<void> {
  const upstream = new URL(databaseUrl);
  const counter = await startTripCounter({ host: upstream.hostname, port: Number(upstream.port || 5432) });
  const relayed = new URL(databaseUrl);
  relayed.host = `127.0.0.1:${counter.port}`;
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const service = await Service.start({
    name: 'portcullis (round-trip counting)',
    script: PORTCULLIS_MAIN,
    // No background refresh or sweep while counting.
    env: { ...env, DATABASE_URL: relayed.toString(), PORT: String(port), ISSUER: url, KEY_REFRESH_INTERVAL: '1d', SWEEP_INTERVAL: '1d' },
    readyUrl: `${url}/.well-known/openid-configuration`,
  });
  const browser = new Browser(url);
  const runs = harness.options.smoke ? 3 : 20;
  const count = async (name: ScenarioName, operations: number, operation: (i: number) => Promise<unknown>): Promise<TripCount | undefined> => {
    const entry = scenarios.get(name);
    if (!entry?.portcullis) return undefined;
    await operation(-1); // the first request of a kind may do one-off work
    await sleep(200);
    const before = counter.snapshot();
    for (let i = 0; i < operations; i++) await operation(i);
    await sleep(200);
    const trips = counter.since(before, operations);
    entry.portcullis.db_round_trips = trips;
    log(`${name}: ${trips.total} database round trips per operation`);
    return trips;
  };
  // The same operations from `connections` concurrent clients: what batching of
  // concurrent requests' statements (if any) saves under load.
  const concurrency = harness.options.connections;
  const concurrent = async (name: ScenarioName, operation: (i: number) => Promise<unknown>) => {
    const entry = scenarios.get(name);
    if (!entry?.portcullis) return;
    const total = concurrency * (harness.options.smoke ? 2 : 10);
    const before = counter.snapshot();
    let next = 0;
    await Promise.all(Array.from({ length: concurrency }, async () => {
      while (next < total) await operation(next++);
    }));
    await sleep(200);
    entry.portcullis.db_round_trips_concurrent = { concurrency, ...counter.since(before, total) };
    log(`${name}: ${entry.portcullis.db_round_trips_concurrent.total} database round trips per operation at ${concurrency} concurrent requests`);
  };
  try {
    const clientCredentials = () => tokenRequest(browser, client, { grant_type: 'client_credentials' });
    await count('client_credentials', runs, clientCredentials);
    await concurrent('client_credentials', clientCredentials);
    if (scenarios.get('refresh_token')?.portcullis) {
      const pool = await main.refreshTokens(runs + 1 + concurrency * (harness.options.smoke ? 2 : 10));
      const refresh = (i: number) => tokenRequest(browser, client, { grant_type: 'refresh_token', refresh_token: pool.pop()! });
      await count('refresh_token', runs, refresh);
      await concurrent('refresh_token', refresh);
    }
    if (scenarios.get('introspection')?.portcullis) {
      const tokens = await accessTokensOf(main);
      const introspect = (i: number) =>
        tokenRequest(browser, client, { token: tokens[Math.abs(i) % tokens.length]!, token_type_hint: 'access_token' }, '/token/introspection');
      await count('introspection', runs, introspect);
      await concurrent('introspection', introspect);
    }
    const logins = harness.options.smoke ? 1 : 3;
    await count('interactive_login', logins, (i) =>
      authorize(new Browser(url), { client, redirectUri: REDIRECT_URI, scope: LOGIN_SCOPE, prompt: 'consent' }, people[Math.max(0, i) % people.length]!),
    );
  } finally {
    await service.stop();
    await counter.close();
  }
}
