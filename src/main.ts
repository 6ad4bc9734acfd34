// Process entry: config → server → listen; clean shutdown on SIGTERM/SIGINT.
import { ConfigError, loadConfig } from './config.js';
import { createLogger } from './logger.js';
import { startServer } from './server.js';

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`portcullis: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  const logger = createLogger(config.logLevel);
  const server = await startServer(config, logger);
  let stopping = false;
  const stop = async (signal: string) => {
    // A second signal (Ctrl-C again, a supervisor's impatience) ends it now.
    if (stopping) {
      logger.warn('stopping at once, without waiting for the shutdown', { signal });
      process.exit(1);
    }
    stopping = true;
    logger.info('shutting down', { signal });
    await server.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

main().catch((error: Error) => {
  process.stderr.write(`portcullis: failed to start: ${error.message}\n`);
  process.exit(error instanceof ConfigError ? 2 : 1);
});
