// The baseline: a bare oidc-provider with its built-in in-memory adapter and the
// client Portcullis serves, configured like Portcullis where the benchmarked
// endpoints depend on it (opaque tokens, client_secret_basic, refresh-token
// rotation, the same introspection policy, ES256 ID tokens, the same lifetimes).
// Env: PORT, ISSUER, BASELINE_CLIENT (the client's metadata as JSON, with its secret).
import http from 'node:http';
import { exportJWK, generateKeyPair } from 'jose';
import Provider, { type ClientMetadata } from 'oidc-provider';
// The built-in in-memory adapter, given a larger store: its default LRU holds
// 1000 entries, fewer than the refresh-token pool, and would evict it.
// @ts-expect-error internal module without a declaration file
import MemoryAdapter from 'oidc-provider/lib/adapters/memory_adapter.js';
// @ts-expect-error internal module without a declaration file
import LRU from 'oidc-provider/lib/helpers/lru.js';

const client = JSON.parse(process.env.BASELINE_CLIENT ?? '') as ClientMetadata;
const accountId = '00000000-0000-4000-8000-000000000001';
const { privateKey } = await generateKeyPair('ES256', { extractable: true });

const store = new LRU({ maxSize: 10_000_000 });

const provider = new Provider(process.env.ISSUER!, {
  adapter: (model: string) => new MemoryAdapter(model, store),
  clients: [client],
  findAccount: async (_ctx, sub) => (sub === accountId ? { accountId, claims: () => ({ sub, email: 'baseline@example.com', email_verified: true }) } : undefined),
  claims: { openid: ['sub'], profile: ['name', 'updated_at'], email: ['email', 'email_verified'] },
  scopes: ['openid', 'offline_access', 'profile', 'email'],
  conformIdTokenClaims: true,
  responseTypes: ['code'],
  pkce: { required: (_ctx, c) => c.clientAuthMethod === 'none' },
  cookies: { keys: ['baseline-cookie-key-baseline-cookie-key'] },
  jwks: { keys: [{ ...(await exportJWK(privateKey)), alg: 'ES256', use: 'sig', kid: 'baseline-es256' }] as never },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true, allowedPolicy: async (_ctx, c, token) => token.clientId === c.clientId },
    revocation: { enabled: true, allowedPolicy: async (_ctx, c, token) => token.clientId === c.clientId },
  },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  issueRefreshToken: async (_ctx, c, code) => c.grantTypeAllowed('refresh_token') && code.scopes.has('offline_access'),
  rotateRefreshToken: true,
  ttl: { AccessToken: 3600, ClientCredentials: 3600, IdToken: 3600, AuthorizationCode: 60, RefreshToken: 14 * 86400, Grant: 365 * 86400, Session: 14 * 86400, Interaction: 3600 },
});

// The refresh-token pool: minted through the provider's own models, as a code
// exchange would, one grant per token (like separate people and devices; the
// memory adapter's per-grant index costs O(tokens in the grant) per save). The
// benchmarked refresh_token requests then go through the real token endpoint.
provider.use(async (ctx, next) => {
  if (ctx.method !== 'POST' || ctx.path !== '/__bench/refresh-tokens') return next();
  let raw = '';
  for await (const chunk of ctx.req) raw += chunk;
  const { count, scope } = JSON.parse(raw) as { count: number; scope: string };
  const found = await provider.Client.find(String(client.client_id));
  const tokens: string[] = [];
  for (let i = 0; i < count; i++) {
    const grant = new provider.Grant({ accountId, clientId: found!.clientId });
    grant.addOIDCScope(scope);
    const grantId = await grant.save();
    const token = new provider.RefreshToken({
      accountId,
      client: found!,
      grantId,
      gty: 'authorization_code',
      scope,
      authTime: Math.floor(Date.now() / 1000),
      rotations: 0,
    });
    tokens.push(await token.save());
  }
  ctx.body = { tokens };
});

const server = http.createServer(provider.callback());
server.keepAliveTimeout = 65_000;
server.listen(Number(process.env.PORT), '127.0.0.1');
process.on('SIGTERM', () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
});
