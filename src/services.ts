// Opens the database and builds the services both fronts (HTTP app, CLI) use.
import { Accounts } from './accounts/accounts.js';
import { PasswordHasher } from './accounts/passwords.js';
import { Apis } from './apis/apis.js';
import { Clients } from './clients/clients.js';
import type { Config } from './config.js';
import { ensureSigningKeys } from './keys/signing-keys.js';
import { openDatabase, type Database } from './persistence/database.js';

export interface Services {
  config: Config;
  database: Database;
  accounts: Accounts;
  apis: Apis;
  clients: Clients;
  close(): Promise<void>;
}

/** Opens the database, applies migrations and makes sure signing keys exist. */
export async function openServices(config: Config): Promise<Services> {
  const database = await openDatabase(config.database);
  try {
    await database.migrate();
    await ensureSigningKeys(database.prisma, config.signingAlg);
  } catch (error) {
    await database.close();
    throw error;
  }
  return {
    config,
    database,
    accounts: new Accounts(database.prisma, database.sql, new PasswordHasher(config.argon2)),
    apis: new Apis(database.prisma),
    clients: new Clients(database.prisma),
    close: () => database.close(),
  };
}
