// Every `portcullis` command by its words, and the two that belong to no
// domain of their own: `migrate` and `audit list`. Each command parses its
// options, calls a service, prints the result.
import { listAdminEvents } from '../audit/admin-events.js';
import { MAX_LIFETIME_SECONDS, parseDuration } from '../config.js';
import { terminalSafe } from '../display-text.js';
import { MigrationError } from '../persistence/migrations.js';
import { apiCreate, apiDelete, apiList, apiUpdate } from './api-commands.js';
import { parse, RefusedOption } from './arguments.js';
import { clientCreate, clientDelete, clientDisable, clientEnable, clientList, clientRotateSecret, clientShow, clientUpdate } from './client-commands.js';
import { json, type Command } from './command.js';
import { keysList, keysRetire, keysRotate } from './key-commands.js';
import { userCreate, userDelete, userDisable, userEnable, userList, userRevoke, userSetPassword, userShow, userUpdate } from './user-commands.js';

export type { Io } from './command.js';

export const migrateCommand: Command = async (args, open, io) => {
  parse(args, {});
  // Opening the services applies pending migrations: say which, and what the database holds now.
  const { applied, alreadyApplied, unknown } = (await open()).migrations;
  for (const name of applied) io.out(`applied ${name}\n`);
  if (unknown.length > 0) {
    // An older CLI than the release that migrated the database: "up to date"
    // would be wrong, and a deploy step running `migrate` before starting this
    // release must stop there (exit 1), not go on to start it.
    throw new MigrationError(
      `the database is ahead of this release: it also holds ${unknown.length} migration(s) this release does not have (${unknown.join(', ')}), applied by a newer one; use that release`,
    );
  }
  io.out(`database is up to date (${alreadyApplied + applied.length} migrations, ${applied.length} applied now)\n`);
};

export const auditList: Command = async (args, open, io) => {
  const { values } = parse(args, { since: { type: 'string' }, limit: { type: 'string' }, json: { type: 'boolean' } });
  let seconds: number;
  try {
    seconds = parseDuration((values.since as string | undefined) ?? '30d');
  } catch (error) {
    throw new RefusedOption(`--since: ${(error as Error).message}`);
  }
  if (seconds > MAX_LIFETIME_SECONDS) throw new RefusedOption('--since goes back at most 36500d');
  // Decimal digits, as every number Portcullis reads (Number() would take 1e3, 0x10, " 5").
  const limitText = (values.limit as string | undefined) ?? '100';
  const limit = /^[0-9]+$/.test(limitText) ? Number(limitText) : NaN;
  if (!(limit >= 1 && limit <= 10_000)) throw new RefusedOption('--limit must be a whole number from 1 to 10000, in decimal digits');
  const events = await listAdminEvents((await open()).database.prisma, seconds, limit);
  if (values.json) return io.out(json(events.map((event) => ({ ...event, at: event.at.toISOString() }))));
  if (events.length === 0) return io.out('nothing recorded in that time\n');
  // The arguments as typed, each quoted where a shell would need it (nothing
  // in them is secret); whatever could drive the terminal written as its code.
  for (const event of events) {
    const line = `${event.at.toISOString()}  ${event.actor}  portcullis ${[event.command, ...event.arguments.map(shellWord)].join(' ')}${event.outcome === 'ok' ? '' : `  (${event.outcome})`}`;
    io.out(`${terminalSafe(line.replace(/\n/g, '\\u{a}'))}\n`);
  }
};

/** `word` as a shell would need it typed (single-quoted unless plain). */
const shellWord = (word: string) => (/^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`);

/** The commands that change nothing: the audit trail (index.ts) leaves them out. (`migrate` is in it: no server logs what it applied.) */
export const READ_ONLY_COMMANDS = new Set(['client list', 'client show', 'api list', 'user list', 'user show', 'keys list', 'audit list']);

export const COMMANDS: Record<string, Command> = {
  'api create': apiCreate,
  'api list': apiList,
  'api update': apiUpdate,
  'api delete': apiDelete,
  'client create': clientCreate,
  'client list': clientList,
  'client show': clientShow,
  'client update': clientUpdate,
  'client delete': clientDelete,
  'client disable': clientDisable,
  'client enable': clientEnable,
  'client rotate-secret': clientRotateSecret,
  'user create': userCreate,
  'user list': userList,
  'user show': userShow,
  'user update': userUpdate,
  'user set-password': userSetPassword,
  'user revoke': userRevoke,
  'user disable': userDisable,
  'user enable': userEnable,
  'user delete': userDelete,
  'keys list': keysList,
  'keys rotate': keysRotate,
  'keys retire': keysRetire,
  'audit list': auditList,
  migrate: migrateCommand,
};
