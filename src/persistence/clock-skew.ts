// Each instance stamps what it issues by its own clock (a token's iat and
// exp, a row's expiry, a cookie's, which key signs now), and the database
// stamps what it decides by its own (revocations, sweeps, key schedules,
// sign-in failure windows). Seconds apart, a JWT access token an instance
// running ahead issued just before a `user revoke` passes the revocation's
// cut-off; further apart, codes and pushed requests expire early at other
// instances, and new keys sign before resource servers have them. Nothing
// here can correct a clock: it is measured so that it can be said.
import type { Logger } from '../logger.js';
import type { Prisma } from './database.js';

/**
 * The database's clock, for what a CLI stamps or decides by it (an API's
 * creation, the audit trail, whether a key may be retired): the CLI may run
 * on another machine, whose clock the servers do not share.
 */
export async function databaseNow(prisma: Prisma): Promise<Date> {
  const [row] = await prisma.$queryRaw<{ now: Date }[]>`SELECT now() AS now`;
  return row!.now;
}

/** Past this far from the database's clock, beyond what the reading's round trip leaves unknown, a server says so. */
const CLOCK_SKEW_WARNING_SECONDS = 2;

/**
 * How far this process's clock is ahead of the database's (negative:
 * behind), in seconds, leaving out what the round trip of the reading
 * leaves unknown (0 if within it).
 */
export async function clockSkew(prisma: Prisma): Promise<number> {
  const sent = Date.now();
  const [row] = await prisma.$queryRaw<{ at: Date }[]>`SELECT clock_timestamp() AS at`;
  const answered = Date.now();
  const offset = (sent + answered) / 2 - row!.at.getTime();
  const unknown = (answered - sent) / 2;
  return Math.abs(offset) <= unknown ? 0 : (Math.sign(offset) * (Math.abs(offset) - unknown)) / 1000;
}

/** Logs a warning when this process's clock is further than CLOCK_SKEW_WARNING_SECONDS from the database's. */
export async function warnOfClockSkew(prisma: Prisma, logger: Logger): Promise<void> {
  const skew = await clockSkew(prisma);
  if (Math.abs(skew) <= CLOCK_SKEW_WARNING_SECONDS) return;
  const seconds = Math.round(skew * 10) / 10;
  logger.warn(`this server's clock is ${Math.abs(seconds)} s ${seconds > 0 ? 'ahead of' : 'behind'} the database's: keep every instance's and the database's in time (NTP)`, { seconds });
}
