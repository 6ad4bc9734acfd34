// JSON-lines logger. Callers pass structured fields; nothing secret (tokens,
// codes, passwords, cookies) is ever given to it.
import type { Config } from './config.js';

const LEVELS = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 } as const;
type Level = Exclude<keyof typeof LEVELS, 'silent'>;

export interface Logger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
  /** Whether lines at `level` are written: callers skip building what would be dropped. */
  enabled(level: Level): boolean;
}

export function createLogger(level: Config['logLevel'], write: (line: string) => void = (line) => process.stdout.write(line)): Logger {
  const threshold = LEVELS[level];
  const log = (at: Level) => (message: string, fields?: Record<string, unknown>) => {
    if (LEVELS[at] < threshold) return;
    write(`${JSON.stringify({ time: new Date().toISOString(), level: at, message, ...fields })}\n`);
  };
  return { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error'), enabled: (at) => LEVELS[at] >= threshold };
}
