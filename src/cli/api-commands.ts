// `portcullis api …`: the APIs (resource servers) tokens may be issued for.
import type { ApiView } from '../apis/apis.js';
import { leadingArgument, parse, required } from './arguments.js';
import { json, type Command } from './command.js';
import { UsageError } from './usage.js';

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
