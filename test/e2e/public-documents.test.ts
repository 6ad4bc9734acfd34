// Discovery and the JWKS may be kept by whoever fetches them (and by caches
// between), for as long as key rotation allows, and refetched cheaply.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startPortcullis, type TestPortcullis } from '../support/portcullis.js';
import { basicAuth, REDIRECT_URI } from '../support/relying-party.js';

let pc: TestPortcullis;

beforeAll(async () => {
  pc = await startPortcullis({ KEY_REFRESH_INTERVAL: '1s', KEY_ACTIVATION_DELAY: '90s' });
});

afterAll(async () => {
  expect(pc?.errors ?? []).toEqual([]);
  await pc?.close();
});

const get = (path: string, headers: Record<string, string> = {}) => fetch(`${pc.issuer}${path}`, { headers });

describe('discovery says what works', () => {
  it('names what a client may use, and no claim that is never issued', async () => {
    const metadata = (await (await get('/.well-known/openid-configuration')).json()) as Record<string, unknown>;
    expect(metadata).toMatchObject({
      issuer: pc.issuer,
      authorization_endpoint: `${pc.issuer}/auth`,
      token_endpoint: `${pc.issuer}/token`,
      userinfo_endpoint: `${pc.issuer}/me`,
      jwks_uri: `${pc.issuer}/jwks`,
      response_types_supported: ['code'],
      // Pairwise for a client made with --subject-type pairwise (pairwise-subjects.test.ts).
      subject_types_supported: ['public', 'pairwise'],
      code_challenge_methods_supported: ['S256'],
      token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'none'],
      // RFC 8414 §2 would read a missing list as client_secret_basic alone.
      introspection_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'private_key_jwt'],
      revocation_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'none'],
      prompt_values_supported: ['none', 'login', 'consent', 'select_account'],
      // Request objects (OIDC Core §6) by value only, signed with a client's key (request-objects.test.ts).
      request_parameter_supported: true,
      request_uri_parameter_supported: false,
    });
    // OpenID Connect Core §15.1: RS256 is mandatory to implement.
    expect(metadata.id_token_signing_alg_values_supported).toContain('RS256');
    // sid too: every ID token carries it (Back-Channel Logout 1.0 §2.1).
    expect(metadata.claims_supported).toEqual(expect.arrayContaining(['sub', 'amr', 'name', 'email', 'email_verified', 'auth_time', 'iss', 'sid']));
  });

  it('an ISSUER written with a trailing slash is served as the origin without it, as the iss of every token', async () => {
    const port = await freePort();
    const slashed = await startPortcullis({ PORT: String(port), ISSUER: `http://localhost:${port}/` });
    try {
      const metadata = (await (await fetch(`http://localhost:${port}/.well-known/openid-configuration`)).json()) as Record<string, unknown>;
      expect(metadata).toMatchObject({ issuer: `http://localhost:${port}`, token_endpoint: `http://localhost:${port}/token`, jwks_uri: `http://localhost:${port}/jwks` });
    } finally {
      await slashed.close();
    }
  });
});

describe('cacheable public documents', () => {
  it('any page may read discovery and the JWKS, one copy for every origin: Access-Control-Allow-Origin *, no Vary: Origin', async () => {
    for (const path of ['/.well-known/openid-configuration', '/.well-known/oauth-authorization-server', '/jwks']) {
      for (const headers of [{}, { origin: 'https://spa.example' }, { origin: 'null' }] as Record<string, string>[]) {
        const response = await get(path, headers);
        expect([path, headers, response.status, response.headers.get('access-control-allow-origin')]).toEqual([path, headers, 200, '*']);
        expect(response.headers.get('vary') ?? '').not.toMatch(/origin/i);
        const revalidated = await get(path, { ...headers, 'if-none-match': response.headers.get('etag')! });
        expect([revalidated.status, revalidated.headers.get('access-control-allow-origin')]).toEqual([304, '*']);
      }
    }
  });

  it('the JWKS may be kept until a key published since could sign, and a refetch with its ETag is a 304', async () => {
    const first = await get('/jwks');
    expect(first.status).toBe(200);
    // KEY_ACTIVATION_DELAY − KEY_REFRESH_INTERVAL: a copy taken before a new key reached every instance is gone before it signs.
    expect(first.headers.get('cache-control')).toBe('public, max-age=89, must-revalidate');
    const etag = first.headers.get('etag')!;
    expect(etag).toMatch(/^"[\w-]+"$/);
    const kids = ((await first.json()) as { keys: { kid: string }[] }).keys.map((key) => key.kid);
    const discovery = await get('/.well-known/openid-configuration');
    const discoveryEtag = discovery.headers.get('etag')!;
    const algorithms = ((await discovery.json()) as { id_token_signing_alg_values_supported: string[] }).id_token_signing_alg_values_supported;
    expect(algorithms.length).toBeGreaterThan(1);
    expect(algorithms).toEqual([...algorithms].sort());

    const again = await get('/jwks', { 'if-none-match': etag });
    expect(again.status).toBe(304);
    expect(await again.text()).toBe('');
    expect((await get('/jwks', { 'if-none-match': '"something-else"' })).status).toBe(200);
    // A compressing proxy makes the tag weak (nginx's gzip): If-None-Match compares weakly (RFC 9110 §13.1.2).
    expect((await get('/jwks', { 'if-none-match': `W/${etag}` })).status).toBe(304);
    expect((await get('/jwks', { 'if-none-match': `"x", W/${etag}` })).status).toBe(304);

    // A rotation publishes new keys: the document, and so its ETag, changes on the next refresh.
    expect((await pc.cli(['keys', 'rotate'])).code).toBe(0);
    let rotated: Response | undefined;
    for (let waited = 0; waited < 150; waited++) {
      rotated = await get('/jwks', { 'if-none-match': etag });
      if (rotated.status === 200) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(rotated!.status).toBe(200);
    expect(rotated!.headers.get('etag')).not.toBe(etag);
    const published = ((await rotated!.json()) as { keys: { kid: string }[] }).keys.map((key) => key.kid);
    expect(published).toEqual(expect.arrayContaining(kids));
    expect(published.length).toBeGreaterThan(kids.length);
    // Discovery did not change with the keys: its algorithm lists keep their order, and a revalidation is a 304.
    expect((await get('/.well-known/openid-configuration', { 'if-none-match': discoveryEtag })).status).toBe(304);
  });

  it('a rotated key that begins to sign leaves the JWKS, and so its ETag, as they were: a revalidation is a 304', async () => {
    const server = await startPortcullis({ KEY_REFRESH_INTERVAL: '1s', KEY_ACTIVATION_DELAY: '10s' });
    try {
      const api = 'https://stable.example.com';
      expect((await server.cli(['api', 'create', '--identifier', api, '--scope', 'read:things', '--token-format', 'jwt'])).code).toBe(0);
      const robot = await server.createClient({ name: 'Robot', grantTypes: ['client_credentials'], scope: 'read:things' });
      const signer = async () => {
        const response = await fetch(`${server.issuer}/token`, {
          method: 'POST',
          headers: { authorization: basicAuth(robot.client_id, robot.client_secret!) },
          body: new URLSearchParams({ grant_type: 'client_credentials', resource: api, scope: 'read:things' }),
        });
        const { access_token } = (await response.json()) as { access_token: string };
        return (JSON.parse(Buffer.from(access_token.split('.')[0]!, 'base64url').toString()) as { kid: string }).kid;
      };
      const before = await signer();
      expect((await server.cli(['keys', 'rotate'])).code).toBe(0);
      // Published within a refresh interval, signing once the delay has passed.
      let published: Response | undefined;
      for (let waited = 0; waited < 100; waited++) {
        published = await fetch(`${server.issuer}/jwks`);
        if (((await published.clone().json()) as { keys: unknown[] }).keys.length > 2) break;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      const etag = published!.headers.get('etag')!;
      // Taken before the new key signs, or the 304 below would prove nothing.
      expect(await signer()).toBe(before);
      let after = before;
      for (let waited = 0; waited < 250 && after === before; waited++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        after = await signer();
      }
      expect(after).not.toBe(before);
      const revalidated = await fetch(`${server.issuer}/jwks`, { headers: { 'if-none-match': etag } });
      expect(revalidated.status).toBe(304);
    } finally {
      expect(server.errors).toEqual([]);
      await server.close();
    }
  });

  it('discovery may be kept for an hour, with an ETag', async () => {
    const first = await get('/.well-known/openid-configuration');
    expect(first.status).toBe(200);
    expect(first.headers.get('cache-control')).toBe('public, max-age=3600, must-revalidate');
    const etag = first.headers.get('etag')!;
    expect(etag).toBeTruthy();
    const again = await fetch(`${pc.issuer}/.well-known/openid-configuration`, { method: 'HEAD', headers: { 'if-none-match': etag } });
    expect(again.status).toBe(304);
    // The same document at RFC 8414's address, and the JWKS whatever the case of its path: cached alike.
    const oauth = await get('/.well-known/oauth-authorization-server');
    expect(oauth.headers.get('cache-control')).toBe('public, max-age=3600, must-revalidate');
    expect(((await oauth.json()) as { claims_supported: string[] }).claims_supported).toContain('sid');
    expect((await get('/JWKS')).headers.get('cache-control')).toBe('public, max-age=89, must-revalidate');
  });

  it('protocol responses are not made cacheable', async () => {
    const token = await fetch(`${pc.issuer}/token`, { method: 'POST' });
    expect(token.headers.get('cache-control') ?? '').not.toMatch(/public/);
    expect(token.headers.get('etag')).toBeNull();
    const unknown = await get('/jwks/other');
    expect(unknown.headers.get('cache-control') ?? '').not.toMatch(/public/);
  });
});
