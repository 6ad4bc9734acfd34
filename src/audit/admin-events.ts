// The audit trail of the CLI: each command that may change something,
// recorded in the database (admin_events) when it ends, with who ran it,
// where, and how it ended.
import os from 'node:os';
import type { Prisma } from '../persistence/database.js';

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
 * sudo, which sudo alone sets (SUDO_USER from anyone else is just a variable).
 */
export function actor(): string {
  const user = safeUsername() ?? 'unknown';
  const sudoFrom = process.getuid?.() === 0 ? process.env.SUDO_USER : undefined;
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
export async function recordAdminEvent(prisma: Prisma, command: string, args: string[], outcome: string): Promise<void> {
  await prisma.adminEvent.create({ data: { actor: actor(), command, arguments: args, outcome } });
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
