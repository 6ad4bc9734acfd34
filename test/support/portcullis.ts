// Starts the real server on a fresh database, and runs the real CLI against it.
import { spawn } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { startServer, type RunningServer } from '../../src/server.js';
import { freshDatabase, type TestDatabase } from './database.js';

const BIN = fileURLToPath(new URL('../../src/cli/portcullis.mjs', import.meta.url));

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface TestPortcullis {
  issuer: string;
  env: Record<string, string>;
  database: TestDatabase;
  server: RunningServer;
  /** Error lines the server logged; tests assert there are none they did not expect. */
  errors: string[];
  /** Every line the server logged at info level and above. */
  log: string[];
  cli(args: string[], stdin?: string | Buffer): Promise<CliResult>;
  createClient(options: ClientOptions): Promise<{ client_id: string; client_secret?: string }>;
  createUser(email: string, password: string, name?: string): Promise<void>;
  /** POST /token grant_type=client_credentials with client_secret_basic. */
  clientCredentials(client: { client_id: string; client_secret?: string }): Promise<{ status: number; body: Record<string, unknown>; headers: Headers }>;
  /**
   * A connection to the server's database from outside: PostgreSQL, or the
   * embedded one through its socket (simple-protocol statements only there, see
   * src/persistence/embedded.ts). Not connected yet.
   */
  outsideConnection(): pg.Client;
  /** One statement on a connection from outside (see outsideConnection), opened and closed for it. */
  outsideQuery<T extends pg.QueryResultRow = Record<string, unknown>>(text: string, values?: unknown[]): Promise<pg.QueryResult<T>>;
  close(): Promise<void>;
}

export interface ClientOptions {
  name: string;
  redirectUris?: string[];
  postLogoutRedirectUris?: string[];
  grantTypes?: string[];
  scope?: string;
  public?: boolean;
  native?: boolean;
  idTokenAlg?: string;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Runs the `portcullis` bin (or another copy of it, `bin`) as its own process. */
export function runCli(args: string[], env: Record<string, string>, stdin?: string | Buffer, bin = BIN): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], {
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
      // A command that hangs (a broken change) fails its test by the test's timeout; killed
      // some time after, rather than left running with its DATA_DIR (code -1 then).
      timeout: 150_000,
      killSignal: 'SIGKILL',
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    // A CLI may stop reading before the end (standard input past its limit): its exit says how it ended.
    child.stdin.on('error', () => {});
    child.stdin.end(stdin ?? '');
  });
}

/** Cheap argon2 parameters: tests exercise the real hasher, just not its cost. */
export const TEST_ENV = {
  ARGON2_MEMORY_KIB: '1024',
  ARGON2_TIME_COST: '1',
  LOG_LEVEL: 'warn',
};

/**
 * Starts a server on a fresh database, or on `on`, another server's (the
 * production topology: several instances on one database), which its close()
 * then leaves in place.
 */
export async function startPortcullis(extraEnv: Record<string, string> = {}, on?: TestDatabase): Promise<TestPortcullis> {
  const database = on ?? (await freshDatabase());
  const port = await freePort();
  const env = { ...TEST_ENV, ...database.env, PORT: String(port), HOST: '127.0.0.1', ISSUER: `http://localhost:${port}`, ...extraEnv };
  const errors: string[] = [];
  const log: string[] = [];
  const logger = createLogger('info', (line) => {
    log.push(line);
    if (line.includes('"level":"error"')) errors.push(line);
  });
  let server: RunningServer;
  try {
    server = await startServer(loadConfig(env), logger);
  } catch (error) {
    if (!on) await database.drop();
    throw error;
  }
  const cli = (args: string[], stdin?: string | Buffer) => runCli(args, env, stdin);
  const outsideConnection = () => {
    const { DATABASE_URL, DATA_DIR } = database.env;
    const connectionString = DATABASE_URL ?? `postgresql://postgres@localhost/postgres?host=${encodeURIComponent(DATA_DIR!)}&port=5432`;
    return new pg.Client({ connectionString });
  };
  return {
    issuer: env.ISSUER,
    env,
    database,
    server,
    errors,
    log,
    cli,
    async createClient(options) {
      const args = ['client', 'create', '--name', options.name, '--json'];
      for (const uri of options.redirectUris ?? []) args.push('--redirect-uri', uri);
      for (const uri of options.postLogoutRedirectUris ?? []) args.push('--post-logout-redirect-uri', uri);
      for (const type of options.grantTypes ?? []) args.push('--grant-type', type);
      if (options.scope) args.push('--scope', options.scope);
      if (options.public) args.push('--public');
      if (options.native) args.push('--native');
      if (options.idTokenAlg) args.push('--id-token-alg', options.idTokenAlg);
      const result = await cli(args);
      if (result.code !== 0) throw new Error(`client create failed: ${result.stderr}`);
      return JSON.parse(result.stdout);
    },
    async createUser(email, password, name) {
      const args = ['user', 'create', '--email', email, '--password-stdin'];
      if (name) args.push('--name', name);
      const result = await cli(args, `${password}\n`);
      if (result.code !== 0) throw new Error(`user create failed: ${result.stderr}`);
    },
    async clientCredentials(client) {
      const response = await fetch(`${env.ISSUER}/token`, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          authorization: `Basic ${Buffer.from(`${client.client_id}:${client.client_secret}`).toString('base64')}`,
        },
        body: 'grant_type=client_credentials',
      });
      return { status: response.status, body: (await response.json()) as Record<string, unknown>, headers: response.headers };
    },
    outsideConnection,
    async outsideQuery<T extends pg.QueryResultRow>(text: string, values: unknown[] = []) {
      const db = outsideConnection();
      await db.connect();
      try {
        return await db.query<T>(text, values);
      } finally {
        await db.end();
      }
    },
    async close() {
      await server.close();
      if (!on) await database.drop();
    },
  };
}
