// `portcullis user …`: people's accounts, their passwords, and ending what they gave.
import { AccountError, isUuid, type UserListing } from '../accounts/accounts.js';
import { MAX_CONSECUTIVE_FAILURES, type TotpState } from '../accounts/second-factors.js';
import { sendLogoutTokens, type LogoutDelivery, type SessionEnd } from '../clients/logout-tokens.js';
import type { Removed } from '../provider/removed.js';
import type { Services } from '../services.js';
import { eitherFlag, leadingArgument, parse, passwordFromStdin, required } from './arguments.js';
import { describeRemoved, fields, json, jsonArray, type Command, type Io } from './command.js';
import { UsageError } from './usage.js';

export const userCreate: Command = async (args, open, io) => {
  const { values } = parse(args, {
    email: { type: 'string' },
    name: { type: 'string' },
    'password-stdin': { type: 'boolean' },
    'email-verified': { type: 'boolean' },
    totp: { type: 'string' },
    json: { type: 'boolean' },
  });
  const email = required(values.email, '--email');
  const totp = totpOption(values.totp);
  // Passwords come only from stdin: arguments are visible to every user of the machine.
  if (!values['password-stdin']) throw new UsageError('--password-stdin is required (pipe the password in)');
  const password = await passwordFromStdin(io);
  const services = await open();
  const user = await services.accounts.create({
    email,
    name: values.name as string | undefined,
    password,
    emailVerified: Boolean(values['email-verified']),
    totpRequired: totp,
  });
  // Guesses made at this address before the account existed are not the new account's.
  await services.signInThrottle.forgive(user.email);
  if (values.json) return io.out(json({ id: user.id, email: user.email, name: user.name, email_verified: user.emailVerified, totp: totp ? 'required' : 'off' }));
  io.out(`created user ${user.email} (${user.id})${totp ? '; a TOTP code is asked for after the password (set up at the first sign-in)' : ''}\n`);
};

/** `--totp required|off`: whether the person must enter a TOTP code after the password; undefined: not given. */
function totpOption(value: unknown): boolean | undefined {
  if (value === undefined) return undefined;
  if (value !== 'required' && value !== 'off') throw new UsageError('--totp must be required or off');
  return value === 'required';
}

/** What `user show` says of the person's second step, as `--json` spells it. */
const totpJson = ({ required, setUpAt }: TotpState) => (setUpAt ? 'set_up' : required ? 'required' : 'off');

function describeTotp({ required, setUpAt, locked }: TotpState): string {
  const lock = locked ? `; locked after ${MAX_CONSECUTIVE_FAILURES} wrong codes in a row, until user reset-totp` : '';
  if (setUpAt) return `set up ${setUpAt.toISOString()}${required ? '' : ' (not required)'}${lock}`;
  return required ? 'required, not set up yet' : 'off';
}

/** A user as `user list --json` shows them (and `user show --json` begins). */
const userJson = (user: UserListing) => ({
  id: user.id,
  email: user.email,
  name: user.name,
  email_verified: user.emailVerified,
  created_at: user.createdAt.toISOString(),
  disabled_at: user.disabledAt?.toISOString() ?? null,
});

export const userList: Command = async (args, open, io) => {
  const { values } = parse(args, { json: { type: 'boolean' } });
  const users = (await open()).accounts.list();
  if (values.json) return jsonArray(io, users, userJson);
  let none = true;
  for await (const page of users) {
    for (const user of page) {
      io.out(`${user.id}  ${user.email}${user.name ? `  ${user.name}` : ''}${user.emailVerified ? '  (verified)' : ''}${user.disabledAt ? '  (disabled)' : ''}\n`);
    }
    none = false;
  }
  if (none) io.out('no users\n');
};

export const userShow: Command = async (args, open, io) => {
  const { values, positionals } = parse(args, { client: { type: 'string' }, json: { type: 'boolean' } }, 1);
  const services = await open();
  // With --client, also the sub that client knows the person by (its pairwise identifier, say: what its support desk has).
  const who = positionals[0]!;
  const at = values.client === undefined ? undefined : await namesAt(services, values.client as string);
  const user = at ? await at.userNamed(who) : await services.accounts.show(who, services.config.ttl.sessionMaxAge);
  const subject = at && { client_id: at.clientId, sub: at.subOf(user.id) };
  const totp = await services.secondFactors.stateOf(user.id);
  const consents = user.consents.map((consent) => ({
    client_id: consent.clientId,
    client_name: consent.clientName,
    scope: consent.scope,
    apis: consent.apis,
    first_given_at: consent.firstGivenAt.toISOString(),
    expires_at: consent.expiresAt?.toISOString() ?? null,
    withdrawn_at: consent.withdrawnAt?.toISOString() ?? null,
  }));
  if (values.json) return io.out(json({ ...userJson(user), password_set_at: user.passwordSetAt?.toISOString() ?? null, totp: totpJson(totp), totp_set_up_at: totp.setUpAt?.toISOString() ?? null, totp_locked: totp.locked, sessions: user.sessions, consents, ...(subject ? { subject } : {}) }));
  io.out(
    fields([
      ['id', user.id],
      ['email', `${user.email}${user.emailVerified ? ' (verified)' : ''}`],
      ['name', user.name ?? undefined],
      ['created', user.createdAt.toISOString()],
      ['password set', user.passwordSetAt?.toISOString() ?? 'never (cannot sign in)'],
      ['disabled', user.disabledAt?.toISOString()],
      ['totp', describeTotp(totp)],
      ['sessions', String(user.sessions)],
      ['consents', String(consents.length)],
      ['sub', subject && `${subject.sub} (at client ${subject.client_id})`],
    ]),
  );
  // One line per consent: the app, then what it may do (its OpenID Connect scopes, then each API's).
  for (const consent of consents) {
    const granted = [consent.scope, ...Object.entries(consent.apis).map(([api, scope]) => `${api}: ${scope}`)].filter(Boolean).join('; ');
    const until = consent.expires_at ? `, until ${consent.expires_at}` : '';
    // Withdrawn at a sign-out: the app asks again at its next sign-in, but sign-ins from before in other browsers still use it.
    const withdrawn = consent.withdrawn_at ? `; withdrawn at a sign-out ${consent.withdrawn_at}: asked for again, but sign-ins from before may still use it` : '';
    io.out(`  ${consent.client_id}  ${consent.client_name ?? '(deleted client)'}  ${granted}  (first given ${consent.first_given_at}${until}${withdrawn})\n`);
  }
};

/**
 * How client `clientId` names people: its pairwise identifiers, or the user
 * ids (public). Only an email or a user id is taken for the other kind of
 * name: a public client's sub is the id.
 */
async function namesAt(services: Services, clientId: string) {
  // (Not an API's credentials, which sign no one in: `show` refuses them, saying where they are.)
  const { sector } = await services.clients.show(clientId);
  // A public client needs no secret: its people's sub is their id.
  const subjects = sector === undefined ? undefined : await services.subjects();
  const show = (named: string) => services.accounts.show(named, services.config.ttl.sessionMaxAge);
  return {
    clientId,
    /** The user `who` names: an email or a user id, or the sub a pairwise client knows them by. */
    async userNamed(who: string) {
      if (!subjects || who.includes('@') || isUuid(who)) return show(who);
      const unknown = new AccountError(`no user ${who} (as client ${clientId} names people)`);
      const id = subjects.accountOf(who, sector);
      if (id === undefined) throw unknown;
      return show(id).catch((error: unknown) => {
        throw error instanceof AccountError ? unknown : error;
      });
    },
    subOf: (accountId: string) => subjects?.of(accountId, sector) ?? accountId,
  };
}

const removedJson = (user: { id: string; email: string }, removed: Removed, told: LogoutDelivery[]) =>
  json({ id: user.id, email: user.email, removed, backchannel_logouts: deliveriesJson(told) });

/**
 * Tells the apps of the sessions a command ended, that registered a
 * back-channel logout URI (clients/logout-tokens.ts), and warns of each that
 * could not be told: what the command did stands (it exits 0), but that app
 * keeps its own session until it ends otherwise.
 */
async function tellApps(services: Services, ended: SessionEnd[], io: Io): Promise<LogoutDelivery[]> {
  let told: LogoutDelivery[];
  try {
    told = await sendLogoutTokens(services.database.prisma, services.sealer, services.config.issuer, ended, services.subjects);
  } catch (error) {
    // The command's own change is made (committed) by now: it is reported as
    // done. (Which apps were due could not be read: the database went away.)
    io.warn(`the apps of the sessions ended were not told (back-channel logout): ${(error as Error).message}`);
    return [];
  }
  for (const failed of told.filter((delivery) => !delivery.delivered)) {
    io.warn(`client ${failed.clientId} was not told that the session ended (back-channel logout): ${failed.reason}`);
  }
  return told;
}

const deliveriesJson = (told: LogoutDelivery[]) =>
  told.map((delivery) => ({ client_id: delivery.clientId, delivered: delivery.delivered, ...(delivery.reason ? { reason: delivery.reason } : {}) }));

/** "; told N apps (back-channel logout)" when any was told. */
function toldApps(told: LogoutDelivery[]): string {
  const apps = new Set(told.filter((delivery) => delivery.delivered).map((delivery) => delivery.clientId)).size;
  return apps === 0 ? '' : `; told ${apps === 1 ? '1 app' : `${apps} apps`} (back-channel logout)`;
}

export const userSetPassword: Command = async (args, open, io) => {
  const { values, positionals } = parse(args, { 'password-stdin': { type: 'boolean' }, json: { type: 'boolean' } }, 1);
  if (!values['password-stdin']) throw new UsageError('--password-stdin is required (pipe the password in)');
  const password = await passwordFromStdin(io);
  const services = await open();
  const { user, disabled, removed, consentsKept, ended: sessions } = await services.accounts.setPassword(positionals[0]!, password);
  const told = await tellApps(services, sessions, io);
  // Locked out by failed guesses? The new password is usable at once.
  await services.signInThrottle.forgive(user.email);
  if (values.json) return io.out(json({ id: user.id, email: user.email, disabled, removed, consents_kept: consentsKept, backchannel_logouts: deliveriesJson(told) }));
  const ended = describeRemoved(removed);
  io.out(`new password set for ${user.email}; ${ended ? `signed out everywhere (ended ${ended})` : 'no session was open'}${toldApps(told)}\n`);
  // Whoever had the old password may have given an app offline access: say
  // what still works, and how to end it (a security probe's finding).
  if (consentsKept > 0) {
    const consents = consentsKept === 1 ? '1 consent with offline access stays' : `${consentsKept} consents with offline access stay`;
    io.out(`${consents}, and the apps' refresh tokens keep working; to end them too: portcullis user revoke ${user.email}\n`);
  }
  if (disabled) io.out(`${user.email} stays disabled: they sign in with it once \`portcullis user enable ${user.email}\` has run\n`);
};

export const userUpdate: Command = async (args, open, io) => {
  const [user, rest] = leadingArgument(args, 'expected the EMAIL or ID first: user update EMAIL|ID [options]');
  const { values } = parse(rest, {
    email: { type: 'string' },
    name: { type: 'string' },
    'email-verified': { type: 'boolean' },
    'email-unverified': { type: 'boolean' },
    totp: { type: 'string' },
    json: { type: 'boolean' },
  });
  const totp = totpOption(values.totp);
  const changes = {
    email: values.email as string | undefined,
    name: values.name as string | undefined,
    emailVerified: eitherFlag(values, 'email-verified', 'email-unverified'),
    totpRequired: totp,
  };
  if (Object.values(changes).every((value) => value === undefined)) throw new UsageError('nothing to change: give at least one option');
  const services = await open();
  const updated = await services.accounts.update(user, changes);
  const state = await services.secondFactors.stateOf(updated.id);
  if (values.json) return io.out(json({ id: updated.id, email: updated.email, name: updated.name, email_verified: updated.emailVerified, totp: totpJson(state) }));
  io.out(`updated user ${updated.email} (${updated.id})${totp === undefined ? '' : `; totp: ${describeTotp(state)}`}\n`);
};

export const userResetTotp: Command = async (args, open, io) => {
  const { values, positionals } = parse(args, { json: { type: 'boolean' } }, 1);
  const services = await open();
  const { user, removed, ended: sessions } = await services.accounts.resetTotp(positionals[0]!);
  const told = await tellApps(services, sessions, io);
  // Locked out by wrong codes? The new app's codes are taken at once.
  await services.signInThrottle.forgiveCodes(user.id);
  const state = await services.secondFactors.stateOf(user.id);
  if (values.json) return io.out(json({ id: user.id, email: user.email, totp: totpJson(state), removed, backchannel_logouts: deliveriesJson(told) }));
  const ended = describeRemoved(removed);
  const next = state.required ? '; they set up a new one at their next sign-in' : '';
  io.out(`forgot the authenticator app of ${user.email}; ${ended ? `signed out everywhere (ended ${ended})` : 'no session was open'}${toldApps(told)}${next}\n`);
};

export const userRevoke: Command = async (args, open, io) => {
  const { values, positionals } = parse(args, { client: { type: 'string' }, json: { type: 'boolean' } }, 1);
  const clientId = values.client as string | undefined;
  const services = await open();
  if (clientId !== undefined) {
    const { user, removed, ended: sessions } = await services.accounts.revokeClient(positionals[0]!, clientId);
    const told = await tellApps(services, sessions, io);
    if (values.json) return io.out(json({ id: user.id, email: user.email, client_id: clientId, removed, backchannel_logouts: deliveriesJson(told) }));
    const ended = describeRemoved(removed);
    return io.out(ended ? `revoked what ${user.email} gave client ${clientId}: ended ${ended}${toldApps(told)}\n` : `${user.email} gave client ${clientId} nothing to revoke${toldApps(told)}\n`);
  }
  const { user, removed, ended: sessions } = await services.accounts.revokeAccess(positionals[0]!);
  const told = await tellApps(services, sessions, io);
  if (values.json) return io.out(removedJson(user, removed, told));
  const ended = describeRemoved(removed);
  io.out(ended ? `revoked everything given to ${user.email}: ended ${ended}${toldApps(told)}\n` : `nothing to revoke for ${user.email}\n`);
};

export const userDisable: Command = async (args, open, io) => {
  const { values, positionals } = parse(args, { json: { type: 'boolean' } }, 1);
  const services = await open();
  const { user, removed, wasDisabled, ended: sessions } = await services.accounts.disable(positionals[0]!);
  const told = await tellApps(services, sessions, io);
  if (values.json) return io.out(json({ id: user.id, email: user.email, was_disabled: wasDisabled, removed, backchannel_logouts: deliveriesJson(told) }));
  const ended = describeRemoved(removed);
  io.out(`${wasDisabled ? `${user.email} was disabled already` : `disabled ${user.email}`}${ended ? `; ended ${ended}` : ''}${toldApps(told)}\n`);
};

export const userEnable: Command = async (args, open, io) => {
  const { values, positionals } = parse(args, { json: { type: 'boolean' } }, 1);
  const { user, wasDisabled } = await (await open()).accounts.enable(positionals[0]!);
  if (values.json) return io.out(json({ id: user.id, email: user.email, was_disabled: wasDisabled }));
  io.out(wasDisabled ? `enabled ${user.email}: they may sign in again\n` : `${user.email} was not disabled\n`);
};

export const userDelete: Command = async (args, open, io) => {
  const { values, positionals } = parse(args, { json: { type: 'boolean' } }, 1);
  const services = await open();
  const { user, removed, ended: sessions } = await services.accounts.delete(positionals[0]!);
  const told = await tellApps(services, sessions, io);
  // Nor are the deleted account's: one made again with the address starts clean.
  await services.signInThrottle.forgive(user.email);
  if (values.json) return io.out(removedJson(user, removed, told));
  const ended = describeRemoved(removed);
  io.out(`deleted user ${user.email} (${user.id})${ended ? `; ended ${ended}` : ''}${toldApps(told)}\n`);
};
