// Process entry: config → server → listen; clean shutdown on SIGTERM/SIGINT.
import { ConfigError, loadConfig, typoHint } from './config.js';
import { terminalSafe } from './display-text.js';
import { createLogger } from './logger.js';
import { VERSION } from './version.js';

const HELP = `Usage: node dist/main.js (or npm start)
Starts the Portcullis server. It takes no arguments: it is configured by its environment
(PORT, ISSUER, DATABASE_URL, DATA_DIR, ENCRYPTION_KEYS, ...; see README.md, Configuration).
The CLI is another command: npx portcullis --help.
`;

const ANSWERS = new Map([
  ['--version', `portcullis ${VERSION}\n`],
  ['-v', `portcullis ${VERSION}\n`],
  ['--help', HELP],
  ['-h', HELP],
]);

/** Signals this close to the first are the same one, delivered twice (see stop). */
const SAME_SIGNAL_MS = 1_000;

async function main(): Promise<void> {
  // The server takes no arguments: anything given is a question about it, or a mistake, not a start.
  const args = process.argv.slice(2);
  if (args.length > 0) {
    const answer = args.length === 1 ? ANSWERS.get(args[0]!) : undefined;
    if (answer !== undefined) {
      process.stdout.write(answer);
      process.exit(0);
    }
    process.stderr.write(`portcullis: the server takes no arguments (got "${terminalSafe(args[0]!)}"); it is configured by its environment\n\n${HELP}`);
    process.exit(2);
  }
  let config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`portcullis: ${error.message}\n`);
      // A variable a typo away from ours may be why (SHUTDOWN_DELAY given, and SHUTDOWN_DELY meant for it).
      for (const typo of error.mistyped) process.stderr.write(`portcullis: ${typoHint(typo)}\n`);
      process.exit(2);
    }
    throw error;
  }
  // Log lines written to a file on a disk that filled (`> server.log`, systemd's
  // append:) fail: they are lost, and the server goes on, as it does for
  // the database on that disk (probe R: the 'error' event ended it).
  process.stdout.on('error', () => undefined);
  const logger = createLogger(config.logLevel);
  // Loaded only to start: oidc-provider warns on Node 20 as it loads, which
  // --version, --help and a configuration error have no reason to print.
  const { startServer, isStartRefusal } = await import('./server.js');
  let server;
  try {
    server = await startServer(config, logger);
  } catch (error) {
    // A log collector reads the JSON lines, not stderr (which has the words
    // for a person at a terminal, below): the failure is one of them too.
    const failed = error as Error;
    logger.error('failed to start', { error: failed.message, ...(isStartRefusal(error) ? {} : { stack: failed.stack }) });
    throw error;
  }
  let stoppingSince: number | undefined;
  const stop = async (signal: string) => {
    // A second signal (Ctrl-C again, a supervisor's impatience) ends it now;
    // not one that comes with the first: Ctrl-C on `npm start` reaches the
    // server twice, from the terminal and forwarded by npm, milliseconds apart.
    if (stoppingSince !== undefined) {
      if (Date.now() - stoppingSince < SAME_SIGNAL_MS) return;
      logger.warn('stopping at once, without waiting for the shutdown', { signal });
      process.exit(1);
    }
    stoppingSince = Date.now();
    logger.info('shutting down', { signal });
    await server.close({ signal: true });
    // The last line: nothing was cut short (a stop that was would have said so above).
    logger.info('stopped', { ms: Date.now() - stoppingSince });
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

main().catch((error: Error) => {
  process.stderr.write(`portcullis: failed to start: ${error.message}\n`);
  process.exit(error instanceof ConfigError ? 2 : 1);
});
