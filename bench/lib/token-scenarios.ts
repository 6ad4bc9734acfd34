// The token endpoint's scenarios, the same requests for Portcullis and the baseline.
import type { Scenario } from '../load.js';
import { basicAuth, type Client } from './browser.js';
import { SETTLE_SECONDS, type Harness, type Lane, type Target } from './measurement.js';

/** The fixed-request scenarios, identical for Portcullis and the baseline. */
export function clientCredentialsScenario(client: Client): Scenario {
  return {
    kind: 'fixed',
    method: 'POST',
    path: '/token',
    headers: { authorization: basicAuth(client), 'content-type': 'application/x-www-form-urlencoded' },
    body: 'grant_type=client_credentials',
    expectStatus: 200,
    expectBody: '"access_token"',
  };
}

/** Distinct tokens in turn: with one token, concurrent requests would ask for the same row. */
export function introspectionScenario(client: Client, tokens: string[]): Scenario {
  return {
    kind: 'fixed',
    method: 'POST',
    path: '/token/introspection',
    headers: { authorization: basicAuth(client), 'content-type': 'application/x-www-form-urlencoded' },
    bodies: tokens.map((token) => new URLSearchParams({ token, token_type_hint: 'access_token' }).toString()),
    expectStatus: 200,
    expectBody: '"active":true',
  };
}

/**
 * Refresh with rotation, before the measurement: the warm-up runs on a first
 * pool; the measured pool is sized from the warm-up's rate (× the target's
 * poolMargin, plus a few per connection), so that every request presents a
 * token never presented before. Should it still run out, the measurement ends
 * there (and says so).
 */
export async function prepareRefresh(harness: Harness, target: Target): Promise<{ lane: Lane; made: number; poolSeconds: number }> {
  const { options } = harness;
  const scenario = (pool: string[]): Scenario => ({
    kind: 'refresh',
    path: '/token',
    authorization: basicAuth(target.client),
    pool,
  });
  let started = performance.now();
  // A smoke run keeps the pools small (pool-making is the slow part): running out
  // just ends its short measurement early.
  const warmPool = await target.refreshTokens(
    options.smoke ? options.connections * 4 : Math.ceil(options.warmup * target.expectedRefreshRate) + options.connections * 4,
  );
  let poolSeconds = (performance.now() - started) / 1000;
  const warm = await harness.warmup(target.url, scenario(warmPool));
  const leftover = warmPool.slice(warm.pool_used ?? warmPool.length);
  // Interleaved slices are each preceded by SETTLE_SECONDS of (unmeasured) refreshes too.
  const seconds = options.duration + (options.rounds > 1 ? options.rounds * SETTLE_SECONDS : 0);
  const needed = options.smoke ? options.connections * 8 : Math.ceil(warm.rate * seconds * target.poolMargin) + options.connections * 8;
  started = performance.now();
  const more = needed > leftover.length ? await target.refreshTokens(needed - leftover.length) : [];
  poolSeconds += (performance.now() - started) / 1000;
  if (target.name === 'portcullis') await harness.tidy('after making the refresh-token pool');
  let pool = [...leftover, ...more];
  let exhausted = false;
  const lane: Lane = {
    url: target.url,
    service: target.service,
    track: target.name === 'portcullis',
    next: () => (exhausted || pool.length === 0 ? null : scenario(pool)),
    // The next slice presents only tokens this one did not send.
    done(result) {
      pool = pool.slice(result.pool_used ?? pool.length);
      exhausted ||= result.pool_exhausted_after_s !== undefined;
    },
  };
  return { lane, made: warmPool.length + more.length, poolSeconds };
}
