// Pairwise subject identifiers (OpenID Connect Core §8): a client made with
// `--subject-type pairwise` knows each person by a `sub` made for the host of
// its redirect URIs (its sector, §8.1), so apps on different hosts cannot
// match their people, while a public client's `sub` is the user id. Checked
// where a `sub` is written (ID token, UserInfo, introspection, JWT access
// tokens, logout tokens) and read back (id_token_hint, the claims parameter,
// introspecting a JWT, the CLI), with openid-client and jose as the clients.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRemoteJWKSet, decodeJwt, jwtVerify } from 'jose';
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPortcullis, type TestPortcullis } from '../support/portcullis.js';
import { basicAuth, pageKind } from '../support/relying-party.js';
import { UserAgent, type Page } from '../support/user-agent.js';

const erin = { email: 'erin@example.com', password: 'erin has a long password' };
const frank = { email: 'frank@example.com', password: 'frank has a long password' };
const PAIRWISE_SUB = /^[A-Za-z0-9_-]{22}$/;

let pc: TestPortcullis;
let erinId: string;
let frankId: string;
let logoutReceiver: http.Server;
let logoutBase: string;
const logoutTokens: { path: string; token: string }[] = [];

async function userId(email: string): Promise<string> {
  const shown = await pc.cli(['user', 'show', email, '--json']);
  expect(shown.code, shown.stderr).toBe(0);
  return (JSON.parse(shown.stdout) as { id: string }).id;
}

beforeAll(async () => {
  logoutReceiver = http.createServer((request, response) => {
    let body = '';
    request.on('data', (chunk) => (body += chunk));
    request.on('end', () => {
      logoutTokens.push({ path: request.url ?? '', token: new URLSearchParams(body).get('logout_token') ?? '' });
      response.end();
    });
  });
  await new Promise<void>((resolve) => logoutReceiver.listen(0, '127.0.0.1', resolve));
  logoutBase = `http://127.0.0.1:${(logoutReceiver.address() as AddressInfo).port}`;
  pc = await startPortcullis();
  await pc.createUser(erin.email, erin.password, 'Erin Example');
  await pc.createUser(frank.email, frank.password, 'Frank Example');
  erinId = await userId(erin.email);
  frankId = await userId(frank.email);
});

afterAll(async () => {
  expect(pc?.errors ?? []).toEqual([]);
  await pc?.close();
  await new Promise((resolve) => logoutReceiver?.close(resolve));
});

interface App {
  clientId: string;
  redirectUri: string;
  rp: oidc.Configuration;
}

/** A confidential client with the given subject type, redirected to `redirectUri`. */
async function app(name: string, redirectUri: string, extra: string[] = []): Promise<App> {
  const created = await pc.cli(['client', 'create', '--name', name, '--redirect-uri', redirectUri, '--scope', 'openid email profile', ...extra, '--json']);
  expect(created.code, created.stderr).toBe(0);
  const { client_id: clientId, client_secret: secret } = JSON.parse(created.stdout) as { client_id: string; client_secret: string };
  const rp = await oidc.discovery(new URL(pc.issuer), clientId, secret, undefined, { execute: [oidc.allowInsecureRequests] });
  return { clientId, redirectUri, rp };
}

/** Follows a sign-in in `ua` to `app`'s redirect URI, signing in as `who` and consenting where asked. */
async function throughPages(ua: UserAgent, target: App, first: Page, who = erin): Promise<Page> {
  let page = first;
  for (let step = 0; step < 4 && !page.url.startsWith(target.redirectUri); step++) {
    const kind = pageKind(page);
    if (kind === 'login') {
      page = await ua.post(page, UserAgent.formAction(page, '/login'), { ...UserAgent.formFields(page, '/login'), email: who.email, password: who.password }, target.redirectUri);
    } else if (kind === 'consent') {
      page = await ua.post(page, UserAgent.formAction(page, '/confirm'), UserAgent.formFields(page, '/confirm'), target.redirectUri);
    } else {
      throw new Error(`unexpected page ${page.url} (${page.status}):\n${page.html.slice(0, 2000)}`);
    }
  }
  return page;
}

/** An authorization request of `app`'s, with PKCE; what its callback is checked against. */
async function request(target: App, extra: Record<string, string> = {}) {
  const verifier = oidc.randomPKCECodeVerifier();
  const checks = { pkceCodeVerifier: verifier, expectedState: oidc.randomState(), expectedNonce: oidc.randomNonce() };
  const url = oidc.buildAuthorizationUrl(target.rp, {
    redirect_uri: target.redirectUri,
    scope: 'openid email',
    state: checks.expectedState,
    nonce: checks.expectedNonce,
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    ...extra,
  });
  return { url, checks };
}

/** The whole sign-in of `who` at `app` in `ua`, and its tokens. */
async function signInAt(ua: UserAgent, target: App, who = erin, extra: Record<string, string> = {}) {
  const { url, checks } = await request(target, extra);
  const callback = await throughPages(ua, target, await ua.open(url.href, {}, target.redirectUri), who);
  return oidc.authorizationCodeGrant(target.rp, new URL(callback.url), checks);
}

async function introspect(token: string, clientId: string, secret: string): Promise<Record<string, unknown>> {
  const response = await fetch(`${pc.issuer}/token/introspection`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basicAuth(clientId, secret) },
    body: new URLSearchParams({ token }),
  });
  expect(response.status).toBe(200);
  return (await response.json()) as Record<string, unknown>;
}

describe('pairwise subject identifiers', () => {
  it('discovery offers both subject types', async () => {
    const discovery = (await (await fetch(`${pc.issuer}/.well-known/openid-configuration`)).json()) as { subject_types_supported: string[] };
    expect(discovery.subject_types_supported).toEqual(['public', 'pairwise']);
  });

  it('one sub per sector: clients on one host agree, clients on another host see another, a public client sees the user id; ID token, UserInfo and introspection say the same', async () => {
    const mail = await app('Mail', 'https://mail.example.com/callback', ['--subject-type', 'pairwise']);
    const calendar = await app('Calendar', 'https://mail.example.com/calendar/callback', ['--subject-type', 'pairwise']);
    const shop = await app('Shop', 'https://shop.example.net/callback', ['--subject-type', 'pairwise']);
    const forum = await app('Forum', 'https://forum.example.org/callback');
    const ua = new UserAgent();
    const subs: Record<string, string> = {};
    for (const [name, target] of Object.entries({ mail, calendar, shop, forum })) {
      const tokens = await signInAt(ua, target);
      const sub = tokens.claims()!.sub;
      // UserInfo is checked against the ID token's sub by openid-client itself (Core §5.3.2).
      const userinfo = await oidc.fetchUserInfo(target.rp, tokens.access_token, sub);
      expect(userinfo.email).toBe(erin.email);
      const introspected = await oidc.tokenIntrospection(target.rp, tokens.access_token);
      expect([introspected.active, introspected.sub]).toEqual([true, sub]);
      subs[name] = sub;
    }
    expect(subs.forum).toBe(erinId);
    expect(subs.mail).toMatch(PAIRWISE_SUB);
    expect(subs.shop).toMatch(PAIRWISE_SUB);
    expect(subs.calendar).toBe(subs.mail);
    expect(subs.shop).not.toBe(subs.mail);

    // Another person has another identifier in the same sector; the same person, the same one at the next sign-in.
    const other = await signInAt(new UserAgent(), mail, frank);
    expect(other.claims()!.sub).toMatch(PAIRWISE_SUB);
    expect(other.claims()!.sub).not.toBe(subs.mail);
    expect((await signInAt(new UserAgent(), calendar)).claims()!.sub).toBe(subs.mail);

    // The operator, handed a client's sub, finds the person; and is told the sub a client knows someone by.
    const found = await pc.cli(['user', 'show', subs.shop!, '--client', shop.clientId, '--json']);
    expect(found.code, found.stderr).toBe(0);
    expect(JSON.parse(found.stdout)).toMatchObject({ id: erinId, email: erin.email, subject: { client_id: shop.clientId, sub: subs.shop } });
    const told = await pc.cli(['user', 'show', frank.email, '--client', mail.clientId]);
    expect(told.stdout).toContain(`sub:          ${other.claims()!.sub} (at client ${mail.clientId})\n`);
    // Another sector's identifier names nobody at this client, nor does one of another spelling (review BK).
    for (const sub of [subs.shop!, `${subs.shop!.slice(0, 21)}${subs.shop!.at(-1) === 'A' ? 'B' : 'A'}`, 'not-an-identifier']) {
      const elsewhere = await pc.cli(['user', 'show', sub, '--client', mail.clientId]);
      expect([elsewhere.code, elsewhere.stderr]).toEqual([1, `portcullis: no user ${sub} (as client ${mail.clientId} names people)\n`]);
    }
    // An API's credentials sign no one in: no sub there.
    const api = await pc.cli(['api', 'create', '--identifier', 'https://sectors.example.com', '--scope', 'read', '--json']);
    const apiClient = (JSON.parse(api.stdout) as { client_id: string }).client_id;
    const credentials = await pc.cli(['user', 'show', erin.email, '--client', apiClient]);
    expect([credentials.code, credentials.stderr]).toEqual([1, `portcullis: client ${apiClient} holds the credentials of API https://sectors.example.com; \`portcullis api list\` shows it\n`]);
  });

  it("an API's JWT access token carries the client's pairwise sub, which introspection answers and turns back into the person: a disabled one's token is inactive", async () => {
    const api = await pc.cli(['api', 'create', '--identifier', 'https://orders.example.com', '--scope', 'read:orders=See your orders', '--json']);
    expect(api.code, api.stderr).toBe(0);
    const { client_id: apiId, client_secret: apiSecret } = JSON.parse(api.stdout) as { client_id: string; client_secret: string };
    const opaque = await pc.cli(['api', 'create', '--identifier', 'https://stock.example.com', '--scope', 'read:stock=See the stock', '--token-format', 'opaque', '--json']);
    expect(opaque.code, opaque.stderr).toBe(0);
    const stock = JSON.parse(opaque.stdout) as { client_id: string; client_secret: string };
    const created = await pc.cli(['client', 'create', '--name', 'Orders', '--redirect-uri', 'https://orders-app.example.com/cb', '--scope', 'openid read:orders read:stock', '--subject-type', 'pairwise', '--json']);
    expect(created.code, created.stderr).toBe(0);
    const { client_id: clientId, client_secret: secret } = JSON.parse(created.stdout) as { client_id: string; client_secret: string };
    const orders: App = {
      clientId,
      redirectUri: 'https://orders-app.example.com/cb',
      rp: await oidc.discovery(new URL(pc.issuer), clientId, secret, undefined, { execute: [oidc.allowInsecureRequests] }),
    };

    const ua = new UserAgent();
    const tokens = await signInAt(ua, orders, frank, { scope: 'openid read:orders', resource: 'https://orders.example.com' });
    const sub = tokens.claims()!.sub;
    expect(sub).toMatch(PAIRWISE_SUB);
    const { payload } = await jwtVerify(tokens.access_token, createRemoteJWKSet(new URL(`${pc.issuer}/jwks`)), { issuer: pc.issuer, audience: 'https://orders.example.com', typ: 'at+jwt' });
    expect(payload.sub).toBe(sub);
    expect(await introspect(tokens.access_token, apiId, apiSecret)).toMatchObject({ active: true, sub, client_id: clientId });

    const stockTokens = await signInAt(ua, orders, frank, { scope: 'openid read:stock', resource: 'https://stock.example.com' });
    expect(stockTokens.claims()!.sub).toBe(sub);
    expect(await introspect(stockTokens.access_token, stock.client_id, stock.client_secret)).toMatchObject({ active: true, sub, client_id: clientId });

    // The JWT names Frank only by the app's identifier: introspection finds him behind it.
    expect((await pc.cli(['user', 'disable', frank.email])).code).toBe(0);
    try {
      expect(await introspect(tokens.access_token, apiId, apiSecret)).toEqual({ active: false });
      expect(await introspect(stockTokens.access_token, stock.client_id, stock.client_secret)).toEqual({ active: false });
    } finally {
      expect((await pc.cli(['user', 'enable', frank.email])).code).toBe(0);
    }
  });

  it('an id_token_hint or a claims sub value names the person as the pairwise client knows them: the same person goes on, another is refused', async () => {
    const wiki = await app('Wiki', 'https://wiki.example.com/callback', ['--subject-type', 'pairwise']);
    const ua = new UserAgent();
    const first = await signInAt(ua, wiki);
    const idToken = first.id_token!;
    const sub = first.claims()!.sub;
    expect(sub).not.toBe(erinId);

    // Signed in already, without a page: the hint's sub is Erin's at this app (the library's checks).
    const silent = await request(wiki, { prompt: 'none', id_token_hint: idToken });
    const answered = await ua.open(silent.url.href, {}, wiki.redirectUri);
    expect(new URL(answered.url).searchParams.get('code')).toBeTruthy();
    const claimed = await request(wiki, { prompt: 'none', claims: JSON.stringify({ id_token: { sub: { value: sub } } }) });
    expect(new URL((await ua.open(claimed.url.href, {}, wiki.redirectUri)).url).searchParams.get('code')).toBeTruthy();

    // prompt=select_account with the hint, signed in as the person it names: the choice is offered (not a sign-in).
    const choose = await request(wiki, { prompt: 'select_account', id_token_hint: idToken });
    const chosen = await ua.open(choose.url.href, {}, wiki.redirectUri);
    expect(chosen.html).toContain('<h1>Choose an account to continue to <bdi>Wiki</bdi></h1>');
    expect(pageKind(chosen)).toBe('other');

    // In another browser, the hint names Erin: Frank's sign-in is refused, Erin's goes through.
    const hinted = await request(wiki, { id_token_hint: idToken });
    const elsewhere = new UserAgent();
    const refused = await throughPages(elsewhere, wiki, await elsewhere.open(hinted.url.href, {}, wiki.redirectUri), frank);
    expect(Object.fromEntries(new URL(refused.url).searchParams)).toMatchObject({ error: 'login_required', error_description: 'the End-User who signed in is not the one the id_token_hint names' });
    const again = await request(wiki, { id_token_hint: idToken });
    const browser = new UserAgent();
    const accepted = await throughPages(browser, wiki, await browser.open(again.url.href, {}, wiki.redirectUri));
    const tokens = await oidc.authorizationCodeGrant(wiki.rp, new URL(accepted.url), again.checks);
    expect(tokens.claims()!.sub).toBe(sub);

    // The sign-out page, given the hint, knows it names the person signed in.
    const logout = await ua.open(`${pc.issuer}/session/end?id_token_hint=${encodeURIComponent(idToken)}`);
    expect(logout.html).toContain('You are signed in as');
    expect(logout.html).not.toContain('asked to sign out another account');
  });

  it('logout tokens name the person by the pairwise sub: from the sign-out page and from the CLI', async () => {
    const notes = await app('Notes', 'https://notes.example.com/callback', ['--subject-type', 'pairwise', '--backchannel-logout-uri', `${logoutBase}/notes`]);
    const jwks = createRemoteJWKSet(new URL(`${pc.issuer}/jwks`));
    const ua = new UserAgent();
    const sub = (await signInAt(ua, notes)).claims()!.sub;
    expect(sub).toMatch(PAIRWISE_SUB);

    logoutTokens.length = 0;
    const logout = await ua.open(`${pc.issuer}/session/end`);
    await ua.post(logout, UserAgent.formAction(logout, '/session/end/confirm'), { ...UserAgent.hiddenFields(logout), logout: 'yes' });
    const fromPage = logoutTokens.find((delivery) => delivery.path === '/notes');
    expect(fromPage).toBeDefined();
    expect((await jwtVerify(fromPage!.token, jwks, { issuer: pc.issuer, audience: notes.clientId, typ: 'logout+jwt' })).payload.sub).toBe(sub);

    await signInAt(ua, notes);
    logoutTokens.length = 0;
    const revoked = await pc.cli(['user', 'revoke', erin.email]);
    expect(revoked.code, revoked.stderr).toBe(0);
    const fromCli = logoutTokens.find((delivery) => delivery.path === '/notes');
    expect(fromCli).toBeDefined();
    expect(decodeJwt(fromCli!.token).sub).toBe(sub);
    expect((await jwtVerify(fromCli!.token, jwks, { issuer: pc.issuer, audience: notes.clientId, typ: 'logout+jwt' })).payload.sub).toBe(sub);
  });
});

describe('registering pairwise identifiers', () => {
  const refused = async (args: string[], code = 1) => {
    const result = await pc.cli(args);
    expect(result.stdout).toBe('');
    expect(result.code).toBe(code);
    return result.stderr;
  };

  it('needs the redirect URIs on one host that names one, and a code flow without device_code', async () => {
    expect(await refused(['client', 'create', '--name', 'Two hosts', '--redirect-uri', 'https://a.example.com/cb', '--redirect-uri', 'https://b.example.com/cb', '--subject-type', 'pairwise'])).toBe(
      'portcullis: pairwise identifiers need the redirect URIs on one host, which they are made for (OpenID Connect Core §8.1), not a.example.com, b.example.com: register a client per host\n',
    );
    expect(await refused(['client', 'create', '--name', 'Native', '--native', '--redirect-uri', 'com.example.app:/callback', '--subject-type', 'pairwise'])).toContain(
      'a private-use scheme (com.example.app:/callback) names none',
    );
    expect(await refused(['client', 'create', '--name', 'Machine', '--grant-type', 'client_credentials', '--scope', 'openid', '--subject-type', 'pairwise'])).toContain(
      'pairwise identifiers are for a client that signs people in with authorization_code',
    );
    expect(await refused(['client', 'create', '--name', 'TV', '--redirect-uri', 'https://tv.example.com/cb', '--grant-type', 'authorization_code', '--grant-type', 'device_code', '--subject-type', 'pairwise'])).toContain(
      'pairwise identifiers cannot go with device_code',
    );
    expect(await refused(['client', 'create', '--name', 'Typo', '--redirect-uri', 'https://a.example.com/cb', '--subject-type', 'pairwsie'], 2)).toContain('--subject-type must be public or pairwise\n');
    // A port is part of the host (§8.1 takes the host as the URL has it): each port, another sector.
    const ports = await pc.cli(['client', 'create', '--name', 'Ports', '--redirect-uri', 'https://a.example.com:8443/cb', '--redirect-uri', 'https://a.example.com/cb', '--subject-type', 'pairwise']);
    expect(ports.stderr).toContain('not a.example.com:8443, a.example.com');
  });

  // Review BK: a loopback address names the person's own machine, which every
  // native app on it shares (RFC 8252 §7.3), not a host of the app's: two
  // unrelated apps there would be one sector, and see the same sub.
  it('refuses loopback redirect URIs, native or web: unrelated apps there would share their people\'s sub', async () => {
    for (const [kind, uri] of [['--native', 'http://127.0.0.1/callback'], ['--native', 'http://[::1]:8080/callback'], ['--public', 'http://localhost:8080/cb'], ['--public', 'https://127.0.0.2/cb'], ['--public', 'https://app.localhost/cb']] as const) {
      expect(await refused(['client', 'create', '--name', 'Loopback', kind, '--redirect-uri', uri, '--scope', 'openid', '--subject-type', 'pairwise'])).toContain(
        'is a loopback address, every app\'s on the person\'s machine, and unrelated apps there would share their people\'s sub',
      );
    }
  });

  // Probe BM: the loopback refusal reads the host as written, and misses the
  // spellings that name the same machine: the fully qualified localhost
  // (RFC 6761 §6.3 names "localhost." and its subdomains), an IPv4-mapped
  // 127.0.0.1 (RFC 4291 §2.5.5.2), and the unspecified addresses, which a
  // connection reaches this machine at. Each is registered today, pairwise.
  it('refuses the other spellings of a loopback address too', async () => {
    for (const uri of ['https://localhost./cb', 'https://app.localhost./cb', 'https://[::ffff:7f00:1]/cb', 'https://0.0.0.0/cb', 'https://[::]/cb']) {
      const result = await pc.cli(['client', 'create', '--name', 'Loopback', '--redirect-uri', uri, '--subject-type', 'pairwise']);
      expect([uri, result.code, result.stderr]).toEqual([uri, 1, expect.stringContaining("every app's on the person's machine, and unrelated apps there would share their people's sub")]);
    }
  });

  it('is for good: an update keeps the subject type and the host, and says so', async () => {
    const created = await pc.cli(['client', 'create', '--name', 'Kept', '--redirect-uri', 'https://kept.example.com/cb', '--subject-type', 'pairwise', '--json']);
    const { client_id: clientId } = JSON.parse(created.stdout) as { client_id: string };
    const show = await pc.cli(['client', 'show', clientId]);
    expect(show.stdout).toContain('subjects:      pairwise, made for kept.example.com\n');
    expect(await refused(['client', 'update', clientId, '--subject-type', 'public'], 2)).toContain("--subject-type is a client's for good (client create)");
    expect(await refused(['client', 'update', clientId, '--redirect-uri', 'https://elsewhere.example.com/cb'])).toBe(
      `portcullis: client ${clientId} has pairwise identifiers made for kept.example.com: its redirect URIs stay on that host (on another, everyone would have another sub at the app; register a client for it)\n`,
    );
    // On the same host, addresses may change; other changes keep the subject type.
    expect((await pc.cli(['client', 'update', clientId, '--redirect-uri', 'https://kept.example.com/new-cb', '--name', 'Kept still'])).code).toBe(0);
    const after = JSON.parse((await pc.cli(['client', 'show', clientId, '--json'])).stdout) as Record<string, unknown>;
    expect(after).toMatchObject({ client_name: 'Kept still', subject_type: 'pairwise', redirect_uris: ['https://kept.example.com/new-cb'] });
    const plain = await pc.cli(['client', 'create', '--name', 'Plain', '--redirect-uri', 'https://plain.example.com/cb', '--json']);
    const plainId = (JSON.parse(plain.stdout) as { client_id: string }).client_id;
    expect((await pc.cli(['client', 'show', plainId])).stdout).toContain('subjects:      public (the user id)\n');
    expect(JSON.parse((await pc.cli(['client', 'show', plainId, '--json'])).stdout)).toMatchObject({ subject_type: 'public' });
  });
});
