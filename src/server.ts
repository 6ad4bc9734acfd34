// A running Portcullis: services, provider, HTTP server, and the timers that
// keep it current (key refresh, expired-row sweep). Owns all their lifetimes.
import { existsSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AdapterPayload } from 'oidc-provider';
import { VERSION } from './version.js';
import { createApp } from './app.js';
import { ConfigError, NOT_AN_ADDRESS_HERE, typoHint, type Config } from './config.js';
import { serveWithRefusals } from './http/client-errors.js';
import { InFlightRequests } from './http/in-flight.js';
import { isLoopbackHost } from './http/safe-url.js';
import { securityHeadersFor } from './http/security-headers.js';
import { loadCookieKeys } from './keys/cookie-keys.js';
import { createLogger, type Logger } from './logger.js';
import { Metrics, type BackgroundTask } from './metrics/metrics.js';
import { startMetricsServer, type MetricsServer } from './metrics/metrics-server.js';
import { CLIENT_CHANGES_CHANNEL } from './clients/client-changes.js';
import { SIGNING_KEY_CHANGES_CHANNEL } from './keys/key-changes.js';
import { sweepExpired } from './provider/artifacts.js';
import { warnOfClockSkew } from './persistence/clock-skew.js';
import { NotifiedCache } from './persistence/notified-cache.js';
import { ProviderHost } from './provider/host.js';
import { closeWithin, openServices, type Services } from './services.js';
import { databaseTrouble, lastLine } from './persistence/unavailable.js';
import { encodingProblem, MigrationError } from './persistence/migrations.js';
import { DatabaseUnavailable } from './persistence/database.js';
import { EmbeddedDatabaseBusy } from './persistence/embedded.js';
import { SealError } from './keys/sealed-secrets.js';
import { KeyError } from './keys/signing-keys.js';

/** How long a start may wait for the database before it says so. */
const START_WAIT_NOTICE_MS = 5_000;

/** How long a request's headers may take to arrive, and the whole request. */
const HEADERS_TIMEOUT_MS = 20_000;
const REQUEST_TIMEOUT_MS = 60_000;

/** How long shutdown waits for requests still being handled before it closes the database anyway. */
const SHUTDOWN_GRACE_MS = 10_000;
/** How long after a kept-alive connection's last answer a shutdown waits before closing it (see close). */
const KEPT_ALIVE_QUIET_MS = 1_000;
/** How long closing the database may take: one that does not answer must not keep the process from exiting. */
const DATABASE_CLOSE_MS = 5_000;

export interface RunningServer {
  url: string;
  /** Where GET /metrics answers, when METRICS_PORT is set. */
  metricsUrl?: string;
  services: Services;
  host: ProviderHost;
  /**
   * Stops serving (README, Shutdown). `signal`: a supervisor is stopping the
   * process, and connections kept open by clients elsewhere may already carry
   * their next requests (see close below); a caller in this process (the
   * tests) knows where its own requests are.
   */
  close(options?: { signal?: boolean }): Promise<void>;
}

/**
 * A start refused for a reason its message states in full (the database, its
 * lock or migrations, the keys, the configuration, the port): what to do is in
 * the words, and a stack would only bury them. Anything else is a fault.
 */
export function isStartRefusal(error: unknown): boolean {
  // A port taken: the listeners' errors name the variables, the cause is Node's.
  const listening = (candidate: unknown) => (candidate as NodeJS.ErrnoException | undefined)?.syscall === 'listen';
  if (listening(error) || listening((error as Error | undefined)?.cause)) return true;
  return [DatabaseUnavailable, EmbeddedDatabaseBusy, MigrationError, SealError, KeyError, ConfigError].some((refusal) => error instanceof refusal);
}

export async function startServer(config: Config, logger: Logger = createLogger(config.logLevel)): Promise<RunningServer> {
  // First: a start that then fails (ENCRYPTION_KEY for ENCRYPTION_KEYS, and
  // the stored keys cannot be opened) is where the hint helps most.
  for (const typo of config.mistyped) logger.warn(typoHint(typo), { variable: typo.name, meant: typo.meant });
  // A PostgreSQL server that takes connections but does not answer keeps the
  // start waiting (as it should: a supervisor would only restart it into the
  // same wait); say so, rather than sit there without a word or a listener.
  // (The embedded database's first start takes seconds of its own.)
  const waiting =
    config.database.kind === 'postgres'
      ? setTimeout(() => logger.warn('still starting: waiting for the database at DATABASE_URL to answer (or for its migrations)'), START_WAIT_NOTICE_MS)
      : undefined;
  const services = await openServices(config, 'server').finally(() => clearTimeout(waiting));
  const { prisma } = services.database;
  let server: http.Server | undefined;
  let metricsServer: MetricsServer | undefined;
  const timers: NodeJS.Timeout[] = [];
  const inFlight = new InFlightRequests();
  let closing: Promise<void> | undefined;
  /** Set once the start has succeeded, listening and all. */
  let started = false;
  const close = (options: { signal?: boolean } = {}) =>
    (closing ??= (async () => {
      // From here /readyz says 503 and every response closes its connection.
      inFlight.drain();
      // (Not for a start that failed: no load balancer sends it anything.)
      if (config.shutdownDelay > 0 && started) {
        // Still listening: a load balancer that has not yet taken this
        // instance out sends requests for a few seconds more (Kubernetes ends
        // a pod and updates its endpoints at the same time).
        logger.info('serving on until the shutdown delay ends', { seconds: config.shutdownDelay });
        await sleep(config.shutdownDelay * 1_000);
      }
      // A client that kept its connection open may be sending its next
      // request on it right now: closed as idle (server.close() closes every
      // idle connection), the connection is reset with that request unanswered,
      // and a client does not retry a POST (RFC 9112 §9.3.1). So connections
      // answered in the last moment are left that long, still listening, for
      // such a request to arrive and be answered (closing its connection).
      // After a delay there are none: every response in it closed its own;
      // nor when the clients have closed those connections themselves.
      const quiet = started && options.signal ? inFlight.untilQuiet(KEPT_ALIVE_QUIET_MS) : 0;
      if (quiet > 0 && server && (await openConnections(server)) > 0) {
        logger.info('answering requests already sent on kept-alive connections before closing them', { waitMs: quiet });
        await sleep(quiet);
      }
      const deadline = Date.now() + SHUTDOWN_GRACE_MS;
      timers.forEach(clearInterval);
      if (server) {
        const closed = new Promise<void>((resolve) => server!.close(() => resolve()));
        // server.close() waits for every connection to end, and Node keeps a
        // connection alive after a response that began before it (for
        // keepAliveTimeout, 65 s): each is closed as soon as it is idle, and
        // whatever is still open at the deadline is cut.
        const idle = setInterval(() => server!.closeIdleConnections(), 50);
        const cut = setTimeout(() => server!.closeAllConnections(), SHUTDOWN_GRACE_MS);
        server.closeIdleConnections();
        await closed;
        clearInterval(idle);
        clearTimeout(cut);
      }
      await metricsServer?.close();
      // The connections are gone, but a request whose client hung up may still
      // be writing: the database stays open for it (see http/in-flight.ts).
      if (!(await inFlight.drained(Math.max(0, deadline - Date.now())))) {
        logger.warn('closing the database with requests still being handled', { requests: inFlight.size, waitedMs: SHUTDOWN_GRACE_MS });
      }
      // PostgreSQL's pool only: the embedded database lives in this process,
      // and its close (a checkpoint) is work to finish, not an answer to wait for.
      if (config.database.kind === 'embedded') return services.close();
      const gaveUp = await closeWithin(services, DATABASE_CLOSE_MS);
      if (gaveUp) logger.warn('the database did not close in time; exiting without waiting for it', { waitedMs: DATABASE_CLOSE_MS });
    })());
  try {
    const cookieKeys = await loadCookieKeys(services.database, services.sealer, config.cookieKeys);
    const subjects = await services.subjects();
    await services.secondFactors.loadKeys();
    const clientCache = await new NotifiedCache<AdapterPayload>().listen(services.database, CLIENT_CHANGES_CHANNEL);
    await services.accounts.listenForChanges(services.database);
    // Counted only where someone can read the counts.
    const metrics = config.metrics ? new Metrics({ pool: services.database.poolStats }) : undefined;
    const host = await ProviderHost.create({ config, prisma, exclusively: services.database.exclusively, sealer: services.sealer, browsers: services.browsers, sql: services.database.sql, clientCache, accounts: services.accounts, apis: services.apis, logger, cookieKeys, subjects, metrics, signInThrottle: services.signInThrottle });
    const app = createApp({ config, host, subjects, accounts: services.accounts, secondFactors: services.secondFactors, signInThrottle: services.signInThrottle, deviceCookies: services.deviceCookies, signInNotices: services.signInNotices, browsers: services.browsers, apis: services.apis, logger, sql: services.database.sql, space: services.database.space, inFlight, metrics });

    // First: an instance whose metrics cannot listen (the port taken) stops
    // before it serves anyone.
    if (metrics && config.metrics) {
      metricsServer = await startMetricsServer(metrics, config.metrics, logger);
      logger.info('metrics listening', { url: metricsServer.url });
    }
    server = http.createServer(
      {
        // A request is a form or a query of at most a few KiB (bodies stop at
        // 56 KiB): headers still arriving after HEADERS_TIMEOUT_MS, or a body
        // after REQUEST_TIMEOUT_MS, are a client holding the connection open
        // (slowloris), answered 408 (http/client-errors.ts). Node's defaults
        // are 60 s and 300 s, checked only every 30 s. The body's allowance
        // stays generous: a slow mobile link, or the event loop held up by a
        // long statement on the embedded database (PGlite runs in this
        // process), must not cut requests that were on their way.
        headersTimeout: HEADERS_TIMEOUT_MS,
        requestTimeout: REQUEST_TIMEOUT_MS,
        connectionsCheckingInterval: 1_000,
        // Checked, with a body saying why, by serveWithRefusals.
        requireHostHeader: false,
      },
    );
    // Every such refusal says invalid_request (client-errors.ts).
    const refused = metrics ? () => metrics.oauthError('other', 'invalid_request') : undefined;
    serveWithRefusals(server, app, refused, securityHeadersFor(config.issuer));
    // Keep-alive must outlast common proxies' idle timeouts.
    server.keepAliveTimeout = 65_000;
    // Every header is read, up to the size limit (16 KiB): past Node's count
    // (2000) it dropped the rest unread, and with them a second Host or
    // Authorization that the checks above refuse, and a proxy may act on.
    server.maxHeadersCount = 0;
    await new Promise<void>((resolve, reject) => {
      // Named by the variables that chose the address (an unknown HOST, a PORT in use).
      // An address that is not this machine's (or no address at all) is a bad
      // HOST: a configuration error (exit 2); a port in use is not.
      server!.once('error', (error: NodeJS.ErrnoException) => {
        const message = `cannot listen on HOST=${config.host} PORT=${config.port}: ${error.message}`;
        reject(NOT_AN_ADDRESS_HERE.has(error.code ?? '') ? new ConfigError(message) : new Error(message, { cause: error }));
      });
      server!.listen(config.port, config.host, () => resolve());
    });
    // Once listening, an error the server emits is one accepting a connection
    // (out of memory or buffers; running out of descriptors libuv absorbs):
    // that connection is lost, the server goes on. Unheard, the event would
    // end the process.
    server.on('error', (error: NodeJS.ErrnoException) => logger.error('a connection could not be accepted', { error: `${error.code ?? error.name}: ${error.message}` }));

    // Tracked like requests: shutdown lets a running sweep or refresh finish.
    // One run at a time: a timer's next tick while the database hangs would
    // start another, and each would fail and say so at the same moment. A
    // call during a run (a key change announced meanwhile) runs once more
    // after it, so that nothing announced is missed.
    // While the database is away a failure is expected, and /readyz already
    // says so: one line at warn, its last line only (Prisma's messages start
    // with the call they were made in, over several lines).
    const background = (counted: BackgroundTask, task: () => Promise<unknown>) => {
      // Logged as the metric's label says it, in words: `key refresh failed`.
      const name = counted.replaceAll('_', ' ');
      let running = false;
      let again = false;
      const start = (): void => {
        if (running) {
          again = true;
          return;
        }
        running = true;
        const run = task()
          .catch((error: Error) => {
            metrics?.backgroundTaskFailed(counted);
            const trouble = databaseTrouble(error);
            if (trouble) logger.warn(`${name} failed: database ${trouble}`, { error: lastLine(error.message) });
            else logger.error(`${name} failed`, { error: error.message });
          })
          .finally(() => {
            running = false;
            if (again) {
              again = false;
              start();
            }
          });
        inFlight.track(run);
      };
      return start;
    };
    const refreshKeys = background('key_refresh', () => host.refresh());
    timers.push(setInterval(refreshKeys, config.keyRefreshInterval * 1000).unref());
    // On PostgreSQL a change to the keys is announced (keys/key-changes.ts): reload at once.
    // What was announced while the feed was down is caught up with as soon as
    // it is back (onBack), not a refresh interval later. Not when it is lost:
    // the database is then likely out of reach too.
    await services.database.subscribe(SIGNING_KEY_CHANGES_CHANNEL, { onMessage: refreshKeys, onReset: () => undefined, onBack: refreshKeys });
    // On the embedded database what a sweep deleted is then reclaimed, and a
    // checkpoint made (Database.upkeep): a task of its own, whose failure is
    // not the sweep's. Not after the sweep at start: PGlite began with a
    // checkpoint of its own.
    let swept: string[] = [];
    const upkeep = background('database_upkeep', () => services.database.upkeep(swept));
    let sweeps = 0;
    const sweep = background('sweep', async () => {
      // (The embedded database runs in this process, on its clock.)
      if (config.database.kind === 'postgres') await warnOfClockSkew(prisma, logger);
      const rows = new Map<string, number>();
      await sweepExpired(prisma, (table, deleted) => {
        metrics?.expiredRowsSwept(table, deleted);
        rows.set(table, (rows.get(table) ?? 0) + deleted);
      });
      logger.debug('expired rows swept', { rows: [...rows.values()].reduce((sum, count) => sum + count, 0) });
      swept = [...rows].filter(([, count]) => count > 0).map(([table]) => table);
      if (sweeps++ > 0) upkeep();
    });
    timers.push(setInterval(sweep, config.sweepInterval * 1000).unref());
    void sweep();

    if (config.database.kind === 'postgres') await warnOfDatabaseSettings(services, logger);
    const { database } = config;
    const earlier = database.kind === 'embedded' ? database.earlierDefault : undefined;
    if (database.kind === 'embedded' && earlier && existsSync(path.join(earlier, 'pgdata'))) {
      // An upgrade from before 0.5.6 run from another directory than its own,
      // DATA_DIR unset: its clients and people are in the database left there.
      logger.warn('DATA_DIR is unset: this server uses the embedded database in its own directory, but ./data in the current directory holds one too (where releases before 0.5.6 kept it); set DATA_DIR to that directory to go on with it', {
        dataDir: database.dataDir,
        found: earlier,
      });
    }
    if (database.kind === 'embedded') {
      // Durable (persistence/durable-files.ts), but inside this process: one
      // instance, and backups only while it is stopped.
      logger.warn('the embedded database is for trying Portcullis and development: it lives inside this process (one instance; back it up only while stopped); in production use PostgreSQL (DATABASE_URL; `portcullis copy --to` moves this one there)', {
        dataDir: database.dataDir,
      });
    }
    if (services.migrations.applied.length > 0) {
      // An upgrade's trace: which schema changes this start made, on a database that held how many.
      logger.info('database migrated', { applied: services.migrations.applied, before: services.migrations.alreadyApplied });
    }
    if (services.migrations.unknown.length > 0) {
      // Expected for an old instance during a rolling deploy (README, Upgrades); otherwise this release is too old for its database.
      logger.warn('the database holds migrations this release does not have: a newer release migrated it', { migrations: services.migrations.unknown });
    }
    if (config.keyActivationDelay < config.keyRefreshInterval + 30) {
      // Every instance publishes a new key within a refresh interval, and a
      // resource server with a cached JWKS refetches at most every 30 s (jose).
      logger.warn('KEY_ACTIVATION_DELAY is shorter than KEY_REFRESH_INTERVAL + 30 s: after `keys rotate`, a resource server may meet a signature by a key it cannot fetch yet', {
        keyActivationDelay: config.keyActivationDelay,
        keyRefreshInterval: config.keyRefreshInterval,
      });
    }
    if (config.issuer.startsWith('https:') && config.trustProxy === 0) {
      // An https issuer on a server speaking plain http has a proxy in front:
      // without TRUST_PROXY every client has the proxy's address, and the
      // per-address sign-in limit shuts everyone out at once.
      logger.warn('ISSUER is https but TRUST_PROXY is not set: if a proxy terminates TLS in front of this server, set TRUST_PROXY, or every sign-in counts as coming from the proxy\'s address');
    }
    if (!config.issuer.startsWith('https:') && !isLoopbackHost(new URL(config.issuer).hostname)) {
      // OpenID Connect issuers are https (Discovery §3): over http, cookies
      // go out without Secure and no HSTS is sent, and an app that discovers
      // the https address behind a TLS proxy finds another issuer in it.
      logger.warn('ISSUER is http on a host other than this machine: serve it as https (a proxy terminating TLS, and TRUST_PROXY), or cookies and tokens cross the network unencrypted', { issuer: config.issuer });
    }
    if (config.encryption.kind === 'file' && services.encryptionKeyExposed) {
      logger.warn('the encryption key file can be read by others than its owner; restrict it (chmod 600)', { file: config.encryption.path });
    }
    if (config.encryption.kind === 'file' && (services.encryptionKeyGenerated || config.database.kind === 'postgres')) {
      // With PostgreSQL there may be other instances, and each must open what
      // the others sealed; the embedded database has one (its directory is locked).
      const instances = config.database.kind === 'postgres' ? ', and give every instance the same key (or set ENCRYPTION_KEYS)' : '';
      logger.warn(`secrets in the database are sealed with the key in a local file; keep it, and back it up apart from the database${instances}`, {
        file: config.encryption.path,
        key: services.sealer.sealingKeyId,
      });
    }

    const { port } = server.address() as AddressInfo;
    logger.info('portcullis listening', { version: VERSION, issuer: config.issuer, port, database: config.database.kind });
    started = true;
    return { url: `http://localhost:${port}`, metricsUrl: metricsServer?.url, services, host, close };
  } catch (error) {
    await close();
    throw error;
  }
}

/**
 * Settings of the PostgreSQL server an operator should change, said once, at
 * start, where they look. provider_artifacts churns (every refresh consumes
 * one row and writes two): without autovacuum its dead rows pile up and its
 * statistics never appear; the hot path is written to plan well without
 * them, but the table still bloats. A database not in UTF-8 (refused when new,
 * migrations.ts) fails every request that stores a character it lacks.
 */
async function warnOfDatabaseSettings(services: Services, logger: Logger): Promise<void> {
  const { rows } = await services.database.sql.query<{ autovacuum: string; encoding: string }>(
    { name: 'settings-at-start', text: "SELECT current_setting('autovacuum') AS autovacuum, current_setting('server_encoding') AS encoding" },
    [],
  );
  if (rows[0]?.autovacuum === 'off') {
    logger.warn('autovacuum is off on the database server: expired and consumed token rows will bloat provider_artifacts; turn it on (autovacuum = on in postgresql.conf)');
  }
  const encoding = rows[0] && encodingProblem(rows[0].encoding);
  if (encoding) logger.warn(`the database ${encoding}, and move the data there (pg_dump, then pg_restore into it); until then such requests fail`);
}

/** Connections the server holds open, idle or not (on an error, one: waiting is the safe side). */
function openConnections(server: http.Server): Promise<number> {
  return new Promise((resolve) => server.getConnections((error, count) => resolve(error ? 1 : count)));
}
