// The provider's Client model, backed by the `clients` table. oidc-provider
// looks up any client_id it does not know statically through this adapter's
// `find`, and caches the validated client by a hash of what we return.
import type { Adapter, AdapterPayload } from 'oidc-provider';
import type { StoredMetadata } from '../clients/clients.js';
import type { Prisma } from '../persistence/database.js';

export class ClientAdapter implements Adapter {
  constructor(private readonly prisma: Prisma) {}

  async find(id: string): Promise<AdapterPayload | undefined> {
    const row = await this.prisma.client.findUnique({
      where: { clientId: id },
      select: { clientId: true, name: true, metadata: true, clientSecretHash: true, api: { select: { identifier: true } } },
    });
    if (!row) return undefined;
    const metadata = row.metadata as unknown as StoredMetadata;
    return {
      ...metadata,
      client_id: row.clientId,
      client_name: row.name,
      // The digest stands in for the secret; see compareClientSecret in configuration.ts.
      ...(row.clientSecretHash ? { client_secret: row.clientSecretHash } : {}),
      ...(row.api ? { api: row.api.identifier } : {}),
    } as AdapterPayload;
  }

  // Clients are managed with the CLI; dynamic registration is not enabled, so
  // the provider never writes clients.
  async upsert(): Promise<void> {
    throw new Error('clients are managed with `portcullis client`');
  }

  async destroy(): Promise<void> {
    throw new Error('clients are managed with `portcullis client`');
  }

  async consume(): Promise<void> {}
  async findByUid(): Promise<undefined> {}
  async findByUserCode(): Promise<undefined> {}
  async revokeByGrantId(): Promise<void> {}
}
