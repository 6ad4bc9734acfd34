// The audit trail of the CLI: each command that may change something,
// recorded in the database (admin_events) when it ends, with who ran it,
// where, and how it ended.
import os from 'node:os';
import { normalizeEmail } from '../accounts/accounts.js';
import { escapeRegExp } from '../display-text.js';
import type { Prisma } from '../persistence/database.js';
import { databaseNow } from '../persistence/clock-skew.js';

export interface AdminEvent {
  at: Date;
  actor: string;
  command: string;
  arguments: string[];
  /** "ok", or "failed: " and the message the command ended with. */
  outcome: string;
}

/**
 * Who runs this CLI, at this machine (in a container, the hostname names the
 * container): the process's user, and the login that became root through
 * sudo (`sudoUser`, config's SUDO_USER), which sudo alone sets: from anyone
 * but root it is just a variable.
 */
export function actor(sudoUser: string | undefined): string {
  const user = safeUsername() ?? 'unknown';
  const sudoFrom = process.getuid?.() === 0 ? sudoUser : undefined;
  return `${sudoFrom ? `${sudoFrom} (sudo, ${user})` : user}@${os.hostname()}`;
}

function safeUsername(): string | undefined {
  try {
    return os.userInfo().username;
  } catch {
    return undefined; // a uid with no passwd entry (some containers)
  }
}

/** Records that `command` ran with `args` and ended so. */
export async function recordAdminEvent(prisma: Prisma, sudoUser: string | undefined, command: string, args: string[], outcome: string): Promise<void> {
  // When by the database's clock, which every CLI and server shares.
  await prisma.adminEvent.create({ data: { at: await databaseNow(prisma), actor: actor(sudoUser), command, arguments: args, outcome } });
}

/**
 * The events of the last `seconds` by the database's clock (which wrote
 * them), oldest first, at most `limit` of the newest.
 */
export async function listAdminEvents(prisma: Prisma, seconds: number, limit: number): Promise<AdminEvent[]> {
  const rows = await prisma.$queryRaw<{ at: Date; actor: string; command: string; arguments: unknown; outcome: string }[]>`
    SELECT at, actor, command, arguments, outcome FROM admin_events
    WHERE at >= now() - make_interval(secs => ${seconds})
    ORDER BY at DESC, id DESC LIMIT ${limit}`;
  return rows.reverse().map((row) => ({ ...row, arguments: argumentsOf(row.arguments) }));
}

/** The arguments as recorded: a list of words, unless a row was written otherwise by hand. */
function argumentsOf(value: unknown): string[] {
  return Array.isArray(value) && value.every((word) => typeof word === 'string') ? value : [JSON.stringify(value)];
}

/** What stands in the audit trail where a person's email, name or id was (`audit forget`). */
export const ERASED = '[erased]';

/** Options of `user …` commands whose values name a person, those whose values do not, and flags. */
const PERSONAL_OPTIONS = ['--email', '--name'];
const OTHER_VALUED_OPTIONS = ['--client'];
const FLAGS = ['--json', '--password-stdin', '--email-verified', '--email-unverified'];

/**
 * Erases a person from the audit trail (`portcullis audit forget`): in every
 * `user …` command that acted on them (named by one of `identifiers`, the
 * emails and ids they had), the account and the emails and names it gave
 * become ERASED, and so does how it ended where it names them; in another
 * account's command, only their own email (one refused their address). What
 * was done, when and by whom stays. Only what is named is erased: an address
 * passes from one person to another over time, so one is not followed to
 * another on the trail's word. Returns how many records changed.
 */
export async function forgetPerson(prisma: Prisma, identifiers: string[]): Promise<number> {
  const rows = await prisma.$queryRaw<{ id: bigint; command: string; arguments: unknown; outcome: string }[]>`
    SELECT id, command, arguments, outcome FROM admin_events WHERE command LIKE 'user %' ORDER BY id`;
  // Emails as the accounts keep them (any case, NFC), ids in lower case.
  const key = (value: string) => normalizeEmail(value);
  const known = new Set(identifiers.map(key).filter((value) => value !== ''));
  const isKnown = ({ value }: PersonalWord) => known.has(key(value));
  const changes = rows.flatMap((row) => {
    const original = argumentsOf(row.arguments);
    const personal = personalWords(row.command, original);
    // The account it acted on: its argument, or the email `user create` made one with.
    const account = personal.find(({ kind }) => kind === 'account') ?? (row.command === 'user create' ? personal.find(({ kind }) => kind === 'email') : undefined);
    const about = account !== undefined && isKnown(account);
    const erased = personal.filter((word) => about || isKnown(word));
    if (erased.length === 0) return [];
    const words = [...original];
    let outcome = row.outcome;
    for (const { index, option, kind, value } of erased) {
      words[index] = option ? `${option}=${ERASED}` : ERASED;
      // A failure's words name the account as typed, or as kept (`a user with email ada@… already
      // exists`), whole; a name is not looked for there: a short one would match other words.
      if (kind === 'name' || outcome === 'ok') continue;
      for (const form of new Set([value, key(value)])) {
        if (form) outcome = outcome.replace(new RegExp(`(?<![\\w.+%-])${escapeRegExp(form)}(?![\\w.-])`, 'gi'), ERASED);
      }
    }
    return [{ id: row.id, words, outcome }];
  });
  await prisma.$transaction(
    changes.map(({ id, words, outcome }) => prisma.adminEvent.update({ where: { id }, data: { arguments: words, outcome } })),
  );
  return changes.length;
}


/**
 * The words of a recorded `user …` command that name a person, read as the
 * CLI read them: the account it acted on (its argument: all but `user
 * create` take one, which may begin with "-", or come after `--`), and the
 * values of --email and --name (`--email x`, or `--email=x`: `option` then).
 */
function personalWords(command: string, words: string[]): PersonalWord[] {
  const found: PersonalWord[] = [];
  let argumentSeen = command === 'user create';
  const kindOf = (option: string) => (option === '--email' ? 'email' : 'name');
  for (let index = 0; index < words.length; index++) {
    const word = words[index]!;
    if (word === '--') {
      if (!argumentSeen && index + 1 < words.length) found.push({ index: index + 1, kind: 'account', value: words[index + 1]! });
      break;
    }
    // An option only by one of these names, as the CLI read it (arguments.ts parse): `--x=a@b` may be an email.
    const inline = [...PERSONAL_OPTIONS, ...OTHER_VALUED_OPTIONS].find((option) => word.startsWith(`${option}=`));
    if (inline) {
      if (PERSONAL_OPTIONS.includes(inline)) found.push({ index, option: inline, kind: kindOf(inline), value: word.slice(inline.length + 1) });
    } else if (PERSONAL_OPTIONS.includes(word) || OTHER_VALUED_OPTIONS.includes(word)) {
      if (PERSONAL_OPTIONS.includes(word) && index + 1 < words.length) found.push({ index: index + 1, kind: kindOf(word), value: words[index + 1]! });
      index++;
    } else if (FLAGS.includes(word)) {
      continue;
    } else if (!argumentSeen) {
      found.push({ index, kind: 'account', value: word });
      argumentSeen = true;
    }
  }
  return found;
}

/** A word of a recorded command that names a person: where it is, what it is, and (`--email=x`) its option. */
interface PersonalWord {
  index: number;
  kind: 'account' | 'email' | 'name';
  option?: string;
  value: string;
}
