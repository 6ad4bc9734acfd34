// The provider's Client model, backed by the `clients` table. oidc-provider
// looks up any client_id it does not know statically through this adapter's
// `find`, and caches the validated client by a hash of what we return. A
// disabled client (`portcullis client disable`) is not found.
import type { Adapter, AdapterPayload } from 'oidc-provider';
import { verifyingJwks } from '../clients/client-keys.js';
import type { StoredMetadata } from '../clients/clients.js';
import type { Sql } from '../persistence/database.js';
import type { NotifiedCache } from '../persistence/notified-cache.js';
import { storable } from '../persistence/nul.js';

const FIND_CLIENT = {
  name: 'client-find',
  text: `SELECT c.client_id, c.name, c.metadata, c.client_secret_hash, c.pairwise_sector, a.identifier AS api,
                floor(extract(epoch FROM a.created_at))::int AS api_since,
                floor(extract(epoch FROM c.revoked_at))::int + 1 AS tokens_since
         FROM clients c LEFT JOIN apis a ON a.client_id = c.client_id
         WHERE c.client_id = $1 AND c.disabled_at IS NULL`,
} as const;

interface ClientRow {
  client_id: string;
  name: string;
  metadata: unknown;
  client_secret_hash: string | null;
  pairwise_sector: string | null;
  api: string | null;
  api_since: number | null;
  tokens_since: number | null;
}

export class ClientAdapter implements Adapter {
  constructor(
    private readonly sql: Sql,
    private readonly cache: NotifiedCache<AdapterPayload>,
  ) {}

  // The cached value is shared by every request: frozen (see load), so that
  // nobody can change it for the others; oidc-provider copies what it keeps.
  find(id: string): Promise<AdapterPayload | undefined> {
    // A client_id with U+0000 names no client (see persistence/nul.ts): invalid_client, not a database error.
    if (!storable(id)) return Promise.resolve(undefined);
    return this.cache.get(id, () => this.load(id));
  }

  // One round trip on the pg pool (see persistence/database.ts), the API join included.
  private async load(id: string): Promise<AdapterPayload | undefined> {
    const { rows } = await this.sql.query<ClientRow>(FIND_CLIENT, [id]);
    const row = rows[0];
    if (!row) return undefined;
    // The subject type is the column's, whatever the metadata says (below).
    const { subject_type: _byTheColumn, ...metadata } = row.metadata as unknown as StoredMetadata;
    return deepFreeze({
      ...metadata,
      client_id: row.client_id,
      client_name: row.name,
      ...(metadata.jwks ? { jwks: verifyingJwks(metadata.jwks) } : {}),
      // The digest stands in for the secret; see compareDigestedSecrets in client-model.ts.
      ...(row.client_secret_hash ? { client_secret: row.client_secret_hash } : {}),
      // An API's credentials carry when the API was made: a token for an
      // earlier API under the same identifier is not this one's (configuration.ts, introspection).
      ...(row.api ? { api: row.api, api_since: row.api_since } : {}),
      // Enabled again after a disable: what was issued to it before the
      // disable is not honoured (configuration.ts, introspection). Tokens
      // count whole seconds: one of the disable's own second came before it
      // (none is issued to a disabled client), hence the second after.
      ...(row.tokens_since !== null ? { tokens_since: row.tokens_since } : {}),
      // Pairwise by its column, whatever the metadata says (an earlier
      // release's `client update` drops subject_type from it; a hand-made row
      // may say pairwise with no sector), for the sector it was made for
      // (accounts/subjects.ts sectorOf): the server and the CLI agree.
      ...(row.pairwise_sector !== null ? { subject_type: 'pairwise', pairwise_sector: row.pairwise_sector } : {}),
    }) as AdapterPayload;
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

function deepFreeze<T extends object>(value: T): T {
  for (const member of Object.values(value)) if (member && typeof member === 'object') deepFreeze(member);
  return Object.freeze(value);
}
