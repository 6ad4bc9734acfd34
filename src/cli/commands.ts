// Each `portcullis` command: parse its options, call a service, print the result.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { codesAndTokens, NOT_TOKENS, type Removed } from '../provider/removed.js';
import type { UserListing } from '../accounts/accounts.js';
import type { ApiView } from '../apis/apis.js';
import { sendLogoutTokens, type LogoutDelivery, type SessionEnd } from '../clients/logout-tokens.js';
import { ClientError, DEVICE_CODE_GRANT, GRANT_TYPES, type ClientChanges, type ClientView, type GrantType } from '../clients/clients.js';
import { MAX_LIFETIME_SECONDS, parseDuration, type Config } from '../config.js';
import { listAdminEvents } from '../audit/admin-events.js';
import { keepPublishedFor, listSigningKeys, retireSigningKey, rotateSigningKeys, type KeyInfo } from '../keys/signing-keys.js';
import { MigrationError } from '../persistence/migrations.js';
import type { Services } from '../services.js';
import { terminalSafe } from '../display-text.js';
import { UsageError } from './usage.js';

export interface Io {
  out(text: string): void;
  /** One line on stderr: something went wrong beside a command that did what it was asked. */
  warn(text: string): void;
  readStdin(): Promise<string>;
}

type Options = NonNullable<ParseArgsConfig['options']>;

/**
 * The password piped in: one line, its line break (as `echo` or a file's
 * last line ends it) not part of it. More lines are a usage error, said as
 * such: a file with a blank last line would otherwise be refused for holding
 * control characters, the line break's.
 */
async function passwordFromStdin(io: Io): Promise<string> {
  const password = (await io.readStdin()).replace(/\r?\n$|\r$/, '');
  if (!password) throw new UsageError('no password on standard input');
  if (/[\r\n]/.test(password)) throw new UsageError('standard input holds more than one line: pipe the password alone, on one line');
  return password;
}

function parse(args: string[], options: Options, positionals = 0) {
  let parsed;
  // Options are picked out by name, an option's value with it whatever it
  // begins with (`user update bob --name -x-`, `user revoke -bob@example.com
  // --client -8UZ…`: client ids, base64url, and key ids, JWK thumbprints, may
  // begin with "-"); whatever else there is, and all after a `--`, is an
  // argument. So `client delete -8UZ…` is not taken for a flag.
  const optionName = (word: string) => {
    const name = word.startsWith('--') ? word.slice(2).split('=')[0]! : '';
    return Object.hasOwn(options, name) ? name : undefined;
  };
  const picked: string[] = [];
  const rest: string[] = [];
  for (let index = 0; index < args.length; index++) {
    const arg = args[index]!;
    if (arg === '--') {
      rest.push(...args.slice(index + 1));
      break;
    }
    const name = optionName(arg);
    const option = name === undefined ? undefined : options[name];
    if (!option) rest.push(arg);
    else if (option.type !== 'string' || arg.includes('=')) picked.push(arg);
    // Not another of its options: `--name $UNSET --json` must not name it "--json".
    else if (index + 1 < args.length && args[index + 1] !== '--' && optionName(args[index + 1]!) === undefined) picked.push(`--${name}=${args[++index]}`);
    else throw new UsageError(`--${name} needs a value${index + 1 < args.length ? ` (one that begins with "--" is written --${name}=VALUE)` : ''}`);
  }
  try {
    parsed = parseArgs({ args: [...picked, '--', ...rest], options, allowPositionals: true, strict: true, tokens: true });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  refuseRepeated(parsed.tokens, options);
  if (parsed.positionals.length !== positionals) {
    // An option this command does not take (`keys retire KID --json`) was read as an argument above.
    const option = parsed.positionals.length > positionals ? parsed.positionals.find((arg) => arg.startsWith('--')) : undefined;
    if (option) throw new UsageError(`Unknown option '${option}'`);
    throw new UsageError(positionals ? `expected ${positionals} argument(s), got ${parsed.positionals.length}` : `unexpected argument '${parsed.positionals[0]}'`);
  }
  return parsed;
}

/**
 * An option that takes one value, given twice: parseArgs keeps the last one
 * and drops the other without a word (`--email a@x ... --email b@x`). Options
 * declared `multiple` repeat; a flag said twice loses nothing.
 */
function refuseRepeated(tokens: NonNullable<ReturnType<typeof parseArgs>['tokens']>, options: Options): void {
  const seen = new Set<string>();
  for (const token of tokens) {
    if (token.kind !== 'option' || options[token.name]?.type !== 'string' || options[token.name]?.multiple) continue;
    if (seen.has(token.name)) throw new UsageError(`--${token.name} is given more than once; it takes one value`);
    seen.add(token.name);
  }
}

function required(value: unknown, flag: string): string {
  if (typeof value !== 'string' || !value.trim()) throw new UsageError(`${flag} is required`);
  return value;
}

const json = (value: unknown) => `${JSON.stringify(value, null, 2)}\n`;

export type Command = (args: string[], services: () => Promise<Services>, io: Io) => Promise<void>;

/** The options of a registration that `client create` and `client update` share. */
const REGISTRATION_OPTIONS = {
  name: { type: 'string' },
  'redirect-uri': { type: 'string', multiple: true },
  'post-logout-redirect-uri': { type: 'string', multiple: true },
  'grant-type': { type: 'string', multiple: true },
  // Repeated or space-separated, as `api create` takes them: all count.
  scope: { type: 'string', multiple: true },
  'id-token-alg': { type: 'string' },
  'logo-uri': { type: 'string' },
  'client-uri': { type: 'string' },
  'policy-uri': { type: 'string' },
  'tos-uri': { type: 'string' },
  'jwks-file': { type: 'string' },
  'backchannel-logout-uri': { type: 'string' },
  json: { type: 'boolean' },
} as const satisfies Options;

/** The registration the shared options give; what they leave out stays undefined. */
function registrationOf(values: Record<string, unknown>): ClientChanges {
  return {
    name: values.name as string | undefined,
    redirectUris: values['redirect-uri'] as string[] | undefined,
    postLogoutRedirectUris: values['post-logout-redirect-uri'] as string[] | undefined,
    grantTypes: grantTypes(values['grant-type']),
    scope: (values.scope as string[] | undefined)?.join(' '),
    idTokenSignedResponseAlg: idTokenAlg(values['id-token-alg']),
    logoUri: values['logo-uri'] as string | undefined,
    clientUri: values['client-uri'] as string | undefined,
    policyUri: values['policy-uri'] as string | undefined,
    tosUri: values['tos-uri'] as string | undefined,
    jwks: values['jwks-file'] === undefined ? undefined : jwksFile(values['jwks-file'] as string),
    backchannelLogoutUri: values['backchannel-logout-uri'] as string | undefined,
  };
}

/** Ten keys of the largest size allowed take a fifth of this: anything bigger is not a key set. */
const MAX_JWKS_FILE_BYTES = 64 * 1024;

/** The JSON in the file `path` names (a JWK Set, or one JWK; checked by the registration). */
function jwksFile(path: string): unknown {
  const tooLong = (size: string) => new ClientError(`--jwks-file ${path}: ${size} bytes; a JWK Set of public keys takes far less than ${MAX_JWKS_FILE_BYTES}`);
  let bytes: Buffer;
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    const file = fstatSync(fd);
    if (file.isDirectory()) throw new ClientError(`--jwks-file ${path}: a directory, not a file`);
    if (file.isFile() && file.size > MAX_JWKS_FILE_BYTES) throw tooLong(String(file.size));
    // At most the limit and a byte more, whatever it is: a pipe (`<(...)`, /dev/stdin) says its size only by ending.
    const buffer = Buffer.alloc(MAX_JWKS_FILE_BYTES + 1);
    let length = 0;
    for (let read = -1; read !== 0 && length < buffer.length; length += read) read = readSync(fd, buffer, length, buffer.length - length, null);
    if (length > MAX_JWKS_FILE_BYTES) throw tooLong(`more than ${MAX_JWKS_FILE_BYTES}`);
    bytes = buffer.subarray(0, length);
  } catch (error) {
    if (error instanceof ClientError) throw error;
    throw new ClientError(`--jwks-file ${path}: cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  try {
    // UTF-8, a byte order mark ignored (RFC 8259 §8.1: PowerShell writes one).
    return JSON.parse(new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(bytes));
  } catch {
    throw new ClientError(`--jwks-file ${path}: not JSON in UTF-8 (a JWK Set, {"keys": [...]}, or one JWK)`);
  }
}

export const clientCreate: Command = async (args, open, io) => {
  const { values } = parse(args, { ...REGISTRATION_OPTIONS, public: { type: 'boolean' }, native: { type: 'boolean' } });
  if (values.public && values.native) throw new UsageError('--public and --native exclude each other: a native app is public already');
  const registration = registrationOf(values);
  const name = required(values.name, '--name');
  const services = await open();
  await checkSigningKeyFor(services, registration.idTokenSignedResponseAlg);
  const created = await services.clients.create({
    ...registration,
    name,
    redirectUris: registration.redirectUris ?? [],
    public: Boolean(values.public),
    native: Boolean(values.native),
  });
  // As a registration response (RFC 7591 §3.2.1): the id, the secret, then what was registered.
  if (values.json) return io.out(json({ ...created, ...clientJson(await services.clients.find(created.client_id)) }));
  io.out(`client_id:     ${created.client_id}\n`);
  if (created.client_secret) io.out(`client_secret: ${created.client_secret}\n(shown once: only a hash is stored)\n`);
};

/**
 * The argument an update command takes first, always, and the options after
 * it: a base64url client id may begin with "-", even "--", and so may an email.
 */
function leadingArgument(args: string[], usage: string): [string, string[]] {
  const [first, ...rest] = args;
  if (!first || /^--[a-z-]+$/.test(first)) throw new UsageError(usage);
  return [first, rest];
}

export const clientUpdate: Command = async (args, open, io) => {
  const [clientId, rest] = leadingArgument(args, 'expected the CLIENT_ID first: client update CLIENT_ID [options]');
  const { values } = parse(rest, REGISTRATION_OPTIONS);
  const changes = registrationOf(values);
  if (Object.values(changes).every((value) => value === undefined)) throw new UsageError('nothing to change: give at least one option');
  const services = await open();
  await checkSigningKeyFor(services, changes.idTokenSignedResponseAlg);
  const client = await services.clients.update(clientId, changes);
  if (values.json) return io.out(json(clientJson(client)));
  io.out(`updated client ${client.clientId}\n`);
};

/** `--grant-type` values: the registration's names, `device_code` for the Device Authorization Grant's URN. */
function grantTypes(values: unknown): GrantType[] | undefined {
  if (values === undefined) return undefined;
  const named = (values as string[]).map((value) => (value === 'device_code' ? DEVICE_CODE_GRANT : value));
  const unknown = named.find((value) => !GRANT_TYPES.includes(value as GrantType));
  if (unknown !== undefined) throw new UsageError(`--grant-type must be authorization_code, refresh_token, client_credentials or device_code, not "${unknown}"`);
  return named as GrantType[];
}

function idTokenAlg(value: unknown): 'ES256' | 'EdDSA' | 'RS256' | undefined {
  if (value === undefined) return undefined;
  if (value !== 'ES256' && value !== 'EdDSA' && value !== 'RS256') throw new UsageError('--id-token-alg must be ES256, EdDSA or RS256');
  return value;
}

/**
 * The provider refuses, at every request, a client whose ID token algorithm
 * it held no key for when it was built. Its keys are RS256 and SIGNING_ALG's
 * (the CLI runs with the server's configuration): another algorithm is
 * refused, and so is one the database holds no current key for.
 */
async function checkSigningKeyFor(services: Services, alg: string | undefined): Promise<void> {
  if (!alg) return;
  const signingAlg = services.config.signingAlg;
  if (alg !== 'RS256' && alg !== signingAlg) {
    throw new ClientError(`ID tokens are signed with RS256 or SIGNING_ALG, which is ${signingAlg} for this command, not ${alg}: if the server's SIGNING_ALG differs, run the CLI with it`);
  }
  const algs = new Set((await listSigningKeys(services.database.prisma)).filter((key) => key.status === 'current').map((key) => key.alg));
  if (!algs.has(alg)) {
    throw new ClientError(`no current signing key for ${alg}: the keys are ${[...algs].sort().join(' and ')} (SIGNING_ALG sets the algorithm besides RS256: run the CLI with the server's)`);
  }
}

const clientJson = (client: ClientView) => ({
  client_id: client.clientId,
  client_name: client.name,
  public: client.public,
  application_type: client.native ? 'native' : 'web',
  token_endpoint_auth_method: client.authMethod,
  // Public keys only (client-keys.ts): nothing secret is printed.
  ...(client.jwks ? { jwks: client.jwks } : {}),
  redirect_uris: client.redirectUris,
  post_logout_redirect_uris: client.postLogoutRedirectUris,
  grant_types: client.grantTypes,
  scope: client.scope,
  // RFC 7591 §2 names. The algorithm always (RS256 unless another was
  // registered); the page addresses only when registered.
  id_token_signed_response_alg: client.idTokenAlg,
  logo_uri: client.logoUri,
  client_uri: client.clientUri,
  policy_uri: client.policyUri,
  tos_uri: client.tosUri,
  backchannel_logout_uri: client.backchannelLogoutUri,
  ...(client.backchannelLogoutUri ? { backchannel_logout_session_required: true } : {}),
  created_at: client.createdAt.toISOString(),
  disabled_at: client.disabledAt?.toISOString() ?? null,
});

export const clientList: Command = async (args, open, io) => {
  const { values } = parse(args, { json: { type: 'boolean' } });
  const clients = await (await open()).clients.list();
  if (values.json) return io.out(json(clients.map(clientJson)));
  if (clients.length === 0) return io.out('no clients\n');
  for (const client of clients) {
    io.out(`${client.clientId}  ${client.name}  ${clientType(client)}  ${client.redirectUris.join(' ')}${client.disabledAt ? '  (disabled)' : ''}\n`);
  }
};

export const clientShow: Command = async (args, open, io) => {
  const { values, positionals } = parse(args, { json: { type: 'boolean' } }, 1);
  const client = await (await open()).clients.show(positionals[0]!);
  const shown = clientJson(client);
  if (values.json) return io.out(json({ ...shown, consented_users: client.consentedUsers }));
  io.out(
    fields([
      ['client_id', shown.client_id],
      ['name', shown.client_name],
      ['type', clientType(client)],
      ['authenticates', AUTHENTICATES[client.authMethod]],
      ['keys', shown.jwks?.keys.map((key) => key.kid ?? `${key.kty} key`).join(' ')],
      ['redirect URIs', shown.redirect_uris.join(' ')],
      ['sign-out URIs', shown.post_logout_redirect_uris.join(' ')],
      ['grant types', shown.grant_types.join(' ')],
      ['scope', shown.scope],
      ['ID token alg', shown.id_token_signed_response_alg],
      ['logo URI', shown.logo_uri],
      ['client URI', shown.client_uri],
      ['policy URI', shown.policy_uri],
      ['terms URI', shown.tos_uri],
      ['back-channel logout', shown.backchannel_logout_uri],
      ['created', shown.created_at],
      ['disabled', shown.disabled_at ?? undefined],
      ['consented', `${client.consentedUsers} ${client.consentedUsers === 1 ? 'person' : 'people'}`],
    ]),
  );
};

const clientType = (client: ClientView) => (client.native ? 'native' : client.public ? 'public' : 'confidential');

const AUTHENTICATES: Record<ClientView['authMethod'], string> = {
  none: 'nothing (public: PKCE protects its codes)',
  client_secret_basic: 'with its secret (client_secret_basic or client_secret_post)',
  private_key_jwt: 'with a JWT signed by one of its keys (private_key_jwt)',
};

/** `label: value` lines, the values aligned; those without a value left out. */
function fields(rows: [string, string | undefined][]): string {
  const shown = rows.filter(([, value]) => value !== undefined && value !== '');
  const width = Math.max(...shown.map(([label]) => label.length)) + 2;
  return shown.map(([label, value]) => `${`${label}:`.padEnd(width)}${value}\n`).join('');
}

export const clientDelete: Command = async (args, open, io) => {
  const { values, positionals } = parse(args, { json: { type: 'boolean' } }, 1);
  await (await open()).clients.delete(positionals[0]!);
  if (values.json) return io.out(json({ client_id: positionals[0], deleted: true }));
  io.out(`deleted client ${positionals[0]}\n`);
};

export const clientDisable: Command = async (args, open, io) => {
  const { values, positionals } = parse(args, { json: { type: 'boolean' } }, 1);
  const clientId = positionals[0]!;
  const { wasDisabled, removed } = await (await open()).clients.disable(clientId);
  if (values.json) return io.out(clientRemovedJson(clientId, wasDisabled, removed));
  const ended = describeRemoved(removed);
  io.out(`${wasDisabled ? `client ${clientId} was disabled already` : `disabled client ${clientId}`}; ${ended ? `ended ${ended}` : 'nothing issued to it was open'}\n`);
};

export const clientEnable: Command = async (args, open, io) => {
  const { values, positionals } = parse(args, { json: { type: 'boolean' } }, 1);
  const clientId = positionals[0]!;
  const { wasDisabled, removed } = await (await open()).clients.enable(clientId);
  if (values.json) return io.out(clientRemovedJson(clientId, wasDisabled, removed));
  const ended = describeRemoved(removed);
  io.out(wasDisabled ? `enabled client ${clientId}: it may sign people in again${ended ? ` (ended ${ended} stored as it was disabled)` : ''}\n` : `client ${clientId} was not disabled\n`);
};

/** `tokens_ended`: its codes and tokens (0.5.16 counted sign-ins in progress there too); `removed`: every kind, as the user commands say it. */
function clientRemovedJson(clientId: string, wasDisabled: boolean, removed: Removed): string {
  return json({ client_id: clientId, was_disabled: wasDisabled, tokens_ended: codesAndTokens(removed), removed });
}

export const clientRotateSecret: Command = async (args, open, io) => {
  const { values, positionals } = parse(args, { json: { type: 'boolean' } }, 1);
  const rotated = await (await open()).clients.rotateSecret(positionals[0]!);
  if (values.json) return io.out(json(rotated));
  io.out(`client_id:     ${rotated.client_id}\nclient_secret: ${rotated.client_secret}\n(shown once: only a hash is stored; the old secret no longer works)\n`);
};

export const userCreate: Command = async (args, open, io) => {
  const { values } = parse(args, {
    email: { type: 'string' },
    name: { type: 'string' },
    'password-stdin': { type: 'boolean' },
    'email-verified': { type: 'boolean' },
    json: { type: 'boolean' },
  });
  const email = required(values.email, '--email');
  // Passwords come only from stdin: arguments are visible to every user of the machine.
  if (!values['password-stdin']) throw new UsageError('--password-stdin is required (pipe the password in)');
  const password = await passwordFromStdin(io);
  const services = await open();
  const user = await services.accounts.create({
    email,
    name: values.name as string | undefined,
    password,
    emailVerified: Boolean(values['email-verified']),
  });
  // Guesses made at this address before the account existed are not the new account's.
  await services.signInThrottle.forgive(user.email);
  if (values.json) return io.out(json({ id: user.id, email: user.email, name: user.name, email_verified: user.emailVerified }));
  io.out(`created user ${user.email} (${user.id})\n`);
};

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
  const users = await (await open()).accounts.list();
  if (values.json) return io.out(json(users.map(userJson)));
  if (users.length === 0) return io.out('no users\n');
  for (const user of users) {
    io.out(`${user.id}  ${user.email}${user.name ? `  ${user.name}` : ''}${user.emailVerified ? '  (verified)' : ''}${user.disabledAt ? '  (disabled)' : ''}\n`);
  }
};

export const userShow: Command = async (args, open, io) => {
  const { values, positionals } = parse(args, { json: { type: 'boolean' } }, 1);
  const services = await open();
  const user = await services.accounts.show(positionals[0]!, services.config.ttl.sessionMaxAge);
  const consents = user.consents.map((consent) => ({
    client_id: consent.clientId,
    client_name: consent.clientName,
    scope: consent.scope,
    apis: consent.apis,
    first_given_at: consent.firstGivenAt.toISOString(),
    expires_at: consent.expiresAt?.toISOString() ?? null,
    withdrawn_at: consent.withdrawnAt?.toISOString() ?? null,
  }));
  if (values.json) return io.out(json({ ...userJson(user), password_set_at: user.passwordSetAt?.toISOString() ?? null, sessions: user.sessions, consents }));
  io.out(
    fields([
      ['id', user.id],
      ['email', `${user.email}${user.emailVerified ? ' (verified)' : ''}`],
      ['name', user.name ?? undefined],
      ['created', user.createdAt.toISOString()],
      ['password set', user.passwordSetAt?.toISOString() ?? 'never (cannot sign in)'],
      ['disabled', user.disabledAt?.toISOString()],
      ['sessions', String(user.sessions)],
      ['consents', String(consents.length)],
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

/** What ending access (a user's, a client's) removed, in words ("2 sessions, 3 consents"); empty for nothing. */
function describeRemoved(removed: Removed): string {
  const words: Record<(typeof NOT_TOKENS)[number], [string, string]> = {
    Session: ['session', 'sessions'],
    Interaction: ['sign-in in progress', 'sign-ins in progress'],
    Grant: ['consent', 'consents'],
  };
  // Every other kind (codes, access and refresh tokens) is counted as "codes and tokens".
  const counts: [[string, string], number][] = [
    ...NOT_TOKENS.map((kind): [[string, string], number] => [words[kind], removed[kind] ?? 0]),
    [['code or token', 'codes and tokens'], codesAndTokens(removed)],
  ];
  return counts
    .filter(([, n]) => n > 0)
    .map(([[one, many], n]) => `${n} ${n === 1 ? one : many}`)
    .join(', ');
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
    told = await sendLogoutTokens(services.database.prisma, services.sealer, services.config.issuer, ended);
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
  const { user, removed, consentsKept, ended: sessions } = await services.accounts.setPassword(positionals[0]!, password);
  const told = await tellApps(services, sessions, io);
  // Locked out by failed guesses? The new password is usable at once.
  await services.signInThrottle.forgive(user.email);
  if (values.json) return io.out(json({ id: user.id, email: user.email, removed, consents_kept: consentsKept, backchannel_logouts: deliveriesJson(told) }));
  const ended = describeRemoved(removed);
  io.out(`new password set for ${user.email}; ${ended ? `signed out everywhere (ended ${ended})` : 'no session was open'}${toldApps(told)}\n`);
  // Whoever had the old password may have given an app offline access: say
  // what still works, and how to end it (a security probe's finding).
  if (consentsKept > 0) {
    const consents = consentsKept === 1 ? '1 consent with offline access stays' : `${consentsKept} consents with offline access stay`;
    io.out(`${consents}, and the apps' refresh tokens keep working; to end them too: portcullis user revoke ${user.email}\n`);
  }
};

export const userUpdate: Command = async (args, open, io) => {
  const [user, rest] = leadingArgument(args, 'expected the EMAIL or ID first: user update EMAIL|ID [options]');
  const { values } = parse(rest, {
    email: { type: 'string' },
    name: { type: 'string' },
    'email-verified': { type: 'boolean' },
    'email-unverified': { type: 'boolean' },
    json: { type: 'boolean' },
  });
  if (values['email-verified'] && values['email-unverified']) throw new UsageError('--email-verified and --email-unverified exclude each other');
  const changes = {
    email: values.email as string | undefined,
    name: values.name as string | undefined,
    emailVerified: values['email-verified'] ? true : values['email-unverified'] ? false : undefined,
  };
  if (Object.values(changes).every((value) => value === undefined)) throw new UsageError('nothing to change: give at least one option');
  const updated = await (await open()).accounts.update(user, changes);
  if (values.json) return io.out(json({ id: updated.id, email: updated.email, name: updated.name, email_verified: updated.emailVerified }));
  io.out(`updated user ${updated.email} (${updated.id})\n`);
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

function printKeys(keys: KeyInfo[], io: Io, asJson: boolean): void {
  if (asJson) {
    return io.out(
      json(
        keys.map((key) => ({
          kid: key.kid,
          alg: key.alg,
          status: key.status,
          created_at: key.createdAt.toISOString(),
          activates_at: key.activatesAt.toISOString(),
          publish_until: key.publishUntil?.toISOString() ?? null,
        })),
      ),
    );
  }
  for (const key of keys) {
    const until =
      key.status === 'next'
        ? `  signs from ${key.activatesAt.toISOString()}`
        : key.publishUntil
          ? `  published until ${key.publishUntil.toISOString()}`
          : '';
    io.out(`${key.kid}  ${key.alg.padEnd(6)}  ${key.status}${until}\n`);
  }
}

export const keysList: Command = async (args, open, io) => {
  const { values } = parse(args, { json: { type: 'boolean' } });
  printKeys(await listSigningKeys((await open()).database.prisma), io, Boolean(values.json));
};

export const keysRotate: Command = async (args, open, io) => {
  const { values } = parse(args, { json: { type: 'boolean' }, now: { type: 'boolean' } });
  const services = await open();
  const { config } = services;
  // --now is for a compromised key: resource servers that fetched the JWKS
  // moments ago may refuse new tokens until they refetch it.
  const activationDelay = values.now ? 0 : config.keyActivationDelay;
  const keys = await rotateSigningKeys(services.database, services.sealer, { activationDelay, keepPublishedFor: await keepPublishedFor(config, services.apis) });
  if (!values.json) {
    io.out(
      values.now
        ? `rotated: the new keys are published and sign now, on every running server within ${config.keyRefreshInterval}s\n`
        : `rotated: the new keys are published now and every running server signs with them within ${activationDelay + config.keyRefreshInterval}s, or later where a server's KEY_ACTIVATION_DELAY is longer (\`keys list\` shows when they sign)\n`,
    );
  }
  printKeys(keys, io, Boolean(values.json));
};

export const keysRetire: Command = async (args, open, io) => {
  const { values, positionals } = parse(args, { compromised: { type: 'boolean' }, json: { type: 'boolean' } }, 1);
  const compromised = Boolean(values.compromised);
  const { database } = await open();
  await retireSigningKey(database.prisma, positionals[0]!, { compromised });
  if (values.json) return io.out(json({ kid: positionals[0], retired: true, compromised }));
  io.out(
    compromised
      ? `retired key ${positionals[0]}: running servers stop publishing it at once on PostgreSQL (within their KEY_REFRESH_INTERVAL on the embedded database), and what it signed stops verifying wherever the JWKS is fetched again\n`
      : `retired key ${positionals[0]}\n`,
  );
};

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

/** --token-format, checked before the database is opened: a usage error, as a mistyped option is. */
function tokenFormatOption(format: unknown): 'jwt' | 'opaque' | undefined {
  if (format !== undefined && format !== 'jwt' && format !== 'opaque') throw new UsageError('--token-format must be jwt or opaque');
  return format;
}

export const apiCreate: Command = async (args, open, io) => {
  const { values } = parse(args, {
    identifier: { type: 'string' },
    name: { type: 'string' },
    scope: { type: 'string', multiple: true },
    'token-format': { type: 'string' },
    ttl: { type: 'string' },
    json: { type: 'boolean' },
  });
  const identifier = required(values.identifier, '--identifier');
  const format = tokenFormatOption(values['token-format']);
  const api = await (await open()).apis.create({
    identifier,
    name: values.name as string | undefined,
    scopes: (values.scope as string[] | undefined) ?? [],
    tokenFormat: format,
    ttl: values.ttl as string | undefined,
  });
  const shown = {
    identifier: api.identifier,
    name: api.name,
    scopes: api.scopes.map((scope) => scope.name),
    token_format: api.tokenFormat,
    access_token_ttl: api.accessTokenTtl,
    // The API's own credentials, for token introspection.
    client_id: api.clientId,
    client_secret: api.clientSecret,
  };
  if (values.json) return io.out(json(shown));
  io.out(`API ${shown.identifier} (${shown.token_format} tokens, ${shown.access_token_ttl}s)\n`);
  io.out(`introspection client_id:     ${shown.client_id}\nintrospection client_secret: ${shown.client_secret}\n(shown once: only a hash is stored)\n`);
};

const apiJson = (api: ApiView) => ({
  identifier: api.identifier,
  name: api.name,
  scopes: api.scopes,
  token_format: api.tokenFormat,
  access_token_ttl: api.accessTokenTtl,
  client_id: api.clientId,
});

export const apiList: Command = async (args, open, io) => {
  const { values } = parse(args, { json: { type: 'boolean' } });
  const apis = await (await open()).apis.list();
  if (values.json) return io.out(json(apis.map(apiJson)));
  if (apis.length === 0) return io.out('no APIs\n');
  for (const api of apis) {
    io.out(`${api.identifier}  ${api.name}  ${api.tokenFormat}  ${api.scopes.map((scope) => scope.name).join(' ')}\n`);
  }
};

export const apiUpdate: Command = async (args, open, io) => {
  const [identifier, rest] = leadingArgument(args, 'expected the IDENTIFIER first: api update IDENTIFIER [options]');
  const { values } = parse(rest, {
    name: { type: 'string' },
    scope: { type: 'string', multiple: true },
    'token-format': { type: 'string' },
    ttl: { type: 'string' },
    json: { type: 'boolean' },
  });
  const format = tokenFormatOption(values['token-format']);
  const changes = { name: values.name as string | undefined, scopes: values.scope as string[] | undefined, tokenFormat: format, ttl: values.ttl as string | undefined };
  if (Object.values(changes).every((value) => value === undefined)) throw new UsageError('nothing to change: give at least one option');
  const { removed, ...api } = await (await open()).apis.update(identifier, changes);
  if (values.json) {
    return io.out(json({ ...apiJson(api), removed: { scopes: removed.scopes, consents: removed.consentsChanged, clients: removed.clientsChanged } }));
  }
  io.out(`updated API ${api.identifier} (${api.tokenFormat} tokens, ${api.accessTokenTtl}s; scopes ${api.scopes.map((scope) => scope.name).join(' ')})\n`);
  if (removed.scopes.length > 0) {
    io.out(
      `taken away: ${removed.scopes.join(' ')}; ${removed.consentsChanged} consent(s) and ${removed.clientsChanged} client(s) no longer include them ` +
        '(tokens already issued keep them until they expire)\n',
    );
  }
};

export const apiDelete: Command = async (args, open, io) => {
  const { values, positionals } = parse(args, { json: { type: 'boolean' } }, 1);
  const { tokensRevoked, consentsChanged, clientsChanged } = await (await open()).apis.delete(positionals[0]!);
  if (values.json) {
    return io.out(json({ identifier: positionals[0], removed: { opaque_access_tokens: tokensRevoked, consents: consentsChanged, clients: clientsChanged } }));
  }
  io.out(`deleted API ${positionals[0]}: ${tokensRevoked} opaque access token(s) revoked, ${consentsChanged} consent(s) and ${clientsChanged} client(s) no longer include it\n`);
};

export const auditList: Command = async (args, open, io) => {
  const { values } = parse(args, { since: { type: 'string' }, limit: { type: 'string' }, json: { type: 'boolean' } });
  let seconds: number;
  try {
    seconds = parseDuration((values.since as string | undefined) ?? '30d');
  } catch (error) {
    throw new UsageError(`--since: ${(error as Error).message}`);
  }
  if (seconds > MAX_LIFETIME_SECONDS) throw new UsageError('--since goes back at most 36500d');
  const limit = Number((values.limit as string | undefined) ?? '100');
  if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) throw new UsageError('--limit must be a whole number from 1 to 10000');
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

/** The commands that change nothing: the audit trail (index.ts) leaves them out; migrations are in the server's log. */
export const READ_ONLY_COMMANDS = new Set(['client list', 'client show', 'api list', 'user list', 'user show', 'keys list', 'audit list', 'migrate']);

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
