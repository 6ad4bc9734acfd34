// Every `portcullis` command by its words, and those that belong to no
// domain of their own: `migrate`, `copy` and `audit list`. Each command parses its
// options, calls a service, prints the result.
import { forgetPerson, listAdminEvents } from '../audit/admin-events.js';
import { databaseUrlProblem, loadConfig, MAX_LIFETIME_SECONDS, parseDuration } from '../config.js';
import { terminalSafe } from '../display-text.js';
import { copyDatabase, CopyError } from '../persistence/copy-database.js';
import { embeddedDatabaseExists } from '../persistence/embedded.js';
import { MigrationError } from '../persistence/migrations.js';
import { apiCreate, apiDelete, apiList, apiUpdate } from './api-commands.js';
import { parse, RefusedOption, required } from './arguments.js';
import { clientCreate, clientDelete, clientDisable, clientEnable, clientList, clientRotateSecret, clientShow, clientUpdate } from './client-commands.js';
import { json, type Command } from './command.js';
import { keysList, keysRetire, keysRotate } from './key-commands.js';
import { UsageError } from './usage.js';
import { userCreate, userDelete, userDisable, userEnable, userList, userResetTotp, userRevoke, userSetPassword, userShow, userUpdate } from './user-commands.js';

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

export const copyCommand: Command = async (args, open, io) => {
  const { values } = parse(args, { to: { type: 'string' }, json: { type: 'boolean' } });
  const target = required(values.to, '--to');
  const problem = databaseUrlProblem(target);
  if (problem) throw new RefusedOption(`--to ${problem}`);
  // The audit trail keeps the command as typed, and `ps` shows it to everyone on the machine.
  // node-postgres takes a password from the query too (?password=), as from the user info.
  const url = new URL(target.replace(/@\//, '@localhost/'));
  if (url.password || url.searchParams.has('password')) {
    throw new RefusedOption('--to must not hold a password (commands are recorded as typed, and others on this machine see them): give it in PGPASSWORD');
  }
  // Before opening it: a CLI refuses to open a database it does not know (migrations.ts), with words about DATABASE_URL, not copying.
  const source = loadConfig().database;
  if (source.kind !== 'embedded') {
    throw new CopyError('copy reads the embedded database (DATA_DIR), and DATABASE_URL is set: from one PostgreSQL server to another, use pg_dump and pg_restore');
  }
  // Opening one that is not there would make it (and a key file), and copy a new, empty deployment.
  if (!(await embeddedDatabaseExists(source.dataDir))) throw new CopyError(`DATA_DIR (${source.dataDir}) holds no embedded database: nothing to copy (check DATA_DIR)`);
  const { config, database, migrations } = await open();
  // Its server keeps writing (sessions, tokens) after the snapshot is read, and
  // would lose those writes to the copy; it also shares its one session with
  // us, so the snapshot's transaction would take in its statements.
  if (database.joinedServer) throw new CopyError(`a server is running on the embedded database in DATA_DIR (${source.dataDir}): stop it, then copy`);
  if (migrations.unknown.length > 0) throw new MigrationError(`the embedded database was migrated by a newer release (${migrations.unknown.join(', ')}): copy with that release`);
  const copied = await copyDatabase(database.connectionString, target, ({ table, rows }) => {
    if (!values.json) io.out(`copied ${table}: ${rows} row(s)\n`);
  });
  // The key file to give the server as ENCRYPTION_KEYS; null where ENCRYPTION_KEYS was set (the same keys, then).
  const keyFile = config.encryption.kind === 'file' ? config.encryption.path : null;
  const key = keyFile ? `ENCRYPTION_KEYS set to the content of ${keyFile} (the key that sealed the copied keys)` : 'the same ENCRYPTION_KEYS';
  if (values.json) return io.out(json({ copied: Object.fromEntries(copied.map(({ table, rows }) => [table, rows])), encryption_key_file: keyFile }));
  io.out(
    `done: start the server with DATABASE_URL set to the new database and ${key}, on every instance; ` +
      'sessions, consents, tokens and keys go on working there under the same ISSUER. The embedded database is left as it was: keep it until the new one serves\n',
  );
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

export const auditForget: Command = async (args, open, io) => {
  // One or more people's emails or ids: every word but its options (an email may begin with "-").
  const { values, positionals } = parse(args, { json: { type: 'boolean' } }, args.filter((arg) => arg !== '--json' && arg !== '--').length || 1);
  const option = positionals.find((word) => /^--[a-z-]+$/.test(word));
  if (option) throw new UsageError(`unknown option '${option}'`);
  if (positionals.some((word) => !word.trim())) throw new UsageError('an email or id cannot be empty');
  const services = await open();
  // A person whose account is still there is named in the trail by its email and id alike;
  // their earlier emails, and after `user delete` their id, are the operator's to give.
  const identifiers = positionals.slice();
  for (const who of positionals) {
    const user = await services.accounts.lookup(who);
    if (user) identifiers.push(user.email, user.id);
  }
  const erased = await forgetPerson(services.database.prisma, identifiers);
  if (values.json) return io.out(json({ erased }));
  const named = positionals.join(', ');
  io.out(erased === 0 ? `the audit trail names no ${named}\n` : `erased ${named} from ${erased} record(s) of the audit trail\n`);
};

/** `word` as a shell would need it typed (single-quoted unless plain). */
const shellWord = (word: string) => (/^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`);

/** Commands recorded without their arguments: `audit forget`'s name the person it erased. */
export const UNRECORDED_ARGUMENTS = new Set(['audit forget']);

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
  'user reset-totp': userResetTotp,
  'user revoke': userRevoke,
  'user disable': userDisable,
  'user enable': userEnable,
  'user delete': userDelete,
  'keys list': keysList,
  'keys rotate': keysRotate,
  'keys retire': keysRetire,
  'audit list': auditList,
  'audit forget': auditForget,
  migrate: migrateCommand,
  copy: copyCommand,
};
