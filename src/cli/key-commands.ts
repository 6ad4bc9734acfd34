// `portcullis keys …`: the signing keys, listed, rotated and retired.
import { keepPublishedFor, listSigningKeys, retireSigningKey, rotateSigningKeys, type KeyInfo } from '../keys/signing-keys.js';
import { parse } from './arguments.js';
import { json, type Command, type Io } from './command.js';

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
          signed_nothing: key.signedNothing,
        })),
      ),
    );
  }
  for (const key of keys) {
    // A key replaced while it waited is published as long as any, yet signed nothing: retire says so, and so does this.
    const replaced = key.signedNothing && key.status === 'published' ? ' (replaced before it signed: may be retired now)' : '';
    const until =
      key.status === 'next'
        ? `  signs from ${key.activatesAt.toISOString()}`
        : key.publishUntil
          ? `  published until ${key.publishUntil.toISOString()}${replaced}`
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
