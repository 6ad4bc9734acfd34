// What an operator watches: Prometheus counters for the security events that
// matter (sign-ins, consents, tokens issued, OAuth errors, grants revoked for
// a replayed code or refresh token, database outages), request durations per
// endpoint, the database pool, and the process itself. Served on a port of
// its own (metrics/metrics-server.ts), never on the issuer's.
//
// Every label but an HTTP status code takes its values from a fixed list:
// nothing a client sends (an unknown grant_type, a path) can grow the set of
// series.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { VERSION } from '../version.js';
import { SWEPT_TABLES, type SweptTable } from '../provider/artifacts.js';

const SIGN_IN_OUTCOMES = ['success', 'wrong_credentials', 'throttled', 'refused'] as const;
/** The TOTP step's codes (accounts/second-factors.ts): taken, wrong (or used before), refused by the throttle, refused while locked. */
const SECOND_FACTOR_OUTCOMES = ['taken', 'wrong', 'throttled', 'locked'] as const;
const CONSENT_DECISIONS = ['allow', 'deny'] as const;
const REVOCATION_REASONS = ['replay', 'other'] as const;
/** How a logout token POSTed to an app's back-channel logout URI fared: answered 200 or 204, or not (any other answer, no answer within 2.5 s). */
const BACKCHANNEL_OUTCOMES = ['delivered', 'failed'] as const;
/** The server's periodic work (server.ts): reloading signing keys, sweeping expired rows, the embedded database's upkeep. */
const BACKGROUND_TASKS = ['key_refresh', 'sweep', 'database_upkeep'] as const;
export type BackgroundTask = (typeof BACKGROUND_TASKS)[number];
export type SignInOutcome = (typeof SIGN_IN_OUTCOMES)[number];
export type SecondFactorOutcome = (typeof SECOND_FACTOR_OUTCOMES)[number];
export type ConsentDecision = (typeof CONSENT_DECISIONS)[number];

/** The grant types this server issues tokens for; anything else counts as `other`. */
const GRANT_TYPES = new Set(['authorization_code', 'refresh_token', 'client_credentials', 'urn:ietf:params:oauth:grant-type:device_code']);

/**
 * The routes a request is counted under: the library's route names, and ours.
 * Unknown paths (404s) are `other`.
 */
const ROUTES = new Set([
  'account',
  'authorization',
  'resume',
  'token',
  'userinfo',
  'introspection',
  'revocation',
  'end_session',
  'end_session_confirm',
  'end_session_success',
  'discovery',
  'jwks',
  'pushed_authorization_request',
  'device_authorization',
  'code_verification',
  'device_resume',
  'interaction',
  'health',
  'home',
]);

/** The error codes of RFC 6749, RFC 6750, RFC 7662/7009, RFC 8707, RFC 8628, RFC 9449 and OpenID Connect Core that this server answers with. */
const OAUTH_ERRORS = new Set([
  'invalid_request',
  'invalid_client',
  'invalid_grant',
  'unauthorized_client',
  'unsupported_grant_type',
  'unsupported_response_type',
  'unsupported_token_type',
  'invalid_scope',
  'invalid_target',
  'invalid_token',
  'insufficient_scope',
  'invalid_dpop_proof',
  'use_dpop_nonce',
  'access_denied',
  'server_error',
  'temporarily_unavailable',
  'interaction_required',
  'login_required',
  'account_selection_required',
  'consent_required',
  'invalid_request_uri',
  'invalid_request_object',
  'request_not_supported',
  'request_uri_not_supported',
  'registration_not_supported',
  'invalid_redirect_uri',
  'invalid_client_metadata',
  // RFC 8628 §3.5, at the token endpoint while a device polls; and ours for
  // too many wrong user codes at /device (provider/device-flow.ts).
  'authorization_pending',
  'slow_down',
  'expired_token',
  'too_many_attempts',
  // Ours: an interaction that expired or is not this browser's, or a browser
  // that keeps no cookie of ours, an address that takes another method,
  // nothing served at an address.
  'session_not_found',
  'cookies_blocked',
  'method_not_allowed',
  'not_found',
]);

const known = (values: Set<string>, value: unknown): string => (typeof value === 'string' && values.has(value) ? value : 'other');

export interface PoolStats {
  total: number;
  idle: number;
  waiting: number;
}

export class Metrics {
  readonly registry = new Registry();

  private readonly requestDuration = new Histogram({
    name: 'portcullis_http_request_duration_seconds',
    help: 'Time from a request reaching Portcullis to its response being ready, by route and status code.',
    labelNames: ['route', 'status'] as const,
    // From 1 ms: a token request is served in about one on a quiet server. To
    // a minute: a request waiting on a slow database is answered within
    // DATABASE_TIMEOUT (20 s by default) and 5 s more, and should land in a
    // bucket of its own, not only in +Inf.
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [this.registry],
  });

  private readonly tokensIssued = new Counter({
    name: 'portcullis_tokens_issued_total',
    help: 'Successful token endpoint responses, by grant type.',
    labelNames: ['grant_type'] as const,
    registers: [this.registry],
  });

  private readonly oauthErrors = new Counter({
    name: 'portcullis_oauth_errors_total',
    help: 'Error responses, by endpoint and the OAuth or OpenID Connect error code they carry (in JSON, on a page, or sent back to the client).',
    labelNames: ['endpoint', 'error'] as const,
    registers: [this.registry],
  });

  private readonly signIns = new Counter({
    name: 'portcullis_sign_ins_total',
    help: 'Password sign-ins, by outcome: success, wrong_credentials, throttled (too many failures), refused (another reason).',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });

  private readonly secondFactors = new Counter({
    name: 'portcullis_second_factor_codes_total',
    help: 'TOTP codes entered at the sign-in\'s second step, by outcome: taken, wrong (or used before), throttled, locked (too many wrong codes in a row).',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });

  private readonly consents = new Counter({
    name: 'portcullis_consents_total',
    help: 'Consent decisions made on the consent page.',
    labelNames: ['decision'] as const,
    registers: [this.registry],
  });

  private readonly grantsRevoked = new Counter({
    name: 'portcullis_grant_revocations_total',
    help: 'Revocations of one sign-in\'s tokens under a grant (of a whole grant, for a token without its sign-in\'s id), by reason: replay (a code or refresh token presented again, taken for theft; racing replays may each count) or other (a sign-out; a client\'s revocation is not counted).',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  private readonly backchannelLogouts = new Counter({
    name: 'portcullis_backchannel_logouts_total',
    help: 'Logout tokens POSTed to apps\' back-channel logout URIs at a sign-out, by outcome: delivered (200 or 204) or failed (another answer, or none within 2.5 s; the log names the app).',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });

  // A failure here is logged once per run, and nothing answers a request
  // wrongly at first: keys that stop reloading, or rows that stop being swept,
  // show only in time. What an alert watches.
  private readonly backgroundFailures = new Counter({
    name: 'portcullis_background_task_failures_total',
    help: 'Runs of the server\'s periodic work that failed, by task: key_refresh (signing keys reloaded from the database), sweep (expired rows deleted), database_upkeep (the embedded database reclaiming space). The log says why.',
    labelNames: ['task'] as const,
    registers: [this.registry],
  });

  // Beside the rate rows are written at (tokens issued, sign-ins), whether the
  // sweep keeps up, where the count was only a debug line.
  private readonly swept = new Counter({
    name: 'portcullis_expired_rows_swept_total',
    help: 'Expired rows the server\'s sweep deleted (every SWEEP_INTERVAL), by table: provider_artifacts (codes, tokens, sessions, consents, sign-ins in progress), sign_in_failures (failed sign-in counts whose window ended).',
    labelNames: ['table'] as const,
    registers: [this.registry],
  });

  // Named before disk space counted too; the name stays, as dashboards and alerts use it.
  private readonly unavailable = new Counter({
    name: 'portcullis_database_unreachable_total',
    help: 'Requests answered 503 because the database could not serve them (unreachable, too slow, out of disk space).',
    registers: [this.registry],
  });

  /** With Node's process metrics too (CPU, memory, event-loop delay, garbage collection). */
  constructor(options: { pool?: () => PoolStats } = {}) {
    collectDefaultMetrics({ register: this.registry });
    // Gauges named as counters (promtool's lint refuses a gauge ending in
    // _total), and each only the sum of the same series by type, which stays.
    for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) this.registry.removeSingleMetric(name);
    // Every series a counter with a fixed set of labels can have, at 0 from
    // the start: a rate over a series that appears at its first event sees
    // nothing before it, and an alert on it has no data rather than zero.
    for (const grantType of GRANT_TYPES) this.tokensIssued.inc({ grant_type: grantType }, 0);
    for (const outcome of SIGN_IN_OUTCOMES) this.signIns.inc({ outcome }, 0);
    for (const outcome of SECOND_FACTOR_OUTCOMES) this.secondFactors.inc({ outcome }, 0);
    for (const decision of CONSENT_DECISIONS) this.consents.inc({ decision }, 0);
    for (const reason of REVOCATION_REASONS) this.grantsRevoked.inc({ reason }, 0);
    for (const outcome of BACKCHANNEL_OUTCOMES) this.backchannelLogouts.inc({ outcome }, 0);
    for (const task of BACKGROUND_TASKS) this.backgroundFailures.inc({ task }, 0);
    for (const table of SWEPT_TABLES) this.swept.inc({ table }, 0);
    new Gauge({
      name: 'portcullis_build_info',
      help: 'The running version of Portcullis (always 1).',
      labelNames: ['version'] as const,
      registers: [this.registry],
    }).set({ version: VERSION }, 1);
    const pool = options.pool;
    if (pool) {
      new Gauge({
        name: 'portcullis_database_pool_connections',
        help: 'Connections in the database pool, by state.',
        labelNames: ['state'] as const,
        registers: [this.registry],
        collect() {
          const { total, idle } = pool();
          this.set({ state: 'idle' }, idle);
          this.set({ state: 'busy' }, total - idle);
        },
      });
      new Gauge({
        name: 'portcullis_database_pool_waiting_requests',
        help: 'Statements waiting for a connection from the database pool.',
        registers: [this.registry],
        collect() {
          this.set(pool().waiting);
        },
      });
    }
  }

  /**
   * The text exposition. prom-client writes a value that is not a number as
   * `Nan` (Node's event-loop lag, scraped again within its 10 ms sampling);
   * the format spells it `NaN`, and a parser that holds to it refuses the rest.
   */
  async exposition(): Promise<string> {
    return (await this.registry.metrics()).replace(/ Nan$/gm, ' NaN');
  }

  request(route: string, status: number, seconds: number): void {
    this.requestDuration.observe({ route: known(ROUTES, route), status: String(status) }, seconds);
  }

  tokenIssued(grantType: unknown): void {
    this.tokensIssued.inc({ grant_type: known(GRANT_TYPES, grantType) });
  }

  oauthError(endpoint: string, error: unknown): void {
    this.oauthErrors.inc({ endpoint: known(ROUTES, endpoint), error: known(OAUTH_ERRORS, error) });
  }

  signIn(outcome: SignInOutcome): void {
    this.signIns.inc({ outcome });
  }

  secondFactor(outcome: SecondFactorOutcome): void {
    this.secondFactors.inc({ outcome });
  }

  consent(decision: ConsentDecision): void {
    this.consents.inc({ decision });
  }

  grantRevoked(reason: (typeof REVOCATION_REASONS)[number]): void {
    this.grantsRevoked.inc({ reason });
  }

  backchannelLogout(outcome: (typeof BACKCHANNEL_OUTCOMES)[number]): void {
    this.backchannelLogouts.inc({ outcome });
  }

  databaseUnavailable(): void {
    this.unavailable.inc();
  }

  expiredRowsSwept(table: SweptTable, rows: number): void {
    this.swept.inc({ table }, rows);
  }

  backgroundTaskFailed(task: BackgroundTask): void {
    this.backgroundFailures.inc({ task });
  }
}
