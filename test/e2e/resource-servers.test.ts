// APIs protected by Portcullis: registered resource servers, JWT and opaque
// access tokens, introspection with the API's own credentials, the example API.
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRemoteJWKSet, decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, jwtVerify, SignJWT } from 'jose';
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256 } from '../support/digest.js';
import { serveExampleApi } from '../support/example-api.js';
import { freePort, runCli, startPortcullis, type TestPortcullis } from '../support/portcullis.js';
import { allow, authorizationRequest, basicAuth, discover, logIn, pageKind, REDIRECT_URI, signIn, visit } from '../support/relying-party.js';
import { UserAgent } from '../support/user-agent.js';

const ORDERS = 'https://orders.example.com';
const BILLING = 'https://billing.example.com';
const REPORTS = 'https://reports.example.com';
const SHORT = 'https://short-lived.example.com';
const dana = { email: 'dana@example.com', password: 'danas password' };

interface ApiCredentials {
  identifier: string;
  client_id: string;
  client_secret: string;
}

let pc: TestPortcullis;
let web: oidc.Configuration;
let machine: oidc.Configuration;
let machineId: string;
let machineSecret: string;
const apis: Record<string, ApiCredentials> = {};
const servers: Server[] = [];
let ordersApi: string;
let billingApi: string;

async function createApi(args: string[]): Promise<ApiCredentials> {
  const result = await pc.cli(['api', 'create', ...args, '--json']);
  if (result.code !== 0) throw new Error(result.stderr);
  return JSON.parse(result.stdout);
}

const serve = (options: Parameters<typeof serveExampleApi>[0]) => serveExampleApi(options, servers);

/**
 * A statement run from outside the server, as another process would (rows
 * as JSON text: `row`). Literal statements: the embedded database's socket
 * takes no parameters.
 */
async function outside(statement: string): Promise<{ row: string }[]> {
  const db = pc.outsideConnection();
  await db.connect();
  try {
    return (await db.query<{ row: string }>(statement)).rows;
  } finally {
    await db.end();
  }
}

function call(base: string, token?: string, method = 'GET') {
  return fetch(`${base}/orders`, { method, headers: token ? { authorization: `Bearer ${token}` } : {} });
}

beforeAll(async () => {
  // Activation waits out jose's default 30 s JWKS refetch cooldown (see the rotation test).
  pc = await startPortcullis({ KEY_REFRESH_INTERVAL: '1s', KEY_ACTIVATION_DELAY: '31s' });
  apis.orders = await createApi(['--identifier', ORDERS, '--name', 'Orders', '--scope', 'read:orders=See your orders', '--scope', 'write:orders=Place orders for you', '--token-format', 'jwt']);
  apis.billing = await createApi(['--identifier', BILLING, '--scope', 'read:orders', '--scope', 'read:invoices', '--token-format', 'opaque']);
  apis.reports = await createApi(['--identifier', REPORTS, '--scope', 'read:reports', '--token-format', 'opaque']);
  // Lifetimes are whole seconds: 3 s leaves room to use a token before it expires.
  apis.short = await createApi(['--identifier', SHORT, '--scope', 'read:orders', '--token-format', 'jwt', '--ttl', '3s']);
  await pc.createUser(dana.email, dana.password, 'Dana');
  const webClient = await pc.createClient({
    name: 'Storefront',
    redirectUris: [REDIRECT_URI],
    scope: 'openid profile offline_access read:orders write:orders read:invoices',
  });
  web = await discover(pc.issuer, webClient.client_id, webClient.client_secret);
  const machineClient = await pc.createClient({ name: 'Warehouse robot', grantTypes: ['client_credentials'], scope: 'read:orders read:invoices' });
  machineId = machineClient.client_id;
  machineSecret = machineClient.client_secret!;
  machine = await discover(pc.issuer, machineClient.client_id, machineClient.client_secret);
  ordersApi = await serve({ issuer: pc.issuer, audience: ORDERS });
  billingApi = await serve({
    issuer: pc.issuer,
    audience: BILLING,
    introspection: { clientId: apis.billing.client_id, clientSecret: apis.billing.client_secret },
  });
});

afterAll(async () => {
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  expect(pc?.errors ?? []).toEqual([]);
  await pc?.close();
});

const machineToken = (resource: string, scope: string) => oidc.clientCredentialsGrant(machine, { resource, scope });


const API_TOKEN_AT_USERINFO =
  'the access token is for an API (its audience), not for UserInfo, which takes a token of a sign-in with the openid scope (a refresh naming OpenID Connect scopes only gets one)';

/** UserInfo's answer to a bearer token: status, body and challenge. */
async function userinfoWith(token: string) {
  const response = await fetch(`${pc.issuer}/me`, { headers: { authorization: `Bearer ${token}` } });
  return { status: response.status, body: await response.json(), challenge: response.headers.get('www-authenticate') };
}

describe('registered APIs and resource indicators', () => {
  it('consent names the API scopes in plain words, and the token is a JWT for that API only', async () => {
    const ua = new UserAgent();
    const request = await authorizationRequest(web, 'openid read:orders read:invoices', { resource: ORDERS });
    const consent = await signIn(ua, await visit(ua, request.url), dana.email, dana.password);
    expect(pageKind(consent)).toBe('consent');
    expect(consent.html).toContain('See your orders (Orders)');
    // What the page shows, not the request it can repeat for "Not you?" (its hidden fields).
    const shown = consent.html.replace(/<form id="switch-account"[\s\S]*?<\/form>/, '');
    expect(shown).not.toContain('read:invoices');

    const { tokens } = await logIn(ua, web, 'openid read:orders read:invoices', dana, { resource: ORDERS });
    const header = decodeProtectedHeader(tokens.access_token);
    const claims = decodeJwt(tokens.access_token);
    expect(header).toMatchObject({ typ: 'at+jwt', alg: 'ES256' });
    expect(claims).toMatchObject({ iss: pc.issuer, aud: ORDERS, scope: 'read:orders', client_id: web.clientMetadata().client_id });
    for (const claim of ['sub', 'exp', 'iat', 'jti']) expect(claims[claim]).toBeDefined();
    expect(claims.sub).toBe(tokens.claims()!.sub);

    // A resource server verifies it offline: the JWKS is all it needs.
    await jwtVerify(tokens.access_token, createRemoteJWKSet(new URL(`${pc.issuer}/jwks`)), { issuer: pc.issuer, audience: ORDERS, typ: 'at+jwt' });
    const read = await call(ordersApi, tokens.access_token);
    expect(read.status).toBe(200);
    // Revoking it, as libraries do at sign-out, is answered 200 (RFC 7009
    // §2.2): the client cannot tell it from an opaque token. Introspection
    // says it is inactive from then on; an API verifying it alone takes it
    // until it expires. Another client may not revoke it (RFC 7009 §2.1), as
    // for a stored token.
    const orders = await discover(pc.issuer, apis.orders.client_id, apis.orders.client_secret);
    await expect(oidc.tokenRevocation(machine, tokens.access_token)).rejects.toMatchObject({ error: 'invalid_request', error_description: 'client is not authorized to revoke the presented token' });
    // A public client, which proves no identity, is answered 200 and revokes nothing.
    const spa = await pc.createClient({ name: 'Some SPA', public: true, redirectUris: [REDIRECT_URI], scope: 'openid' });
    const byPublic = await fetch(`${pc.issuer}/token/revocation`, { method: 'POST', body: new URLSearchParams({ client_id: spa.client_id, token: tokens.access_token }) });
    expect([byPublic.status, await byPublic.json()]).toEqual([200, {}]);
    expect((await oidc.tokenIntrospection(orders, tokens.access_token)).active).toBe(true);
    const logged = pc.log.length;
    await expect(oidc.tokenRevocation(web, tokens.access_token, { token_type_hint: 'access_token' })).resolves.toBeUndefined();
    expect(await oidc.tokenIntrospection(orders, tokens.access_token)).toEqual({ active: false });
    const audit = pc.log.slice(logged).map((line) => JSON.parse(line)).filter((line) => line.message === 'tokens revoked');
    expect(audit).toEqual([expect.objectContaining({ route: 'revocation', client: web.clientMetadata().client_id, presented: 'AccessToken', format: 'jwt' })]);
    expect(await oidc.tokenIntrospection(web, tokens.access_token)).toEqual({ active: false });
    // Revoked again: the same answer.
    await expect(oidc.tokenRevocation(web, tokens.access_token)).resolves.toBeUndefined();
    expect((await call(ordersApi, tokens.access_token)).status).toBe(200);
    const write = await call(ordersApi, tokens.access_token, 'POST');
    expect(write.status).toBe(403);
    expect(write.headers.get('www-authenticate')).toBe('Bearer realm="api", error="insufficient_scope", error_description="requires write:orders", scope="write:orders"');
  });

  it('asked again for what a consent already holds, the page names the scopes of every API the request names', async () => {
    // A person of its own: the consent given here would skip other tests' consent pages.
    const erin = { email: 'erin@example.com', password: 'erins password' };
    await pc.createUser(erin.email, erin.password, 'Erin');
    const ua = new UserAgent();
    const scope = 'openid read:orders read:invoices';
    const first = await authorizationRequest(web, scope, { resource: ORDERS });
    first.url.searchParams.append('resource', BILLING);
    const consent = await signIn(ua, await visit(ua, first.url), erin.email, erin.password);
    expect(pageKind(consent)).toBe('consent');
    expect(pageKind(await allow(ua, consent))).toBe('callback');

    const again = await authorizationRequest(web, scope, { resource: ORDERS, prompt: 'consent' });
    again.url.searchParams.append('resource', BILLING);
    const repeated = await visit(ua, again.url);
    expect(pageKind(repeated)).toBe('consent');
    const shown = repeated.html.replace(/<form id="switch-account"[\s\S]*?<\/form>/, '');
    expect(shown).toContain('See your orders (Orders)');
    expect(shown).toContain('read:invoices” on billing.example.com');
  });

  it('an API scope taken from the client leaves its consents: given back, the person is asked for it again', async () => {
    const shop = await pc.createClient({ name: 'Narrowed shop', redirectUris: [REDIRECT_URI], scope: 'openid offline_access read:orders write:orders' });
    const shopRp = await discover(pc.issuer, shop.client_id, shop.client_secret);
    const ua = new UserAgent();
    const { tokens } = await logIn(ua, shopRp, 'openid offline_access read:orders write:orders', dana, { resource: ORDERS, prompt: 'consent' });
    expect(decodeJwt(tokens.access_token).scope).toBe('read:orders write:orders');
    // The client's other consents to the API are untouched by another client's change.
    const bystander = await logIn(new UserAgent(), web, 'openid offline_access read:orders write:orders', dana, { resource: ORDERS, prompt: 'consent' });

    expect((await pc.cli(['client', 'update', shop.client_id, '--scope', 'openid offline_access read:orders'])).code).toBe(0);
    const narrowed = await oidc.refreshTokenGrant(shopRp, tokens.refresh_token!, { resource: ORDERS });
    expect(decodeJwt(narrowed.access_token).scope).toBe('read:orders');
    expect((await pc.cli(['client', 'update', shop.client_id, '--scope', 'openid offline_access read:orders write:orders'])).code).toBe(0);
    const again = await oidc.refreshTokenGrant(shopRp, narrowed.refresh_token!, { resource: ORDERS });
    expect(decodeJwt(again.access_token).scope).toBe('read:orders');
    // Signed in already, the person still sees the consent page for the scope given back.
    const page = await visit(ua, (await authorizationRequest(shopRp, 'openid read:orders write:orders', { resource: ORDERS })).url);
    expect(pageKind(page)).toBe('consent');
    expect(page.html).toContain('Place orders for you');

    const other = await oidc.refreshTokenGrant(web, bystander.tokens.refresh_token!, { resource: ORDERS });
    expect(decodeJwt(other.access_token).scope).toBe('read:orders write:orders');
    // The API named, and none of its scopes asked for: said as client credentials say it.
    await expect(oidc.refreshTokenGrant(web, other.refresh_token!, { resource: ORDERS, scope: 'openid' })).rejects.toMatchObject({
      error: 'invalid_scope',
      error_description: `request at least one scope of ${ORDERS}`,
    });
    // Refused, it used nothing up: the refresh token still works.
    expect(decodeJwt((await oidc.refreshTokenGrant(web, other.refresh_token!, { resource: ORDERS })).access_token).scope).toBe('read:orders write:orders');
  });

  it('a code whose API scopes were taken away while it was in flight gets no token for the API, not one without a scope', async () => {
    const NARROWED = 'https://narrowed.example.com';
    await createApi(['--identifier', NARROWED, '--scope', 'narrow:read', '--scope', 'narrow:write']);
    const app = await pc.createClient({ name: 'Narrowed app', redirectUris: [REDIRECT_URI], scope: 'openid narrow:read narrow:write' });
    const appRp = await discover(pc.issuer, app.client_id, app.client_secret);
    const ua = new UserAgent();
    const code = async () => {
      const request = await authorizationRequest(appRp, 'openid narrow:read', { resource: NARROWED, prompt: 'consent' });
      const callback = await allow(ua, await visit(ua, request.url).then((page) => (pageKind(page) === 'login' ? signIn(ua, page, dana.email, dana.password) : page)));
      expect(pageKind(callback)).toBe('callback');
      return { url: new URL(callback.url), checks: { pkceCodeVerifier: request.verifier, expectedState: request.state, expectedNonce: request.nonce } };
    };
    // By the API: its scope consented to is gone from it.
    const first = await code();
    expect((await pc.cli(['api', 'update', NARROWED, '--scope', 'narrow:write'])).code).toBe(0);
    await expect(oidc.authorizationCodeGrant(appRp, first.url, first.checks, { resource: NARROWED })).rejects.toMatchObject({ error: 'invalid_target' });
    // By the client: it may no longer have the scope consented to.
    // (The API's update took the scope from the client too: both given back.)
    expect((await pc.cli(['api', 'update', NARROWED, '--scope', 'narrow:read', '--scope', 'narrow:write'])).code).toBe(0);
    expect((await pc.cli(['client', 'update', app.client_id, '--scope', 'openid narrow:read narrow:write'])).code).toBe(0);
    const second = await code();
    expect((await pc.cli(['client', 'update', app.client_id, '--scope', 'openid narrow:write'])).code).toBe(0);
    await expect(oidc.authorizationCodeGrant(appRp, second.url, second.checks, { resource: NARROWED })).rejects.toMatchObject({ error: 'invalid_target' });
    expect((await pc.cli(['api', 'delete', NARROWED])).code).toBe(0);
  });

  it('a refresh token whose own API scopes were taken away gets no token for the API, though the consent holds another of its scopes', async () => {
    const GROWN = 'https://grown.example.com';
    await createApi(['--identifier', GROWN, '--scope', 'grown:a', '--scope', 'grown:b']);
    const app = await pc.createClient({ name: 'Grown consent', redirectUris: [REDIRECT_URI], scope: 'openid offline_access grown:a grown:b' });
    const appRp = await discover(pc.issuer, app.client_id, app.client_secret);
    const ua = new UserAgent();
    // The consent grows over two sign-ins: grown:a (with a refresh token), then grown:b.
    const { tokens } = await logIn(ua, appRp, 'openid offline_access grown:a', dana, { resource: GROWN, prompt: 'consent' });
    expect(decodeJwt(tokens.access_token).scope).toBe('grown:a');
    const later = await logIn(ua, appRp, 'openid grown:b', dana, { resource: GROWN, prompt: 'consent' });
    expect(decodeJwt(later.tokens.access_token).scope).toBe('grown:b');
    // grown:a leaves the API: the consent keeps grown:b, which the refresh token never asked for.
    expect((await pc.cli(['api', 'update', GROWN, '--scope', 'grown:b'])).code).toBe(0);
    await expect(oidc.refreshTokenGrant(appRp, tokens.refresh_token!, { resource: GROWN })).rejects.toMatchObject({ error: 'invalid_target' });
    await expect(oidc.refreshTokenGrant(appRp, tokens.refresh_token!)).rejects.toMatchObject({ error: 'invalid_target' });
    // Nor does naming grown:b in the refresh get it: a refresh asks for a subset of its own token's scopes (RFC 6749 §6).
    await expect(oidc.refreshTokenGrant(appRp, tokens.refresh_token!, { resource: GROWN, scope: 'grown:b' })).rejects.toMatchObject({ error: 'invalid_scope' });
    // Refused, it used nothing up: what it holds without the API still works.
    expect((await oidc.refreshTokenGrant(appRp, tokens.refresh_token!, { scope: 'openid' })).scope).toBe('openid');
    expect((await pc.cli(['api', 'delete', GROWN])).code).toBe(0);
  });

  it('an unregistered resource is invalid_target', async () => {
    await expect(machineToken('https://unknown.example.com', 'read:orders')).rejects.toMatchObject({ error: 'invalid_target' });
  });
});

describe('client credentials', () => {
  it('a machine client gets a JWT for an API with the scopes it is allowed', async () => {
    const tokens = await machineToken(ORDERS, 'read:orders');
    expect(decodeJwt(tokens.access_token)).toMatchObject({ aud: ORDERS, scope: 'read:orders', sub: machineId, client_id: machineId });
    expect((await call(ordersApi, tokens.access_token)).status).toBe(200);
  });

  it('asking for a scope the client is not allowed is invalid_scope', async () => {
    await expect(machineToken(ORDERS, 'write:orders')).rejects.toMatchObject({ error: 'invalid_scope' });
  });

  it('an API created later that reuses a scope name does not give it to clients made before it', async () => {
    const robot = await pc.createClient({ name: 'Invoice robot', grantTypes: ['client_credentials'], scope: 'read:invoices' });
    const robotRp = await discover(pc.issuer, robot.client_id, robot.client_secret);
    const later = await createApi(['--identifier', 'https://later.example.com', '--scope', 'read:invoices', '--token-format', 'opaque']);
    // Registered for none of its scopes: no token for it at all (RFC 8707 §2).
    await expect(oidc.clientCredentialsGrant(robotRp, { resource: later.identifier, scope: 'read:invoices' })).rejects.toMatchObject({ error: 'invalid_target' });
    expect((await oidc.clientCredentialsGrant(robotRp, { resource: BILLING, scope: 'read:invoices' })).scope).toBe('read:invoices');
    // A client made now, naming the scope, gets it from both.
    const newer = await pc.createClient({ name: 'Newer robot', grantTypes: ['client_credentials'], scope: 'read:invoices' });
    const newerRp = await discover(pc.issuer, newer.client_id, newer.client_secret);
    expect((await oidc.clientCredentialsGrant(newerRp, { resource: later.identifier, scope: 'read:invoices' })).scope).toBe('read:invoices');
  });

  it('a scope the client holds for another API, added to this one since, is invalid_scope here, not left out of the token', async () => {
    const reports = await createApi(['--identifier', 'https://reporting.example.com', '--scope', 'read:reports', '--token-format', 'opaque']);
    const robot = await pc.createClient({ name: 'Report robot', grantTypes: ['client_credentials'], scope: 'read:invoices read:reports' });
    const robotRp = await discover(pc.issuer, robot.client_id, robot.client_secret);
    // Billing's read:invoices comes to Reports too: the robot is registered for it at Billing, not here.
    expect((await pc.cli(['api', 'update', reports.identifier, '--scope', 'read:reports', '--scope', 'read:invoices'])).code).toBe(0);
    await expect(oidc.clientCredentialsGrant(robotRp, { resource: reports.identifier, scope: 'read:reports read:invoices' })).rejects.toMatchObject({
      error: 'invalid_scope',
    });
    expect((await oidc.clientCredentialsGrant(robotRp, { resource: reports.identifier, scope: 'read:reports' })).scope).toBe('read:reports');
    expect((await oidc.clientCredentialsGrant(robotRp, { resource: BILLING, scope: 'read:invoices' })).scope).toBe('read:invoices');
  });

  it('an API\'s scope asked for without its resource is invalid_scope, saying to name the API', async () => {
    await expect(oidc.clientCredentialsGrant(machine, { scope: 'read:orders' })).rejects.toMatchObject({
      error: 'invalid_scope',
      error_description: expect.stringContaining('identifier as resource'),
    });
  });

  it('a client registered with API scopes only may not ask for OpenID Connect scopes', async () => {
    await expect(oidc.clientCredentialsGrant(machine, { scope: 'openid profile' })).rejects.toMatchObject({ error: 'invalid_scope' });
    await expect(oidc.clientCredentialsGrant(machine, { scope: 'offline_access' })).rejects.toMatchObject({ error: 'invalid_scope' });
    // Nor through the authorization endpoint.
    const app = await pc.createClient({ name: 'Orders only', redirectUris: [REDIRECT_URI], scope: 'read:orders' });
    const rp = await discover(pc.issuer, app.client_id, app.client_secret);
    const page = await visit(new UserAgent(), (await authorizationRequest(rp, 'openid email')).url);
    expect(new URL(page.url).searchParams.get('error')).toBe('invalid_scope');
  });

  it('no token for an API the client is registered for none of the scopes of, nor one that names none of its scopes', async () => {
    // The robot may use Orders and Billing scopes, none of Reports'.
    await expect(oidc.clientCredentialsGrant(machine, { resource: REPORTS })).rejects.toMatchObject({ error: 'invalid_target' });
    await expect(oidc.clientCredentialsGrant(machine, { resource: REPORTS, scope: 'read:orders' })).rejects.toMatchObject({ error: 'invalid_target' });
    // Registered for Orders, but asking for none of its scopes: a token would carry the audience and nothing else.
    await expect(oidc.clientCredentialsGrant(machine, { resource: ORDERS })).rejects.toMatchObject({ error: 'invalid_scope' });

    // The same at the authorization endpoint: no token for an API that the consent page did not show.
    const spa = await pc.createClient({ name: 'Sign-in only', redirectUris: [REDIRECT_URI], scope: 'openid', public: true });
    const spaRp = await discover(pc.issuer, spa.client_id);
    const refused = await visit(new UserAgent(), (await authorizationRequest(spaRp, 'openid', { resource: ORDERS })).url);
    expect(new URL(refused.url).searchParams.get('error')).toBe('invalid_target');
    const unscoped = await visit(new UserAgent(), (await authorizationRequest(web, 'openid', { resource: ORDERS })).url);
    expect(new URL(unscoped.url).searchParams.get('error')).toBe('invalid_scope');
  });

  it('an unknown API and one the client may not use get the same invalid_target, echoing neither', async () => {
    const token = (resource: string, scope: string) =>
      fetch(`${pc.issuer}/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${machineId}:${machineSecret}`).toString('base64')}` },
        body: new URLSearchParams({ grant_type: 'client_credentials', resource, scope }),
      }).then(async (response) => ({ status: response.status, body: (await response.json()) as Record<string, unknown> }));
    const unknown = await token('https://unknown.example.com/"<x>', 'read:orders');
    const notAllowed = await token(REPORTS, 'read:orders');
    expect(unknown).toEqual({ status: 400, body: { error: 'invalid_target', error_description: expect.any(String) } });
    expect(notAllowed).toEqual(unknown);
    expect(unknown.body.error_description).not.toMatch(/unknown|<x>/);
    // No scope member in an error (RFC 6749 §5.2 defines none): here none of the API's scopes was asked for.
    expect(await token(ORDERS, 'read:invoices')).toEqual({ status: 400, body: { error: 'invalid_scope', error_description: `request at least one scope of ${ORDERS}` } });
  });

  it('a code exchange naming two APIs is invalid_target, and the code is still good for one', async () => {
    const ua = new UserAgent();
    const request = await authorizationRequest(web, 'openid read:orders read:invoices', { resource: ORDERS });
    const url = new URL(request.url);
    url.searchParams.append('resource', BILLING);
    const callback = await allow(ua, await signIn(ua, await visit(ua, url), dana.email, dana.password));
    expect(pageKind(callback)).toBe('callback');
    const checks = { pkceCodeVerifier: request.verifier, expectedState: request.state, expectedNonce: request.nonce };
    const both = new URLSearchParams([['resource', ORDERS], ['resource', 'https://nowhere.example.com/#x']]);
    await expect(oidc.authorizationCodeGrant(web, new URL(callback.url), checks, both)).rejects.toMatchObject({ error: 'invalid_target' });
    const tokens = await oidc.authorizationCodeGrant(web, new URL(callback.url), checks, { resource: BILLING });
    expect(tokens.scope).toContain('read:invoices');
  });

  it('a request may name APIs up to 20 times in all, not more', async () => {
    const request = await authorizationRequest(web, 'openid read:orders read:invoices', { resource: ORDERS });
    const url = new URL(request.url);
    for (let i = 1; i < 20; i++) url.searchParams.append('resource', i % 2 ? BILLING : ORDERS);
    expect(pageKind(await visit(new UserAgent(), url.href))).toBe('login');
    url.searchParams.append('resource', ORDERS);
    const refused = new URL((await visit(new UserAgent(), url.href)).url);
    expect(refused.searchParams.get('error')).toBe('invalid_target');
    expect(refused.searchParams.get('error_description')).toContain('at most 20');
  });

  it('asking only for scopes that are not granted is invalid_scope, not a token without a scope', async () => {
    // RFC 6749 §5.1: a response without `scope` means "what was asked for".
    await expect(machineToken(ORDERS, 'no-such-scope')).rejects.toMatchObject({ error: 'invalid_scope' });
    await expect(oidc.clientCredentialsGrant(machine, { scope: 'no-such-scope' })).rejects.toMatchObject({ error: 'invalid_scope' });
    // Partly grantable: the token, and `scope` says what it holds.
    const tokens = await machineToken(ORDERS, 'read:orders no-such-scope');
    expect(tokens.scope).toBe('read:orders');
  });
});

describe('an OAuth request without redirect_uri (RFC 6749 §3.1.2.3, §4.1.3)', () => {
  const OTHER_URI = 'http://localhost:8080/other-callback';

  /** An authorization request for an API, without redirect_uri: `params` may add openid. */
  async function apiRequest(clientId: string, scope = 'read:orders', extra: Record<string, string> = {}) {
    const verifier = oidc.randomPKCECodeVerifier();
    const params = new URLSearchParams({
      client_id: clientId, response_type: 'code', scope, resource: ORDERS, state: 'st',
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256', ...extra,
    });
    return { verifier, params };
  }

  /** A pushed authorization request (RFC 9126) of `client`, authenticated with its secret. */
  const push = (client: { client_id: string; client_secret?: string }, body: URLSearchParams | string) =>
    fetch(`${pc.issuer}/request`, {
      method: 'POST',
      headers: { authorization: basicAuth(client.client_id, client.client_secret!), 'content-type': 'application/x-www-form-urlencoded' },
      body,
    });

  it('from a client with one registered URI, the code comes back to it and is exchanged without one', async () => {
    const client = await pc.createClient({ name: 'Single URI', redirectUris: [REDIRECT_URI], scope: 'openid read:orders' });
    const { verifier, params } = await apiRequest(client.client_id);
    const ua = new UserAgent();
    const consent = await signIn(ua, await visit(ua, `${pc.issuer}/auth?${params}`), dana.email, dana.password);
    expect(pageKind(consent)).toBe('consent');
    const callback = new URL((await allow(ua, consent)).url);
    expect(`${callback.origin}${callback.pathname}`).toBe(REDIRECT_URI);
    expect(callback.searchParams.get('state')).toBe('st');
    const response = await fetch(`${pc.issuer}/token`, {
      method: 'POST',
      headers: { authorization: basicAuth(client.client_id, client.client_secret!), 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'authorization_code', code: callback.searchParams.get('code')!, code_verifier: verifier }),
    });
    expect(response.status).toBe(200);
    const tokens = await response.json();
    expect(tokens).toMatchObject({ token_type: 'Bearer', scope: 'read:orders' });
    expect(tokens.id_token).toBeUndefined();
    expect((await call(ordersApi, tokens.access_token)).status).toBe(200);
  });

  it('an OpenID request still needs it (OIDC Core §3.1.2.1): an error page, not a redirect, there and when pushed', async () => {
    const client = await pc.createClient({ name: 'Single URI, OpenID', redirectUris: [REDIRECT_URI], scope: 'openid read:orders' });
    const { params } = await apiRequest(client.client_id, 'openid read:orders');
    const response = await fetch(`${pc.issuer}/auth?${params}`, { redirect: 'manual' });
    expect(response.status).toBe(400);
    expect(response.headers.get('location')).toBeNull();
    expect(await response.text()).toContain('redirect_uri');
    const pushed = await push(client, params);
    expect(pushed.status).toBe(400);
    expect(await pushed.json()).toMatchObject({ error: 'invalid_request', error_description: expect.stringContaining('redirect_uri') });
    // An empty value is none, as the library reads it, and so is an empty request_uri.
    for (const empty of ['redirect_uri=', 'request_uri=']) {
      const query = `${params}&${empty}`;
      const got = await fetch(`${pc.issuer}/auth?${query}`, { redirect: 'manual' });
      const posted = await fetch(`${pc.issuer}/auth`, { method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: query });
      for (const response of empty === 'redirect_uri=' ? [got, posted] : []) {
        expect([empty, response.status, response.headers.get('location')]).toEqual([empty, 400, null]);
      }
      const emptyPush = await push(client, query);
      expect([empty, emptyPush.status]).toEqual([empty, 400]);
    }
  });

  it("a native app's request needs it, OAuth or not: its loopback port is chosen at request time (RFC 8252 §7.3)", async () => {
    const app = await pc.createClient({ name: 'Desktop', native: true, redirectUris: ['http://127.0.0.1/callback'], scope: 'read:orders' });
    const { params } = await apiRequest(app.client_id);
    const response = await fetch(`${pc.issuer}/auth?${params}`, { redirect: 'manual' });
    expect(response.status).toBe(400);
    expect(response.headers.get('location')).toBeNull();
    expect(await response.text()).toContain('redirect_uri');
  });

  it('an OAuth request pushed without one is sent to the only registered URI', async () => {
    const client = await pc.createClient({ name: 'Single URI, pushed', redirectUris: [REDIRECT_URI], scope: 'read:orders' });
    const { params } = await apiRequest(client.client_id);
    const pushed = await push(client, params);
    expect(pushed.status).toBe(201);
    const { request_uri } = await pushed.json();
    const ua = new UserAgent();
    const consent = await signIn(ua, await visit(ua, `${pc.issuer}/auth?${new URLSearchParams({ client_id: client.client_id, request_uri })}`), dana.email, dana.password);
    const callback = new URL((await allow(ua, consent)).url);
    expect(`${callback.origin}${callback.pathname}`).toBe(REDIRECT_URI);
    expect(callback.searchParams.get('code')).toBeTruthy();
  });

  it('from a client with two registered URIs it is an error page, not a redirect', async () => {
    const client = await pc.createClient({ name: 'Two URIs', redirectUris: [REDIRECT_URI, OTHER_URI], scope: 'read:orders' });
    const { params } = await apiRequest(client.client_id);
    const response = await fetch(`${pc.issuer}/auth?${params}`, { redirect: 'manual' });
    expect(response.status).toBe(400);
    expect(response.headers.get('location')).toBeNull();
    expect(await response.text()).toContain('redirect_uri');
  });
});

describe('introspection by an API', () => {
  it('an opaque token is introspected by its API with the API\'s own credentials', async () => {
    const tokens = await machineToken(BILLING, 'read:invoices');
    expect(tokens.access_token).not.toContain('.');
    const billing = await discover(pc.issuer, apis.billing.client_id, apis.billing.client_secret);
    const result = await oidc.tokenIntrospection(billing, tokens.access_token);
    expect(result).toMatchObject({ active: true, scope: 'read:invoices', client_id: machineId, sub: machineId, aud: BILLING, iss: pc.issuer });
    expect(result.exp).toBeGreaterThan(Date.now() / 1000);
    // The example API accepts it, without read:orders it cannot read orders.
    expect((await call(billingApi, tokens.access_token)).status).toBe(403);
    const withOrders = await machineToken(BILLING, 'read:orders');
    expect((await call(billingApi, withOrders.access_token)).status).toBe(200);
  });

  it('an API never learns about tokens meant for another API', async () => {
    const tokens = await machineToken(BILLING, 'read:invoices');
    const reports = await discover(pc.issuer, apis.reports.client_id, apis.reports.client_secret);
    expect(await oidc.tokenIntrospection(reports, tokens.access_token)).toEqual({ active: false });
  });

  it('a revoked token is inactive at once, and the example API refuses it', async () => {
    const tokens = await machineToken(BILLING, 'read:orders');
    expect((await call(billingApi, tokens.access_token)).status).toBe(200);
    await oidc.tokenRevocation(machine, tokens.access_token);
    const refused = await call(billingApi, tokens.access_token);
    expect(refused.status).toBe(401);
    expect(refused.headers.get('www-authenticate')).toContain('error="invalid_token"');
  });

  it('a refresh asking only for OpenID Connect scopes of a grant for an API gets a token for UserInfo (RFC 6749 §6: any subset of the grant)', async () => {
    const ua = new UserAgent();
    const { tokens } = await logIn(ua, web, 'openid profile offline_access read:orders', dana, { resource: ORDERS, prompt: 'consent' });
    // Without `resource` or `scope`, the token is for the API the grant was for, as before.
    expect(decodeJwt(tokens.access_token).aud).toBe(ORDERS);
    // UserInfo refuses the API's token, and says why (the library said only "invalid token provided").
    const refused = await userinfoWith(tokens.access_token);
    expect(refused).toEqual({ status: 401, body: { error: 'invalid_token', error_description: API_TOKEN_AT_USERINFO }, challenge: expect.stringContaining(`error="invalid_token", error_description="${API_TOKEN_AT_USERINFO}"`) });
    // A token UserInfo does not know, made to look like a JWT access token, gets the library's words.
    const [, payload, signature] = tokens.access_token.split('.');
    const unknown = await userinfoWith(`${Buffer.from(JSON.stringify({ alg: 'ES256', typ: 'JWT' })).toString('base64url')}.${payload}.${signature}`);
    expect(unknown.body).toEqual({ error: 'invalid_token', error_description: 'invalid token provided' });
    const narrowed = await oidc.refreshTokenGrant(web, tokens.refresh_token!, { scope: 'openid profile' });
    expect(narrowed.scope?.split(' ').sort()).toEqual(['openid', 'profile']);
    const sub = decodeJwt(tokens.id_token!).sub!;
    expect(await oidc.fetchUserInfo(web, narrowed.access_token, sub)).toMatchObject({ sub, name: 'Dana' });
    // The API refuses that token; the rotated refresh token still gets the API's.
    expect((await call(ordersApi, narrowed.access_token)).status).toBe(401);
    const again = await oidc.refreshTokenGrant(web, narrowed.refresh_token!);
    expect(decodeJwt(again.access_token).aud).toBe(ORDERS);
    expect(again.scope).toBe('read:orders');
    // A refresh that grants nothing keeps the refresh token it presented: nothing was issued.
    // (OpenID Connect scopes without openid would make a token for UserInfo, which takes none without it: said so.)
    for (const scope of ['offline_access', 'profile']) {
      await expect(oidc.refreshTokenGrant(web, again.refresh_token!, { scope })).rejects.toMatchObject({
        error: 'invalid_scope',
        error_description: 'none of the requested scopes can be granted: an access token for UserInfo needs openid among them',
      });
    }
    expect((await oidc.refreshTokenGrant(web, again.refresh_token!)).access_token).toBeTruthy();
  });

  it('revoking a refresh token ends the access tokens derived from it; a rotated-away one is inactive', async () => {
    const ua = new UserAgent();
    const { tokens } = await logIn(ua, web, 'openid offline_access read:orders', dana, { resource: BILLING, prompt: 'consent' });
    // An opaque token for an API is refused by UserInfo as the library refuses it, saying why.
    expect(await userinfoWith(tokens.access_token)).toEqual({
      status: 403,
      body: { error: 'insufficient_scope', error_description: API_TOKEN_AT_USERINFO, scope: 'openid' },
      challenge: expect.stringContaining(`error_description="${API_TOKEN_AT_USERINFO}"`),
    });
    const billing = await discover(pc.issuer, apis.billing.client_id, apis.billing.client_secret);
    expect((await oidc.tokenIntrospection(billing, tokens.access_token)).active).toBe(true);

    const rotated = await oidc.refreshTokenGrant(web, tokens.refresh_token!);
    expect((await oidc.tokenIntrospection(web, tokens.refresh_token!)).active).toBe(false);
    expect((await oidc.tokenIntrospection(billing, rotated.access_token)).aud).toBe(BILLING);

    await oidc.tokenRevocation(web, rotated.refresh_token!);
    expect((await oidc.tokenIntrospection(billing, rotated.access_token)).active).toBe(false);
    expect((await oidc.tokenIntrospection(billing, tokens.access_token)).active).toBe(false);
    expect((await call(billingApi, rotated.access_token)).status).toBe(401);
  });
});

describe('key rotation', () => {
  it('a resource server with a cached JWKS keeps working across a rotation', async () => {
    const before = await machineToken(ORDERS, 'read:orders');
    expect((await call(ordersApi, before.access_token)).status).toBe(200); // caches the JWKS

    expect((await pc.cli(['keys', 'rotate'])).code).toBe(0);
    // The new key is published at once and signs only after KEY_ACTIVATION_DELAY,
    // by which time a resource server that meets its kid may refetch the JWKS
    // (jose refetches on an unknown kid at most every 30 s by default).
    const oldKid = decodeProtectedHeader(before.access_token).kid;
    let after = await machineToken(ORDERS, 'read:orders');
    expect(decodeProtectedHeader(after.access_token).kid).toBe(oldKid);
    for (let waited = 0; decodeProtectedHeader(after.access_token).kid === oldKid && waited < 45; waited++) {
      await new Promise((resolve) => setTimeout(resolve, 1000));
      after = await machineToken(ORDERS, 'read:orders');
      expect((await call(ordersApi, after.access_token)).status).toBe(200);
    }
    expect(decodeProtectedHeader(after.access_token).kid).not.toBe(oldKid);
    expect((await call(ordersApi, after.access_token)).status).toBe(200);
    expect((await call(ordersApi, before.access_token)).status).toBe(200);
  });
});

describe('a rotation run with a shorter KEY_ACTIVATION_DELAY than the servers\'', () => {
  it('signs no sooner than the servers\' delay: a server moves the schedule later in the database, where keys list sees it', async () => {
    const before = await machineToken(ORDERS, 'read:orders');
    const oldKid = decodeProtectedHeader(before.access_token).kid;
    // A shell without the servers' variable (31 s here) rotating with 8 s: time
    // for the server to pick the rotation up (at once on PostgreSQL, within
    // its second's KEY_REFRESH_INTERVAL on the embedded database) before then.
    type Key = { kid: string; alg: string; status: string; created_at: string; activates_at: string; publish_until: string | null };
    const rotation = await runCli(['keys', 'rotate', '--json'], { ...pc.env, KEY_ACTIVATION_DELAY: '8s' });
    expect(rotation.code, rotation.stderr).toBe(0);
    const fresh = (JSON.parse(rotation.stdout) as Key[]).filter((key) => key.status === 'next');
    expect(fresh.map((key) => key.alg).sort()).toEqual(['ES256', 'RS256']);
    const madeAt = Date.parse(fresh[0]!.created_at);
    // (The server may have moved it already by the time the CLI listed the keys.)
    expect([8000, 31_000]).toContain(Date.parse(fresh[0]!.activates_at) - madeAt);

    // Past the CLI's 8 s: the old key still signs.
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, madeAt + 10_000 - Date.now())));
    expect(decodeProtectedHeader((await machineToken(ORDERS, 'read:orders')).access_token).kid).toBe(oldKid);
    const listed = JSON.parse((await pc.cli(['keys', 'list', '--json'])).stdout) as Key[];
    for (const key of fresh) {
      const now = listed.find(({ kid }) => kid === key.kid)!;
      expect([now.status, Date.parse(now.activates_at) - Date.parse(now.created_at)]).toEqual(['next', 31_000]);
    }
    // The key it replaces signs until then, and stays published as much longer:
    // as long after the new key's activation as the rotation meant.
    const replaced = listed.find((key) => key.kid === oldKid)!;
    const replacedAtRotation = (JSON.parse(rotation.stdout) as Key[]).find((key) => key.kid === oldKid)!;
    const kept = (old: Key, fresh: Key) => Date.parse(old.publish_until!) - Date.parse(fresh.activates_at);
    const freshNow = listed.find((key) => key.kid === fresh[0]!.kid)!;
    expect([replaced.status, kept(replaced, freshNow)]).toEqual(['current', kept(replacedAtRotation, fresh[0]!)]);

    let after = await machineToken(ORDERS, 'read:orders');
    for (let waited = 0; decodeProtectedHeader(after.access_token).kid === oldKid && waited < 60; waited++) {
      await new Promise((resolve) => setTimeout(resolve, 1000));
      after = await machineToken(ORDERS, 'read:orders');
    }
    expect(fresh.map((key) => key.kid)).toContain(decodeProtectedHeader(after.access_token).kid);
    expect(Date.now()).toBeGreaterThanOrEqual(madeAt + 31_000);
    expect((await call(ordersApi, after.access_token)).status).toBe(200);
    expect((await call(ordersApi, before.access_token)).status).toBe(200);
  }, 120_000);
});

describe('an emergency rotation', () => {
  it('after keys rotate --now the example API takes the new key within seconds: it refetches the JWKS for a kid it lacks at most every 5 s', async () => {
    const api = await serve({ issuer: pc.issuer, audience: ORDERS });
    const before = await machineToken(ORDERS, 'read:orders');
    expect((await call(api, before.access_token)).status).toBe(200); // fetches the JWKS
    const fetchedAt = Date.now();
    expect((await pc.cli(['keys', 'rotate', '--now'])).code).toBe(0);
    const oldKid = decodeProtectedHeader(before.access_token).kid;
    let after = await machineToken(ORDERS, 'read:orders');
    for (let waited = 0; decodeProtectedHeader(after.access_token).kid === oldKid && waited < 20; waited++) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      after = await machineToken(ORDERS, 'read:orders');
    }
    expect(decodeProtectedHeader(after.access_token).kid).not.toBe(oldKid);
    // Asked nothing in between: 6 s after its fetch, well inside jose's default 30 s.
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, fetchedAt + 6_000 - Date.now())));
    expect((await call(api, after.access_token)).status).toBe(200);
  });
});

describe('tokens the example API must refuse', () => {
  const expectInvalid = async (token: string | undefined, described?: RegExp) => {
    const response = await call(ordersApi, token);
    expect(response.status).toBe(401);
    const challenge = response.headers.get('www-authenticate')!;
    // Without a token, either scheme may do (RFC 9449 §7.1): both challenges.
    if (token === undefined) expect(challenge).toBe('Bearer realm="api", DPoP realm="api", algs="ES256 EdDSA Ed25519"');
    else expect(challenge).toMatch(/^Bearer realm="api", error="invalid_token"/);
    if (described) expect(challenge).toMatch(described);
  };
  const forge = async (header: Record<string, unknown>, claims: Record<string, unknown>) => {
    const { privateKey } = await generateKeyPair('ES256');
    return new SignJWT(claims).setProtectedHeader({ alg: 'ES256', ...header }).sign(privateKey);
  };
  const goodClaims = async () => decodeJwt((await machineToken(ORDERS, 'read:orders')).access_token);

  it('no token at all', () => expectInvalid(undefined));

  it('a token for another API (wrong aud)', async () => {
    const other = await machineToken(SHORT, 'read:orders');
    await expectInvalid(other.access_token, /aud/);
  });

  it('an ID token (wrong typ)', async () => {
    const { tokens } = await logIn(new UserAgent(), web, 'openid', dana);
    await expectInvalid(tokens.id_token);
  });

  it('alg none', async () => {
    const claims = await goodClaims();
    const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
    await expectInvalid(`${encode({ alg: 'none', typ: 'at+jwt' })}.${encode(claims)}.`);
    await expectInvalid(`${encode({ alg: 'none', typ: 'at+jwt' })}.${encode(claims)}.c2ln`);
  });

  it('an unknown kid', async () => {
    await expectInvalid(await forge({ typ: 'at+jwt', kid: 'not-a-key-of-ours' }, await goodClaims()));
  });

  it('an expired token', async () => {
    const machineShort = await machineToken(SHORT, 'read:orders');
    const shortApi = await serve({ issuer: pc.issuer, audience: SHORT });
    expect((await call(shortApi, machineShort.access_token)).status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 4100));
    const response = await call(shortApi, machineShort.access_token);
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toContain('expired');
  });

  it('an expired opaque token, at the example API and at introspection', async () => {
    const api = await createApi(['--identifier', 'https://short-opaque.example.com', '--scope', 'read:orders', '--token-format', 'opaque', '--ttl', '3s']);
    const base = await serve({ issuer: pc.issuer, audience: api.identifier, introspection: { clientId: api.client_id, clientSecret: api.client_secret } });
    const robot = await pc.createClient({ name: 'Short robot', grantTypes: ['client_credentials'], scope: 'read:orders' });
    const robotRp = await discover(pc.issuer, robot.client_id, robot.client_secret);
    const tokens = await oidc.clientCredentialsGrant(robotRp, { resource: api.identifier, scope: 'read:orders' });
    expect((await call(base, tokens.access_token)).status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 4100));
    expect((await call(base, tokens.access_token)).status).toBe(401);
    const introspector = await discover(pc.issuer, api.client_id, api.client_secret);
    expect((await oidc.tokenIntrospection(introspector, tokens.access_token)).active).toBe(false);
  });

  it('a tampered payload or signature', async () => {
    const token = (await machineToken(ORDERS, 'read:orders')).access_token;
    const [header, payload, signature] = token.split('.');
    const claims = JSON.parse(Buffer.from(payload!, 'base64url').toString());
    const widened = Buffer.from(JSON.stringify({ ...claims, scope: 'read:orders write:orders' })).toString('base64url');
    await expectInvalid(`${header}.${widened}.${signature}`, /signature/);
    const flipped = signature!.slice(0, 10) + (signature![10] === 'A' ? 'B' : 'A') + signature!.slice(11);
    await expectInvalid(`${header}.${payload}.${flipped}`);
  });

  it('a token from another issuer', async () => {
    const other = await startPortcullis();
    try {
      const api = await other.cli(['api', 'create', '--identifier', ORDERS, '--scope', 'read:orders', '--json']);
      expect(api.code).toBe(0);
      const client = await other.createClient({ name: 'Elsewhere', grantTypes: ['client_credentials'], scope: 'read:orders' });
      const elsewhere = await discover(other.issuer, client.client_id, client.client_secret);
      const foreign = await oidc.clientCredentialsGrant(elsewhere, { resource: ORDERS, scope: 'read:orders' });
      expect(decodeJwt(foreign.access_token).aud).toBe(ORDERS);
      await expectInvalid(foreign.access_token);
      // And a forged token claiming our issuer, signed by a key we never published.
      const { privateKey, publicKey } = await generateKeyPair('ES256');
      const jwk = await exportJWK(publicKey);
      const forged = await new SignJWT(await goodClaims()).setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', jwk }).sign(privateKey);
      await expectInvalid(forged);
    } finally {
      await other.close();
    }
  });

  it('credentials of another scheme count as no token; a malformed Bearer header is invalid_request (RFC 6750 §3.1)', async () => {
    const basic = await fetch(`${ordersApi}/orders`, { headers: { authorization: 'Basic Zm9vOmJhcg==' } });
    expect(basic.status).toBe(401);
    expect(basic.headers.get('www-authenticate')).toBe('Bearer realm="api", DPoP realm="api", algs="ES256 EdDSA Ed25519"');
    const token = (await machineToken(ORDERS, 'read:orders')).access_token;
    for (const header of [`Bearer ${token}!`, 'Bearer', `Bearer ${token} more`]) {
      const response = await fetch(`${ordersApi}/orders`, { headers: { authorization: header } });
      expect(response.status, header).toBe(400);
      expect(response.headers.get('www-authenticate')).toMatch(/^Bearer realm="api", error="invalid_request"/);
    }
    expect((await call(ordersApi, token)).status).toBe(200);
    // One or more spaces after the scheme (RFC 6750 §2.1: "Bearer" 1*SP b64token).
    expect((await fetch(`${ordersApi}/orders`, { headers: { authorization: `Bearer  ${token}` } })).status).toBe(200);
  });

  it('introspection calls none of these active', async () => {
    const orders = await discover(pc.issuer, apis.orders.client_id, apis.orders.client_secret);
    expect((await oidc.tokenIntrospection(orders, 'random-opaque-value')).active).toBe(false);
    // A JWT is introspected as the API would verify it: a key we never published, an ID token, alg none.
    const { tokens } = await logIn(new UserAgent(), web, 'openid', dana);
    const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
    for (const token of [
      await forge({ typ: 'at+jwt' }, await goodClaims()),
      tokens.id_token!,
      `${encode({ alg: 'none', typ: 'at+jwt' })}.${encode(await goodClaims())}.`,
    ]) {
      expect(await oidc.tokenIntrospection(orders, token)).toEqual({ active: false });
    }
  });
});

describe('introspection of JWT access tokens (RFC 7662 §2.2, RFC 9068)', () => {
  it('a JWT access token is active for its API and its client, with its claims, and for no other API or client, nor once its client is deleted', async () => {
    const tokens = await machineToken(ORDERS, 'read:orders');
    const claims = decodeJwt(tokens.access_token);
    const expected = { active: true, sub: machineId, client_id: machineId, aud: ORDERS, iss: pc.issuer, scope: 'read:orders', exp: claims.exp, iat: claims.iat, jti: claims.jti, token_type: 'Bearer' };
    const orders = await discover(pc.issuer, apis.orders.client_id, apis.orders.client_secret);
    expect(await oidc.tokenIntrospection(orders, tokens.access_token)).toEqual(expected);
    expect(await oidc.tokenIntrospection(machine, tokens.access_token, { token_type_hint: 'access_token' })).toEqual(expected);
    const reports = await discover(pc.issuer, apis.reports.client_id, apis.reports.client_secret);
    expect(await oidc.tokenIntrospection(reports, tokens.access_token)).toEqual({ active: false });
    expect(await oidc.tokenIntrospection(web, tokens.access_token)).toEqual({ active: false });

    // Bound to a DPoP key: said so, with the key's thumbprint (RFC 9449 §6.2).
    const bound = await oidc.clientCredentialsGrant(machine, { resource: ORDERS, scope: 'read:orders' }, { DPoP: oidc.getDPoPHandle(machine, await oidc.randomDPoPKeyPair()) });
    const { jkt } = decodeJwt(bound.access_token).cnf as { jkt: string };
    expect(await oidc.tokenIntrospection(orders, bound.access_token)).toMatchObject({ active: true, token_type: 'DPoP', cnf: { jkt } });

    // A client deleted since: its stored tokens went with it, and so does what its JWTs are said to be.
    const brief = await pc.createClient({ name: 'Brief', grantTypes: ['client_credentials'], scope: 'read:orders' });
    const briefToken = (await oidc.clientCredentialsGrant(await discover(pc.issuer, brief.client_id, brief.client_secret), { resource: ORDERS, scope: 'read:orders' })).access_token;
    expect((await oidc.tokenIntrospection(orders, briefToken)).active).toBe(true);
    expect((await pc.cli(['client', 'delete', brief.client_id])).code).toBe(0);
    expect(await oidc.tokenIntrospection(orders, briefToken)).toEqual({ active: false });
  });

  it('a person\'s JWT access token is inactive once the person is disabled, and an expired one is inactive', async () => {
    const ines = { email: 'ines@example.com', password: 'ines long password' };
    await pc.createUser(ines.email, ines.password, 'Ines');
    const { tokens } = await logIn(new UserAgent(), web, 'openid read:orders', ines, { resource: ORDERS });
    const sub = decodeJwt(tokens.id_token!).sub;
    const orders = await discover(pc.issuer, apis.orders.client_id, apis.orders.client_secret);
    expect(await oidc.tokenIntrospection(orders, tokens.access_token)).toMatchObject({ active: true, sub, client_id: web.clientMetadata().client_id, scope: 'read:orders' });
    expect((await pc.cli(['user', 'disable', ines.email])).code).toBe(0);
    expect(await oidc.tokenIntrospection(orders, tokens.access_token)).toEqual({ active: false });

    const short = await discover(pc.issuer, apis.short.client_id, apis.short.client_secret);
    const expiring = (await machineToken(SHORT, 'read:orders')).access_token;
    expect((await oidc.tokenIntrospection(short, expiring)).active).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 4100));
    expect(await oidc.tokenIntrospection(short, expiring)).toEqual({ active: false });
  });
});

describe('the example API called from a browser app (CORS)', () => {
  it('answers the allowed origin\'s preflight and lets it read the answer and the challenge; other origins get neither', async () => {
    // Given as an address (trailing slash), compared as the origin browsers send.
    const base = await serve({ issuer: pc.issuer, audience: ORDERS, allowedOrigins: ['https://app.example.com/'] });
    const preflight = (origin: string) =>
      fetch(`${base}/orders`, { method: 'OPTIONS', headers: { origin, 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' } });
    const allowed = await preflight('https://app.example.com');
    expect(allowed.status).toBe(204);
    expect(allowed.headers.get('access-control-allow-origin')).toBe('https://app.example.com');
    expect(allowed.headers.get('access-control-allow-headers')).toMatch(/Authorization/);
    const other = await preflight('https://evil.example.com');
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
    expect(other.headers.get('access-control-allow-headers')).toBeNull();

    const token = (await machineToken(ORDERS, 'read:orders')).access_token;
    const read = await fetch(`${base}/orders`, { headers: { origin: 'https://app.example.com', authorization: `Bearer ${token}` } });
    expect(read.status).toBe(200);
    expect(read.headers.get('access-control-allow-origin')).toBe('https://app.example.com');
    expect(read.headers.get('vary')).toMatch(/Origin/);
    const refused = await fetch(`${base}/orders`, { headers: { origin: 'https://app.example.com' } });
    expect(refused.status).toBe(401);
    expect(refused.headers.get('access-control-expose-headers')).toMatch(/WWW-Authenticate/);
    const elsewhere = await fetch(`${base}/orders`, { headers: { origin: 'https://evil.example.com', authorization: `Bearer ${token}` } });
    expect(elsewhere.headers.get('access-control-allow-origin')).toBeNull();
  });
});

describe('when the example API cannot check a token', () => {
  const expectUnavailable = async (base: string, token: string) => {
    const response = await call(base, token);
    expect(response.status).toBe(503);
    expect(response.headers.get('www-authenticate')).toBeNull();
    expect(await response.json()).toMatchObject({ error: 'temporarily_unavailable' });
  };

  it('an issuer that does not answer, or whose JWKS fails, is 503, not invalid_token: the token may be good', async () => {
    const token = (await machineToken(ORDERS, 'read:orders')).access_token;
    await expectUnavailable(await serve({ issuer: `http://127.0.0.1:${await freePort()}`, audience: ORDERS }), token);

    // Discovery answers, the JWKS does not.
    const broken = createServer((request, response) => {
      response.setHeader('content-type', 'application/json');
      if (request.url === '/jwks') response.writeHead(500).end('{}');
      else response.end(JSON.stringify({ issuer: pc.issuer, jwks_uri: `http://127.0.0.1:${(broken.address() as AddressInfo).port}/jwks` }));
    }).listen(0, '127.0.0.1');
    servers.push(broken);
    await new Promise((resolve) => broken.once('listening', resolve));
    await expectUnavailable(await serve({ issuer: `http://127.0.0.1:${(broken.address() as AddressInfo).port}`, audience: ORDERS }), token);
  });

  it('an issuer whose discovery names another issuer is not trusted (RFC 8414 §3.3); a token without exp is refused (RFC 9068 §2.2)', async () => {
    // An issuer of the test's own, whose key signs whatever the test asks.
    const { privateKey, publicKey } = await generateKeyPair('ES256');
    const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' };
    let named = '';
    const own = createServer((request, response) => {
      response.setHeader('content-type', 'application/json');
      const self = `http://127.0.0.1:${(own.address() as AddressInfo).port}`;
      if (request.url === '/jwks') response.end(JSON.stringify({ keys: [jwk] }));
      else response.end(JSON.stringify({ issuer: named || self, jwks_uri: `${self}/jwks` }));
    }).listen(0, '127.0.0.1');
    servers.push(own);
    await new Promise((resolve) => own.once('listening', resolve));
    const issuer = `http://127.0.0.1:${(own.address() as AddressInfo).port}`;
    const now = Math.floor(Date.now() / 1000);
    const claims = { iss: issuer, aud: ORDERS, sub: 'someone', client_id: 'app', scope: 'read:orders', iat: now, jti: 'j1' };
    const sign = (payload: Record<string, unknown>) => new SignJWT(payload).setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: 'k1' }).sign(privateKey);
    const api = await serve({ issuer, audience: ORDERS });
    expect((await call(api, await sign({ ...claims, exp: now + 60 }))).status).toBe(200);
    const lasting = await call(api, await sign(claims));
    expect(lasting.status).toBe(401);
    expect(lasting.headers.get('www-authenticate')).toMatch(/error="invalid_token".*exp/);

    // The same server, its discovery now naming our issuer: an API configured
    // for it learns nothing from it (a fresh API, as discovery is kept).
    named = pc.issuer;
    await expectUnavailable(await serve({ issuer, audience: ORDERS }), await sign({ ...claims, exp: now + 60 }));
  });

  it('introspection refusing the API\'s own credentials is 503, not invalid_token', async () => {
    const base = await serve({ issuer: pc.issuer, audience: BILLING, introspection: { clientId: apis.billing.client_id, clientSecret: 'not the secret' } });
    await expectUnavailable(base, (await machineToken(BILLING, 'read:invoices')).access_token);
  });
});

describe('portcullis api', () => {
  it('deleting an API ends its opaque tokens, the consents to it and the clients\' registration; one re-created under its identifier starts from nothing', async () => {
    const GONE = 'https://gone.example.com';
    const first = await createApi(['--identifier', GONE, '--scope', 'read:gone', '--token-format', 'opaque']);
    const robotClient = await pc.createClient({ name: 'Gone robot', grantTypes: ['client_credentials'], scope: 'read:gone' });
    const robot = await discover(pc.issuer, robotClient.client_id, robotClient.client_secret);
    const appClient = await pc.createClient({ name: 'Gone app', redirectUris: [REDIRECT_URI], scope: 'openid offline_access read:gone' });
    const app = await discover(pc.issuer, appClient.client_id, appClient.client_secret);
    const machineAccess = (await oidc.clientCredentialsGrant(robot, { resource: GONE, scope: 'read:gone' })).access_token;
    const { tokens } = await logIn(new UserAgent(), app, 'openid offline_access read:gone', dana, { prompt: 'consent', resource: GONE });
    const asApi = async (credentials: ApiCredentials, token: string) => (await oidc.tokenIntrospection(await discover(pc.issuer, credentials.client_id, credentials.client_secret), token)).active;
    expect(await asApi(first, machineAccess)).toBe(true);
    expect(await asApi(first, tokens.access_token)).toBe(true);

    // A copy of the robot's token row, to put back afterwards as a token request in flight while the delete ran would write it.
    const [kept] = await outside(`SELECT row_to_json(a)::text AS row FROM provider_artifacts a WHERE id = '${sha256(machineAccess)}'`);
    expect(kept).toBeDefined();
    const deleted = await pc.cli(['api', 'delete', GONE]);
    expect(deleted.code, deleted.stderr).toBe(0);
    expect(deleted.stdout).toContain('2 opaque access token(s) revoked, 1 consent(s) and 2 client(s) no longer include it');
    // Its tokens are inactive to anyone who asks, the client they were issued to included.
    expect((await oidc.tokenIntrospection(robot, machineAccess)).active).toBe(false);
    // So is one a token request in flight wrote while the delete ran.
    const putBack = () => outside(`INSERT INTO provider_artifacts SELECT * FROM json_populate_record(NULL::provider_artifacts, '${kept!.row.replace(/'/g, "''")}') ON CONFLICT DO NOTHING`);
    await putBack();
    expect((await oidc.tokenIntrospection(robot, machineAccess)).active).toBe(false);
    // The clients are no longer registered for it.
    const listed = JSON.parse((await pc.cli(['client', 'list', '--json'])).stdout) as { client_id: string; scope: string }[];
    expect(listed.find((client) => client.client_id === robotClient.client_id)?.scope ?? '').not.toContain('read:gone');
    expect(listed.find((client) => client.client_id === appClient.client_id)?.scope).toBe('openid offline_access');

    // Created again under the same identifier: nothing of the first one counts,
    // not even a token of the first one written after the delete. (Times are
    // kept to the second: the token is from an earlier one.)
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const second = await createApi(['--identifier', GONE, '--scope', 'read:gone', '--token-format', 'opaque']);
    await putBack();
    expect(await asApi(second, machineAccess)).toBe(false);
    expect(await asApi(second, tokens.access_token)).toBe(false);
    await expect(oidc.clientCredentialsGrant(robot, { resource: GONE, scope: 'read:gone' })).rejects.toMatchObject({ error: 'invalid_target' });
    // The refresh token, issued for the API, gets nothing more for it (the consent no longer includes it).
    await expect(oidc.refreshTokenGrant(app, tokens.refresh_token!, { resource: GONE })).rejects.toMatchObject({ error: 'invalid_target' });
    await expect(oidc.refreshTokenGrant(app, tokens.refresh_token!)).rejects.toMatchObject({ error: 'invalid_target' });
    // Nor once the client is registered for it again: the consent still holds
    // nothing of it, and a token for it would carry Dana's subject to an API
    // she never consented to (with no scope at all).
    expect((await pc.cli(['client', 'update', appClient.client_id, '--scope', 'openid offline_access read:gone'])).code).toBe(0);
    await expect(oidc.refreshTokenGrant(app, tokens.refresh_token!, { resource: GONE })).rejects.toMatchObject({ error: 'invalid_target' });
    await expect(oidc.refreshTokenGrant(app, tokens.refresh_token!)).rejects.toMatchObject({ error: 'invalid_target' });
    // What she consented to without the API is still hers to use.
    expect((await oidc.refreshTokenGrant(app, tokens.refresh_token!, { scope: 'openid' })).scope).toBe('openid');
    expect((await pc.cli(['api', 'delete', GONE])).code).toBe(0);
  });

  it('a token of a client deleted since, which a request in flight stored after the delete, introspects inactive to its API', async () => {
    const robotClient = await pc.createClient({ name: 'Doomed robot', grantTypes: ['client_credentials'], scope: 'read:invoices' });
    const robot = await discover(pc.issuer, robotClient.client_id, robotClient.client_secret);
    const appClient = await pc.createClient({ name: 'Doomed app', redirectUris: [REDIRECT_URI], scope: 'openid read:invoices' });
    const app = await discover(pc.issuer, appClient.client_id, appClient.client_secret);
    const machineAccess = (await oidc.clientCredentialsGrant(robot, { resource: BILLING, scope: 'read:invoices' })).access_token;
    // A person's token too: its introspection looks its client up for the subject.
    const { tokens } = await logIn(new UserAgent(), app, 'openid read:invoices', dana, { resource: BILLING });
    const asBilling = await discover(pc.issuer, apis.billing.client_id, apis.billing.client_secret);
    for (const token of [machineAccess, tokens.access_token]) expect((await oidc.tokenIntrospection(asBilling, token)).active).toBe(true);

    const rows = await outside(`SELECT row_to_json(a)::text AS row FROM provider_artifacts a WHERE id IN ('${sha256(machineAccess)}', '${sha256(tokens.access_token)}')`);
    expect(rows).toHaveLength(2);
    for (const client of [robotClient, appClient]) expect((await pc.cli(['client', 'delete', client.client_id])).code).toBe(0);
    // Written back as token requests in flight while the deletes ran would write them.
    for (const { row } of rows) await outside(`INSERT INTO provider_artifacts SELECT * FROM json_populate_record(NULL::provider_artifacts, '${row.replace(/'/g, "''")}')`);
    for (const token of [machineAccess, tokens.access_token]) expect(await oidc.tokenIntrospection(asBilling, token)).toEqual({ active: false });
  });

  it('update changes an API in place: a scope taken away leaves consents and clients, and tokens issued keep what they say', async () => {
    const SHOP = 'https://shop.example.com';
    const shop = await createApi(['--identifier', SHOP, '--scope', 'read:cart', '--scope', 'write:cart', '--token-format', 'opaque']);
    const robotClient = await pc.createClient({ name: 'Shop robot', grantTypes: ['client_credentials'], scope: 'read:cart write:cart' });
    const robot = await discover(pc.issuer, robotClient.client_id, robotClient.client_secret);
    const appClient = await pc.createClient({ name: 'Shop app', redirectUris: [REDIRECT_URI], scope: 'openid offline_access read:cart write:cart' });
    const app = await discover(pc.issuer, appClient.client_id, appClient.client_secret);
    const issuedBefore = (await oidc.clientCredentialsGrant(robot, { resource: SHOP, scope: 'read:cart write:cart' })).access_token;
    const { tokens } = await logIn(new UserAgent(), app, 'openid offline_access read:cart write:cart', dana, { prompt: 'consent', resource: SHOP });
    expect(tokens.scope).toBe('read:cart write:cart');

    const updated = await pc.cli(['api', 'update', SHOP, '--name', 'Shop', '--scope', 'read:cart=See your cart', '--scope', 'pay:cart', '--token-format', 'jwt', '--ttl', '5m', '--json']);
    expect(updated.code, updated.stderr).toBe(0);
    expect(JSON.parse(updated.stdout)).toEqual({
      identifier: SHOP,
      name: 'Shop',
      scopes: [{ name: 'read:cart', description: 'See your cart' }, { name: 'pay:cart' }],
      token_format: 'jwt',
      access_token_ttl: 300,
      client_id: shop.client_id,
      removed: { scopes: ['write:cart'], consents: 1, clients: 2 },
    });
    const listed = JSON.parse((await pc.cli(['api', 'list', '--json'])).stdout) as { identifier: string; name: string }[];
    expect(listed.find((api) => api.identifier === SHOP)).toMatchObject({ name: 'Shop', token_format: 'jwt', access_token_ttl: 300 });

    // What is kept goes on, as the API now says: a JWT living five minutes.
    const robotToken = await oidc.clientCredentialsGrant(robot, { resource: SHOP, scope: 'read:cart' });
    expect(robotToken.scope).toBe('read:cart');
    const claims = decodeJwt(robotToken.access_token);
    expect([claims.aud, claims.scope, claims.exp! - claims.iat!]).toEqual([SHOP, 'read:cart', 300]);
    // What was taken away is in no token issued afterwards, a refresh's included.
    await expect(oidc.clientCredentialsGrant(robot, { resource: SHOP, scope: 'write:cart' })).rejects.toMatchObject({ error: 'invalid_scope' });
    const refreshed = await oidc.refreshTokenGrant(app, tokens.refresh_token!, { resource: SHOP });
    expect(refreshed.scope).toBe('read:cart');
    expect(decodeJwt(refreshed.access_token).scope).toBe('read:cart');
    // A new scope is the clients' only once their registration lists it.
    await expect(oidc.clientCredentialsGrant(robot, { resource: SHOP, scope: 'pay:cart' })).rejects.toMatchObject({ error: 'invalid_scope' });
    const clients = JSON.parse((await pc.cli(['client', 'list', '--json'])).stdout) as { client_id: string; scope: string }[];
    expect(clients.find((client) => client.client_id === robotClient.client_id)?.scope).toBe('read:cart');
    expect(clients.find((client) => client.client_id === appClient.client_id)?.scope).toBe('openid offline_access read:cart');
    // A token issued before says what it said until it expires.
    const asShop = await discover(pc.issuer, shop.client_id, shop.client_secret);
    expect(await oidc.tokenIntrospection(asShop, issuedBefore)).toMatchObject({ active: true, scope: 'read:cart write:cart' });

    // Given back, the scope is given to no one: registrations and consents were narrowed, not hidden.
    const back = await pc.cli(['api', 'update', SHOP, '--scope', 'read:cart', '--scope', 'write:cart']);
    expect(back.code, back.stderr).toBe(0);
    expect(back.stdout).toBe(`updated API ${SHOP} (jwt tokens, 300s; scopes read:cart write:cart)\ntaken away: pay:cart; 0 consent(s) and 0 client(s) no longer include them (tokens already issued keep them until they expire)\n`);
    await expect(oidc.clientCredentialsGrant(robot, { resource: SHOP, scope: 'write:cart' })).rejects.toMatchObject({ error: 'invalid_scope' });
    // Registered for it again, the app still has no consent to it: the person is asked again, not the refresh given it.
    expect((await pc.cli(['client', 'update', appClient.client_id, '--scope', 'openid offline_access read:cart write:cart'])).code).toBe(0);
    expect((await oidc.refreshTokenGrant(app, refreshed.refresh_token!, { resource: SHOP })).scope).toBe('read:cart');
    // `--name ""` gives back the identifier's host.
    const renamed = await pc.cli(['api', 'update', SHOP, '--name', '', '--json']);
    expect(JSON.parse(renamed.stdout)).toMatchObject({ name: 'shop.example.com', removed: { scopes: [], consents: 0, clients: 0 } });

    for (const [args, code, message] of [
      [['https://nowhere.example.com', '--name', 'X'], 1, 'no API with identifier https://nowhere.example.com'],
      [[SHOP], 2, 'nothing to change: give at least one option'],
      [['--name', 'X'], 2, 'expected the IDENTIFIER first'],
      [[SHOP, '--scope', 'openid'], 1, 'OpenID Connect scope'],
      [[SHOP, '--scope', 'a', '--scope', 'a'], 1, 'a scope is listed twice'],
      [[SHOP, '--ttl', '2d'], 1, '--ttl must be between 1s and 24h'],
      [[SHOP, '--token-format', 'xml'], 2, '--token-format must be jwt or opaque'],
      [[SHOP, '--name', 'Spoof\u202e'], 1, 'bidirectional overrides'],
    ] as [string[], number, string][]) {
      const result = await pc.cli(['api', 'update', ...args]);
      expect([result.code, result.stderr], message).toEqual([code, expect.stringContaining(message)]);
    }
    // None of those changed anything.
    const after = JSON.parse((await pc.cli(['api', 'list', '--json'])).stdout) as { identifier: string }[];
    expect(after.find((api) => api.identifier === SHOP)).toMatchObject({ name: 'shop.example.com', scopes: [{ name: 'read:cart' }, { name: 'write:cart' }], access_token_ttl: 300 });

    const deleted = await pc.cli(['api', 'delete', SHOP, '--json']);
    // (The two opaque tokens issued before the update: the robot's and the app's.)
    expect(JSON.parse(deleted.stdout)).toEqual({ identifier: SHOP, removed: { opaque_access_tokens: 2, consents: 1, clients: 2 } });
  }, 180_000);

  it('lists and deletes APIs; bad definitions get clear errors', async () => {
    const listed = JSON.parse((await pc.cli(['api', 'list', '--json'])).stdout) as { identifier: string; scopes: unknown[] }[];
    expect(listed.map((api) => api.identifier)).toEqual(expect.arrayContaining([ORDERS, BILLING, REPORTS]));
    expect(JSON.stringify(listed)).not.toContain(apis.orders.client_secret);
    // API credentials are not listed among clients.
    expect((await pc.cli(['client', 'list'])).stdout).not.toContain(apis.orders.client_id);

    const temp = await createApi(['--identifier', 'https://temp.example.com', '--scope', 'x:y']);
    expect((await pc.cli(['api', 'delete', temp.identifier])).code).toBe(0);
    await expect(machineToken('https://temp.example.com', 'x:y')).rejects.toMatchObject({ error: 'invalid_target' });

    for (const [args, message] of [
      [['--identifier', ORDERS, '--scope', 'a'], 'already exists'],
      // The same address written otherwise would be a second API no one could tell from the first.
      [['--identifier', 'HTTPS://Orders.Example.COM/', '--scope', 'a'], `is the address of the API ${ORDERS}, written otherwise`],
      [['--identifier', 'https://orders.example.com:443', '--scope', 'a'], `is the address of the API ${ORDERS}, written otherwise`],
      // Tokens for this server itself: it takes none.
      [['--identifier', `${pc.issuer}/`, '--scope', 'a'], "is this server's own address (ISSUER)"],
      [['--identifier', 'not a uri', '--scope', 'a'], 'not an absolute URI'],
      [['--identifier', 'https://x.example/#frag', '--scope', 'a'], 'fragment'],
      [['--identifier', `https://x.example/${randomBytes(2000).toString('hex')}`, '--scope', 'a'], 'at most 2048 characters'],
      [['--identifier', 'https://x.example/'], 'at least one --scope'],
      [['--identifier', 'https://x.example/', '--scope', 'openid'], 'OpenID Connect scope'],
      [['--identifier', 'https://x.example/', '--scope', 'a', '--ttl', 'forever'], 'not a duration'],
      // What the consent page shows must read as written: no reordering, no control characters.
      [['--identifier', 'https://x.example/\u202e', '--scope', 'a'], 'printable ASCII'],
      [['--identifier', 'https://x.example/', '--scope', 'a=Read your \u202eyranib\u202c files'], 'bidirectional overrides'],
      [['--identifier', 'https://x.example/', '--scope', 'a=Read \u001b[31m'], 'control characters'],
      [['--identifier', 'https://x.example/', '--scope', `a=${'x'.repeat(301)}`], 'at most 300 characters'],
      [['--identifier', 'https://x.example/', '--scope', 'a', '--name', 'Spoof\u202e'], 'bidirectional overrides'],
      [['--identifier', 'https://x.example/', '--scope', 'a', '--name', 'x'.repeat(201)], 'at most 200 characters'],
    ] as [string[], string][]) {
      const result = await pc.cli(['api', 'create', ...args]);
      expect(result.code, message).toBe(1);
      expect(result.stderr).toContain(message);
    }
    const badFormat = await pc.cli(['api', 'create', '--identifier', 'https://x.example/', '--scope', 'a', '--token-format', 'xml']);
    expect(badFormat.code).toBe(2);
  }, 180_000); // twenty-two CLI processes, each a Node start-up: over a minute on a busy machine (PGlite, in the full suite)
});

describe('SIGNING_ALG=RS256', () => {
  it('JWT access tokens are RS256, for resource servers that verify nothing else (RFC 9068 §2.1), with one RS256 key', async () => {
    const server = await startPortcullis({ SIGNING_ALG: 'RS256' });
    try {
      const api = 'https://rsa-only.example.com';
      expect((await server.cli(['api', 'create', '--identifier', api, '--scope', 'read:things', '--token-format', 'jwt'])).code).toBe(0);
      const robot = await server.createClient({ name: 'Robot', grantTypes: ['client_credentials'], scope: 'read:things' });
      const config = await discover(server.issuer, robot.client_id, robot.client_secret);
      const { access_token } = await oidc.clientCredentialsGrant(config, { resource: api, scope: 'read:things' });
      expect(decodeProtectedHeader(access_token)).toMatchObject({ alg: 'RS256', typ: 'at+jwt' });
      const jwks = createRemoteJWKSet(new URL(`${server.issuer}/jwks`));
      const { payload } = await jwtVerify(access_token, jwks, { issuer: server.issuer, audience: api, algorithms: ['RS256'], typ: 'at+jwt' });
      expect(payload.scope).toBe('read:things');
      const keys = ((await (await fetch(`${server.issuer}/jwks`)).json()) as { keys: { alg: string }[] }).keys;
      expect(keys.map((key) => key.alg)).toEqual(['RS256']);
      // A rotation replaces it with one RS256 key, not two.
      expect((await server.cli(['keys', 'rotate'])).code).toBe(0);
      const listed = JSON.parse((await server.cli(['keys', 'list', '--json'])).stdout) as { alg: string; status: string }[];
      expect(listed.filter((key) => key.status === 'next').map((key) => key.alg)).toEqual(['RS256']);
    } finally {
      expect(server.errors).toEqual([]);
      await server.close();
    }
  });
});
