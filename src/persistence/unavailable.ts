// Telling a database that cannot serve a request now (down, restarting,
// frozen, out of connections, refusing connections, read-only, out of disk
// space, out of file descriptors or memory, dropped) from every other failure: a
// request it fails is answered 503 with Retry-After, which clients and
// gateways retry, not 500, which says the server is broken; and it is logged
// as one line, not as a stack trace. Each of these passes without a change to
// Portcullis: the database comes back, or its operator frees space.

/** Seconds a client is asked to wait (Retry-After) when the database cannot serve it. */
export const UNAVAILABLE_RETRY_AFTER = '5';

/** Why the database could not serve a request; also the end of its log line ("database …"). */
export type DatabaseTrouble = 'unreachable' | 'out of space' | 'out of resources' | 'without its tables' | 'read-only';

// Node's socket errors; SQLSTATE 57P01-57P03 (shut down, crash, starting up),
// 53300 (too many connections) and class 08 (connection exception); Prisma's
// P1001 (cannot reach), P1002 (timed out), P1008 (operation timed out), P1017
// (server closed the connection), P2024 (no pool connection in time) and
// P2037 (too many connections, as the pg adapter reports 53300).
// SQLSTATE 57014 is a statement cancelled by statement_timeout (see database.ts).
// The database in DATABASE_URL gone (3D000 and Prisma's P1003 does not
// exist, 57P04 dropped) or its credentials refused (28P01, 28000, P1000):
// an operator restoring it, or changing a password, fixes these without Portcullis.
const UNREACHABLE = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN',
  '57P01', '57P02', '57P03', '53300', '57014', 'P1001', 'P1002', 'P1008', 'P1017', 'P2024', 'P2037',
  '3D000', '57P04', '28P01', '28000', 'P1003', 'P1000',
]);

/**
 * SQLSTATE 42P01 (no such table): the migrations ran at start, so the
 * database was since replaced by one without them (made again empty, for a
 * restore that has not finished). Not a fault of the request either.
 */
const NO_SUCH_TABLE = '42P01';
/** The same, as Prisma says it. */
const NO_SUCH_TABLE_PRISMA = 'P2021';

// SQLSTATE 53100 (disk_full: PostgreSQL, and PGlite for a full DATA_DIR, could
// not extend a file); a file system's own ENOSPC and EDQUOT.
const OUT_OF_SPACE = new Set(['53100', 'ENOSPC', 'EDQUOT']);

// SQLSTATE 53000 (insufficient_resources: PostgreSQL's, and PGlite's, word for
// a file it could not open for want of descriptors, EMFILE or ENFILE) and 53200
// (out of memory); this process's own EMFILE and ENFILE, when a connection's
// socket cannot be opened. Load that passes, or a limit an operator raises.
const OUT_OF_RESOURCES = new Set(['53000', '53200', 'EMFILE', 'ENFILE']);

/**
 * SQLSTATE 25006 (read_only_sql_transaction): a write to a server that takes
 * none, a standby after a failover, or DATABASE_URL left pointing at one
 * (a primary demoted, `default_transaction_read_only`). Reads still work.
 */
const READ_ONLY = '25006';

/**
 * SQLSTATE 55000 is a catch-all (object not in prerequisite state): only its
 * "database … is not currently accepting connections" (ALLOW_CONNECTIONS
 * false, as an operator sets it for maintenance) is the database's state.
 */
const NOT_ACCEPTING = /is not currently accepting connections/;

// node-postgres and its pool say these without a code.
const MESSAGES = /^(Query read timeout|timeout exceeded when trying to connect|Connection terminated( unexpectedly| due to connection timeout)?|Client has encountered a connection error and is not queryable)$/;

/**
 * What `error` was caused by: its `cause`, or for Prisma's raw queries
 * (P2010, "Raw query failed") the driver adapter's error, which holds the
 * database's own code and words.
 */
function causeOf(error: object): unknown {
  const { cause, meta } = error as { cause?: unknown; meta?: { driverAdapterError?: unknown } };
  return cause ?? meta?.driverAdapterError;
}

/** Why `error` (or one it was caused by) says the database cannot serve now; undefined for any other failure. */
export function databaseTrouble(error: unknown): DatabaseTrouble | undefined {
  for (let cause = error, depth = 0; cause instanceof Object && depth < 5; cause = causeOf(cause), depth++) {
    // (Prisma's driver adapter keeps the database's code as originalCode where it names the error itself.)
    const { code: own, originalCode, message: words, originalMessage } = cause as { code?: unknown; originalCode?: unknown; message?: unknown; originalMessage?: unknown };
    const code = typeof own === 'string' ? own : originalCode;
    const message = typeof words === 'string' ? words : originalMessage;
    if (typeof code === 'string') {
      if (OUT_OF_SPACE.has(code)) return 'out of space';
      if (OUT_OF_RESOURCES.has(code)) return 'out of resources';
      if (code === NO_SUCH_TABLE || code === NO_SUCH_TABLE_PRISMA) return 'without its tables';
      if (code === READ_ONLY) return 'read-only';
      if (code === '55000' && typeof message === 'string' && NOT_ACCEPTING.test(message)) return 'unreachable';
      if (UNREACHABLE.has(code) || /^08[0-9A-Z]{3}$/.test(code)) return 'unreachable';
    }
    if (typeof message === 'string' && MESSAGES.test(message)) return 'unreachable';
  }
  return undefined;
}

/** The last line of a message that has several (Prisma's: the invocation, then the database's words), or the message. */
export function lastLine(message: string): string {
  return message.trim().split('\n').pop()!.trim();
}
