// One error line per outage of the database, not one per request: at a few
// thousand requests a second, a line each for one known state drowned every
// other line (probe V). The metrics count each request answered 503
// (portcullis_database_unreachable_total); the log says when it began, that
// it goes on, and when it ended.
import type { Logger } from '../logger.js';
import type { DatabaseTrouble } from '../persistence/unavailable.js';

/** How long without a failure of its kind ends a spell; and how often one that goes on is said again. */
export const SPELL_QUIET_MS = 30_000;
export const SPELL_REMINDER_MS = 60_000;

interface Spell {
  began: number;
  /** When a request last failed, and when the spell was last said. */
  last: number;
  said: number;
  /** Requests failed since the spell began, and since it was last said. */
  failed: number;
  unsaid: number;
  timer: NodeJS.Timeout;
}

class OutageLog {
  readonly #spells = new Map<DatabaseTrouble, Spell>();

  constructor(private readonly logger: Logger) {}

  /**
   * A request the database failed for `trouble`: the first of a spell is
   * logged at error with its fields (its request, route and the database's
   * words), the others at debug; about once a minute while it goes on, a
   * line at error with how many failed meanwhile; once 30 s pass without a
   * failure, a line at info with how many failed in all.
   */
  failed(trouble: DatabaseTrouble, fields: Record<string, unknown>): void {
    const now = Date.now();
    const spell = this.#spells.get(trouble);
    if (spell) {
      spell.failed++;
      spell.unsaid++;
      spell.last = now;
      this.logger.debug(`database ${trouble}`, fields);
      return;
    }
    this.logger.error(`database ${trouble}`, fields);
    const timer = setInterval(() => this.#look(trouble), SPELL_QUIET_MS / 2).unref();
    this.#spells.set(trouble, { began: now, last: now, said: now, failed: 1, unsaid: 0, timer });
  }

  #look(trouble: DatabaseTrouble): void {
    const spell = this.#spells.get(trouble)!;
    const now = Date.now();
    const seconds = Math.round((now - spell.began) / 1000);
    if (now - spell.last >= SPELL_QUIET_MS) {
      clearInterval(spell.timer);
      this.#spells.delete(trouble);
      this.logger.info(`database ${trouble}: no request failed for ${SPELL_QUIET_MS / 1000} s`, { failed: spell.failed, seconds });
    } else if (spell.unsaid > 0 && now - spell.said >= SPELL_REMINDER_MS) {
      this.logger.error(`database ${trouble}: still failing requests`, { failed: spell.unsaid, seconds });
      spell.unsaid = 0;
      spell.said = now;
    }
  }
}

const logs = new WeakMap<Logger, OutageLog>();

/** The outage log writing to `logger`: one per server, shared by the provider's routes and ours. */
export function outageLog(logger: Logger): OutageLog {
  let log = logs.get(logger);
  if (!log) logs.set(logger, (log = new OutageLog(logger)));
  return log;
}
