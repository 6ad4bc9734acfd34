// The audit trail of the CLI: each command that changed something, recorded in
// the database (admin_events) once it succeeded, with who ran it and where.
import os from 'node:os';
import type { Prisma } from '../persistence/database.js';

export interface AdminEvent {
  at: Date;
  actor: string;
  command: string;
  arguments: string[];
}

/**
 * Who runs this CLI: the login behind sudo if there is one, else the
 * process's user, at this machine (`root@host` in a container, where the
 * hostname names the container).
 */
export function actor(): string {
  const user = process.env.SUDO_USER || safeUsername() || 'unknown';
  return `${user}@${os.hostname()}`;
}

function safeUsername(): string | undefined {
  try {
    return os.userInfo().username;
  } catch {
    return undefined; // a uid with no passwd entry (some containers)
  }
}

/** Records that `command` ran with `args` and succeeded. */
export async function recordAdminEvent(prisma: Prisma, command: string, args: string[]): Promise<void> {
  await prisma.adminEvent.create({ data: { actor: actor(), command, arguments: args } });
}

/** The events since `since`, oldest first, at most `limit` of the newest. */
export async function listAdminEvents(prisma: Prisma, since: Date, limit: number): Promise<AdminEvent[]> {
  const rows = await prisma.adminEvent.findMany({
    where: { at: { gte: since } },
    orderBy: [{ at: 'desc' }, { id: 'desc' }],
    take: limit,
    select: { at: true, actor: true, command: true, arguments: true },
  });
  return rows.reverse().map((row) => ({ ...row, arguments: row.arguments as string[] }));
}
