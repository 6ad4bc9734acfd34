// `portcullis client …`: register, change, show, disable and remove applications.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { codesAndTokens, type Removed } from '../provider/removed.js';
import { ClientError, DEVICE_CODE_GRANT, GRANT_TYPES, type ClientChanges, type ClientView, type GrantType, type SubjectType } from '../clients/clients.js';
import { listSigningKeys } from '../keys/signing-keys.js';
import type { Services } from '../services.js';
import { eitherFlag, leadingArgument, parse, required, type Options } from './arguments.js';
import { describeRemoved, fields, json, type Command } from './command.js';
import { UsageError } from './usage.js';

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
  'require-par': { type: 'boolean' },
  'require-dpop': { type: 'boolean' },
  'require-jar': { type: 'boolean' },
  json: { type: 'boolean' },
} as const satisfies Options;

/** `client update` can also drop a requirement. */
const UPDATE_OPTIONS = {
  ...REGISTRATION_OPTIONS,
  'no-require-par': { type: 'boolean' },
  'no-require-dpop': { type: 'boolean' },
  'no-require-jar': { type: 'boolean' },
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
    // (`--no-…` is an option of update only: on create, neither is false.)
    requirePar: eitherFlag(values, 'require-par', 'no-require-par'),
    requireDpop: eitherFlag(values, 'require-dpop', 'no-require-dpop'),
    requireJar: eitherFlag(values, 'require-jar', 'no-require-jar'),
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
  const { values } = parse(args, { ...REGISTRATION_OPTIONS, public: { type: 'boolean' }, native: { type: 'boolean' }, 'subject-type': { type: 'string' } });
  if (values.public && values.native) throw new UsageError('--public and --native exclude each other: a native app is public already');
  const registration = registrationOf(values);
  const name = required(values.name, '--name');
  const services = await open();
  await checkSigningKeyFor(services, registration.idTokenSignedResponseAlg);
  const subjectTypeGiven = subjectType(values['subject-type']);
  // The secret its people's identifiers come from, made first where no server
  // made it yet: once a pairwise client exists, none is ever made again (keys/server-secrets.ts).
  if (subjectTypeGiven === 'pairwise') await services.subjects();
  const created = await services.clients.create({
    ...registration,
    name,
    redirectUris: registration.redirectUris ?? [],
    public: Boolean(values.public),
    native: Boolean(values.native),
    subjectType: subjectTypeGiven,
  });
  // As a registration response (RFC 7591 §3.2.1): the id, the secret, then what was registered.
  if (values.json) return io.out(json({ ...created, ...clientJson(await services.clients.find(created.client_id)) }));
  io.out(`client_id:     ${created.client_id}\n`);
  if (created.client_secret) io.out(`client_secret: ${created.client_secret}\n(shown once: only a hash is stored)\n`);
};

export const clientUpdate: Command = async (args, open, io) => {
  const [clientId, rest] = leadingArgument(args, 'expected the CLIENT_ID first: client update CLIENT_ID [options]');
  const { values } = parse(rest, { ...UPDATE_OPTIONS, 'subject-type': { type: 'string' } });
  if (values['subject-type'] !== undefined) {
    throw new UsageError("--subject-type is a client's for good (client create): another would give everyone another sub at the app, which would know none of its people again; register a new client for it");
  }
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

function subjectType(value: unknown): SubjectType | undefined {
  if (value === undefined) return undefined;
  if (value !== 'public' && value !== 'pairwise') throw new UsageError('--subject-type must be public or pairwise');
  return value;
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
  require_pushed_authorization_requests: client.requirePar,
  dpop_bound_access_tokens: client.requireDpop,
  require_signed_request_object: client.requireJar,
  subject_type: client.subjectType,
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
      ['subjects', client.sector ? `pairwise, made for ${client.sector}` : 'public (the user id)'],
      ['requires', [client.requirePar && 'pushed requests (PAR)', client.requireDpop && 'DPoP proofs', client.requireJar && 'signed requests (JAR)'].filter(Boolean).join(', ') || undefined],
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
