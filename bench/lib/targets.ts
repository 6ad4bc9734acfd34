// The two servers under load, each with its way of making unused refresh
// tokens: Portcullis through its real consent flow, the baseline (a bare
// oidc-provider, in-memory adapter, the same client) minting them directly.
import path from 'node:path';
import { authorize, Browser, consentAgain, type Client, type Person } from './browser.js';
import { REDIRECT_URI, REFRESH_SCOPE } from './fixtures.js';
import type { Target } from './measurement.js';
import { BENCH_DIR, cliJson, freePort, Service } from './processes.js';

/**
 * Refresh tokens for Portcullis come from the real flow: each browser signs in
 * once (offline_access, prompt=consent), then repeats consent → code → token.
 */
export function portcullisTarget(issuer: string, service: Service, client: Client, people: Person[], connections: number): Target {
  const browsers: Browser[] = [];
  const refreshParams = { client, redirectUri: REDIRECT_URI, scope: REFRESH_SCOPE, prompt: 'consent' };
  return {
    name: 'portcullis',
    url: issuer,
    service,
    client,
    expectedRefreshRate: 600,
    poolMargin: 1.6,
    async refreshTokens(count) {
      const tokens: string[] = [];
      const wanted = Math.min(connections, Math.max(1, count));
      const signedIn = browsers.length;
      await Promise.all(
        Array.from({ length: Math.max(0, wanted - signedIn) }, async (_, i) => {
          const browser = new Browser(issuer);
          const first = await authorize(browser, refreshParams, people[(signedIn + i) % people.length]!);
          if (!first.refresh_token) throw new Error('the code exchange issued no refresh token');
          tokens.push(first.refresh_token);
          browsers.push(browser);
        }),
      );
      let remaining = count - tokens.length;
      await Promise.all(
        browsers.slice(0, wanted).map(async (browser) => {
          while (remaining > 0) {
            remaining--;
            const issued = await consentAgain(browser, refreshParams);
            if (!issued.refresh_token) throw new Error('the code exchange issued no refresh token');
            tokens.push(issued.refresh_token);
          }
        }),
      );
      return tokens.slice(0, count);
    },
  };
}

/** Starts the baseline with the metadata Portcullis registered for `client` (read back through the CLI). */
export async function startBaseline(client: Client, cliEnv: Record<string, string>, nodeArgs: string[]): Promise<Target> {
  const listed = await cliJson<Array<{ client_id: string; redirect_uris: string[]; post_logout_redirect_uris: string[]; grant_types: string[]; scope: string }>>(['client', 'list'], cliEnv);
  const metadata = listed.find((entry) => entry.client_id === client.client_id)!;
  const basePort = await freePort();
  const baseUrl = `http://127.0.0.1:${basePort}`;
  const baseline = await Service.start({
    name: 'baseline',
    script: path.join(BENCH_DIR, 'baseline.ts'),
    nodeArgs,
    env: {
      PORT: String(basePort),
      ISSUER: baseUrl,
      BASELINE_CLIENT: JSON.stringify({
        client_id: metadata.client_id,
        client_secret: client.client_secret,
        redirect_uris: metadata.redirect_uris,
        post_logout_redirect_uris: metadata.post_logout_redirect_uris,
        grant_types: metadata.grant_types,
        response_types: ['code'],
        // The OpenID Connect scopes the baseline knows (an API's scopes are Portcullis's own).
        scope: metadata.scope.split(' ').filter((scope) => ['openid', 'offline_access', 'profile', 'email'].includes(scope)).join(' '),
        token_endpoint_auth_method: 'client_secret_basic',
        id_token_signed_response_alg: 'ES256',
      }),
    },
    readyUrl: `${baseUrl}/.well-known/openid-configuration`,
  });
  return {
    name: 'baseline',
    url: baseUrl,
    service: baseline,
    client,
    expectedRefreshRate: 3000,
    poolMargin: 2.5,
    async refreshTokens(count) {
      const tokens: string[] = [];
      while (tokens.length < count) {
        const response = await fetch(`${baseUrl}/__bench/refresh-tokens`, {
          method: 'POST',
          body: JSON.stringify({ count: Math.min(5000, count - tokens.length), scope: REFRESH_SCOPE }),
        });
        if (!response.ok) throw new Error(`baseline pool: ${response.status} ${await response.text()}`);
        tokens.push(...((await response.json()) as { tokens: string[] }).tokens);
      }
      return tokens;
    },
  };
}
