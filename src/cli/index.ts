// `portcullis` entry: pick the command, open the services lazily (so usage
// errors never touch the database), turn every known error into one line.
import { stat } from 'node:fs/promises';
import { AccountError } from '../accounts/accounts.js';
import { ApiError } from '../apis/apis.js';
import { ClientError } from '../clients/clients.js';
import { ConfigError, loadConfig, typoHint, type Config } from '../config.js';
import { SealError } from '../keys/sealed-secrets.js';
import { KeyError } from '../keys/signing-keys.js';
import { MigrationError } from '../persistence/migrations.js';
import { CopyError } from '../persistence/copy-database.js';
import { DatabaseUnavailable } from '../persistence/database.js';
import { EmbeddedDatabaseBusy } from '../persistence/embedded.js';
import { databaseTrouble, lastLine } from '../persistence/unavailable.js';
import { closeWithin, openServices, type Services } from '../services.js';
import { recordAdminEvent } from '../audit/admin-events.js';
import { RefusedOption } from './arguments.js';
import { COMMANDS, READ_ONLY_COMMANDS, UNRECORDED_ARGUMENTS, type Io } from './commands.js';
import { USAGE, UsageError, usageOf } from './usage.js';
import { VERSION } from '../version.js';
import { terminalSafe } from '../display-text.js';
import { typoOf } from '../typos.js';

const DOMAIN_ERRORS = [AccountError, ApiError, ClientError, ConfigError, CopyError, DatabaseUnavailable, EmbeddedDatabaseBusy, KeyError, MigrationError, RefusedOption, SealError];

/** The most standard input read: a password is at most 1024 characters, and input read whole could fill the memory. */
const MAX_STDIN_BYTES = 64 * 1024;

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) throw new UsageError('--password-stdin expects the password on standard input');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin) {
    size += (chunk as Buffer).length;
    if (size > MAX_STDIN_BYTES) throw new UsageError('standard input is longer than 64 KiB: pipe the password alone, on one line');
    chunks.push(chunk as Buffer);
  }
  try {
    // Not the lenient decoder: it would turn any invalid bytes into U+FFFD, so that other bytes would match too.
    return new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks));
  } catch {
    throw new UsageError('standard input is not UTF-8 text');
  }
}

/** The first words of two-word commands: client, user, api, keys. */
const GROUPS = new Set(Object.keys(COMMANDS).filter((name) => name.includes(' ')).map((name) => name.split(' ')[0]!));

/** `: did you mean "client list"?` for `client lst`, `usr list` or `migrat`, or nothing. */
function meantCommand(argv: string[]): string {
  const meant = typoOf(argv.slice(0, 2).join(' '), Object.keys(COMMANDS)) ?? typoOf(argv[0]!, [...GROUPS, ...Object.keys(COMMANDS).filter((name) => !name.includes(' '))]);
  return meant ? `: did you mean "${meant}"?` : '';
}

export async function run(argv: string[], io: Io): Promise<number> {
  if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-v' || argv[0] === 'version')) {
    io.out(`portcullis ${VERSION}\n`);
    return 0;
  }
  // Help, for the whole CLI or a group of commands (`portcullis client --help`): the usage.
  const asksHelp = (arg: string | undefined) => arg === '--help' || arg === '-h';
  if (argv.length === 0 || argv[0] === 'help' || asksHelp(argv[0]) || (argv.length === 2 && GROUPS.has(argv[0]!) && asksHelp(argv[1]))) {
    io.out(USAGE);
    return argv.length === 0 ? 2 : 0;
  }
  const twoWords = `${argv[0]} ${argv[1] ?? ''}`;
  const [name, args] = COMMANDS[twoWords] ? [twoWords, argv.slice(2)] : [argv[0]!, argv.slice(1)];
  const command = COMMANDS[name];
  let services: Services | undefined;
  try {
    if (!command) {
      // `portcullis client` alone names a group, not a command.
      const group = Object.keys(COMMANDS).some((known) => known.startsWith(`${argv[0]} `));
      if (group && argv.length === 1) throw new UsageError(`"${argv[0]}" needs a command after it`);
      throw new UsageError(`unknown command "${argv.slice(0, 2).join(' ')}"${meantCommand(argv)}`);
    }
    // Help for a command is its own usage, whatever else was given (`--help` alone lists every command).
    if (args.includes('--help') || args.includes('-h')) {
      io.out(usageOf(name));
      return 0;
    }
    try {
      // Only `migrate` migrates a database an earlier release made (migrations.ts, onlyNewDatabase).
      const migrating = { onlyNewDatabase: name !== 'migrate' };
      const open = async (): Promise<Services> => {
        const config = loadConfig();
        // Opening an embedded database that is not there makes one, and a key
        // file, and the directories to it: a listing would show an empty
        // deployment made by a mistyped DATA_DIR, and leave it behind.
        if (READ_ONLY_COMMANDS.has(name) && config.database.kind === 'embedded' && !(await stat(config.database.dataDir).catch(() => undefined))) {
          throw new ConfigError(`DATA_DIR (${config.database.dataDir}) does not exist: nothing to show (check DATA_DIR; a server's start, or any command that changes something, makes it)`, config.mistyped);
        }
        return noteKeyFileMade(await openServices(warnOfTypos(config), 'cli', migrating));
      };
      await command(args, async () => (services ??= await open()), io);
    } catch (error) {
      if (services && lostTheOnlyConnection(services) && isConnectionLoss(error)) throw new ConnectionLost({ cause: error });
      // Recorded failed too: it may have changed something before it failed (a usage error never reaches the database).
      if (services && !READ_ONLY_COMMANDS.has(name) && !(error instanceof UsageError)) await audit(services, name, args, `failed: ${lastLine((error as Error)?.message ?? String(error))}`);
      throw error;
    }
    if (services && !READ_ONLY_COMMANDS.has(name)) await audit(services, name, args, 'ok');
    return 0;
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`portcullis: ${terminalSafe(error.message)}\n\n${Object.hasOwn(COMMANDS, name) ? usageOf(name) : USAGE}`);
      return 2;
    }
    if (DOMAIN_ERRORS.some((kind) => error instanceof kind)) {
      process.stderr.write(`portcullis: ${terminalSafe((error as Error).message)}\n`);
      if (error instanceof ConfigError) for (const typo of error.mistyped) process.stderr.write(`portcullis: ${typoHint(typo)}\n`);
      return 1;
    }
    const message = (error as Error)?.message ?? String(error);
    const trouble = error instanceof ConnectionLost ? 'unreachable' : databaseTrouble(error);
    if (trouble) {
      // The database went away under the command (a server holding the embedded one stopped, a failover):
      // Prisma's several lines, of which the last is the database's own words.
      const again =
        error instanceof ConnectionLost && !READ_ONLY_COMMANDS.has(name)
          ? ': whether its last change was made is not known; once the database answers, look (list or show) before running it again'
          : trouble === 'unreachable'
            ? ': run the command again once it answers (one that changes several things may have done some of them)'
            : '';
      process.stderr.write(`portcullis: the database is ${trouble} (${terminalSafe(lastLine(message))})${again}\n`);
      return 1;
    }
    process.stderr.write(`portcullis: unexpected error: ${terminalSafe(message)}\n`);
    return 1;
  } finally {
    // The embedded database this process holds is closed whatever it takes; a connection elsewhere (PostgreSQL,
    // a server's socket) that died midway could hold the close for ever, and the process would end without its exit code.
    if (services && lostTheOnlyConnection(services)) await closeWithin(services, 0);
    else if (services?.database.kind === 'embedded' && !services.database.joinedServer) await services.close();
    else if (services) await closeWithin(services, CLOSE_MS);
  }
}

/**
 * Whether the command's one connection died (the server holding the
 * embedded database stopped; DATABASE_POOL_SIZE=1 on PostgreSQL): a
 * transaction may hold it for ever (database.ts, connectionLost), so the
 * audit record, and the close, would wait for it. A larger pool gives the
 * record another.
 */
function lostTheOnlyConnection(services: Services): boolean {
  return services.database.poolSize === 1 && services.database.connectionLost();
}

/**
 * Whether `error` is what a command meets when its connection dies: the
 * connection's own error, or Prisma's P2028 for a transaction whose COMMIT
 * got no answer ("Transaction already closed": it then tried a ROLLBACK).
 * Not a refusal of the command's own (a domain error), though the pool lost
 * a connection earlier.
 */
function isConnectionLoss(error: unknown): boolean {
  return databaseTrouble(error) === 'unreachable' || (error as { code?: unknown } | undefined)?.code === 'P2028';
}

/** The database's connection died under the command: what it did last may or may not have been done. */
class ConnectionLost extends Error {
  constructor(options: ErrorOptions) {
    super('the connection to it was lost midway', options);
  }
}

/** How long a command waits for its database connections to close. */
const CLOSE_MS = 5_000;

/**
 * Records how a command that may change something ended (`portcullis audit
 * list`). What it did is done: a record that fails is said on stderr, and
 * the exit code stays the command's.
 */
async function audit(services: Services, name: string, args: string[], outcome: string): Promise<void> {
  try {
    await recordAdminEvent(services.database.prisma, services.config.sudoUser, name, UNRECORDED_ARGUMENTS.has(name) ? [] : args, UNRECORDED_ARGUMENTS.has(name) && outcome !== 'ok' ? 'failed' : outcome);
  } catch (error) {
    process.stderr.write(`portcullis: the audit trail could not record this command: ${terminalSafe(lastLine((error as Error).message))}\n`);
  }
}

/** Variables a typo away from ours (config.ts mistypedVariables), as the server warns of them: a CLI would otherwise act on another database, say. */
function warnOfTypos(config: Config): Config {
  for (const typo of config.mistyped) process.stderr.write(`portcullis: ${typoHint(typo)}\n`);
  return config;
}

/**
 * A CLI run before the first start (`migrate` in a deploy step, say) makes
 * the encryption key file and seals the first keys with it: said on stderr,
 * as the server warns at start, or a server given another key (ENCRYPTION_KEYS
 * elsewhere, a container without that file) could not open them.
 */
function noteKeyFileMade(services: Services): Services {
  const { config, sealer } = services;
  if (services.encryptionKeyGenerated && config.encryption.kind === 'file') {
    process.stderr.write(
      `portcullis: made the encryption key file ${terminalSafe(config.encryption.path)} (key ${sealer.sealingKeyId}); the database's keys are sealed with it: ` +
        'keep it, and give every server on this database the same key (ENCRYPTION_KEY_FILE, or ENCRYPTION_KEYS)\n',
    );
  }
  return services;
}

// Output that cannot be written does not stop the command: what it changes
// is done either way, and it goes on to its end (the audit trail's record,
// the database closed), writing nothing more. A reader that stopped early
// (`portcullis keys list | head -1`) is no error; a full disk or a device
// error is said, as what the command showed is lost (a secret shown once).
let outputLost: NodeJS.ErrnoException | undefined;
process.stdout.on('error', (error: NodeJS.ErrnoException) => (outputLost ??= error));
const code = await run(process.argv.slice(2), {
  // Names and other stored text may hold what drives a terminal (written in
  // before the rules that refuse it, or straight into the database): shown
  // as its code. (JSON comes escaped already: see json().)
  out: (text) => {
    if (!outputLost) process.stdout.write(terminalSafe(text));
  },
  warn: (text) => process.stderr.write(`portcullis: warning: ${terminalSafe(text)}\n`),
  readStdin,
});
if (code === 0 && outputLost && outputLost.code !== 'EPIPE') {
  process.stderr.write(`portcullis: done, but its output could not be written (${outputLost.code ?? outputLost.message}): what it showed is lost\n`);
  process.exitCode = 1;
} else process.exitCode = code;
