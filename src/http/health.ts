// Probes for whatever runs Portcullis (compose, Kubernetes, a load balancer):
// /healthz says the process answers requests (liveness: restart it if not),
// /readyz also that its database answers and has disk space for writes,
// that it could load the current signing keys, and that it is not shutting
// down (readiness: send it traffic). Neither says anything about clients or
// users, and neither is logged as an error when the database is down: the
// probe's answer is the report.
import type { Middleware, ParameterizedContext } from 'koa';
import type { Sql } from '../persistence/database.js';
import type { SpaceWatch } from '../persistence/disk-space.js';
import { databaseTrouble } from '../persistence/unavailable.js';
import { refuseMethod, takes } from './methods.js';

/** How long readiness waits for the database; probes commonly time out at 1–5 s. */
const DATABASE_TIMEOUT_MS = 2_000;

// A table of ours, not SELECT 1: a database made again empty (a restore
// under way) answers, but cannot serve anyone. Nor can one that takes no
// writes (a standby after a failover): almost every request writes.
const PING = {
  name: 'health-ping',
  text: "SELECT current_setting('transaction_read_only') = 'on' AS read_only, (SELECT 1 FROM signing_keys LIMIT 1) AS ours",
} as const;

/** Why the server's signing keys may not be the current ones, if they may (ProviderHost.keysOutOfDate). */
export interface SigningKeysState {
  readonly keysOutOfDate: string | undefined;
}

/** Whether shutdown has begun (InFlightRequests.draining). */
export interface StoppingState {
  readonly draining: boolean;
}

export function healthProbes(sql: Sql, space: SpaceWatch, keys: SigningKeysState, stopping: StoppingState): Middleware {
  // Not async itself: every other request passes through here, without an extra promise.
  return (ctx, next) => (ctx.path === '/healthz' || ctx.path === '/readyz' ? answer(ctx, sql, space, keys, stopping) : next());
}

async function answer(ctx: ParameterizedContext, sql: Sql, space: SpaceWatch, keys: SigningKeysState, stopping: StoppingState): Promise<void> {
  if (!takes(['GET'], ctx.method)) {
    ctx.body = refuseMethod(ctx, ['GET']);
    return;
  }
  ctx.set('Cache-Control', 'no-store');
  if (ctx.path === '/healthz') {
    ctx.body = { status: 'ok' };
    return;
  }
  // The path of DATA_DIR and the figures stay in the log: this answer is public.
  // A stopping server still answers everything else (SHUTDOWN_DELAY), but no
  // load balancer should send it more.
  const reason = stopping.draining
    ? 'shutting down'
    : ((await databaseTroubleNow(sql)) ?? ((await space.full()) ? 'the database is out of disk space' : keys.keysOutOfDate));
  ctx.status = reason ? 503 : 200;
  ctx.body = reason ? { status: 'unavailable', reason } : { status: 'ready' };
}

/** Why the database cannot serve now, if it cannot: it does not answer (in time), has none of our tables, or takes no writes. */
async function databaseTroubleNow(sql: Sql): Promise<string | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), DATABASE_TIMEOUT_MS)));
  try {
    const answer = await Promise.race([
      sql.query<{ read_only: boolean }>(PING, []).then(({ rows }) => (rows[0]?.read_only ? ('read-only' as const) : ('ok' as const)), (error: unknown) => error),
      timeout,
    ]);
    if (answer === 'ok') return undefined;
    if (answer === 'read-only') return 'the database takes no writes (a standby?)';
    if (answer !== 'late' && databaseTrouble(answer) === 'without its tables') return "the database has none of Portcullis's tables (dropped and made again?)";
    return 'the database does not answer';
  } finally {
    clearTimeout(timer);
  }
}
