// Opens the database behind Prisma and the pg hot path: a PostgreSQL server
// (DATABASE_URL) or the embedded PGlite. Everything else receives a `Database`;
// what differs between the two for the rest (its `kind`: one process or many,
// upkeep, start-up warnings, how a CLI joins) is asked of it, not guessed.
import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import type { Config } from '../config.js';
import { PrismaClient } from '../generated/prisma/client.js';
import { freeSpace, isFull, SpaceWatch } from './disk-space.js';
import { openEmbedded, type EmbeddedRole } from './embedded.js';
import { migrate, type MigrateOptions, type MigrationResult } from './migrations.js';
import { databaseTrouble } from './unavailable.js';

export type Prisma = PrismaClient;

/** The database DATABASE_URL or DATA_DIR names cannot be opened or used: the operator's to fix, and said so. */
export class DatabaseUnavailable extends Error {
  override name = 'DatabaseUnavailable';
}

/** A SQL statement with a stable name, so PostgreSQL can plan it once per connection. */
export interface Statement {
  name: string;
  text: string;
}

/** Runs hot-path statements on the pool Prisma uses. */
export interface Sql {
  query<Row extends object = Record<string, unknown>>(statement: Statement, values: unknown[]): Promise<{ rows: Row[]; rowCount: number }>;
}

/** A LISTEN on a dedicated connection; `live` is false while it is down (then nothing may be cached). */
export interface Subscription {
  readonly live: boolean;
  close(): Promise<void>;
}

export interface Subscriber {
  onMessage(payload: string): void;
  /** Called whenever the connection is (re)established or lost: caches start over either way. */
  onReset(): void;
  /**
   * Called when the connection listens again after subscribe() returned
   * (after a loss, or a first attempt that failed): whatever was announced
   * meanwhile went unheard.
   */
  onBack?(): void;
}

export interface Database {
  prisma: PrismaClient;
  /**
   * The pg pool Prisma runs on, for the few statements on the token hot path
   * (see provider/artifact-statements.ts): Prisma's JS query path costs ~300-400 µs of CPU per
   * statement on these machines against ~50 µs for the same statement through pg
   * (bench/query-cost.ts).
   */
  sql: Sql;
  kind: Config['database']['kind'];
  /** Where the pool connects, for a connection of one's own (a transaction spanning many statements: copy-database.ts). */
  connectionString: string;
  /** True for a CLI that joined a running server's embedded database (embedded.ts), rather than opening it itself. */
  joinedServer: boolean;
  /**
   * Whether a connection of the pool died since it opened (the server holding
   * the embedded database stopped, a failover). A Prisma transaction whose
   * COMMIT got no answer never gives its connection back (Prisma 6.19: it then
   * tries a ROLLBACK of what it takes as committed, and fails), so a
   * statement after it would wait for ever on a one-connection pool: the CLI
   * stops instead (cli/index.ts).
   */
  connectionLost(): boolean;
  /** How many connections the pool opens at most (1 on the embedded database). */
  poolSize: number;
  /**
   * What PostgreSQL's own processes do, where nothing else does: the
   * embedded database runs PostgreSQL in single-user mode, with no
   * autovacuum and no checkpointer, so rows deleted were never reclaimed and
   * the write-ahead log grew until the process stopped (and a crash then
   * replayed all of it). `swept`: the tables rows were just deleted from,
   * to vacuum. On PostgreSQL, nothing.
   */
  upkeep(swept: readonly string[]): Promise<void>;
  /** Whether statements above failed for want of disk space, until there is space again (for readiness). */
  space: SpaceWatch;
  /** The pool's connections now, and the statements waiting for one (for metrics). */
  poolStats(): { total: number; idle: number; waiting: number };
  /**
   * LISTEN for NOTIFYs on `channel`. PostgreSQL only: PGlite runs every socket
   * connection in one session, where notifications reach whichever connection
   * happens to be executing, so the embedded database offers none (undefined).
   */
  subscribe(channel: string, subscriber: Subscriber): Promise<Subscription | undefined>;
  migrate(options?: MigrateOptions): Promise<MigrationResult>;
  /**
   * Runs `work` while no other process runs its own `exclusively` on this
   * database (a PostgreSQL advisory lock): for what checks the database and
   * then acts on it, such as making the first keys. On the embedded database
   * it does nothing: one process holds it, but CLIs joining a server share
   * its one session, where no lock tells them apart (see rotateSigningKeys).
   */
  exclusively<T>(work: () => Promise<T>): Promise<T>;
  /** The schema is migrated and keys exist: a CLI may now join the embedded database. */
  ready(): Promise<void>;
  close(): Promise<void>;
}

/** `role`: a server holds the embedded database for others; a CLI joins a server's (see embedded.ts). */
export async function openDatabase(database: Config['database'], role: EmbeddedRole): Promise<Database> {
  const embedded = database.kind === 'embedded' ? await openEmbedded(database.dataDir, role) : undefined;
  const connectionString = embedded ? embedded.connectionString : (database as { url: string }).url;
  // PGlite runs one query at a time whatever the pool size; one connection
  // avoids interleaving through its multiplexer.
  const max = database.kind === 'postgres' ? database.poolSize : 1;
  // A named statement's plan is cached per connection; after five runs
  // PostgreSQL may settle on a generic plan, made once from the statistics of
  // that moment. provider_artifacts grows from nothing to many thousand rows in
  // minutes, and where autovacuum is off nothing re-plans: a sequential scan
  // chosen while the table held a page of rows was still used at 80k rows and
  // cut refresh and introspection throughput fourfold (seen with auto_explain).
  // Every statement this pool runs is a lookup by key that an index serves, so
  // sequential scans are priced out for its sessions rather than re-planning
  // every execution (force_custom_plan measured 2-4x the database CPU per
  // request). A statement with no index to use still runs, as a seq scan.
  // For the same reason every statement keeps its generic plan: left to
  // choose, PostgreSQL estimated `id = ANY($1)` at hundreds of rows for the
  // generic plan, so it planned the token lookup afresh at every execution
  // (0.34 ms of a 0.42 ms lookup; half the database time of a login, seen
  // with log_min_duration_statement). Generic plans of key lookups under
  // enable_seqscan=off are index scans whatever the table's size.
  // JIT compilation is off too: a generic plan's estimates for `= ANY($1)`
  // grow with the table until its cost passes jit_above_cost, and then every
  // key lookup spent ~10 ms compiling (seen with EXPLAIN ANALYZE at 190k rows).
  // The session's time zone is UTC whatever the server's (Debian's initdb
  // copies the host's): Prisma's adapter sends dates as wall-clock text and
  // reads timestamptz back without its offset, so in any other zone its times
  // and those of now() and the pg pool disagree by the offset (an API's own
  // introspection, key activation and retirement went wrong by hours).
  // `options` given in DATABASE_URL replace these (pg lets the URL win).
  //
  // A server answers within DATABASE_TIMEOUT even when the database does not:
  // a slow statement is cancelled by PostgreSQL itself (statement_timeout), so
  // it is rolled back, not committed after the client was told it failed; one
  // that gets no answer at all (a frozen server, a link that drops packets)
  // is given up on a few seconds later by the driver (query_timeout), which
  // drops its connection. Either way the request is answered 503 (see
  // unavailable.ts). Statements run one at a time through pool.query; a
  // Prisma $transaction, whose ROLLBACK would queue behind a hung statement,
  // is for the CLI only, which waits as long as it takes.
  const serverOnly = role === 'server' ? ` -c statement_timeout=${database.timeout * 1000}` : '';
  const options = database.kind === 'postgres' ? `-c TimeZone=UTC -c enable_seqscan=off -c jit=off -c plan_cache_mode=force_generic_plan${serverOnly}` : undefined;
  const timeouts = role === 'server' ? { connectionTimeoutMillis: database.timeout * 1000, query_timeout: (database.timeout + 5) * 1000 } : {};
  const pool = new pg.Pool({ connectionString, max, ...timeouts, ...(options ? { options } : {}) });
  // An idle client's error (the server restarted) must not crash the process; the pool replaces it.
  pool.on('error', () => undefined);
  let lost = false;
  // Also for a connection lent out, whose 'error' would otherwise end the process.
  pool.on('connect', (client) => client.on('error', () => (lost = true)));
  // Prisma gives a $transaction 2 s to begin and 5 s to finish, then rolls it
  // back: `user set-password` on a table of 3M rows took 5.5 s and failed,
  // changing nothing (probe AQ), as would any command waiting for a lock a
  // request holds. The CLI waits as long as it takes; the server (whose
  // requests use none) as long as it waits for the database.
  const transactionOptions = role === 'cli' ? { maxWait: DAY_MS, timeout: DAY_MS } : { maxWait: database.timeout * 1000, timeout: (database.timeout + 5) * 1000 };
  const prisma = new PrismaClient({ adapter: new PrismaPg(pool), transactionOptions });
  // Named (prepared) statements live in the server session; PGlite has one
  // session for every socket connection, where a reconnect would find them
  // already prepared, so the embedded database gets unnamed statements.
  const prepare = database.kind === 'postgres';
  const space = new SpaceWatch(database.kind === 'embedded' ? database.dataDir : undefined);
  const sql: Sql = {
    async query<Row extends object>(statement: Statement, values: unknown[]) {
      const config = prepare ? { name: statement.name, text: statement.text, values } : { text: statement.text, values };
      for (let attempt = 1; ; attempt++) {
        try {
          const result = await pool.query<Row>(config);
          return { rows: result.rows, rowCount: result.rowCount ?? 0 };
        } catch (error) {
          // Each statement here runs alone in its own transaction, so one that
          // PostgreSQL chose as a deadlock victim was rolled back whole and
          // running it again is the same as having run it a moment later.
          // Batched writes touch many rows (one person's concurrent flows share
          // a grant), where a deadlock with another batch is possible.
          if (databaseTrouble(error) === 'out of space') space.noteOutOfSpace();
          if (attempt >= DEADLOCK_ATTEMPTS || !isDeadlock(error)) throw error;
          // Not at once: the transaction it deadlocked with was waiting for
          // rows ours held, and run again at once ours can take them back
          // before it does and close the same cycle (three times in a row on a
          // busy machine). A few milliseconds, more each time, with jitter.
          await new Promise((resolve) => setTimeout(resolve, attempt * (10 + Math.random() * 10)));
        }
      }
    },
  };
  const subscriptions = new Set<Subscription>();
  return {
    prisma,
    sql,
    kind: database.kind,
    connectionString,
    joinedServer: embedded?.owner === false,
    connectionLost: () => lost,
    poolSize: max,
    async upkeep(swept) {
      if (database.kind !== 'embedded') return;
      // A checkpoint that cannot write its files is a PANIC, which stops the
      // process (durable-files.ts): on a full disk the server answers 503
      // and waits for space instead (probe R), and the upkeep waits with it.
      const free = await freeSpace(database.dataDir);
      if (free && isFull(free)) return;
      // Each its own statement: neither runs inside a transaction. Both hold
      // the server's thread, where PGlite runs, for their time (a few tenths
      // of a second at 200k tokens): only the tables a sweep deleted from
      // are vacuumed, and the checkpoint is made whatever became of that.
      try {
        if (swept.length > 0) await pool.query(`VACUUM (ANALYZE) ${swept.map((table) => pg.escapeIdentifier(table)).join(', ')}`);
      } finally {
        await pool.query('CHECKPOINT');
      }
    },
    space,
    poolStats: () => ({ total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount }),
    async subscribe(channel, subscriber) {
      if (database.kind !== 'postgres') return undefined;
      const subscription = await listen(connectionString, channel, subscriber, database.timeout * 1000);
      subscriptions.add(subscription);
      return subscription;
    },
    migrate: (options) => migrate(connectionString, options),
    async exclusively(work) {
      if (database.kind !== 'postgres') return work();
      // A connection of its own holds the lock (a session lock, released by
      // unlocking or by the connection ending), while the work uses the pool.
      const holder = new pg.Client({ connectionString });
      // Lost meanwhile, it releases the lock; the 'error' event it emits must not end the process.
      holder.on('error', () => undefined);
      await holder.connect();
      try {
        await holder.query('SELECT pg_advisory_lock($1)', [EXCLUSIVE_LOCK]);
        return await work();
      } finally {
        await holder.end().catch(() => undefined);
      }
    },
    ready: async () => embedded?.ready(),
    async close() {
      await Promise.all([...subscriptions].map((subscription) => subscription.close()));
      await prisma.$disconnect();
      await pool.end();
      await embedded?.close();
    },
  };
}

/** "As long as it takes", as Prisma's transaction options must say it. */
const DAY_MS = 24 * 60 * 60 * 1000;

const RECONNECT_MS = 1000;
/**
 * How often a LISTEN connection is asked to answer. A connection can die
 * without closing (a NAT or firewall dropping an idle link, a failover
 * without a reset): nothing then arrives, neither notifications nor an
 * error, and caches would go on trusting a feed that is gone. One left
 * unanswered for a whole interval counts as lost: within two intervals (10 s)
 * the caches are dropped and the connection is made again.
 */
const HEARTBEAT_MS = 5000;
/** The advisory lock of exclusively(): any constant of our own (Prisma's migrations use another). */
const EXCLUSIVE_LOCK = 0x706f7274; // 'port'
const DEADLOCK_ATTEMPTS = 3;

/** SQLSTATE 40P01 deadlock_detected. */
function isDeadlock(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === '40P01';
}

/** LISTEN on its own connection, reconnecting after a loss; `live` only while listening. */
async function listen(connectionString: string, channel: string, subscriber: Subscriber, timeoutMs: number): Promise<Subscription> {
  if (!/^[a-z_][a-z0-9_]*$/.test(channel)) throw new Error(`invalid channel name ${channel}`);
  let client: pg.Client | undefined;
  let live = false;
  let closed = false;
  let retry: NodeJS.Timeout | undefined;
  let heartbeat: NodeJS.Timeout | undefined;
  // Set once subscribe() has returned: a connection made after that is a comeback (onBack).
  let subscribed = false;

  const lost = () => {
    clearInterval(heartbeat);
    if (client) {
      client.removeAllListeners();
      client.on('error', () => undefined);
      void client.end().catch(() => undefined);
      client = undefined;
    }
    if (live) subscriber.onReset();
    live = false;
    if (!closed) retry = setTimeout(() => void connect(), RECONNECT_MS).unref();
  };

  const connect = async () => {
    // Named, so that pg_stat_activity tells an operator (and a test) which connection this is.
    // Limited like the pool's (DATABASE_TIMEOUT), and never below the
    // heartbeat: an attempt made while the link is down may be accepted and
    // never answered (a proxy, or a link that drops packets and comes back),
    // and without a limit it waited for ever, leaving the feed down until a
    // restart.
    const limit = Math.max(HEARTBEAT_MS, timeoutMs);
    const next = new pg.Client({
      connectionString,
      application_name: `portcullis listen ${channel}`,
      connectionTimeoutMillis: limit,
      query_timeout: limit,
    });
    client = next;
    next.on('error', lost);
    next.on('end', lost);
    next.on('notification', (message) => {
      if (message.channel === channel && message.payload !== undefined) subscriber.onMessage(message.payload);
    });
    try {
      await next.connect();
      await next.query(`LISTEN ${channel}`);
      subscriber.onReset(); // anything cached before this moment may have missed a notification
      live = true;
      if (subscribed) subscriber.onBack?.();
      let unanswered = false;
      heartbeat = setInterval(() => {
        if (unanswered) return lost();
        unanswered = true;
        // A failure that ends the connection calls lost() through its 'error'
        // or 'end' handler; one that does not (query_timeout) leaves
        // `unanswered` set, and the next tick calls it.
        next.query('SELECT 1').then(() => (unanswered = false), () => undefined);
      }, HEARTBEAT_MS).unref();
    } catch {
      if (client === next) lost();
    }
  };

  await connect();
  subscribed = true;
  return {
    get live() {
      return live;
    },
    async close() {
      closed = true;
      clearTimeout(retry);
      clearInterval(heartbeat);
      live = false;
      const current = client;
      client = undefined;
      current?.removeAllListeners();
      current?.on('error', () => undefined);
      await current?.end().catch(() => undefined);
    },
  };
}
