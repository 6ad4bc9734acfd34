// The operator's side: the `portcullis` CLI, run as a separate process against
// the same database as a running server (or with no server at all).
import { createHash, randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { closeSync, cpSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshDatabase, SERVER_URL } from '../support/database.js';
import { embedded, heldAtTheLock } from '../support/locks.js';
import { freePort, runCli, startPortcullis, TEST_ENV, type TestPortcullis } from '../support/portcullis.js';
import * as oidc from 'openid-client';
import { authorizationRequest, discover, logIn, pageKind, REDIRECT_URI, signIn, signInRefusal, visit, type SignInRefusal } from '../support/relying-party.js';
import { sha256 } from '../support/digest.js';
import { UserAgent } from '../support/user-agent.js';
import { serveExampleApi } from '../support/example-api.js';
import { createServer, type Server } from 'node:http';
import pg from 'pg';

let pc: TestPortcullis;

beforeAll(async () => {
  // Activation is long enough that `keys rotate` still lists its key as next
  // on a slow machine (with 1 s, a PGlite CLI run under load outlasted it).
  pc = await startPortcullis({ KEY_REFRESH_INTERVAL: '1s', KEY_ACTIVATION_DELAY: '5s' });
});

afterAll(async () => {
  expect(pc?.errors ?? []).toEqual([]);
  await pc?.close();
});

const noStackTrace = (text: string) => expect(text).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m);

describe('portcullis client', () => {
  it('create --json prints the id, a secret once and the registration; list shows the client without the secret', async () => {
    const created = await pc.cli([
      'client', 'create', '--name', 'Inventory', '--redirect-uri', 'https://inventory.example/cb',
      '--redirect-uri', 'https://inventory.example/cb2', '--scope', 'openid email', '--json',
    ]);
    expect(created.code).toBe(0);
    const { client_id, client_secret } = JSON.parse(created.stdout);
    expect(client_id).toMatch(/^[\w-]{16,}$/);
    expect(client_secret).toMatch(/^[\w-]{40,}$/);

    const listed = await pc.cli(['client', 'list', '--json']);
    const entry = JSON.parse(listed.stdout).find((client: { client_id: string }) => client.client_id === client_id);
    expect(entry).toMatchObject({
      client_name: 'Inventory',
      public: false,
      redirect_uris: ['https://inventory.example/cb', 'https://inventory.example/cb2'],
      scope: 'openid email',
      id_token_signed_response_alg: 'RS256',
    });
    expect(Object.keys(entry)).not.toContain('logo_uri'); // none registered
    // What create printed: the id and secret first, then the same registration.
    const printed = JSON.parse(created.stdout) as Record<string, unknown>;
    expect(printed).toEqual({ ...entry, client_secret });
    expect(Object.keys(printed).slice(0, 2)).toEqual(['client_id', 'client_secret']);

    const described = await pc.cli([
      'client', 'create', '--name', 'Described', '--redirect-uri', REDIRECT_URI, '--id-token-alg', 'ES256', '--logo-uri', 'https://d.example/logo.png',
      '--client-uri', 'https://d.example/', '--policy-uri', 'https://d.example/privacy', '--tos-uri', 'https://d.example/terms', '--json',
    ]);
    expect(described.code, described.stderr).toBe(0);
    const shown = JSON.parse((await pc.cli(['client', 'list', '--json'])).stdout).find((client: { client_id: string }) => client.client_id === JSON.parse(described.stdout).client_id);
    expect(shown).toMatchObject({
      id_token_signed_response_alg: 'ES256',
      logo_uri: 'https://d.example/logo.png',
      client_uri: 'https://d.example/',
      policy_uri: 'https://d.example/privacy',
      tos_uri: 'https://d.example/terms',
    });
    expect(listed.stdout).not.toContain(client_secret);
  });

  it('show prints one client\'s registration and how many consents to it are in force; not an API\'s credentials', async () => {
    const created = await pc.cli(['client', 'create', '--name', 'Shown', '--redirect-uri', REDIRECT_URI, '--logo-uri', 'https://s.example/logo.png', '--json']);
    const { client_id, client_secret } = JSON.parse(created.stdout) as { client_id: string; client_secret: string };
    const listed = (JSON.parse((await pc.cli(['client', 'list', '--json'])).stdout) as { client_id: string }[]).find((client) => client.client_id === client_id);
    const show = async () => JSON.parse((await pc.cli(['client', 'show', client_id, '--json'])).stdout) as Record<string, unknown>;
    expect(await show()).toEqual({ ...listed, consented_users: 0 });

    await pc.createUser('shona@example.com', 'shonas password');
    const rp = await discover(pc.issuer, client_id, client_secret);
    expect((await logIn(new UserAgent(), rp, 'openid', { email: 'shona@example.com', password: 'shonas password' })).seen).toEqual(['login', 'consent']);
    expect((await show()).consented_users).toBe(1);
    const text = await pc.cli(['client', 'show', client_id]);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^name: +Shown$/m);
    expect(text.stdout).toMatch(new RegExp(`^redirect URIs: +${REDIRECT_URI.replace(/[.?]/g, '\\$&')}$`, 'm'));
    expect(text.stdout).toMatch(/^logo URI: +https:\/\/s\.example\/logo\.png$/m);
    expect(text.stdout).toMatch(/^consented: +1 person$/m);
    expect(text.stdout).not.toMatch(/policy URI|disabled/); // none registered; not disabled
    expect(text.stdout).not.toContain(client_secret);
    expect((await pc.cli(['user', 'revoke', 'shona@example.com'])).code).toBe(0);
    expect((await show()).consented_users).toBe(0);

    const api = JSON.parse((await pc.cli(['api', 'create', '--identifier', 'https://shown-api.example.com', '--scope', 'read', '--json'])).stdout) as { client_id: string };
    const refused = await pc.cli(['client', 'show', api.client_id]);
    expect([refused.code, refused.stderr]).toEqual([1, `portcullis: client ${api.client_id} holds the credentials of API https://shown-api.example.com; \`portcullis api list\` shows it\n`]);
    const unknown = await pc.cli(['client', 'show', 'no-such-client']);
    expect([unknown.code, unknown.stderr]).toEqual([1, 'portcullis: no client with id no-such-client\n']);
  });

  it('--public creates a client without a secret', async () => {
    const created = await pc.cli(['client', 'create', '--name', 'SPA', '--redirect-uri', REDIRECT_URI, '--public', '--json']);
    expect(created.code).toBe(0);
    const printed = JSON.parse(created.stdout) as Record<string, unknown>;
    expect(printed).toMatchObject({ client_id: expect.any(String), public: true, client_name: 'SPA' });
    expect(Object.keys(printed)).not.toContain('client_secret');
  });

  it('delete removes a client, which the server then no longer knows', async () => {
    const { client_id, client_secret } = await pc.createClient({ name: 'Doomed', redirectUris: [REDIRECT_URI] });
    await pc.createUser('dora@example.com', 'doras password');
    const rp = await discover(pc.issuer, client_id, client_secret);
    const { tokens } = await logIn(new UserAgent(), rp, 'openid', { email: 'dora@example.com', password: 'doras password' });

    const deleted = await pc.cli(['client', 'delete', client_id, '--json']);
    expect(deleted.code, deleted.stderr).toBe(0);
    expect(JSON.parse(deleted.stdout)).toEqual({ client_id, deleted: true });
    const response = await fetch(`${pc.issuer}/auth?client_id=${client_id}&response_type=code&scope=openid&redirect_uri=${REDIRECT_URI}`);
    expect(response.status).toBe(400);
    // Its tokens went with it.
    const me = await fetch(`${pc.issuer}/me`, { headers: { authorization: `Bearer ${tokens.access_token}` } });
    expect(me.status).toBe(401);

    const again = await pc.cli(['client', 'delete', client_id]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain(`no client with id ${client_id}`);
  });

  it('disable refuses a client everywhere until enable and ends what was issued to it; consents stay, so once enabled it signs people in without asking again', async () => {
    const api = JSON.parse((await pc.cli(['api', 'create', '--identifier', 'https://paused-api.example.com', '--scope', 'read:paused', '--token-format', 'jwt', '--json'])).stdout) as { client_id: string; client_secret: string };
    const paused = await pc.createClient({ name: 'Paused', redirectUris: [REDIRECT_URI], grantTypes: ['authorization_code', 'refresh_token', 'client_credentials'], scope: 'openid offline_access read:paused' });
    await pc.createUser('pausanias@example.com', 'pausanias password');
    const credentials = { email: 'pausanias@example.com', password: 'pausanias password' };
    const rp = await discover(pc.issuer, paused.client_id, paused.client_secret);
    const first = await logIn(new UserAgent(), rp, 'openid offline_access', credentials, { prompt: 'consent' });
    expect(first.seen).toEqual(['login', 'consent']);
    const machineToken = (await pc.clientCredentials(paused)).body.access_token as string;
    // A JWT for the API: stored nowhere, so only introspection can refuse it after.
    const { access_token: jwt } = await oidc.clientCredentialsGrant(rp, { resource: 'https://paused-api.example.com', scope: 'read:paused' });
    const apiRp = await discover(pc.issuer, api.client_id, api.client_secret);
    expect([(await oidc.tokenIntrospection(apiRp, jwt)).active, (await oidc.tokenIntrospection(rp, jwt)).active]).toEqual([true, true]);
    const outside = async (statement: string, parameters: string[]) => {
      const db = pc.outsideConnection();
      await db.connect();
      return db.query<{ row: string }>(statement, parameters).finally(() => db.end());
    };
    const stored = async (token: string) => (await outside(`SELECT row_to_json(a)::text AS row FROM provider_artifacts a WHERE id = $1`, [sha256(token)])).rows[0]!.row;
    const writeBack = (row: string) => outside(`INSERT INTO provider_artifacts SELECT * FROM json_populate_record(NULL::provider_artifacts, $1)`, [row]);
    const [machineRow, refreshRow, accessRow] = await Promise.all([machineToken, first.tokens.refresh_token!, first.tokens.access_token].map(stored));
    const userinfo = (token: string) => fetch(`${pc.issuer}/me`, { headers: { authorization: `Bearer ${token}` } }).then((response) => response.status);
    expect(await userinfo(first.tokens.access_token)).toBe(200);
    // A sign-in begun before the disable, to be finished after the enable.
    const pendingAgent = new UserAgent();
    const pending = await visit(pendingAgent, (await authorizationRequest(rp, 'openid')).url);
    expect(pageKind(pending)).toBe('login');

    const disabled = await pc.cli(['client', 'disable', paused.client_id, '--json']);
    expect(disabled.code, disabled.stderr).toBe(0);
    const report = JSON.parse(disabled.stdout) as { client_id: string; was_disabled: boolean; tokens_ended: number; removed: Record<string, number> };
    expect(report).toMatchObject({ client_id: paused.client_id, was_disabled: false });
    // The code, the access and refresh tokens, and the client-credentials token;
    // the sign-in in progress is counted apart, not as a token.
    expect(report.removed).toEqual({ AuthorizationCode: 1, AccessToken: 1, RefreshToken: 1, ClientCredentials: 1, Interaction: 1 });
    expect(report.tokens_ended).toBe(4);
    // Refused everywhere, as a client never registered is.
    const start = await visit(new UserAgent(), (await authorizationRequest(rp, 'openid')).url);
    expect([start.status, start.html.includes('Unknown application')]).toEqual([400, true]);
    const machine = await pc.clientCredentials(paused);
    expect([machine.status, machine.body.error]).toEqual([401, 'invalid_client']);
    await expect(oidc.refreshTokenGrant(rp, first.tokens.refresh_token!)).rejects.toMatchObject({ error: 'invalid_client' });
    expect(await userinfo(first.tokens.access_token)).toBe(401);
    const listed = JSON.parse((await pc.cli(['client', 'list', '--json'])).stdout) as { client_id: string; disabled_at: string | null }[];
    expect(Date.parse(listed.find((client) => client.client_id === paused.client_id)!.disabled_at!)).toBeGreaterThan(Date.now() - 60_000);
    expect((await pc.cli(['client', 'list'])).stdout).toMatch(new RegExp(`^${paused.client_id}  Paused  confidential  \\S+  \\(disabled\\)$`, 'm'));
    const again = await pc.cli(['client', 'disable', paused.client_id]);
    expect([again.code, again.stdout]).toEqual([0, `client ${paused.client_id} was disabled already; nothing issued to it was open\n`]);

    // Written back as a token request in flight while the disable ran would write it.
    await writeBack(machineRow!);

    const enabled = await pc.cli(['client', 'enable', paused.client_id, '--json']);
    expect(enabled.code, enabled.stderr).toBe(0);
    expect(JSON.parse(enabled.stdout)).toEqual({ client_id: paused.client_id, was_disabled: true, tokens_ended: 1, removed: { ClientCredentials: 1 } });
    // Written back by a request in flight through the whole disable, after the
    // enable: refused at refresh and UserInfo, as a JWT is at introspection.
    await writeBack(refreshRow!);
    await writeBack(accessRow!);
    expect(await oidc.tokenIntrospection(rp, machineToken)).toEqual({ active: false });
    // Nor is the JWT issued before the disable active again, to its API or its client.
    expect([await oidc.tokenIntrospection(apiRp, jwt), await oidc.tokenIntrospection(rp, jwt)]).toEqual([{ active: false }, { active: false }]);
    // The sign-in in progress ended with the disable: it gets no code now.
    const finished = await signIn(pendingAgent, pending, credentials.email, credentials.password);
    expect([finished.status, pageKind(finished), finished.html.includes('Your sign-in expired')]).toEqual([400, 'other', true]);
    // What it had before stays ended; the client itself works again.
    await expect(oidc.refreshTokenGrant(rp, first.tokens.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant' });
    expect(await userinfo(first.tokens.access_token)).toBe(401);
    expect((await pc.clientCredentials(paused)).status).toBe(200);
    // Their consent stayed: they sign in, and are not asked again.
    const second = await logIn(new UserAgent(), rp, 'openid offline_access', credentials);
    expect(second.seen).toEqual(['login']);
    expect(await userinfo(second.tokens.access_token)).toBe(200);
    const { access_token: newJwt } = await oidc.clientCredentialsGrant(rp, { resource: 'https://paused-api.example.com', scope: 'read:paused' });
    expect((await oidc.tokenIntrospection(apiRp, newJwt)).active).toBe(true);
    // Enabling a client that is not disabled ends nothing.
    const twice = await pc.cli(['client', 'enable', paused.client_id]);
    expect([twice.code, twice.stdout]).toEqual([0, `client ${paused.client_id} was not disabled\n`]);
    expect(await userinfo(second.tokens.access_token)).toBe(200);
    expect((await oidc.tokenIntrospection(apiRp, newJwt)).active).toBe(true);

    // An API's credentials are not a client to disable; an unknown id is not found.
    const apiRefused = await pc.cli(['client', 'disable', api.client_id]);
    expect([apiRefused.code, apiRefused.stderr]).toEqual([1, `portcullis: client ${api.client_id} holds the credentials of API https://paused-api.example.com; use \`portcullis client rotate-secret\` or \`portcullis api delete\`\n`]);
    for (const command of ['disable', 'enable']) {
      const unknown = await pc.cli(['client', command, 'no-such-client']);
      expect([unknown.code, unknown.stderr]).toEqual([1, 'portcullis: no client with id no-such-client\n']);
    }
  }, 120_000); // a dozen CLI runs and three sign-ins: a minute on a loaded machine

  it('update changes a registration in place: the server uses it at once; the id, secret and tokens stay', async () => {
    const { client_id, client_secret } = await pc.createClient({ name: 'Before', redirectUris: [REDIRECT_URI], postLogoutRedirectUris: [REDIRECT_URI] });
    await pc.createUser('uma@example.com', 'umas password');
    const rp = await discover(pc.issuer, client_id, client_secret);
    const { tokens } = await logIn(new UserAgent(), rp, 'openid', { email: 'uma@example.com', password: 'umas password' });

    const moved = 'http://127.0.0.1:9999/moved-callback';
    // An address given twice is registered once.
    const updated = await pc.cli(['client', 'update', client_id, '--name', 'After', '--redirect-uri', moved, '--redirect-uri', moved, '--logo-uri', 'https://example.com/logo.png', '--json']);
    expect(updated.code, updated.stderr).toBe(0);
    expect(JSON.parse(updated.stdout)).toMatchObject({
      client_id,
      client_name: 'After',
      redirect_uris: [moved],
      post_logout_redirect_uris: [REDIRECT_URI],
      id_token_signed_response_alg: 'RS256',
      logo_uri: 'https://example.com/logo.png',
    });
    const authorize = (redirectUri: string) =>
      visit(new UserAgent(), `${pc.issuer}/auth?${new URLSearchParams({ client_id, response_type: 'code', scope: 'openid', redirect_uri: redirectUri })}`);
    const atOld = await authorize(REDIRECT_URI);
    expect(atOld.status).toBe(400); // an error page, never a redirect to an address no longer registered
    const atNew = await authorize(moved);
    expect(pageKind(atNew)).toBe('login');
    expect(atNew.html).toContain('<strong><bdi>After</bdi></strong>');
    // The same credentials, and what was issued before, still work.
    expect((await oidc.tokenIntrospection(rp, tokens.access_token)).active).toBe(true);

    const removed = await pc.cli(['client', 'update', client_id, '--logo-uri', '', '--post-logout-redirect-uri', '', '--json']);
    expect(removed.code, removed.stderr).toBe(0);
    expect(JSON.parse(removed.stdout)).toMatchObject({ post_logout_redirect_uris: [] });
    expect(JSON.parse(removed.stdout)).not.toHaveProperty('logo_uri');
    const refusals: [string[], number, string][] = [
      [['client', 'update', client_id], 2, 'nothing to change'],
      [['client', 'update', '--name', 'x'], 2, 'CLIENT_ID first'],
      [['client', 'update', 'no-such-client', '--name', 'x'], 1, 'no client with id no-such-client'],
      [['client', 'update', client_id, '--redirect-uri', 'javascript:alert(1)'], 1, 'must be an http(s) address'],
      // A value outside an option's fixed list is a usage error, as --id-token-alg's.
      [['client', 'update', client_id, '--grant-type', 'implicit'], 2, '--grant-type must be authorization_code, refresh_token, client_credentials or device_code, not "implicit"'],
      [['client', 'create', '--name', 'x', '--grant-type', 'client_credentials', '--grant-type', 'password'], 2, 'not "password"'],
    ];
    for (const [args, code, message] of refusals) {
      const result = await pc.cli(args);
      expect([args, result.code]).toEqual([args, code]);
      expect(result.stderr).toContain(message);
    }
    // Refused changes changed nothing.
    const listed = (JSON.parse((await pc.cli(['client', 'list', '--json'])).stdout) as { client_id: string; redirect_uris: string[] }[]).find((c) => c.client_id === client_id);
    expect(listed!.redirect_uris).toEqual([moved]);
  });

  it('--scope may be repeated, as for api create: every one counts', async () => {
    const made = await pc.cli(['client', 'create', '--name', 'Many scopes', '--redirect-uri', REDIRECT_URI, '--scope', 'openid', '--scope', 'email profile', '--json']);
    expect(made.code, made.stderr).toBe(0);
    const { client_id } = JSON.parse(made.stdout) as { client_id: string };
    const listed = JSON.parse((await pc.cli(['client', 'list', '--json'])).stdout) as { client_id: string; scope: string }[];
    expect(listed.find((client) => client.client_id === client_id)!.scope.split(' ').sort()).toEqual(['email', 'openid', 'profile']);
    const updated = await pc.cli(['client', 'update', client_id, '--scope', 'openid', '--scope', 'offline_access', '--json']);
    expect(updated.code, updated.stderr).toBe(0);
    expect((JSON.parse(updated.stdout) as { scope: string }).scope.split(' ').sort()).toEqual(['offline_access', 'openid']);
  });

  it('update leaves addresses registered before today\'s rules as they are, and checks those it is given', async () => {
    const created = await pc.cli(['client', 'create', '--name', 'Legacy', '--redirect-uri', 'https://legacy.example.com/cb', '--post-logout-redirect-uri', 'http://legacy.example.com/bye', '--json']);
    expect(created.code, created.stderr).toBe(0);
    const { client_id } = JSON.parse(created.stdout);
    // Registered by an earlier release, which took plain http to any host.
    const db = pc.outsideConnection();
    await db.connect();
    try {
      await db.query(`UPDATE clients SET metadata = jsonb_set(metadata, '{redirect_uris}', '["http://legacy.example.com/cb"]') WHERE client_id = $1`, [client_id]);
    } finally {
      await db.end();
    }
    const renamed = await pc.cli(['client', 'update', client_id, '--name', 'Legacy app']);
    expect(renamed.code, renamed.stderr).toBe(0);
    const listed = JSON.parse((await pc.cli(['client', 'list', '--json'])).stdout).find((client: { client_id: string }) => client.client_id === client_id);
    expect(listed).toMatchObject({ client_name: 'Legacy app', redirect_uris: ['http://legacy.example.com/cb'] });
    const replaced = await pc.cli(['client', 'update', client_id, '--redirect-uri', 'http://other.example.com/cb']);
    expect([replaced.code, replaced.stderr]).toEqual([1, expect.stringContaining('must be https')]);
  });

  it('update keeps a client\'s API scopes as they were given, unless --scope replaces them', async () => {
    const api = 'https://inventory.example.com';
    expect((await pc.cli(['api', 'create', '--identifier', api, '--scope', 'read:stock'])).code).toBe(0);
    const robot = await pc.createClient({ name: 'Stocktaker', grantTypes: ['client_credentials'], scope: 'read:stock' });
    const grant = async () => {
      const response = await fetch(`${pc.issuer}/token`, {
        method: 'POST',
        headers: { authorization: `Basic ${Buffer.from(`${robot.client_id}:${robot.client_secret}`).toString('base64')}` },
        body: new URLSearchParams({ grant_type: 'client_credentials', resource: api, scope: 'read:stock' }),
      });
      return { status: response.status, body: (await response.json()) as { scope?: string; error?: string } };
    };
    expect(await grant()).toMatchObject({ status: 200, body: { scope: 'read:stock' } });
    expect((await pc.cli(['client', 'update', robot.client_id, '--name', 'Stocktaker 2'])).code).toBe(0);
    expect(await grant()).toMatchObject({ status: 200, body: { scope: 'read:stock' } });
    expect((await pc.cli(['client', 'update', robot.client_id, '--scope', 'openid'])).code).toBe(0);
    expect(await grant()).toMatchObject({ status: 400, body: { error: 'invalid_target' } });

    // A client whose API is gone can still be changed in other ways.
    const stale = await pc.createClient({ name: 'Orphan', grantTypes: ['client_credentials'], scope: 'openid read:stock' });
    expect((await pc.cli(['api', 'delete', api])).code).toBe(0);
    const renamed = await pc.cli(['client', 'update', stale.client_id, '--name', 'Orphan 2', '--json']);
    expect(renamed.code, renamed.stderr).toBe(0);
    expect(JSON.parse(renamed.stdout)).toMatchObject({ client_name: 'Orphan 2', scope: 'openid' }); // no longer registered for the API
  });

  it.skipIf(process.env.TEST_DATABASE !== 'postgres')('two updates of one client at once, changing different fields: both changes stay', async () => {
    const { client_id } = await pc.createClient({ name: 'Raced', redirectUris: ['https://raced.example/cb'] });
    // One connection holds the row, so that both updates read it and then wait
    // to write it; another watches (inside a transaction, pg_stat_activity is a snapshot).
    const [holder, watcher] = [pc.outsideConnection(), pc.outsideConnection()];
    await Promise.all([holder.connect(), watcher.connect()]);
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT 1 FROM clients WHERE client_id = $1 FOR UPDATE', [client_id]);
      const renaming = pc.cli(['client', 'update', client_id, '--name', 'Raced 2']);
      const rescoping = pc.cli(['client', 'update', client_id, '--scope', 'openid email']);
      const waiting = async () =>
        Number((await watcher.query(`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`)).rows[0].count);
      const deadline = Date.now() + 20_000;
      while ((await waiting()) < 2) {
        if (Date.now() > deadline) throw new Error('the two updates never waited for the row');
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      await holder.query('COMMIT');
      for (const result of await Promise.all([renaming, rescoping])) expect(result.code, result.stderr).toBe(0);
    } finally {
      await Promise.all([holder.end(), watcher.end()]);
    }
    const listed = JSON.parse((await pc.cli(['client', 'list', '--json'])).stdout) as { client_id: string }[];
    expect(listed.find((client) => client.client_id === client_id)).toMatchObject({
      client_name: 'Raced 2',
      scope: 'openid email',
    });
  });

  it.skipIf(process.env.TEST_DATABASE !== 'postgres').each([
    // The refresh itself: invalid_grant (the token is ended), or refused as a grant the client may no longer use.
    ['offline_access', ['--scope', 'openid'], 'ossie', 'invalid_grant'],
    ['the refresh_token grant', ['--grant-type', 'authorization_code'], 'otis', 'unauthorized_client'],
  ])('taking %s away ends a refresh token that a refresh in flight stores after the update deleted the others', async (_, change, person, refused) => {
    const ossie = { email: `${person}@example.com`, password: `${person}s password` };
    await pc.createUser(ossie.email, ossie.password);
    const offline = await pc.createClient({ name: 'Offline', redirectUris: [REDIRECT_URI], scope: 'openid offline_access' });
    const offlineRp = await discover(pc.issuer, offline.client_id, offline.client_secret);
    const { tokens } = await logIn(new UserAgent(), offlineRp, 'openid offline_access', ossie, { prompt: 'consent' });
    // Hold the refresh token's row: the refresh waits to consume it and store
    // the next one, and the update's delete waits behind it, its snapshot
    // taken before that next one exists.
    const [holder, watcher] = [pc.outsideConnection(), pc.outsideConnection()];
    await Promise.all([holder.connect(), watcher.connect()]);
    const waitersAtLeast = (count: number) => lockWaiters(watcher, count);
    let refreshed: oidc.TokenEndpointResponse;
    try {
      await holder.query('BEGIN');
      await holder.query(`SELECT 1 FROM provider_artifacts WHERE kind = 'RefreshToken' AND id = $1 FOR UPDATE`, [sha256(tokens.refresh_token!)]);
      const refreshing = oidc.refreshTokenGrant(offlineRp, tokens.refresh_token!);
      await waitersAtLeast(1);
      const updating = pc.cli(['client', 'update', offline.client_id, ...change]);
      await waitersAtLeast(2);
      await holder.query('COMMIT');
      refreshed = await refreshing;
      const updated = await updating;
      expect(updated.code, updated.stderr).toBe(0);
    } finally {
      await Promise.all([holder.end(), watcher.end()]);
    }
    expect(refreshed.refresh_token).toBeTruthy();
    await expect(oidc.refreshTokenGrant(offlineRp, refreshed.refresh_token!)).rejects.toMatchObject({ error: refused });
    expect((await oidc.tokenIntrospection(offlineRp, refreshed.refresh_token!)).active).toBe(false);
    // Revoked, it still ends its sign-in's tokens (RFC 7009 §2.1): the access token issued with it stops too.
    expect((await oidc.tokenIntrospection(offlineRp, refreshed.access_token)).active).toBe(true);
    await oidc.tokenRevocation(offlineRp, refreshed.refresh_token!);
    expect((await oidc.tokenIntrospection(offlineRp, refreshed.access_token)).active).toBe(false);
  });

  it('rotate-secret: the new secret works at once and the old one no longer does; tokens already issued stay valid', async () => {
    const robot = await pc.createClient({ name: 'Rotor', grantTypes: ['client_credentials'], scope: 'openid' });
    const before = await pc.clientCredentials(robot);
    expect(before.status).toBe(200);

    const rotated = await pc.cli(['client', 'rotate-secret', robot.client_id, '--json']);
    expect(rotated.code).toBe(0);
    const { client_id, client_secret } = JSON.parse(rotated.stdout);
    expect(client_id).toBe(robot.client_id);
    expect(client_secret).toMatch(/^[\w-]{40,}$/);
    expect(client_secret).not.toBe(robot.client_secret);

    const old = await pc.clientCredentials(robot);
    expect(old.status).toBe(401);
    expect(old.body.error).toBe('invalid_client');
    const renewed = { client_id, client_secret };
    expect((await pc.clientCredentials(renewed)).status).toBe(200);
    const introspected = await fetch(`${pc.issuer}/token/introspection`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`${client_id}:${client_secret}`).toString('base64')}` },
      body: new URLSearchParams({ token: before.body.access_token as string }),
    });
    expect(await introspected.json()).toMatchObject({ active: true, client_id });

    const spa = await pc.cli(['client', 'create', '--name', 'SPA', '--redirect-uri', REDIRECT_URI, '--public', '--json']);
    const publicId = JSON.parse(spa.stdout).client_id as string;
    const refused = await pc.cli(['client', 'rotate-secret', publicId]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`client ${publicId} is public: it has no secret`);
  });

  it.each([
    [['client', 'create', '--redirect-uri', REDIRECT_URI], 2, '--name is required'],
    [['client', 'create', '--name', 'X', '--redirect-uri', REDIRECT_URI, '--bogus'], 2, "unknown option '--bogus'"],
    // A command that takes no options reads its arguments loosely (ids may begin with "-"), yet names an option it does not take.
    [['keys', 'retire', 'some-kid', '--now'], 2, "unknown option '--now'"],
    [['client', 'delete', 'some-client', '--name'], 2, "unknown option '--name'"],
    [['client', 'create', '--name', 'X', '--redirect-uri', 'not-a-uri'], 1, 'is not an absolute URI'],
    [['client', 'create', '--name', 'X', '--redirect-uri', 'https://a.example/cb?a=1&b=%zz'], 1, 'starts no percent-encoding'],
    [['client', 'create', '--name', 'X', '--redirect-uri', 'not a uri'], 1, 'must be a URI in printable ASCII, without spaces'],
    [['client', 'create', '--name', 'X', '--redirect-uri', 'https://x.example/cb#frag'], 1, 'must not have a fragment'],
    // The library sends the browser to a private-use scheme as parsed, too (lower case, segments resolved).
    [['client', 'create', '--name', 'X', '--native', '--redirect-uri', 'COM.Example.App:/a/../cb'], 1, 'redirect URI "COM.Example.App:/a/../cb" is not written as browsers read it: register com.example.app:/cb'],
    // URL parsing drops an empty fragment; the library refuses the address at every request.
    [['client', 'create', '--name', 'X', '--redirect-uri', 'https://x.example/cb#'], 1, 'redirect URI "https://x.example/cb#" must not have a fragment'],
    [['client', 'create', '--name', 'X', '--redirect-uri', ''], 1, 'a redirect URI cannot be empty (to change a list of them, give the addresses to keep)'],
    // Refused at every request (port 0: nothing listens there), so refused when registered.
    [['client', 'create', '--name', 'X', '--native', '--redirect-uri', 'http://127.0.0.1:0/cb'], 1, 'redirect URI "http://127.0.0.1:0/cb" names port 0, on which nothing listens'],
    [['client', 'create', '--name', 'X', '--redirect-uri', REDIRECT_URI, '--post-logout-redirect-uri', 'http://localhost:0/'], 1, 'names port 0'],
    // Compared exactly: an address as browsers read it, or the app sending that would be refused.
    [['client', 'create', '--name', 'X', '--redirect-uri', 'https:/app.example/cb'], 1, 'redirect URI "https:/app.example/cb" is not written as browsers read it: register https://app.example/cb'],
    [['client', 'create', '--name', 'X', '--redirect-uri', 'HTTPS://App.example:443/a/../cb'], 1, 'register https://app.example/cb (return addresses are compared exactly)'],
    [['client', 'create', '--name', 'X', '--redirect-uri', REDIRECT_URI, '--grant-type', 'password'], 2, '--grant-type must be authorization_code, refresh_token, client_credentials or device_code, not "password"'],
    [['client', 'create', '--name', 'X'], 1, 'needs at least one --redirect-uri'],
    // Clients that could never get a token (an update may leave one so on purpose, not a creation).
    [['client', 'create', '--name', 'X', '--redirect-uri', REDIRECT_URI, '--scope', ''], 1, '--scope names no scope'],
    [['client', 'create', '--name', 'X', '--redirect-uri', REDIRECT_URI, '--scope', '  '], 1, '--scope names no scope'],
    [['client', 'create', '--name', 'X', '--redirect-uri', REDIRECT_URI, '--grant-type', 'refresh_token'], 1, '--grant-type refresh_token needs authorization_code or device_code too'],
    [['client', 'create', '--name', 'X', '--grant-type', 'client_credentials', '--grant-type', 'refresh_token'], 1, '--grant-type refresh_token needs authorization_code or device_code too'],
    [['client', 'create', '--name', 'X', '--redirect-uri', REDIRECT_URI, '--logo-uri', 'javascript:alert(1)'], 1, 'must be an http(s) address'],
    // The provider refuses a web client whose addresses are not http(s) at every request: refused when made.
    [['client', 'create', '--name', 'X', '--redirect-uri', 'javascript:alert(1)'], 1, 'redirect URI "javascript:alert(1)" must be an http(s) address'],
    [['client', 'create', '--name', 'X', '--redirect-uri', REDIRECT_URI, '--post-logout-redirect-uri', 'data:text/html,hi'], 1, 'must be an http(s) address'],
    [['client', 'create', '--name', 'X', '--redirect-uri', 'com.example.app:/callback'], 1, 'must be an http(s) address'],
    // A code over plain http to another host can be read on the way (RFC 6749 §3.1.2.1): https, or http to this machine.
    [['client', 'create', '--name', 'X', '--redirect-uri', 'http://app.example.com/cb'], 1, 'redirect URI "http://app.example.com/cb" must be https (http only on localhost'],
    [['client', 'create', '--name', 'X', '--public', '--redirect-uri', 'http://spa.example.com/cb'], 1, 'must be https (http only on localhost'],
    [['client', 'create', '--name', 'X', '--redirect-uri', 'https://user:pw@app.example.com/cb'], 1, 'must not hold a user name or password'],
    [['client', 'create', '--name', 'X', '--native', '--redirect-uri', 'http://user:pw@127.0.0.1/cb'], 1, 'must not hold a user name or password'],
    [['client', 'create', '--name', 'X', '--redirect-uri', `https://x.example/${randomBytes(2000).toString('hex')}`], 1, 'a redirect URI has at most 2048 characters'],
    // The test server signs with ES256 (and RS256): an EdDSA client could never be served.
    [['client', 'create', '--name', 'X', '--redirect-uri', REDIRECT_URI, '--id-token-alg', 'EdDSA'], 1, 'ID tokens are signed with RS256 or SIGNING_ALG, which is ES256 for this command, not EdDSA: if the server'],
    [['client', 'create', '--name', 'X', '--native', '--redirect-uri', 'http://app.example/callback'], 1, 'must be loopback'],
    [['client', 'create', '--name', 'X', '--native', '--redirect-uri', 'https://127.0.0.1/callback'], 1, 'loopback address uses http'],
    [['client', 'create', '--name', 'X', '--native', '--redirect-uri', 'myapp:/callback'], 1, 'reverse order'],
    [['client', 'create', '--name', 'X', '--native', '--redirect-uri', 'javascript:alert(1)'], 1, 'reverse order'],
    [['client', 'create', '--name', 'X', '--native', '--redirect-uri', 'http://127.0.0.1/cb', '--grant-type', 'client_credentials'], 1, 'a native client cannot use client_credentials'],
    // The usage reads [--public | --native]: a native app is public already.
    [['client', 'create', '--name', 'X', '--native', '--redirect-uri', 'http://127.0.0.1/cb', '--public'], 2, '--public and --native exclude each other'],
    [['client', 'create', '--name', 'X', '--redirect-uri', REDIRECT_URI, '--scope', 'openid bogus:scope'], 1, 'no API defines the scope "bogus:scope"'],
    // The consent page shows only https (or http on localhost) addresses: others are refused, not dropped unseen.
    [['client', 'create', '--name', 'X', '--redirect-uri', REDIRECT_URI, '--client-uri', 'http://example.com/home'], 1, 'must be https (or http on localhost)'],
    [['client', 'delete'], 2, 'expected 1 argument'],
    [['client', 'rotate-secret'], 2, 'expected 1 argument'],
    // An id that begins with "-" before a flag: still the id.
    [['client', 'rotate-secret', '-8UZGHAHOJzCIPTmAFiP6I', '--json'], 1, 'no client with id -8UZGHAHOJzCIPTmAFiP6I'],
    // Generated ids are base64url and may begin with "-": an id, not a flag.
    [['client', 'delete', '-8UZGHAHOJzCIPTmAFiP6I'], 1, 'no client with id -8UZGHAHOJzCIPTmAFiP6I'],
    [['keys', 'retire', '-x0Qb8VGSmNp0aW25emkLk'], 1, '-x0Qb8VGSmNp0aW25emkLk'],
    [['client', 'delete', '-8UZGHAHOJzCIPTmAFiP6I', '--json'], 1, 'no client with id -8UZGHAHOJzCIPTmAFiP6I'],
    [['api', 'update', '--scope', 'a'], 2, 'expected the IDENTIFIER first'],
    [['client', 'frobnicate'], 2, 'unknown command "client frobnicate"\n'],
    // A typo gets the command or option it was a typo of.
    [['client', 'lsit', '--json'], 2, 'unknown command "client lsit": did you mean "client list"?'],
    [['usr', 'create'], 2, 'unknown command "usr create": did you mean "user create"?'],
    [['migrat'], 2, 'unknown command "migrat": did you mean "migrate"?'],
    [['clinet'], 2, 'unknown command "clinet": did you mean "client"?'],
    [['keys', 'rotate', '--nwo'], 2, "unknown option '--nwo': did you mean --now?"],
    [['user', 'create', '--emial=a@example.com', '--name', 'A'], 2, "unknown option '--emial=a@example.com': did you mean --email?"],
    [['client'], 2, '"client" needs a command after it'],
    [['keys'], 2, '"keys" needs a command after it'],
    [['client', 'create', '--help'], 0, 'portcullis client create --name NAME'],
    [['client', 'delete', '--help'], 0, 'portcullis client delete CLIENT_ID'],
    [['client', '--help'], 0, 'Usage: portcullis'],
    [['keys', '-h'], 0, 'Usage: portcullis'],
    [['nonsense', '--help'], 2, 'unknown command'],
    [['nonsense'], 2, 'unknown command'],
    [[], 2, 'Usage: portcullis'],
  ])('%j exits %i with a clear message', async (args, code, message) => {
    const result = await pc.cli(args as string[]);
    expect(result.code).toBe(code);
    expect(result.stderr + result.stdout).toContain(message);
    noStackTrace(result.stderr);
    // A command's help is its own usage, not every command's.
    if (args.length === 3 && args[2] === '--help') expect(result.stdout).not.toContain('keys rotate');
  });

  it('takes web addresses written as browsers read them: an origin without its "/", a port, a query, an IPv6 loopback', async () => {
    const created = await pc.cli([
      'client', 'create', '--name', 'Written', '--json',
      '--redirect-uri', 'https://app.example:8443/cb?tenant=a&x', '--redirect-uri', 'http://[::1]:8080/cb',
      '--post-logout-redirect-uri', 'https://app.example', '--post-logout-redirect-uri', 'https://app.example?signed-out',
    ]);
    expect(created.code).toBe(0);
    const client = JSON.parse(created.stdout) as { redirect_uris: string[]; post_logout_redirect_uris: string[] };
    expect([client.redirect_uris, client.post_logout_redirect_uris]).toEqual([
      ['https://app.example:8443/cb?tenant=a&x', 'http://[::1]:8080/cb'],
      ['https://app.example', 'https://app.example?signed-out'],
    ]);
  });

  it('--version prints the version of package.json, which the server\'s start-up line also names', async () => {
    const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    for (const asked of ['--version', '-v', 'version']) {
      const result = await pc.cli([asked]);
      expect([asked, result.code, result.stdout]).toEqual([asked, 0, `portcullis ${version}\n`]);
    }
    expect(pc.log.find((line) => line.includes('portcullis listening'))).toContain(`"version":"${version}"`);
    // The first start on this test's new database applied every migration, and said which.
    const migrated = JSON.parse(pc.log.find((line) => line.includes('database migrated'))!) as { applied: string[]; before: number };
    expect(migrated.before).toBe(0);
    expect(migrated.applied).toEqual(readdirSync(new URL('../../prisma/migrations', import.meta.url), { withFileTypes: true }).filter((entry) => entry.isDirectory()).map((entry) => entry.name).sort());
  });

  it('an option that takes one value, given twice, is a usage error rather than the last one silently winning', async () => {
    const refusals: [string[], string][] = [
      [['user', 'create', '--email', 'first@example.com', '--password-stdin', '--email', 'second@example.com'], '--email'],
      [['client', 'create', '--name', 'First', '--redirect-uri', REDIRECT_URI, '--name=Second'], '--name'],
      [['client', 'update', 'some-client', '--id-token-alg', 'ES256', '--id-token-alg', 'RS256'], '--id-token-alg'],
      [['api', 'create', '--identifier', 'https://one.example', '--scope', 'read', '--identifier', 'https://two.example'], '--identifier'],
      [['user', 'update', 'someone@example.com', '--name', 'A', '--name', 'B'], '--name'],
    ];
    for (const [args, option] of refusals) {
      const result = await pc.cli(args, 'long enough password\n');
      expect([args, result.code]).toEqual([args, 2]);
      expect(result.stderr).toMatch(new RegExp(`^portcullis: ${option} is given more than once; it takes one value\n`));
    }
    const users = JSON.parse((await pc.cli(['user', 'list', '--json'])).stdout) as { email: string }[];
    expect(users.map((user) => user.email)).not.toContain('second@example.com');
    const apis = JSON.parse((await pc.cli(['api', 'list', '--json'])).stdout) as { identifier: string }[];
    expect(apis.map((api) => api.identifier)).not.toContain('https://two.example');
    // Options that repeat still take every value (see '--scope may be repeated' above).
    const many = await pc.cli(['client', 'create', '--name', 'Two addresses', '--redirect-uri', REDIRECT_URI, '--redirect-uri', `${REDIRECT_URI}2`, '--json']);
    expect(many.code, many.stderr).toBe(0);
  });

  it('audit list: each change made with the CLI, who made it and when, as typed; not what only reads, nor a password', async () => {
    const before = Date.now() - 1000;
    const created = await pc.cli(['client', 'create', '--name', 'Audited app', '--redirect-uri', REDIRECT_URI, '--json']);
    const { client_id } = JSON.parse(created.stdout) as { client_id: string };
    expect((await pc.cli(['client', 'disable', client_id])).code).toBe(0);
    expect((await pc.cli(['client', 'show', client_id])).code).toBe(0);
    await pc.createUser('audrey@example.com', 'audreys first password');
    expect((await pc.cli(['user', 'set-password', 'audrey@example.com', '--password-stdin'], 'audreys second password\n')).code).toBe(0);
    // Refused: recorded as failed, with why (a command may fail after changing something).
    const unknownId = `no-such-client-${randomBytes(4).toString('hex')}`;
    expect((await pc.cli(['client', 'disable', unknownId])).code).toBe(1);

    const listed = await pc.cli(['audit', 'list', '--since', '5m', '--json']);
    expect(listed.code, listed.stderr).toBe(0);
    const events = (JSON.parse(listed.stdout) as { at: string; actor: string; command: string; arguments: string[]; outcome: string }[]).filter((event) => Date.parse(event.at) >= before);
    const mine = events.filter((event) => event.arguments.includes(client_id) || event.arguments.includes('Audited app') || event.arguments.includes('audrey@example.com') || event.arguments.includes(unknownId));
    expect(mine.map((event) => [event.command, event.arguments, event.outcome])).toEqual([
      ['client create', ['--name', 'Audited app', '--redirect-uri', REDIRECT_URI, '--json'], 'ok'],
      ['client disable', [client_id], 'ok'],
      ['user create', expect.arrayContaining(['--email', 'audrey@example.com', '--password-stdin']), 'ok'],
      ['user set-password', ['audrey@example.com', '--password-stdin'], 'ok'],
      ['client disable', [unknownId], `failed: no client with id ${unknownId}`],
    ]);
    for (const event of mine) expect(event.actor).toMatch(/^[^@\s]+@[^@\s]+$/);
    expect(listed.stdout).not.toContain('audreys');
    const text = await pc.cli(['audit', 'list', '--since', '5m']);
    expect(text.stdout).toMatch(new RegExp(`^\\S+Z  \\S+@\\S+  portcullis client disable ${client_id.replace(/[-]/g, '\\-')}$`, 'm'));
    expect(text.stdout).toContain("portcullis client create --name 'Audited app' --redirect-uri");
    expect(text.stdout).toContain(`  portcullis client disable ${unknownId}  (failed: no client with id ${unknownId})\n`);
    // What could drive the terminal is written as its code, on the one line of its event.
    expect((await pc.cli(['client', 'disable', 'x\n2026-01-01T00:00:00.000Z  root@host  portcullis user delete boss\u001b[2K'])).code).toBe(1);
    const shown = (await pc.cli(['audit', 'list', '--since', '1m'])).stdout;
    expect(shown).not.toMatch(/^2026-01-01/m);
    expect(shown).not.toContain('\u001b');
    expect(shown).toContain('\\u{a}2026-01-01');
    // Older than --since is left out.
    const recent = JSON.parse((await pc.cli(['audit', 'list', '--since', '0s', '--json'])).stdout) as unknown[];
    expect(recent).toEqual([]);
    // A value the command refuses: one line and exit 1, as for a refused address (README, CLI).
    for (const limit of ['0', '10001', '1e3', '0x10', '1.0', '+5', ' 5']) {
      const bad = await pc.cli(['audit', 'list', '--limit', limit]);
      expect([limit, bad.code, bad.stderr]).toEqual([limit, 1, 'portcullis: --limit must be a whole number from 1 to 10000, in decimal digits\n']);
    }
    const since = await pc.cli(['audit', 'list', '--since', 'abc']);
    expect([since.code, since.stderr.split('\n').length]).toEqual([1, 2]);
    expect(since.stderr).toMatch(/^portcullis: --since: /);
  });

  it.skipIf(process.getuid?.() !== 0)('audit list names the login sudo made root, and not a SUDO_USER set for a process that is not root', async () => {
    const actorsOf = async (marker: string) =>
      (JSON.parse((await pc.cli(['audit', 'list', '--since', '5m', '--limit', '10000', '--json'])).stdout) as { actor: string; arguments: string[] }[])
        .filter((event) => event.arguments.includes(marker))
        .map((event) => event.actor);
    const byRoot = `sudo-${randomBytes(4).toString('hex')}`;
    expect((await runCli(['client', 'disable', byRoot], { ...pc.env, SUDO_USER: 'alice' })).code).toBe(1);
    expect(await actorsOf(byRoot)).toEqual([`alice (sudo, root)@${os.hostname()}`]);
    // Anyone may set the variable: a process that is not root is its own user, whatever it says.
    // (On PostgreSQL: the embedded database's files are root's alone.)
    if (embedded) return;
    const byNobody = `nobody-${randomBytes(4).toString('hex')}`;
    // (The key file of servers on PostgreSQL without DATA_DIR, as these tests' are: root's too.)
    const key = readFileSync(fileURLToPath(new URL('../../data/encryption.key', import.meta.url)), 'utf8').trim();
    const exit = await new Promise<number | null>((resolve, reject) => {
      const child = spawn(process.execPath, [fileURLToPath(new URL('../../src/cli/portcullis.mjs', import.meta.url)), 'client', 'disable', byNobody], {
        env: { PATH: process.env.PATH ?? '', HOME: os.tmpdir(), ...pc.env, ENCRYPTION_KEYS: key, SUDO_USER: 'alice' },
        uid: 65534,
        gid: 65534,
        stdio: 'ignore',
      });
      child.once('error', reject);
      child.once('close', resolve);
    });
    expect(exit).toBe(1);
    expect(await actorsOf(byNobody)).toEqual([expect.stringMatching(new RegExp(`^[^ (]+@${os.hostname().replace(/[.]/g, '\\.')}$`))]);
  });

  it('audit forget erases a person from the user commands that named them by an email or id given, and leaves what was done and everyone else', async () => {
    const run = async (args: string[], stdin?: string) => {
      const result = await pc.cli(args, stdin);
      expect(result.code, result.stderr).toBe(0);
      return result.stdout;
    };
    const { id } = JSON.parse(await run(['user', 'create', '--email', 'lorina@example.com', '--name', 'Lorina Liddell', '--password-stdin', '--json'], 'lorinas own password\n'));
    await run(['user', 'update', 'lorina@example.com', '--email=edith@example.com', '--name', 'Edith Liddell']);
    // One that failed, for her address: how it ended names it.
    expect((await pc.cli(['user', 'create', '--email', 'EDITH@Example.com', '--password-stdin'], 'another own password\n')).code).toBe(1);
    await run(['user', 'set-password', id, '--password-stdin'], 'a third own password\n');
    await run(['user', 'create', '--email', 'alice.keeps@example.com', '--name', 'Alice Keeps', '--password-stdin'], 'alices own password\n');
    // An address she tried and did not get is not hers: Alice's records stay.
    expect((await pc.cli(['user', 'update', 'edith@example.com', '--email', 'alice.keeps@example.com'])).code).toBe(1);
    // Alice's try at Edith's address is Alice's record: only Edith's address goes from it.
    expect((await pc.cli(['user', 'update', 'alice.keeps@example.com', '--email', 'edith@example.com'])).code).toBe(1);
    await run(['user', 'revoke', '--json', '--', 'EDITH@example.com']);
    await run(['user', 'delete', 'edith@example.com']);

    // Only what is named goes: deleted, she is named by her id only if it is given, and her first
    // address only if it is (an address may pass to someone else: it is not followed).
    const trailNow = async () => JSON.parse(await run(['audit', 'list', '--since', '5m', '--limit', '10000', '--json'])) as { command: string; arguments: string[]; outcome: string }[];
    expect(JSON.parse(await run(['audit', 'forget', 'edith@example.com', '--json']))).toEqual({ erased: 6 });
    expect(JSON.stringify(await trailNow())).toContain('lorina@example.com');
    // (The update from her first address to the second names her by the first: its new name goes now.)
    expect(JSON.parse(await run(['audit', 'forget', 'lorina@example.com', id, '--json']))).toEqual({ erased: 3 });
    const trail = await trailNow();
    const text = JSON.stringify(trail);
    for (const word of ['lorina', 'edith', 'EDITH', 'Liddell', id]) expect(text).not.toContain(word);
    const ours = trail.slice(-11);
    expect(ours.map(({ command, arguments: words, outcome }) => [command, words, outcome])).toEqual([
      ['user create', ['--email', '[erased]', '--name', '[erased]', '--password-stdin', '--json'], 'ok'],
      ['user update', ['[erased]', '--email=[erased]', '--name', '[erased]'], 'ok'],
      ['user create', ['--email', '[erased]', '--password-stdin'], 'failed: a user with email [erased] already exists'],
      ['user set-password', ['[erased]', '--password-stdin'], 'ok'],
      ['user create', ['--email', 'alice.keeps@example.com', '--name', 'Alice Keeps', '--password-stdin'], 'ok'],
      ['user update', ['[erased]', '--email', '[erased]'], 'failed: a user with email [erased] already exists'],
      ['user update', ['alice.keeps@example.com', '--email', '[erased]'], 'failed: a user with email [erased] already exists'],
      ['user revoke', ['--json', '--', '[erased]'], 'ok'],
      ['user delete', ['[erased]'], 'ok'],
      // Their own records name nobody.
      ['audit forget', [], 'ok'],
      ['audit forget', [], 'ok'],
    ]);
    const blank = await pc.cli(['audit', 'forget', ' ']);
    expect([blank.code, blank.stderr.split('\n')[0]]).toEqual([2, 'portcullis: an email or id cannot be empty']);
    expect(await run(['audit', 'forget', 'edith@example.com'])).toBe('the audit trail names no edith@example.com\n');
    const usage = await pc.cli(['audit', 'forget', 'edith@example.com', '--bogus']);
    expect([usage.code, usage.stderr.split('\n')[0]]).toEqual([2, "portcullis: unknown option '--bogus'"]);
    expect((await pc.cli(['audit', 'forget'])).code).toBe(2);
  });

  it('a value or an argument may begin with "-" (base64url ids, emails, names): each is read as what its place says', async () => {
    const created = await pc.cli(['user', 'create', '--email', '-dash@example.com', '--name', '-Dash-', '--password-stdin', '--json'], 'dashs own password\n');
    expect(created.code, created.stderr).toBe(0);
    expect(JSON.parse(created.stdout)).toMatchObject({ email: '-dash@example.com', name: '-Dash-' });
    const renamed = await pc.cli(['user', 'update', '-dash@example.com', '--name', '-Dashiell', '--json']);
    expect([renamed.code, JSON.parse(renamed.stdout).name]).toEqual([0, '-Dashiell']);
    const client = await pc.createClient({ name: 'Dashboard', redirectUris: [REDIRECT_URI] });
    // After `--`, everything is an argument; before it, an option's value is the next word whatever it is.
    for (const args of [['--client', client.client_id, '--', '-dash@example.com'], ['-dash@example.com', '--client', client.client_id, '--json']]) {
      const revoked = await pc.cli(['user', 'revoke', ...args]);
      expect([args, revoked.code, revoked.stderr]).toEqual([args, 0, '']);
    }
    const unknownClient = await pc.cli(['user', 'revoke', '-dash@example.com', '--client', '-8UZ-not-a-client']);
    expect([unknownClient.code, unknownClient.stderr]).toEqual([1, 'portcullis: no client with id -8UZ-not-a-client\n']);
    const stray = await pc.cli(['user', 'list', 'extra']);
    expect([stray.code, stray.stderr.split('\n')[0]]).toEqual([2, "portcullis: unexpected argument 'extra'"]);
    // An option's value is not another of its options: an unset shell variable (`--name $NAME --json`) is a usage error.
    const unset = await pc.cli(['client', 'create', '--name', '--json', '--redirect-uri', REDIRECT_URI]);
    expect([unset.code, unset.stderr.split('\n')[0]]).toEqual([2, 'portcullis: --name needs a value (one that begins with "--" is written --name=VALUE)']);
    const written = await pc.cli(['user', 'update', '-dash@example.com', '--name=--Dash--', '--json']);
    expect([written.code, JSON.parse(written.stdout).name]).toEqual([0, '--Dash--']);
  });

  it('an id longer than any client\'s is not found, whichever command is given it, and the message names no driver', async () => {
    // Longer than pg_notify's 8000-byte payload: nothing about it may reach an announcement.
    const long = randomBytes(7000).toString('base64url');
    const commands = [
      ['client', 'delete', long],
      ['client', 'rotate-secret', long],
      ['client', 'rotate-secret', long, '--json'],
      ['client', 'update', long, '--name', 'X'],
    ];
    for (const args of commands) {
      const result = await pc.cli(args);
      expect([args.slice(0, 2), result.code]).toEqual([args.slice(0, 2), 1]);
      expect(result.stderr).toBe(`portcullis: no client with id ${long}\n`);
    }
    // The same for the other commands that take a name or id.
    const others: [string[], string][] = [
      [['api', 'delete', `https://api.example/${long}`], 'no API with identifier'],
      [['user', 'delete', long], 'no user'],
      [['user', 'revoke', `${long}@example.com`], 'no user'],
      [['user', 'update', long, '--name', 'X'], 'no user'],
      // One in 64 random ids begins with "-": that is an id too, not an option.
      [['user', 'update', `-${long}`, '--name', 'X'], 'no user'],
      [['user', 'set-password', long, '--password-stdin'], 'no user'],
      [['keys', 'retire', long, '--compromised'], 'no signing key with kid'],
    ];
    for (const [args, message] of others) {
      const result = await pc.cli(args, 'long enough password\n');
      expect([args.slice(0, 2), result.code]).toEqual([args.slice(0, 2), 1]);
      expect(result.stderr).toMatch(new RegExp(`^portcullis: ${message} `));
      expect(result.stderr).not.toContain('unexpected error');
    }
  });

  it('a usage error shows the usage of its own command, not every command\'s', async () => {
    const result = await pc.cli(['client', 'delete']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^portcullis: expected 1 argument\(s\), got 0\n\nUsage:\n {2}portcullis client delete CLIENT_ID \[--json\]\n/);
    expect(result.stderr).not.toContain('user create');
    expect(result.stderr).toContain('portcullis --help lists every command');
  });
});

describe('portcullis user', () => {
  it('creates a user from a password on stdin; emails are unique, case-insensitively', async () => {
    const created = await pc.cli(['user', 'create', '--email', 'Erin@Example.com', '--name', 'Erin', '--password-stdin', '--json'], 'erins password\n');
    expect(created.code).toBe(0);
    expect(JSON.parse(created.stdout)).toMatchObject({ email: 'erin@example.com', name: 'Erin', email_verified: false });
    const duplicate = await pc.cli(['user', 'create', '--email', 'erin@example.COM', '--password-stdin'], 'another password\n');
    expect(duplicate.code).toBe(1);
    expect(duplicate.stderr).toContain('already exists');
  });

  it('refuses a password on the command line, an empty or short password', async () => {
    const noStdin = await pc.cli(['user', 'create', '--email', 'x@example.com', '--password', 'secret123']);
    expect(noStdin.code).toBe(2);
    const empty = await pc.cli(['user', 'create', '--email', 'x@example.com', '--password-stdin'], '');
    expect(empty.code).toBe(2);
    // A line ended the old Mac way (CR alone) is one line too.
    const carriageReturn = await pc.cli(['user', 'create', '--email', 'cr@example.com', '--password-stdin'], 'a long enough password\r');
    expect(carriageReturn.code, carriageReturn.stderr).toBe(0);
    // And one ended the Windows way (CR LF): the whole break goes, not the LF alone.
    const crlf = await pc.cli(['user', 'create', '--email', 'crlf@example.com', '--password-stdin'], 'a long enough password\r\n');
    expect(crlf.code, crlf.stderr).toBe(0);
    const short = await pc.cli(['user', 'create', '--email', 'x@example.com', '--password-stdin'], 'short\n');
    expect(short.code).toBe(1);
    expect(short.stderr).toContain('at least 8 characters');
    const badEmail = await pc.cli(['user', 'create', '--email', 'not-an-email', '--password-stdin'], 'long enough\n');
    expect(badEmail.code).toBe(1);
    // Random, so that PostgreSQL cannot compress it into an index entry.
    const longEmail = await pc.cli(['user', 'create', '--email', `${randomBytes(2000).toString('hex')}@example.com`, '--password-stdin'], 'long enough\n');
    expect(longEmail.code).toBe(1);
    expect(longEmail.stderr).toContain('at most 254 characters');
  });

  it('counts a name\'s characters as a person does: 200 emoji are a name of 200 characters, 201 too many', async () => {
    const emoji = '\u{1F600}'; // two UTF-16 units, one character
    const client = await pc.cli(['client', 'create', '--name', emoji.repeat(200), '--redirect-uri', REDIRECT_URI, '--json']);
    expect(client.code, client.stderr).toBe(0);
    const listed = JSON.parse((await pc.cli(['client', 'list', '--json'])).stdout) as { client_id: string; client_name: string }[];
    expect(listed.find((one) => one.client_id === JSON.parse(client.stdout).client_id)?.client_name).toBe(emoji.repeat(200));
    const user = await pc.cli(['user', 'create', '--email', 'smiles@example.com', '--name', emoji.repeat(200), '--password-stdin'], 'a long enough password\n');
    expect(user.code, user.stderr).toBe(0);
    const tooMany = await pc.cli(['client', 'create', '--name', emoji.repeat(201), '--redirect-uri', REDIRECT_URI]);
    expect(tooMany.code).toBe(1);
    expect(tooMany.stderr).toContain('at most 200 characters');
  });

  it('refuses what no one could sign in with or should see: long or untypeable passwords, addresses a browser will not send, long names', async () => {
    const create = (email: string, password: string | Buffer, name?: string) =>
      pc.cli(['user', 'create', '--email', email, ...(name === undefined ? [] : ['--name', name]), '--password-stdin'], password);
    const refusals: [Promise<{ code: number; stderr: string }>, number, string][] = [
      [create('long@example.com', `${'p'.repeat(1025)}\n`), 1, 'at most 1024 characters'],
      // Not read whole: 100 MB on standard input once took 1.9 GB of memory and the process with it.
      [create('flood@example.com', Buffer.alloc(1024 * 1024, 0x61)), 2, 'standard input is longer than 64 KiB'],
      [create('nul@example.com', 'pass\u0000word\n'), 1, 'control characters'],
      // A file with a blank last line: said as such, not as control characters (the line break's).
      [create('lines@example.com', 'a good password\n\n'), 2, 'standard input holds more than one line'],
      [create('lines@example.com', 'a good password\r\nanother line\r\n'), 2, 'standard input holds more than one line'],
      // Invalid UTF-8 would otherwise be read as U+FFFD, which any other invalid bytes match.
      [create('bytes@example.com', Buffer.from([0xff, 0xfe, 0xfd, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x0a])), 2, 'not UTF-8'],
      [create('<script>@example.com', 'long enough\n'), 1, 'is not an email address'],
      [create('name@example.com', 'long enough\n', 'N'.repeat(201)), 1, 'at most 200 characters'],
      [pc.cli(['client', 'create', '--name', 'C'.repeat(201), '--redirect-uri', REDIRECT_URI]), 1, 'at most 200 characters'],
    ];
    for (const [result, code, message] of refusals) {
      const { code: actual, stderr } = await result;
      expect([message, actual]).toEqual([message, code]);
      expect(stderr).toContain(message);
      expect(stderr).not.toMatch(/\n\s+at /); // one line, no stack
    }
    const emails = (JSON.parse((await pc.cli(['user', 'list', '--json'])).stdout) as { email: string }[]).map((user) => user.email);
    for (const refused of ['long@example.com', 'nul@example.com', 'bytes@example.com', 'name@example.com']) expect(emails).not.toContain(refused);
    // At the limits, and with the address forms a browser sends, it works.
    const fine = await create("o'neil+tag@mail.example-host.org", `${'a pass phrase '.repeat(80).slice(0, 1024)}\n`, 'N'.repeat(200));
    expect(fine.code, fine.stderr).toBe(0);
  });

  it('shows stored names that would drive a terminal (kept from before the rules, or written into the database) as their codes, in JSON too', async () => {
    const { client_id } = JSON.parse((await pc.cli(['client', 'create', '--name', 'Plain', '--redirect-uri', REDIRECT_URI, '--json'])).stdout) as { client_id: string };
    const named = 'Evil\u001b]0;pwned\u0007\u001b[2J\u202eName\r\nnext\u0085';
    const db = pc.outsideConnection();
    await db.connect();
    await db.query('UPDATE clients SET name = $1 WHERE client_id = $2', [named, client_id]).finally(() => db.end());
    const terminalDriving = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202e\u2028\u2029]/;
    for (const args of [['client', 'list'], ['client', 'show', client_id]]) {
      const { code, stdout } = await pc.cli(args);
      expect(code).toBe(0);
      expect(stdout).not.toMatch(terminalDriving);
      expect(stdout).toContain('Evil\\u{1b}]0;pwned\\u{7}\\u{1b}[2J\\u{202e}Name\\u{d}');
    }
    // The joiners a name may be written with are shown as they are.
    const family = 'Family \u{1f469}\u200d\u{1f469}\u200d\u{1f467} \u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645';
    expect((await pc.cli(['client', 'create', '--name', family, '--redirect-uri', REDIRECT_URI])).code).toBe(0);
    expect((await pc.cli(['client', 'list'])).stdout).toContain(family);
    for (const args of [['client', 'list', '--json'], ['client', 'show', client_id, '--json']]) {
      const { stdout } = await pc.cli(args);
      expect(stdout).not.toMatch(terminalDriving);
      const parsed = JSON.parse(stdout) as { client_id: string; client_name: string } | { client_id: string; client_name: string }[];
      expect([parsed].flat().find((client) => client.client_id === client_id)!.client_name).toBe(named);
    }
  });

  it('refuses names that would not show as typed, and client addresses that are not printable ASCII; names written with joiners are kept', async () => {
    const user = (email: string, name: string) => pc.cli(['user', 'create', '--email', email, '--name', name, '--password-stdin'], 'long enough\n');
    const client = (...options: string[]) => pc.cli(['client', 'create', '--name', 'Addresses', ...options]);
    const { client_id } = JSON.parse((await pc.cli(['client', 'create', '--name', 'Kept', '--redirect-uri', REDIRECT_URI, '--json'])).stdout) as { client_id: string };
    const hidden = 'must not contain control characters, invisible format characters';
    const refusals: [() => Promise<{ code: number; stderr: string }>, string][] = [
      [() => user('zwsp@example.com', 'Ann\u200bie'), hidden],
      [() => user('alm@example.com', 'Ann\u061cie'), hidden],
      [() => user('lsep@example.com', 'Ann\u2028ie'), hidden],
      [() => user('bom@example.com', 'Ann\ufeffie'), hidden],
      [() => user('joiner@example.com', '\u200d\u200d'), 'must show at least one letter, digit or symbol'],
      [() => user('filler@example.com', '\u3164\u2800'), 'must show at least one letter, digit or symbol'],
      // Forty ideographic spaces push the rest of a name onto a line of its own, where it reads as the page's words.
      [() => pc.cli(['client', 'create', '--name', `Portcullis needs to verify your account.${'\u3000'.repeat(40)}Allow to continue.`, '--redirect-uri', REDIRECT_URI]), 'two spaces in a row other than plain ones'],
      [() => user('wide@example.com', 'Ann\u2003 ie'), 'two spaces in a row other than plain ones'],
      [() => user('zalgo@example.com', `Ann${'\u0301\u0302\u0303\u0304\u0305\u0306\u0307'}ie`), 'more than six combining marks'],
      // Split by what draws nothing: joiners, the combining grapheme joiner; blanks that are not spaces.
      [() => user('split@example.com', `Ann${'\u0301\u0302\u200d\u0303\u0304\u034f\u0305\u0306\u200c\u0307'}ie`), 'more than six combining marks'],
      [() => pc.cli(['client', 'create', '--name', `Verify your account.${'\u3000\u200c'.repeat(40)}Allow to continue.`, '--redirect-uri', REDIRECT_URI]), 'two spaces in a row other than plain ones'],
      [() => user('braille@example.com', 'Ann\u2800\u2800ie'), 'two spaces in a row other than plain ones'],
      [() => client('--redirect-uri', 'https://*.example.com/cb'), 'a "*" in the host is no wildcard'],
      [() => pc.cli(['api', 'create', '--identifier', 'https://api.example/\u001b[31mX\u0001', '--scope', 's1']), 'printable ASCII'],
      [() => client('--redirect-uri', REDIRECT_URI, '--scope', 'read:x\u001b[31m'), 'no API defines the scope'],
      [() => client('--redirect-uri', 'https://a.example/\u202eevil\u009b31m\u007f'), 'must be a URI in printable ASCII'],
      [() => pc.cli(['client', 'create', '--name', '\u200b\u200b', '--redirect-uri', REDIRECT_URI]), hidden],
      [() => pc.cli(['client', 'update', client_id, '--name', 'Ke\u2029pt']), hidden],
      [() => client('--redirect-uri', 'https://a.example/\u0001'), 'must be a URI in printable ASCII'],
      [() => client('--redirect-uri', ' https://a.example/cb'), 'must be a URI in printable ASCII'],
      [() => client('--redirect-uri', 'https://a.\texample/cb'), 'must be a URI in printable ASCII'],
      [() => client('--redirect-uri', 'https://a.example/\u001b[31m'), 'must be a URI in printable ASCII'],
      [() => client('--redirect-uri', 'https://bücher.example/cb'), 'must be a URI in printable ASCII'],
      [() => client('--redirect-uri', REDIRECT_URI, '--post-logout-redirect-uri', 'https://a.example/bye '), 'must be a URI in printable ASCII'],
      [() => client('--redirect-uri', REDIRECT_URI, '--logo-uri', 'https://a.example/\u0007.png'), 'must be a URI in printable ASCII'],
      [() => pc.cli(['client', 'update', client_id, '--redirect-uri', 'https://a.example/cb\t']), 'must be a URI in printable ASCII'],
    ];
    // Eight at a time: the embedded database's server takes 16 connections, and the CLI holds one.
    const results: Promise<{ code: number; stderr: string }>[] = [];
    for (let batch = 0; batch < refusals.length; batch += 8) {
      const started = refusals.slice(batch, batch + 8).map(([run]) => run());
      results.push(...started);
      await Promise.all(started);
    }
    for (const [index, [, message]] of refusals.entries()) {
      const { code, stderr } = await results[index]!;
      expect([index, message, code]).toEqual([index, message, 1]);
      expect(stderr).toContain(message);
      // The refusal names the value escaped: no raw control or invisible character reaches the terminal.
      expect(stderr).not.toMatch(/[\u0001\u0007\u001b\t\u007f\u009b\u202e]/);
    }
    const emails = (JSON.parse((await pc.cli(['user', 'list', '--json'])).stdout) as { email: string }[]).map((u) => u.email);
    for (const refused of ['zwsp@example.com', 'alm@example.com', 'lsep@example.com', 'bom@example.com', 'joiner@example.com']) expect(emails).not.toContain(refused);
    const clients = JSON.parse((await pc.cli(['client', 'list', '--json'])).stdout) as { client_id: string; name?: string; client_name?: string; redirect_uris: string[] }[];
    expect(clients.filter((c) => (c.name ?? c.client_name) === 'Addresses')).toEqual([]);
    const kept = clients.find((c) => c.client_id === client_id)!;
    expect([kept.name ?? kept.client_name, kept.redirect_uris]).toEqual(['Kept', [REDIRECT_URI]]);

    // A client registered before these rules keeps its name and addresses through an update that does not replace them.
    const db = pc.outsideConnection();
    await db.connect();
    try {
      expect(client_id).toMatch(/^[\w-]+$/); // inlined: simple-protocol statements only on the embedded database
      await db.query(`UPDATE clients SET name = 'Old\u200bName', metadata = jsonb_set(metadata, '{logo_uri}', '"https://bücher.example/logo.png"') WHERE client_id = '${client_id}'`);
    } finally {
      await db.end();
    }
    const rescoped = await pc.cli(['client', 'update', client_id, '--scope', 'openid email', '--json']);
    expect(rescoped.code, rescoped.stderr).toBe(0);
    expect(JSON.parse(rescoped.stdout)).toMatchObject({ client_name: 'Old\u200bName', logo_uri: 'https://bücher.example/logo.png', scope: 'openid email' });
    expect((await pc.cli(['client', 'update', client_id, '--logo-uri', 'https://bücher.example/new.png'])).stderr).toContain('printable ASCII');

    // Persian writes names with the zero-width non-joiner; emoji sequences join with U+200D.
    expect((await user('mahsa@example.com', 'مه\u200cسا')).code).toBe(0);
    expect((await user('family@example.com', 'Family \u{1F468}\u200d\u{1F469}\u200d\u{1F467}')).code).toBe(0);
    // One ideographic space between family and given name; Hebrew with its points and cantillation; Tibetan's stacks; two plain spaces.
    expect((await user('yamada@example.com', '山田\u3000太郎')).code).toBe(0);
    expect((await user('shalom@example.com', '\u05e9\u05bc\u05c1\u05b8\u0591\u05bd\u05dc\u05d5\u05b9\u05dd')).code).toBe(0);
    expect((await user('tibetan@example.com', '\u0f67\u0fa8\u0fb1\u0f71\u0f74\u0f83')).code).toBe(0);
    expect((await user('typo@example.com', 'Ann  Smith')).code).toBe(0);
  }, 180_000);
});

/** Whether the user agent is still signed in at the server: an authorization request with prompt=none. */
async function stillSignedIn(ua: UserAgent, rp: oidc.Configuration): Promise<boolean> {
  const request = await authorizationRequest(rp, 'openid', { prompt: 'none' });
  const page = await visit(ua, request.url);
  const error = new URL(page.url).searchParams.get('error');
  expect([null, 'login_required']).toContain(error);
  return error === null;
}

/** What a password gets on the sign-in page: 'signed in' (on to consent or the client), or why the page says it was refused. */
async function tryPassword(rp: oidc.Configuration, email: string, password: string): Promise<'signed in' | SignInRefusal> {
  const ua = new UserAgent();
  const page = await visit(ua, (await authorizationRequest(rp, 'openid')).url);
  const after = await signIn(ua, page, email, password);
  const kind = pageKind(after);
  if (kind === 'consent' || kind === 'callback') return 'signed in';
  const refusal = signInRefusal(after);
  if (refusal) return refusal;
  throw new Error(`unexpected page after signing in: ${after.status} ${after.url}`);
}

/** The page the sign-in form answers a password with. */
async function answerTo(rp: oidc.Configuration, email: string, password: string) {
  const ua = new UserAgent();
  return signIn(ua, await visit(ua, (await authorizationRequest(rp, 'openid')).url), email, password);
}

describe('portcullis user: list, set-password, revoke, disable, delete', () => {
  let rp: oidc.Configuration;
  beforeAll(async () => {
    const { client_id, client_secret } = await pc.createClient({ name: 'People', redirectUris: [REDIRECT_URI], scope: 'openid email offline_access' });
    rp = await discover(pc.issuer, client_id, client_secret);
  });

  const offline = (email: string, password: string, ua = new UserAgent()) =>
    logIn(ua, rp, 'openid offline_access', { email, password }, { prompt: 'consent' });

  it('list shows each user once, without anything secret', async () => {
    await pc.createUser('lena@example.com', 'lenas password', 'Lena');
    const listed = await pc.cli(['user', 'list', '--json']);
    expect(listed.code).toBe(0);
    const lena = (JSON.parse(listed.stdout) as { id: string; email: string }[]).filter((user) => user.email === 'lena@example.com');
    expect(lena).toEqual([
      { id: expect.stringMatching(/^[0-9a-f-]{36}$/), email: 'lena@example.com', name: 'Lena', email_verified: false, created_at: expect.any(String), disabled_at: null },
    ]);
    expect(listed.stdout).not.toMatch(/argon2|password/);
    const text = await pc.cli(['user', 'list']);
    expect(text.stdout).toContain(`${lena[0]!.id}  lena@example.com  Lena`);
  });

  it('list reads a thousand users at a time: those made in one millisecond across a page\'s end are each shown once, oldest first', async () => {
    // 1,201 made in the same millisecond, the first page ending among them; the rest a millisecond apart.
    await pc.outsideQuery(`INSERT INTO users (id, email, email_verified, created_at, updated_at)
      SELECT gen_random_uuid(), 'crowd' || n || '@example.com', false,
             timestamptz '2020-01-01 00:00:00Z' + CASE WHEN n <= 1201 THEN interval '0' ELSE n * interval '1 millisecond' END, now()
      FROM generate_series(1, 2500) AS n`);
    const listed = await pc.cli(['user', 'list', '--json']);
    expect(listed.code, listed.stderr).toBe(0);
    expect([listed.stdout.slice(0, 16), listed.stdout.slice(-7)]).toEqual(['[\n  {\n    "id": ', '\n  }\n]\n']);
    const users = JSON.parse(listed.stdout) as { id: string; email: string; created_at: string }[];
    const crowd = users.filter((user) => user.email.startsWith('crowd'));
    expect([crowd.length, new Set(crowd.map((user) => user.email)).size]).toEqual([2500, 2500]);
    const oldestFirst = (a: { id: string; created_at: string }, b: { id: string; created_at: string }) =>
      a.created_at < b.created_at ? -1 : a.created_at > b.created_at ? 1 : a.id < b.id ? -1 : 1;
    expect(users.map((user) => user.id)).toEqual([...users].sort(oldestFirst).map((user) => user.id));
    const text = (await pc.cli(['user', 'list'])).stdout;
    expect(text.trimEnd().split('\n').map((line) => line.split('  ')[0])).toEqual(users.map((user) => user.id));
  });

  it('counts a password in characters, an emoji as one, up to 1024, and the sign-in form takes the longest', async () => {
    // A key is one character: two UTF-16 units, four bytes of UTF-8, twelve once form-encoded.
    const longest = `${'\u{1F511}'.repeat(1000)}pass phrase ${'x'.repeat(12)}`;
    expect([...longest].length).toBe(1024);
    const refused = await pc.cli(['user', 'create', '--email', 'keys@example.com', '--password-stdin'], `${longest}y\n`);
    expect([refused.code, refused.stderr]).toEqual([1, expect.stringContaining('at most 1024 characters')]);
    const created = await pc.cli(['user', 'create', '--email', 'keys@example.com', '--password-stdin'], `${longest}\n`);
    expect(created.code, created.stderr).toBe(0);
    expect(await tryPassword(rp, 'keys@example.com', longest)).toBe('signed in');
    expect(await tryPassword(rp, 'keys@example.com', longest.slice(0, -1))).toBe('wrong_credentials');
  });

  it.skipIf(process.env.TEST_DATABASE !== 'postgres')('set-password: a sign-in that checked the old password and is saved after the change is refused', async () => {
    await pc.createUser('nell@example.com', 'nells old password');
    const ua = new UserAgent();
    const login = await visit(ua, (await authorizationRequest(rp, 'openid offline_access', { prompt: 'consent' })).url);
    expect(pageKind(login)).toBe('login');
    const uid = /\/interaction\/([^/]+)\/login/.exec(login.html)![1]!;
    // Hold the sign-in's row, so that the sign-in checks the old password and
    // then waits to save itself while the password changes.
    const [holder, watcher] = [pc.outsideConnection(), pc.outsideConnection()];
    await Promise.all([holder.connect(), watcher.connect()]);
    try {
      await holder.query('BEGIN');
      await holder.query(`SELECT 1 FROM provider_artifacts WHERE kind = 'Interaction' AND id = $1 FOR UPDATE`, [sha256(uid)]);
      const signingIn = signIn(ua, login, 'nell@example.com', 'nells old password');
      const deadline = Date.now() + 20_000;
      const waiting = async () =>
        Number((await watcher.query(`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`)).rows[0].count);
      while ((await waiting()) < 1) {
        if (Date.now() > deadline) throw new Error('the sign-in never waited for its row');
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      const changed = await pc.cli(['user', 'set-password', 'nell@example.com', '--password-stdin'], 'nells new password\n');
      expect(changed.code, changed.stderr).toBe(0);
      await holder.query('COMMIT');
      const answer = await signingIn;
      expect(signInRefusal(answer)).toBe('wrong_credentials');
    } finally {
      await Promise.all([holder.end(), watcher.end()]);
    }
    expect(await stillSignedIn(ua, rp)).toBe(false);
    expect(await tryPassword(rp, 'nell@example.com', 'nells new password')).toBe('signed in');
  });

  /**
   * Holds an operator command (`user set-password`, `user revoke`) between its
   * first statements and its commit: a session of the user, locked from
   * outside, makes the command's delete wait. `during` starts a request and
   * waits until it waits too (or is answered); the command then goes on, and
   * the request's answer is returned once both have ended.
   */
  async function holdingCommand<T>(
    user: { email: string; password: string },
    command: string[],
    stdin: string | undefined,
    during: (waitersAtLeast: (count: number, until: Promise<unknown>) => Promise<void>) => Promise<{ answer: Promise<T> }>,
  ): Promise<T> {
    const { id } = (JSON.parse((await pc.cli(['user', 'list', '--json'])).stdout) as { id: string; email: string }[]).find((entry) => entry.email === user.email)!;
    await logIn(new UserAgent(), rp, 'openid', user); // a session of theirs to hold
    const [holder, watcher] = [pc.outsideConnection(), pc.outsideConnection()];
    await Promise.all([holder.connect(), watcher.connect()]);
    const waitersAtLeast = async (count: number, until?: Promise<unknown>) => {
      let settled = false;
      void until?.finally(() => (settled = true));
      const deadline = Date.now() + 20_000;
      const waiting = async () =>
        Number((await watcher.query(`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`)).rows[0].count);
      while (!settled && (await waiting()) < count) {
        if (Date.now() > deadline) throw new Error(`fewer than ${count} statements ever waited`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    };
    try {
      await holder.query('BEGIN');
      await holder.query(`SELECT 1 FROM provider_artifacts WHERE kind = 'Session' AND payload->>'accountId' = $1 FOR UPDATE`, [id]);
      const running = pc.cli(command, stdin);
      await waitersAtLeast(1);
      const { answer } = await during(waitersAtLeast);
      await holder.query('COMMIT');
      const result = await running;
      expect(result.code, result.stderr).toBe(0);
      return await answer;
    } finally {
      await Promise.all([holder.end(), watcher.end()]);
    }
  }

  it.skipIf(process.env.TEST_DATABASE !== 'postgres')('set-password: a sign-in with the old password while the change is not yet committed is refused', async () => {
    const tess = { email: 'tess@example.com', password: 'tesss old password' };
    await pc.createUser(tess.email, tess.password);
    const ua = new UserAgent();
    const login = await visit(ua, (await authorizationRequest(rp, 'openid')).url);
    const answer = await holdingCommand(tess, ['user', 'set-password', tess.email, '--password-stdin'], 'tesss new password\n', async (waitersAtLeast) => {
      const signingIn = signIn(ua, login, tess.email, tess.password);
      await waitersAtLeast(2, signingIn); // its check of the password waits for the change to commit
      return { answer: signingIn };
    });
    expect(signInRefusal(answer)).toBe('wrong_credentials');
    expect(await stillSignedIn(ua, rp)).toBe(false);
  });

  it.skipIf(process.env.TEST_DATABASE !== 'postgres')('revoke: a first consent given while the revoke is not yet committed does not stay', async () => {
    const uri = { email: 'uri@example.com', password: 'uris password' };
    await pc.createUser(uri.email, uri.password);
    const other = await pc.createClient({ name: 'Other', redirectUris: [REDIRECT_URI], scope: 'openid email' });
    const otherRp = await discover(pc.issuer, other.client_id, other.client_secret);
    const ua = new UserAgent();
    const consent = await signIn(ua, await visit(ua, (await authorizationRequest(otherRp, 'openid email')).url), uri.email, uri.password);
    expect(pageKind(consent)).toBe('consent');
    await holdingCommand(uri, ['user', 'revoke', uri.email], undefined, async (waitersAtLeast) => {
      const consenting = ua.post(consent, UserAgent.formAction(consent, '/confirm'), UserAgent.hiddenFields(consent), REDIRECT_URI);
      await waitersAtLeast(2, consenting); // its check of the revocation waits for the revoke to commit
      return { answer: consenting };
    });
    const again = await logIn(new UserAgent(), otherRp, 'openid email', uri);
    expect(again.seen).toEqual(['login', 'consent']);
  });

  it('set-password: the old password stops working, every session ends, a lockout is lifted, and apps keep their access', async () => {
    await pc.createUser('milo@example.com', 'milos old password');
    const first = new UserAgent();
    const second = new UserAgent();
    const { tokens } = await offline('milo@example.com', 'milos old password', first);
    await logIn(second, rp, 'openid', { email: 'milo@example.com', password: 'milos old password' });
    expect(await stillSignedIn(first, rp)).toBe(true);
    // Locked out by guesses (SIGN_IN_MAX_FAILURES, 10 by default).
    for (let i = 0; i < 10; i++) expect(await tryPassword(rp, 'milo@example.com', `wrong guess ${i}`)).toBe('wrong_credentials');
    expect(await tryPassword(rp, 'milo@example.com', 'milos old password')).toBe('throttled');

    const changed = await pc.cli(['user', 'set-password', 'Milo@Example.com', '--password-stdin', '--json'], 'milos new password\n');
    expect(changed.stderr).toBe('');
    expect(changed.code).toBe(0);
    expect(JSON.parse(changed.stdout)).toMatchObject({ email: 'milo@example.com', removed: { Session: 2 } });

    expect(await stillSignedIn(first, rp)).toBe(false);
    expect(await stillSignedIn(second, rp)).toBe(false);
    expect(await tryPassword(rp, 'milo@example.com', 'milos old password')).toBe('wrong_credentials');
    expect(await tryPassword(rp, 'milo@example.com', 'milos new password')).toBe('signed in');
    // The consent given with offline_access stands: the app's refresh token still works.
    const refreshed = await oidc.refreshTokenGrant(rp, tokens.refresh_token!);
    expect(refreshed.access_token).toBeTruthy();
  });

  it('set-password ends the consents given without offline_access, as a sign-out does, and what was issued under them', async () => {
    await pc.createUser('ines@example.com', 'ines old password');
    const browser = new UserAgent();
    const { tokens, seen } = await logIn(browser, rp, 'openid email', { email: 'ines@example.com', password: 'ines old password' });
    expect(seen).toEqual(['login', 'consent']);
    expect(await oidc.fetchUserInfo(rp, tokens.access_token, tokens.claims()!.sub)).toMatchObject({ email: 'ines@example.com' });
    const changed = await pc.cli(['user', 'set-password', 'ines@example.com', '--password-stdin', '--json'], 'ines new password\n');
    expect(changed.code, changed.stderr).toBe(0);
    expect(JSON.parse(changed.stdout).removed).toMatchObject({ Session: 1, Grant: 1, AccessToken: 1 });
    // The consent ended: the app asks again; the token issued under it is refused.
    await expect(oidc.fetchUserInfo(rp, tokens.access_token, tokens.claims()!.sub)).rejects.toThrow();
    expect((await logIn(new UserAgent(), rp, 'openid email', { email: 'ines@example.com', password: 'ines new password' })).seen).toEqual(['login', 'consent']);
  });

  it('set-password leaves a consent that holds offline_access, though the sign-in that first gave it did not ask for it', async () => {
    const ivo = { email: 'ivo@example.com', password: 'ivos old password' };
    await pc.createUser(ivo.email, ivo.password);
    // Given without offline_access in one browser, then given it in another (the same remembered consent).
    const laptop = new UserAgent();
    expect((await logIn(laptop, rp, 'openid', ivo)).seen).toEqual(['login', 'consent']);
    const { tokens } = await offline(ivo.email, ivo.password);
    const changed = await pc.cli(['user', 'set-password', ivo.email, '--password-stdin', '--json'], 'ivos new password\n');
    expect(changed.code, changed.stderr).toBe(0);
    expect(JSON.parse(changed.stdout)).toMatchObject({ removed: { Session: 2 }, consents_kept: 1 });
    expect(await stillSignedIn(laptop, rp)).toBe(false);
    expect((await oidc.refreshTokenGrant(rp, tokens.refresh_token!)).access_token).toBeTruthy();
    // In words, the operator is told what still works and how to end it.
    const again = await pc.cli(['user', 'set-password', ivo.email, '--password-stdin'], 'ivos newer password\n');
    expect(again.stdout).toBe(
      `new password set for ${ivo.email}; no session was open\n` +
        `1 consent with offline access stays, and the apps' refresh tokens keep working; to end them too: portcullis user revoke ${ivo.email}\n`,
    );
  });

  /** Runs `change` while keeping a copy of the user's rows of `kinds`, and puts them back after it, as requests in flight would save them. */
  async function savedBack(email: string, kinds: string[], change: () => Promise<void>): Promise<void> {
    const { id } = (JSON.parse((await pc.cli(['user', 'list', '--json'])).stdout) as { id: string; email: string }[]).find((user) => user.email === email)!;
    const db = pc.outsideConnection();
    await db.connect();
    try {
      // Literal statements: the embedded database's socket takes no parameters.
      const table = `saved_${randomBytes(4).toString('hex')}`;
      const list = kinds.map((kind) => `'${kind}'`).join(', ');
      await db.query(`CREATE TABLE ${table} AS SELECT * FROM provider_artifacts WHERE kind IN (${list}) AND (payload->>'accountId' = '${id}' OR account_id = '${id}')`);
      const { rows } = await db.query(`SELECT count(*)::int AS n FROM ${table}`);
      expect(rows[0].n).toBeGreaterThanOrEqual(kinds.length);
      // Times are kept to the second: what is put back signed in, or was issued, a second before the change.
      await new Promise((resolve) => setTimeout(resolve, 1000));
      await change();
      await db.query(`INSERT INTO provider_artifacts SELECT * FROM ${table} ON CONFLICT DO NOTHING`);
      await db.query(`DROP TABLE ${table}`);
    } finally {
      await db.end();
    }
  }

  it('show: the user, their open sessions and the consents in force, as set-password and revoke change them', async () => {
    await pc.createUser('olga@example.com', 'olgas password', 'Olga');
    const show = async () => {
      const shown = await pc.cli(['user', 'show', 'OLGA@example.com', '--json']);
      expect(shown.code, shown.stderr).toBe(0);
      return JSON.parse(shown.stdout) as { sessions: number; consents: { client_id: string; client_name: string | null; scope: string; apis: Record<string, string>; first_given_at: string; expires_at: string | null; withdrawn_at: string | null }[] } & Record<string, unknown>;
    };
    const fresh = await show();
    expect(fresh).toEqual({
      id: expect.stringMatching(/^[0-9a-f-]{36}$/), email: 'olga@example.com', name: 'Olga', email_verified: false, created_at: expect.any(String), disabled_at: null,
      password_set_at: expect.any(String), totp: 'off', totp_set_up_at: null, totp_locked: false, sessions: 0, consents: [],
    });
    expect(Date.parse(fresh.password_set_at as string)).toBeGreaterThanOrEqual(Date.parse(fresh.created_at as string));
    const id = fresh.id as string;

    // Two browsers, one consent (the second browser is not asked again).
    const before = Date.now() - 1000;
    await offline('olga@example.com', 'olgas password');
    const second = await logIn(new UserAgent(), rp, 'openid', { email: 'olga@example.com', password: 'olgas password' });
    expect(second.seen).toEqual(['login']);
    const signedIn = await show();
    expect(signedIn.sessions).toBe(2);
    const { client_id } = rp.clientMetadata();
    expect(signedIn.consents).toEqual([
      { client_id, client_name: 'People', scope: 'openid offline_access', apis: {}, first_given_at: expect.any(String), expires_at: expect.any(String), withdrawn_at: null },
    ]);
    expect(Date.parse(signedIn.consents[0]!.first_given_at)).toBeGreaterThan(before);
    const text = await pc.cli(['user', 'show', id]);
    expect(text.stdout).toMatch(/^email: +olga@example\.com$/m);
    expect(text.stdout).toMatch(/^sessions: +2$/m);
    expect(text.stdout).toContain(`\n  ${client_id}  People  openid offline_access  (first given ${signedIn.consents[0]!.first_given_at}, until `);
    expect(text.stdout + JSON.stringify(signedIn)).not.toMatch(/argon2|olgas password/);

    // A new password signs them out everywhere; the consent with offline access stays.
    // A session a request in flight saves back is not counted: it is not honoured.
    await savedBack('olga@example.com', ['Session'], async () => {
      expect((await pc.cli(['user', 'set-password', 'olga@example.com', '--password-stdin'], 'olgas new password\n')).code).toBe(0);
    });
    const signedOut = await show();
    expect([signedOut.sessions, signedOut.consents.length]).toEqual([0, 1]);
    expect(Date.parse(signedOut.password_set_at as string)).toBeGreaterThan(Date.parse(fresh.password_set_at as string));
    expect((await pc.cli(['user', 'revoke', 'olga@example.com'])).code).toBe(0);
    expect((await show()).consents).toEqual([]);

    const unknown = await pc.cli(['user', 'show', 'nobody@example.com']);
    expect([unknown.code, unknown.stderr]).toEqual([1, 'portcullis: no user nobody@example.com\n']);
  });

  it('show: a consent withdrawn at a sign-out is listed as such (sign-ins from before still use it); a session past SESSION_MAX_AGE is not counted', async () => {
    const credentials = { email: 'wanda@example.com', password: 'wandas password' };
    await pc.createUser(credentials.email, credentials.password);
    const here = new UserAgent();
    const there = new UserAgent();
    expect((await logIn(here, rp, 'openid', credentials)).seen).toEqual(['login', 'consent']);
    expect((await logIn(there, rp, 'openid', credentials)).seen).toEqual(['login']);
    const show = async () => JSON.parse((await pc.cli(['user', 'show', credentials.email, '--json'])).stdout) as { id: string; sessions: number; consents: { withdrawn_at: string | null }[] };
    const before = await show();
    expect([before.sessions, before.consents.map((consent) => consent.withdrawn_at)]).toEqual([2, [null]]);

    // Signing out here withdraws the consent (it has no offline_access); the sign-in there still uses it.
    // (Times count seconds: a sign-in in the withdrawal's own second would count as made since.)
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const confirm = await here.open(`${pc.issuer}/session/end`);
    const action = /<form[^>]*id="op.logoutForm"[^>]*action="([^"]+)"/.exec(confirm.html)![1]!;
    await here.post(confirm, action, { ...UserAgent.hiddenFields(confirm), logout: 'yes' });
    expect(await stillSignedIn(there, rp)).toBe(true);
    const after = await show();
    expect(after.sessions).toBe(1);
    expect(after.consents).toHaveLength(1);
    expect(Date.parse(after.consents[0]!.withdrawn_at!)).toBeGreaterThan(Date.now() - 60_000);
    expect((await pc.cli(['user', 'show', credentials.email])).stdout).toMatch(/; withdrawn at a sign-out \S+: asked for again, but sign-ins from before may still use it\)\n$/);

    // Signed in longer ago than SESSION_MAX_AGE (30 days here): the server no longer honours it, nor is it counted.
    const db = pc.outsideConnection();
    await db.connect();
    await db.query(`UPDATE provider_artifacts SET payload = jsonb_set(payload, '{loginTs}', to_jsonb((payload->>'loginTs')::int - 31 * 86400)) WHERE kind = 'Session' AND payload->>'accountId' = '${before.id}'`);
    await db.end();
    expect(await stillSignedIn(there, rp)).toBe(false);
    expect((await show()).sessions).toBe(0);
  });

  it('set-password: a session that a request in flight saves back is refused; signing in with the new password at once works', async () => {
    await pc.createUser('quinn@example.com', 'quinns old password');
    const ua = new UserAgent();
    await logIn(ua, rp, 'openid', { email: 'quinn@example.com', password: 'quinns old password' });
    await savedBack('quinn@example.com', ['Session'], async () => {
      expect((await pc.cli(['user', 'set-password', 'quinn@example.com', '--password-stdin'], 'quinns new password\n')).code).toBe(0);
    });
    expect(await stillSignedIn(ua, rp)).toBe(false);
    // Signing in again at once, with the new password, is honoured.
    await logIn(ua, rp, 'openid', { email: 'quinn@example.com', password: 'quinns new password' });
    expect(await stillSignedIn(ua, rp)).toBe(true);
  });

  it('revoke: a code, refresh token or session that a request in flight saves back is refused', async () => {
    await pc.createUser('rita@example.com', 'ritas password');
    const ua = new UserAgent();
    const { tokens } = await offline('rita@example.com', 'ritas password', ua);
    await savedBack('rita@example.com', ['Session', 'Grant', 'RefreshToken', 'AccessToken'], async () => {
      expect((await pc.cli(['user', 'revoke', 'rita@example.com'])).code).toBe(0);
    });
    expect(await stillSignedIn(ua, rp)).toBe(false);
    await expect(oidc.refreshTokenGrant(rp, tokens.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant' });
    expect((await fetch(`${pc.issuer}/me`, { headers: { authorization: `Bearer ${tokens.access_token}` } })).status).toBe(401);
  });

  it.skipIf(process.env.TEST_DATABASE !== 'postgres')('revoke: a consent given at the same moment does not bring the consent back', async () => {
    await pc.createUser('sara@example.com', 'saras password');
    const ua = new UserAgent();
    await logIn(ua, rp, 'openid', { email: 'sara@example.com', password: 'saras password' });
    const consent = await visit(ua, (await authorizationRequest(rp, 'openid email', { prompt: 'consent' })).url);
    expect(pageKind(consent)).toBe('consent');
    const { id } = (JSON.parse((await pc.cli(['user', 'list', '--json'])).stdout) as { id: string; email: string }[]).find((user) => user.email === 'sara@example.com')!;
    // Hold the grant's row: the revoke waits to delete it, then the consent waits to save it, in that order.
    const [holder, watcher] = [pc.outsideConnection(), pc.outsideConnection()];
    await Promise.all([holder.connect(), watcher.connect()]);
    const waiting = (count: number) => lockWaiters(watcher, count);
    try {
      await holder.query('BEGIN');
      const { rowCount } = await holder.query(`SELECT 1 FROM provider_artifacts WHERE kind = 'Grant' AND account_id = $1 FOR UPDATE`, [id]);
      expect(rowCount).toBe(1);
      const revoking = pc.cli(['user', 'revoke', 'sara@example.com']);
      await waiting(1);
      const consenting = ua.post(consent, UserAgent.formAction(consent, '/confirm'), UserAgent.hiddenFields(consent), REDIRECT_URI);
      await waiting(2);
      await holder.query('COMMIT');
      expect((await revoking).code).toBe(0);
      const answer = await consenting;
      expect([answer.status, answer.url.startsWith(REDIRECT_URI)]).toEqual([400, false]);
    } finally {
      await Promise.all([holder.end(), watcher.end()]);
    }
    const again = await logIn(new UserAgent(), rp, 'openid', { email: 'sara@example.com', password: 'saras password' });
    expect(again.seen).toEqual(['login', 'consent']);
  });

  it('revoke: sessions, consents, codes and tokens end; the user stays and is asked to consent again', async () => {
    await pc.createUser('nora@example.com', 'noras password');
    const ua = new UserAgent();
    const { tokens } = await offline('nora@example.com', 'noras password', ua);
    const userinfo = () => fetch(`${pc.issuer}/me`, { headers: { authorization: `Bearer ${tokens.access_token}` } });
    expect((await userinfo()).status).toBe(200);

    const revoked = await pc.cli(['user', 'revoke', 'nora@example.com']);
    expect(revoked.code).toBe(0);
    expect(revoked.stdout).toMatch(/^revoked everything given to nora@example\.com: ended 1 session, 1 consent, \d+ codes and tokens\n$/);

    expect(await stillSignedIn(ua, rp)).toBe(false);
    expect((await userinfo()).status).toBe(401);
    await expect(oidc.refreshTokenGrant(rp, tokens.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant' });
    const again = await logIn(new UserAgent(), rp, 'openid', { email: 'nora@example.com', password: 'noras password' });
    expect(again.seen).toEqual(['login', 'consent']);
  });

  it('revoke --client: only what the person gave that app ends; they stay signed in, and their other apps keep theirs', async () => {
    const credentials = { email: 'petra@example.com', password: 'petras password' };
    await pc.createUser(credentials.email, credentials.password);
    const other = await pc.createClient({ name: 'Other', redirectUris: [REDIRECT_URI], scope: 'openid offline_access' });
    const otherRp = await discover(pc.issuer, other.client_id, other.client_secret);
    const ua = new UserAgent();
    const mine = await offline(credentials.email, credentials.password, ua);
    const theirs = await logIn(ua, otherRp, 'openid offline_access', credentials, { prompt: 'consent' });
    expect(theirs.seen).toEqual(['consent']);
    const { client_id } = rp.clientMetadata();
    const db = pc.outsideConnection();
    await db.connect();
    const { rows: [refreshRow] } = await db.query<{ row: string }>(`SELECT row_to_json(a)::text AS row FROM provider_artifacts a WHERE id = $1`, [sha256(mine.tokens.refresh_token!)]);

    const revoked = await pc.cli(['user', 'revoke', credentials.email, '--client', client_id, '--json']);
    expect(revoked.code, revoked.stderr).toBe(0);
    // The consent, the code it was signed in with, and the tokens: not the session.
    expect(JSON.parse(revoked.stdout)).toEqual({
      id: expect.stringMatching(/^[0-9a-f-]{36}$/), email: credentials.email, client_id,
      removed: { Grant: 1, AuthorizationCode: 1, AccessToken: 1, RefreshToken: 1 },
      backchannel_logouts: [],
    });
    // Written back by a token request in flight: no consent holds it now.
    await db.query(`INSERT INTO provider_artifacts SELECT * FROM json_populate_record(NULL::provider_artifacts, $1)`, [refreshRow!.row]);
    await db.end();
    await expect(oidc.refreshTokenGrant(rp, mine.tokens.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant' });
    expect((await fetch(`${pc.issuer}/me`, { headers: { authorization: `Bearer ${mine.tokens.access_token}` } })).status).toBe(401);
    expect(await oidc.tokenIntrospection(rp, mine.tokens.access_token)).toEqual({ active: false });

    // The other app keeps its access; the person is still signed in, and the app asks for consent again.
    expect((await oidc.refreshTokenGrant(otherRp, theirs.tokens.refresh_token!)).access_token).toBeTruthy();
    expect(await stillSignedIn(ua, otherRp)).toBe(true);
    const silent = await visit(ua, (await authorizationRequest(rp, 'openid', { prompt: 'none' })).url);
    expect(new URL(silent.url).searchParams.get('error')).toBe('consent_required');
    const shown = JSON.parse((await pc.cli(['user', 'show', credentials.email, '--json'])).stdout) as { sessions: number; consents: { client_id: string }[] };
    expect([shown.sessions, shown.consents.map((consent) => consent.client_id)]).toEqual([1, [other.client_id]]);
    expect((await logIn(ua, rp, 'openid', credentials)).seen).toEqual(['consent']);

    const text = await pc.cli(['user', 'revoke', credentials.email, '--client', other.client_id]);
    expect(text.stdout).toMatch(new RegExp(`^revoked what petra@example\\.com gave client ${other.client_id}: ended 1 consent, \\d+ codes and tokens\n$`));
    const again = await pc.cli(['user', 'revoke', credentials.email, '--client', other.client_id]);
    expect([again.code, again.stdout]).toEqual([0, `petra@example.com gave client ${other.client_id} nothing to revoke\n`]);
    // An id may begin with "-" (base64url), an email too: each is read as what it stands for.
    const unknown = await pc.cli(['user', 'revoke', credentials.email, '--client', '-no-such-client']);
    expect([unknown.code, unknown.stderr]).toEqual([1, 'portcullis: no client with id -no-such-client\n']);
    const dashed = await pc.cli(['user', 'revoke', '--client', other.client_id, '-nobody@example.com']);
    expect([dashed.code, dashed.stderr]).toEqual([1, 'portcullis: no user -nobody@example.com\n']);
    const missing = await pc.cli(['user', 'revoke', credentials.email, '--client']);
    expect([missing.code, missing.stderr.split('\n')[0]]).toEqual([2, 'portcullis: --client needs a value']);
  });

  it('revoke: an access token that a request in flight saves back introspects inactive', async () => {
    await pc.createUser('ruth@example.com', 'ruths password');
    const { tokens } = await offline('ruth@example.com', 'ruths password');
    expect((await oidc.tokenIntrospection(rp, tokens.access_token)).active).toBe(true);
    await savedBack('ruth@example.com', ['Grant', 'AccessToken'], async () => {
      expect((await pc.cli(['user', 'revoke', 'ruth@example.com'])).code).toBe(0);
    });
    expect((await oidc.tokenIntrospection(rp, tokens.access_token)).active).toBe(false);
  });

  it('disable: the right password is answered "disabled", a wrong one as ever; everything given ends; enable lets them sign in again', async () => {
    const dora = { email: 'dolores@example.com', password: 'dolores password' };
    await pc.createUser(dora.email, dora.password, 'Dolores');
    const ua = new UserAgent();
    const { tokens } = await offline(dora.email, dora.password, ua);

    const disabled = await pc.cli(['user', 'disable', 'Dolores@Example.com']);
    expect([disabled.code, disabled.stderr]).toEqual([0, '']);
    expect(disabled.stdout).toMatch(/^disabled dolores@example\.com; ended 1 session, 1 consent, \d+ codes and tokens\n$/);
    expect(await stillSignedIn(ua, rp)).toBe(false);
    expect((await fetch(`${pc.issuer}/me`, { headers: { authorization: `Bearer ${tokens.access_token}` } })).status).toBe(401);
    await expect(oidc.refreshTokenGrant(rp, tokens.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant' });

    // Only the one who knows the password learns that the account is disabled.
    const right = await answerTo(rp, dora.email, dora.password);
    expect(signInRefusal(right)).toBe('disabled');
    // The fields were right: not marked invalid, though they read out why.
    expect(right.html).not.toContain('aria-invalid');
    expect(right.html.match(/aria-describedby="sign-in-error"/g)).toHaveLength(2);
    const wrong = await answerTo(rp, dora.email, 'not her password');
    expect(signInRefusal(wrong)).toBe('wrong_credentials');
    expect(wrong.html.match(/aria-invalid="true" aria-describedby="sign-in-error"/g)).toHaveLength(2);
    expect(wrong.html).not.toContain('disabled');

    const listed = JSON.parse((await pc.cli(['user', 'list', '--json'])).stdout) as { id: string; email: string; disabled_at: string | null }[];
    expect(Date.parse(listed.find((user) => user.email === dora.email)!.disabled_at!)).toBeGreaterThan(Date.now() - 60_000);
    expect((await pc.cli(['user', 'list'])).stdout).toMatch(/ dolores@example\.com {2}Dolores {2}\(disabled\)\n/);
    const again = await pc.cli(['user', 'disable', dora.email, '--json']);
    expect(JSON.parse(again.stdout)).toMatchObject({ email: dora.email, was_disabled: true, removed: {} });
    expect(listed.find((user) => user.email === 'lena@example.com')!.disabled_at).toBeNull();
    // A new password does not enable them, and the operator is told so.
    const newPassword = await pc.cli(['user', 'set-password', dora.email, '--password-stdin'], `${dora.password}\n`);
    expect([newPassword.code, newPassword.stdout.split('\n').at(-2)]).toEqual([0, `${dora.email} stays disabled: they sign in with it once \`portcullis user enable ${dora.email}\` has run`]);
    expect(await tryPassword(rp, dora.email, dora.password)).toBe('disabled');
    await pc.createUser('lars@example.com', 'lars password');
    const lars = await pc.cli(['user', 'set-password', 'lars@example.com', '--password-stdin', '--json'], 'lars new password\n');
    expect(JSON.parse(lars.stdout)).toMatchObject({ email: 'lars@example.com', disabled: false });
    expect((await pc.cli(['user', 'set-password', 'lars@example.com', '--password-stdin'], 'lars newer password\n')).stdout).not.toContain('stays disabled');

    const enabled = await pc.cli(['user', 'enable', listed.find((user) => user.email === dora.email)!.id]);
    expect([enabled.code, enabled.stdout]).toEqual([0, `enabled ${dora.email}: they may sign in again\n`]);
    expect((await pc.cli(['user', 'enable', dora.email])).stdout).toBe(`${dora.email} was not disabled\n`);
    expect((await pc.cli(['user', 'list'])).stdout).not.toContain('(disabled)');
    // Nothing comes back: the app asks for consent again.
    expect((await logIn(new UserAgent(), rp, 'openid', dora)).seen).toEqual(['login', 'consent']);
  });

  /**
   * `user disable`, with the person's session, consent and tokens saved back
   * afterwards, as if all of it had been issued in the disable's own second,
   * which the cut-offs let through (they count seconds, as the library does).
   */
  async function disableWithEverythingSavedBack(email: string): Promise<void> {
    await savedBack(email, ['Session', 'Grant', 'RefreshToken', 'AccessToken'], async () => {
      expect((await pc.cli(['user', 'disable', email])).code).toBe(0);
      const db = pc.outsideConnection();
      await db.connect();
      try {
        await db.query(`UPDATE users SET signed_out_at = NULL, revoked_at = NULL WHERE email = '${email}'`);
      } finally {
        await db.end();
      }
    });
  }

  it('disable: no session, code or token of theirs is honoured, even one the cut-offs let through', async () => {
    const dan = { email: 'dan@example.com', password: 'dans password' };
    await pc.createUser(dan.email, dan.password);
    const ua = new UserAgent();
    const { tokens } = await offline(dan.email, dan.password, ua);
    await disableWithEverythingSavedBack(dan.email);
    expect(await stillSignedIn(ua, rp)).toBe(false);
    expect((await fetch(`${pc.issuer}/me`, { headers: { authorization: `Bearer ${tokens.access_token}` } })).status).toBe(401);
    expect((await oidc.tokenIntrospection(rp, tokens.access_token)).active).toBe(false);
    await expect(oidc.refreshTokenGrant(rp, tokens.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant' });
  });

  it('cut-offs count whole seconds: a sign-in, and a token, of the cut-off\'s own second stand (signing in with a new password at once)', async () => {
    const cy = { email: 'cy@example.com', password: 'cys password' };
    await pc.createUser(cy.email, cy.password);
    const ua = new UserAgent();
    const { tokens } = await offline(cy.email, cy.password, ua);
    const { id } = (JSON.parse((await pc.cli(['user', 'list', '--json'])).stdout) as { id: string; email: string }[]).find((user) => user.email === cy.email)!;
    const db = pc.outsideConnection();
    await db.connect();
    try {
      // Half a second after the sign-in and the token's issue: within their second.
      const secondOf = (kind: string, claim: string) => `to_timestamp((SELECT max((payload->>'${claim}')::bigint) FROM provider_artifacts WHERE kind = '${kind}' AND (account_id = '${id}' OR payload->>'accountId' = '${id}'))) + interval '500 milliseconds'`;
      const { rowCount } = await db.query(`UPDATE users SET signed_out_at = ${secondOf('Session', 'loginTs')}, revoked_at = ${secondOf('AccessToken', 'iat')} WHERE id = '${id}' AND ${secondOf('Session', 'loginTs')} IS NOT NULL AND ${secondOf('AccessToken', 'iat')} IS NOT NULL`);
      expect(rowCount).toBe(1);
    } finally {
      await db.end();
    }
    expect(await stillSignedIn(ua, rp)).toBe(true);
    expect((await oidc.tokenIntrospection(rp, tokens.access_token)).active).toBe(true);
  });

  it("enable: what the cut-offs let through at the disable stays refused once the user may sign in again", async () => {
    const eda = { email: 'eda@example.com', password: 'edas password' };
    await pc.createUser(eda.email, eda.password);
    const ua = new UserAgent();
    const { tokens } = await offline(eda.email, eda.password, ua);
    await disableWithEverythingSavedBack(eda.email);
    expect((await pc.cli(['user', 'enable', eda.email])).code).toBe(0);
    expect(await stillSignedIn(ua, rp)).toBe(false);
    expect((await oidc.tokenIntrospection(rp, tokens.access_token)).active).toBe(false);
    await expect(oidc.refreshTokenGrant(rp, tokens.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant' });
    // They sign in anew.
    expect(await tryPassword(rp, eda.email, eda.password)).toBe('signed in');
  });

  // Prisma's default gave a transaction 5 s, then rolled it back: on a grown table (probe AQ) or behind a lock.
  it.skipIf(embedded)('set-password waits as long as a lock on the user holds it, past Prisma\'s 5 s for a transaction, and completes', async () => {
    await pc.createUser('wilma@example.com', 'wilma old password');
    const admin = pc.outsideConnection();
    await admin.connect();
    const holder = pc.outsideConnection();
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query("SELECT 1 FROM users WHERE email = 'wilma@example.com' FOR UPDATE");
      const setting = pc.cli(['user', 'set-password', 'wilma@example.com', '--password-stdin'], 'wilma new password\n');
      await heldAtTheLock(admin);
      await new Promise((resolve) => setTimeout(resolve, 6000));
      await holder.query('COMMIT');
      const done = await setting;
      expect([done.code, done.stderr]).toEqual([0, '']);
    } finally {
      await holder.end();
      await admin.end();
    }
    expect(await tryPassword(rp, 'wilma@example.com', 'wilma new password')).toBe('signed in');
  }, 60_000);

  it('delete: the user and everything given to them go; by email or by id; twice is an error', async () => {
    await pc.createUser('otto@example.com', 'ottos password');
    await pc.createUser('pia@example.com', 'pias password');
    const ua = new UserAgent();
    const { tokens } = await offline('otto@example.com', 'ottos password', ua);

    const deleted = await pc.cli(['user', 'delete', 'otto@example.com', '--json']);
    expect(deleted.code).toBe(0);
    expect(JSON.parse(deleted.stdout)).toMatchObject({ email: 'otto@example.com', removed: { Session: 1, Grant: 1, RefreshToken: 1 } });
    expect(await stillSignedIn(ua, rp)).toBe(false);
    expect((await fetch(`${pc.issuer}/me`, { headers: { authorization: `Bearer ${tokens.access_token}` } })).status).toBe(401);
    await expect(oidc.refreshTokenGrant(rp, tokens.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant' });
    expect(await tryPassword(rp, 'otto@example.com', 'ottos password')).toBe('wrong_credentials');

    const pia = (JSON.parse((await pc.cli(['user', 'list', '--json'])).stdout) as { id: string; email: string }[]).find((user) => user.email === 'pia@example.com')!;
    const byId = await pc.cli(['user', 'delete', pia.id]);
    expect(byId.stdout).toBe(`deleted user pia@example.com (${pia.id})\n`);
    const emails = (JSON.parse((await pc.cli(['user', 'list', '--json'])).stdout) as { email: string }[]).map((user) => user.email);
    expect(emails).not.toContain('otto@example.com');
    expect(emails).not.toContain('pia@example.com');

    const twice = await pc.cli(['user', 'delete', 'otto@example.com']);
    expect(twice.code).toBe(1);
    expect(twice.stderr).toContain('no user otto@example.com');
  });

  it.each([
    [['user', 'delete'], 2, 'expected 1 argument'],
    [['user', 'revoke', 'a@example.com', 'b@example.com'], 2, 'expected 1 argument'],
    [['user', 'set-password', 'lena@example.com'], 2, '--password-stdin is required'],
    [['user', 'set-password', 'nobody@example.com', '--password-stdin'], 1, 'no user nobody@example.com'],
    [['user', 'revoke', `${'x'.repeat(300)}@example.com`], 1, 'no user'],
    [['user', 'delete', '--help'], 0, 'user delete EMAIL|ID'],
  ])('%j exits %i with a clear message', async (args, code, message) => {
    const result = await pc.cli(args as string[], 'long enough password\n');
    expect(result.code).toBe(code);
    expect(result.stderr + result.stdout).toContain(message);
    noStackTrace(result.stderr);
  });

  it('update changes name and email in place: tokens carry them at once, a new email signs in and is unverified', async () => {
    const { client_id, client_secret } = await pc.createClient({ name: 'Profile', redirectUris: [REDIRECT_URI] });
    const rp = await discover(pc.issuer, client_id, client_secret);
    await pc.cli(['user', 'create', '--email', 'val@example.com', '--name', 'Val', '--email-verified', '--password-stdin'], 'vals password\n');
    const before = await logIn(new UserAgent(), rp, 'openid profile email', { email: 'val@example.com', password: 'vals password' });
    expect(before.tokens.claims()).toMatchObject({ name: 'Val', email: 'val@example.com', email_verified: true });

    const updated = await pc.cli(['user', 'update', 'VAL@example.com', '--name', 'Valerie', '--email', 'Valerie@Example.com', '--json']);
    expect(updated.code, updated.stderr).toBe(0);
    expect(JSON.parse(updated.stdout)).toMatchObject({ email: 'valerie@example.com', name: 'Valerie', email_verified: false });
    // The same person (sub), with the new values; the old address no longer signs in.
    const after = await logIn(new UserAgent(), rp, 'openid profile email', { email: 'valerie@example.com', password: 'vals password' });
    expect(after.tokens.claims()).toMatchObject({ sub: before.tokens.claims()!.sub, name: 'Valerie', email: 'valerie@example.com', email_verified: false });
    const ua = new UserAgent();
    const login = await visit(ua, (await authorizationRequest(rp, 'openid')).url);
    expect(signInRefusal(await signIn(ua, login, 'val@example.com', 'vals password'))).toBe('wrong_credentials');
    expect((await pc.cli(['user', 'update', 'valerie@example.com', '--email-verified', '--name', '', '--json'])).stdout).toMatch(/"email_verified": true/);

    await pc.cli(['user', 'create', '--email', 'taken@example.com', '--password-stdin'], 'takens password\n');
    const refusals: [string[], number, string][] = [
      [['user', 'update', 'valerie@example.com', '--email', 'TAKEN@example.com'], 1, 'already exists'],
      [['user', 'update', 'valerie@example.com', '--email', '<script>@example.com'], 1, 'is not an email address'],
      [['user', 'update', 'valerie@example.com'], 2, 'nothing to change'],
      [['user', 'update', 'valerie@example.com', '--email-verified', '--email-unverified'], 2, 'exclude each other'],
      [['user', 'update', 'nobody@example.com', '--name', 'X'], 1, 'no user nobody@example.com'],
    ];
    for (const [args, code, message] of refusals) {
      const result = await pc.cli(args);
      expect([args, result.code]).toEqual([args, code]);
      expect(result.stderr).toContain(message);
    }
  });

  it('set-password refuses a short password and changes nothing', async () => {
    const short = await pc.cli(['user', 'set-password', 'lena@example.com', '--password-stdin'], 'short\n');
    expect(short.code).toBe(1);
    expect(short.stderr).toContain('at least 8 characters');
    expect(await tryPassword(rp, 'lena@example.com', 'lenas password')).toBe('signed in');
  });

  it('keeps an email with an internationalized domain in its ASCII form, as a browser sends it: the CLI and the sign-in page name one account', async () => {
    const created = await pc.cli(['user', 'create', '--email', 'Ida@Bücher.example', '--password-stdin', '--json'], 'idas own password\n');
    expect(created.code, created.stderr).toBe(0);
    expect(JSON.parse(created.stdout)).toMatchObject({ email: 'ida@xn--bcher-kva.example' });
    const shown = await pc.cli(['user', 'show', 'IDA@BÜCHER.EXAMPLE', '--json']);
    expect([shown.code, shown.stderr]).toEqual([0, '']);
    expect(JSON.parse(shown.stdout)).toMatchObject({ email: 'ida@xn--bcher-kva.example' });
    expect(await tryPassword(rp, 'ida@xn--bcher-kva.example', 'idas own password')).toBe('signed in');
    const duplicate = await pc.cli(['user', 'create', '--email', 'ida@xn--bcher-kva.example', '--password-stdin'], 'another password\n');
    expect([duplicate.code, duplicate.stderr]).toEqual([1, expect.stringContaining('already exists')]);
  });

  it('refuses a password attackers try first (in any case), the email or one character repeated, and set-password changes nothing then', async () => {
    const refusals: [string, string, string][] = [
      ['ivy@example.com', 'Password1', 'most commonly used'],
      ['ivy@example.com', 'ILOVEYOU', 'most commonly used'],
      ['ivy@example.com', 'qwertyuiop', 'most commonly used'],
      ['ivy@example.com', 'IVY@example.com', 'must not be the email address'],
      ['oliver.stone@example.com', 'Oliver.Stone', 'must not be the email address'],
      ['ivy@example.com', 'zzzzzzzzzzzz', 'one character repeated'],
      // Full-width letters and digits are the same password to anyone typing it.
      ['ivy@example.com', 'ｐａｓｓｗｏｒｄ１', 'most commonly used'],
      // Four characters (eight UTF-16 units).
      ['ivy@example.com', '😀😁😀😁', 'at least 8 characters'],
      // Eight code points typed, four as compared (NFKC): áéíó, and the Hangul syllables 가나다라 typed as their letters.
      ['ivy@example.com', 'a\u0301e\u0301i\u0301o\u0301', 'at least 8 characters'],
      ['ivy@example.com', '\u1100\u1161\u1102\u1161\u1103\u1161\u1105\u1161', 'at least 8 characters'],
      // Two characters typed, which NFKC writes out as thirty-six.
      ['ivy@example.com', '\ufdfa\ufdfa', 'at least 8 characters'],
      ['ivy@example.com', '  \u3000  \u3000  ', 'only spaces'],
    ];
    for (const [email, password, message] of refusals) {
      const result = await pc.cli(['user', 'create', '--email', email, '--password-stdin'], `${password}\n`);
      expect([password, result.code, result.stderr]).toEqual([password, 1, expect.stringContaining(message)]);
    }
    expect((await pc.cli(['user', 'list', '--json'])).stdout).not.toContain('ivy@example.com');
    // Not on the list, though made of words that are.
    expect((await pc.cli(['user', 'create', '--email', 'ivy@example.com', '--password-stdin'], 'ivy loves qwerty\n')).code).toBe(0);

    const common = await pc.cli(['user', 'set-password', 'lena@example.com', '--password-stdin'], 'letmein1\n');
    expect([common.code, common.stderr]).toEqual([1, expect.stringContaining('most commonly used')]);
    expect(await tryPassword(rp, 'lena@example.com', 'lenas password')).toBe('signed in');
  }, 120_000);

  it('PASSWORD_MIN_LENGTH raises the minimum for new passwords, and may not go below 8', async () => {
    const strict = { ...pc.env, PASSWORD_MIN_LENGTH: '12' };
    const short = await runCli(['user', 'create', '--email', 'pia@example.com', '--password-stdin'], strict, 'pias secret\n');
    expect([short.code, short.stderr]).toEqual([1, expect.stringContaining('at least 12 characters')]);
    expect((await runCli(['user', 'create', '--email', 'pia@example.com', '--password-stdin'], strict, 'pias secrets\n')).code).toBe(0);
    const lax = await runCli(['user', 'list'], { ...pc.env, PASSWORD_MIN_LENGTH: '6' });
    expect(lax.code).not.toBe(0);
    expect(lax.stderr).toContain('PASSWORD_MIN_LENGTH');
  });
});

describe('portcullis keys', () => {
  it('rotate makes a new key current on the running server while the old one keeps verifying', async () => {
    // Followed in detail: the ES256 key, through a client that asked for ES256
    // ID tokens. The RS256 key (every other client's ID tokens) rotates with it.
    const { client_id, client_secret } = await pc.createClient({ name: 'Keys', redirectUris: [REDIRECT_URI], idTokenAlg: 'ES256' });
    const rs256 = await pc.createClient({ name: 'Keys RS256', redirectUris: [REDIRECT_URI] });
    await pc.createUser('kim@example.com', 'kims password');
    const rp = await discover(pc.issuer, client_id, client_secret);
    const rsRp = await discover(pc.issuer, rs256.client_id, rs256.client_secret);
    const kim = { email: 'kim@example.com', password: 'kims password' };
    // A resource server that fetched the JWKS once and caches it.
    const jwks = createRemoteJWKSet(new URL(`${pc.issuer}/jwks`), { cooldownDuration: 0 });
    const before = await logIn(new UserAgent(), rp, 'openid', kim);
    const oldKid = decodeProtectedHeader(before.tokens.id_token!).kid;
    await jwtVerify(before.tokens.id_token!, jwks, { issuer: pc.issuer });
    const rsBefore = await logIn(new UserAgent(), rsRp, 'openid', kim);
    const rsOldHeader = decodeProtectedHeader(rsBefore.tokens.id_token!);
    expect(rsOldHeader.alg).toBe('RS256');

    const listed = JSON.parse((await pc.cli(['keys', 'list', '--json'])).stdout);
    expect(listed.filter((key: { status: string }) => key.status === 'current').map((key: { alg: string }) => key.alg).sort()).toEqual(['ES256', 'RS256']);

    const rotated = await pc.cli(['keys', 'rotate', '--json']);
    expect(rotated.code).toBe(0);
    const keys = JSON.parse(rotated.stdout) as { kid: string; alg: string; status: string; activates_at: string; publish_until: string | null }[];
    // The new key is published at once and signs after the activation delay.
    const newKid = keys.find((key) => key.alg === 'ES256' && key.status === 'next')!.kid;
    expect(newKid).not.toBe(oldKid);
    expect(keys.find((key) => key.kid === oldKid)).toMatchObject({ status: 'current' });
    await new Promise((resolve) => setTimeout(resolve, 1100)); // > KEY_REFRESH_INTERVAL
    const prepublished = (await (await fetch(`${pc.issuer}/jwks`)).json()) as { keys: { kid: string }[] };
    expect(prepublished.keys.map((key) => key.kid)).toContain(newKid);

    // Once the activation delay has passed, and a refresh interval more, the server signs with the new key...
    const activatesAt = Date.parse(keys.find((key) => key.kid === newKid)!.activates_at);
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, activatesAt - Date.now()) + 1100));
    const relisted = JSON.parse((await pc.cli(['keys', 'list', '--json'])).stdout) as { kid: string; status: string }[];
    expect(relisted.find((key) => key.kid === oldKid)!.status).toBe('published');
    expect(relisted.find((key) => key.kid === newKid)!.status).toBe('current');
    const after = await logIn(new UserAgent(), rp, 'openid', kim);
    expect(decodeProtectedHeader(after.tokens.id_token!).kid).toBe(newKid);
    // ...and the cached JWKS verifies both, refetching once for the new kid.
    await jwtVerify(after.tokens.id_token!, jwks, { issuer: pc.issuer });
    await jwtVerify(before.tokens.id_token!, jwks, { issuer: pc.issuer });
    // So does the RS256 key: rotated in the same step, its successor signs now.
    const rsNewKid = keys.find((key) => key.alg === 'RS256' && key.status === 'next')!.kid;
    expect(relisted.find((key) => key.kid === rsOldHeader.kid)!.status).toBe('published');
    const rsAfter = await logIn(new UserAgent(), rsRp, 'openid', kim);
    expect(decodeProtectedHeader(rsAfter.tokens.id_token!)).toMatchObject({ alg: 'RS256', kid: rsNewKid });
    await jwtVerify(rsAfter.tokens.id_token!, jwks, { issuer: pc.issuer });
    await jwtVerify(rsBefore.tokens.id_token!, jwks, { issuer: pc.issuer });
    const published = (await (await fetch(`${pc.issuer}/jwks`)).json()) as { keys: { kid: string }[] };
    expect(published.keys.map((key) => key.kid)).toEqual(expect.arrayContaining([oldKid, newKid, rsOldHeader.kid, rsNewKid]));
    expect(JSON.stringify(published)).not.toMatch(/"d":/); // public parts only

    const retireEarly = await pc.cli(['keys', 'retire', oldKid!]);
    expect(retireEarly.code, retireEarly.stderr).toBe(1);
    expect(retireEarly.stderr).toContain('may still verify unexpired tokens until');
    const retireCurrent = await pc.cli(['keys', 'retire', newKid]);
    expect(retireCurrent.code).toBe(1);
    expect(retireCurrent.stderr).toContain('is current');
  });

  it('retire of a key rotated out but still signing, or of one waiting to sign, says what to do instead of asking for another rotation', async () => {
    const waiting = await startPortcullis({ KEY_ACTIVATION_DELAY: '2h' });
    try {
      type Key = { kid: string; alg: string; status: string; activates_at: string };
      const keys = JSON.parse((await waiting.cli(['keys', 'rotate', '--json'])).stdout) as Key[];
      const old = keys.find((key) => key.alg === 'ES256' && key.status === 'current')!;
      const next = keys.find((key) => key.alg === 'ES256' && key.status === 'next')!;
      const answers = await Promise.all([['keys', 'retire', old.kid], ['keys', 'retire', old.kid, '--compromised'], ['keys', 'retire', next.kid]].map((args) => waiting.cli(args)));
      expect(answers.map((answer) => answer.code)).toEqual([1, 1, 1]);
      const [plain, leaked, early] = answers.map((answer) => answer.stderr);
      const takeover = new Date(next.activates_at).toISOString();
      expect(plain).toContain(`key ${old.kid} signs until its successor takes over at ${takeover}, and what it signed may verify until`);
      expect(leaked).toContain(`key ${old.kid} signs until its successor takes over at ${takeover}; run \`portcullis keys rotate --now\` to replace it at once, then retire it`);
      expect(early).toContain(`key ${next.kid} has signed nothing yet and signs from ${takeover}; \`portcullis keys rotate --now\` replaces it`);
      // Nothing was retired.
      const listed = JSON.parse((await waiting.cli(['keys', 'list', '--json'])).stdout) as Key[];
      expect(listed.map((key) => key.kid)).toEqual(expect.arrayContaining([old.kid, next.kid]));
    } finally {
      await waiting.close();
    }
  });

  it('a rotation a server held back to its own KEY_ACTIVATION_DELAY can still be overtaken by rotate --now, leaving one current key per algorithm and every replaced key retirable', async () => {
    const server = await startPortcullis({ KEY_REFRESH_INTERVAL: '1s', KEY_ACTIVATION_DELAY: '2h' });
    try {
      type Key = { kid: string; alg: string; status: string; created_at: string; activates_at: string };
      const list = async () => JSON.parse((await server.cli(['keys', 'list', '--json'])).stdout) as Key[];
      const old = (await list()).filter((key) => key.status === 'current');
      const firstRotation = JSON.parse((await runCli(['keys', 'rotate', '--json'], { ...server.env, KEY_ACTIVATION_DELAY: '1m' })).stdout) as Key[];
      const waiting = firstRotation.filter((key) => key.status === 'next');
      expect(waiting).toHaveLength(2);
      const heldBack = async (keys: Key[]) => {
        const deadline = Date.now() + 15_000;
        const held = async () => {
          const listed = await list();
          return keys.every(({ kid }) => {
            const key = listed.find((one) => one.kid === kid)!;
            return Date.parse(key.activates_at) - Date.parse(key.created_at) === 2 * 3600_000;
          });
        };
        while (!(await held()) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 250));
        return held();
      };
      expect(await heldBack(waiting)).toBe(true);

      // A second such rotation replaces the waiting keys before they sign:
      // they never sign, and the old keys sign until the second's keys do.
      const second = (JSON.parse((await runCli(['keys', 'rotate', '--json'], { ...server.env, KEY_ACTIVATION_DELAY: '1m' })).stdout) as Key[]).filter((key) => key.status === 'next');
      expect(second).toHaveLength(2);
      expect(await heldBack(second)).toBe(true);
      const scheduled = await list();
      const statusOf = (keys: Key[]) => keys.map(({ kid }) => scheduled.find((key) => key.kid === kid)!.status);
      expect([statusOf(old), statusOf(waiting), statusOf(second)]).toEqual([['current', 'current'], ['published', 'published'], ['next', 'next']]);

      const rotated = await server.cli(['keys', 'rotate', '--now', '--json']);
      expect(rotated.code, rotated.stderr).toBe(0);
      const keys = await list();
      expect(keys.filter((key) => key.status === 'current').map((key) => key.alg).sort()).toEqual(['ES256', 'RS256']);
      expect([...old, ...waiting, ...second].map(({ kid }) => keys.find((key) => key.kid === kid)!.status)).toEqual(Array(6).fill('published'));
      // The held-back keys signed nothing: retired at once; the old ones as compromised.
      const retired = await Promise.all([
        ...[...waiting, ...second].map(({ kid }) => server.cli(['keys', 'retire', kid])),
        ...old.map(({ kid }) => server.cli(['keys', 'retire', kid, '--compromised'])),
      ]);
      expect(retired.map((result) => [result.code, result.stderr])).toEqual(Array(6).fill([0, '']));
    } finally {
      await server.close();
    }
  });

  it('keys rotate run from a machine whose clock is behind schedules by the database\'s clock: the new keys do not sign at once', async () => {
    const server = await startPortcullis({ KEY_ACTIVATION_DELAY: '2h' });
    try {
      type Key = { kid: string; status: string; created_at: string; activates_at: string };
      const skew = { NODE_OPTIONS: `--require ${path.resolve('test/support/clock-skew.cjs')}`, CLOCK_SKEW_MS: String(-3 * 3600_000) };
      const before = new Set((JSON.parse((await server.cli(['keys', 'list', '--json'])).stdout) as Key[]).map((key) => key.kid));
      const rotated = await runCli(['keys', 'rotate', '--json'], { ...server.env, ...skew });
      expect(rotated.code, rotated.stderr).toBe(0);
      const made = (JSON.parse(rotated.stdout) as Key[]).filter((key) => !before.has(key.kid));
      expect(made).toHaveLength(2);
      // Listed by a CLI on time, as the servers see them: waiting two hours.
      const listed = JSON.parse((await server.cli(['keys', 'list', '--json'])).stdout) as Key[];
      for (const { kid } of made) {
        const key = listed.find((one) => one.kid === kid)!;
        expect([key.status, Date.parse(key.activates_at) - Date.now() > 3600_000]).toEqual(['next', true]);
      }
    } finally {
      await server.close();
    }
  });

  // Two servers on one database: PostgreSQL only (the embedded database serves one process).
  it.skipIf(embedded)('a server holds back only rotations that recorded their delay: not an earlier release\'s, whose created_at is another clock\'s', async () => {
    const first = await startPortcullis({ KEY_REFRESH_INTERVAL: '1s', KEY_ACTIVATION_DELAY: '1m' });
    try {
      type Key = { kid: string; status: string; activates_at: string };
      const rotated = JSON.parse((await first.cli(['keys', 'rotate', '--json'])).stdout) as Key[];
      const waiting = rotated.filter((key) => key.status === 'next');
      expect(waiting).toHaveLength(2);
      // As 0.5.16's CLI left a rotation: no delay recorded.
      const db = first.outsideConnection();
      await db.connect();
      await db.query('UPDATE signing_keys SET activation_delay = NULL WHERE kid = ANY($1)', [waiting.map((key) => key.kid)]).finally(() => db.end());
      // A server with a longer delay starts beside it: its start holds back what it may.
      const second = await startPortcullis({ KEY_REFRESH_INTERVAL: '1s', KEY_ACTIVATION_DELAY: '2h' }, first.database);
      try {
        const listed = JSON.parse((await second.cli(['keys', 'list', '--json'])).stdout) as Key[];
        expect(waiting.map(({ kid }) => listed.find((key) => key.kid === kid)!.activates_at)).toEqual(waiting.map((key) => key.activates_at));
      } finally {
        await second.close();
      }
    } finally {
      await first.close();
    }
  });

  it('output cut short by its reader (`keys list | head -1`) ends quietly', async () => {
    const child = spawn(process.execPath, ['src/cli/portcullis.mjs', 'keys', 'list'], {
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...pc.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.destroy(); // the reader is gone before the first line
    let stderr = '';
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
    expect(stderr).toBe('');
    expect(code).toBe(0);
  });

  it('a secret whose output cannot be written (a full disk) is rotated all the same, and the command says its output is lost', async () => {
    const robot = await pc.createClient({ name: 'Full disk robot', grantTypes: ['client_credentials'] });
    const full = openSync('/dev/full', 'w');
    try {
      const child = spawn(process.execPath, ['src/cli/portcullis.mjs', 'client', 'rotate-secret', robot.client_id], {
        env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...pc.env },
        stdio: ['ignore', full, 'pipe'],
      });
      let stderr = '';
      child.stderr!.on('data', (chunk) => (stderr += chunk));
      const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
      expect([code, stderr]).toEqual([1, 'portcullis: done, but its output could not be written (ENOSPC): what it showed is lost\n']);
    } finally {
      closeSync(full);
    }
    expect((await pc.clientCredentials(robot)).status).toBe(401);
    const [recorded] = JSON.parse((await pc.cli(['audit', 'list', '--json', '--limit', '1'])).stdout) as { command: string; outcome: string }[];
    expect(recorded).toMatchObject({ command: 'client rotate-secret', outcome: 'ok' });
  });

  it('rotations run at once (two operators, a retry) leave one current key per algorithm, and the keys they replaced can be retired', async () => {
    type Key = { kid: string; alg: string; status: string };
    const list = async () => JSON.parse((await pc.cli(['keys', 'list', '--json'])).stdout) as Key[];
    const before = await list();
    for (let round = 1; round <= 3; round++) {
      const rotations = await Promise.all([1, 2, 3].map(() => pc.cli(['keys', 'rotate', '--now', '--json'])));
      for (const rotation of rotations) expect(rotation.code, rotation.stderr).toBe(0);
      const current = (await list()).filter((key) => key.status === 'current');
      expect([round, current.map((key) => key.alg).sort()]).toEqual([round, ['ES256', 'RS256']]);
    }
    // Every key made meanwhile but the two current ones only verifies now: none will sign again.
    const made = (await list()).filter((key) => !before.some(({ kid }) => kid === key.kid));
    expect(made).toHaveLength(2 * 9);
    expect(made.filter((key) => key.status !== 'current').map((key) => key.status)).toEqual(Array(2 * 9 - 2).fill('published'));
    // The keys current before the rotations, compromised, can be retired at once.
    for (const key of before.filter((key) => key.status === 'current')) {
      const retired = await pc.cli(['keys', 'retire', key.kid, '--compromised']);
      expect([key.alg, retired.code, retired.stderr]).toEqual([key.alg, 0, '']);
    }
  }, 180_000); // nine CLI runs in three rounds: about 5 s each on a slow machine

  it('rotate --now while a rotation waits: the new key signs at once, and the waiting key never does', async () => {
    const { client_id, client_secret } = await pc.createClient({ name: 'Emergency', redirectUris: [REDIRECT_URI], idTokenAlg: 'ES256' });
    const lee = { email: 'lee@example.com', password: 'lees password' };
    await pc.createUser(lee.email, lee.password);
    const rp = await discover(pc.issuer, client_id, client_secret);
    type Key = { kid: string; alg: string; status: string; activates_at: string };
    const scheduled = JSON.parse((await pc.cli(['keys', 'rotate', '--json'])).stdout) as Key[];
    const waiting = scheduled.find((key) => key.alg === 'ES256' && key.status === 'next')!;
    const immediate = JSON.parse((await pc.cli(['keys', 'rotate', '--now', '--json'])).stdout) as Key[];
    const emergency = immediate.filter((key) => key.alg === 'ES256' && key.status === 'current');
    expect(emergency).toHaveLength(1);
    expect(emergency[0]!.kid).not.toBe(waiting.kid);
    expect(immediate.find((key) => key.kid === waiting.kid)!.status).toBe('published'); // it will never sign
    const listed = (await pc.cli(['keys', 'list'])).stdout.split('\n');
    expect(listed.find((line) => line.startsWith(waiting.kid))).toMatch(/^\S+ {2}ES256 +published {2}published until \d{4}-\S+ \(replaced before it signed: may be retired now\)$/);
    // Only the keys that waited: those they were to replace signed, and are listed without it.
    expect(listed.filter((line) => line.includes('replaced before it signed'))).toHaveLength(scheduled.filter((key) => key.status === 'next').length);

    const signer = async () => decodeProtectedHeader((await logIn(new UserAgent(), rp, 'openid', lee)).tokens.id_token!).kid;
    await new Promise((resolve) => setTimeout(resolve, 1100)); // > KEY_REFRESH_INTERVAL
    expect(await signer()).toBe(emergency[0]!.kid);
    // Past the waiting key's activation, and a refresh interval more: still the emergency key.
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, Date.parse(waiting.activates_at) - Date.now()) + 1100));
    expect(await signer()).toBe(emergency[0]!.kid);
    // Having signed nothing, it can be retired at once, as retire said when it was waiting.
    const retired = await pc.cli(['keys', 'retire', waiting.kid, '--json']);
    expect([retired.code, retired.stderr, JSON.parse(retired.stdout || '{}')]).toEqual([0, '', { kid: waiting.kid, retired: true, compromised: false }]);
  });
});

describe('a CLI run without the server\'s SIGNING_ALG', () => {
  it('adds no signing key, and refuses a client the server could not sign for', async () => {
    const server = await startPortcullis({ SIGNING_ALG: 'EdDSA' });
    try {
      // A shell without the server's setting: the CLI's SIGNING_ALG is the default, ES256.
      const { SIGNING_ALG: _, ...shell } = server.env;
      const algs = async () => (JSON.parse((await server.cli(['keys', 'list', '--json'])).stdout) as { alg: string }[]).map((key) => key.alg).sort();
      expect(await algs()).toEqual(['EdDSA', 'RS256']);
      const strayClient = await runCli(['client', 'create', '--name', 'Stray', '--redirect-uri', REDIRECT_URI, '--id-token-alg', 'ES256'], shell);
      expect(strayClient.code).toBe(1);
      expect(strayClient.stderr).toContain("no current signing key for ES256: the keys are EdDSA and RS256 (SIGNING_ALG sets the algorithm besides RS256: run the CLI with the server's)");
      expect(await algs()).toEqual(['EdDSA', 'RS256']);
      // With the server's setting, ES256 is refused and EdDSA serves.
      const refused = await server.cli(['client', 'create', '--name', 'Stray', '--redirect-uri', REDIRECT_URI, '--id-token-alg', 'ES256']);
      expect([refused.code, refused.stderr]).toEqual([1, expect.stringContaining('not ES256')]);
      const edwards = await server.createClient({ name: 'Edwards', redirectUris: [REDIRECT_URI], idTokenAlg: 'EdDSA' });
      await server.createUser('ed@example.com', 'eds own password');
      const { tokens } = await logIn(new UserAgent(), await discover(server.issuer, edwards.client_id, edwards.client_secret), 'openid', { email: 'ed@example.com', password: 'eds own password' });
      expect(decodeProtectedHeader(tokens.id_token!).alg).toBe('EdDSA');
    } finally {
      await server.close();
    }
  });
});

describe('npm run migration:new', () => {
  it.skipIf(process.env.TEST_DATABASE !== 'postgres')('writes the schema change as a migration, and nothing without one unless --empty', async () => {
    // A checkout of its own: prisma/ committed in a fresh repository, sharing node_modules.
    const checkout = mkdtempSync(path.join(os.tmpdir(), 'migration-new-'));
    try {
      const run = (command: string, args: string[]) =>
        new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
          const child = spawn(command, args, { cwd: checkout, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' } });
          let stdout = '';
          let stderr = '';
          child.stdout.on('data', (chunk) => (stdout += chunk));
          child.stderr.on('data', (chunk) => (stderr += chunk));
          child.once('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
        });
      await run('cp', ['-r', path.resolve('prisma'), checkout]);
      symlinkSync(path.resolve('node_modules'), path.join(checkout, 'node_modules'));
      const git = ['-c', 'user.name=t', '-c', 'user.email=t@example.com'];
      expect((await run('git', ['init', '-q'])).code).toBe(0);
      expect((await run('git', [...git, 'add', 'prisma'])).code).toBe(0);
      expect((await run('git', [...git, 'commit', '-qm', 'schema'])).code).toBe(0);
      const migrations = () => readdirSync(path.join(checkout, 'prisma', 'migrations')).filter((name) => /^\d/.test(name));
      const before = migrations();

      const unchanged = await run(process.execPath, ['prisma/new-migration.mjs', 'nothing_changed']);
      expect([unchanged.code, unchanged.stderr]).toEqual([1, expect.stringContaining('has not changed since the last commit: no migration written')]);
      expect(migrations()).toEqual(before);

      const byHand = await run(process.execPath, ['prisma/new-migration.mjs', 'by_hand', '--empty']);
      expect(byHand.code, byHand.stderr).toBe(0);
      expect(migrations().filter((name) => !before.includes(name))).toEqual([expect.stringMatching(/^\d{14}_by_hand$/)]);

      writeFileSync(path.join(checkout, 'prisma', 'schema.prisma'), `${readFileSync(path.join(checkout, 'prisma', 'schema.prisma'), 'utf8')}\nmodel Probe {\n  id String @id\n}\n`);
      const changed = await run(process.execPath, ['prisma/new-migration.mjs', 'probe_added']);
      expect(changed.code, changed.stderr).toBe(0);
      const added = migrations().find((name) => name.endsWith('_probe_added'))!;
      expect(readFileSync(path.join(checkout, 'prisma', 'migrations', added, 'migration.sql'), 'utf8')).toContain('CREATE TABLE "Probe"');
    } finally {
      rmSync(checkout, { recursive: true, force: true });
    }
  });
});

describe('key changes on PostgreSQL', () => {
  it.skipIf(process.env.TEST_DATABASE !== 'postgres')('reach running servers at once, not a refresh interval later', async () => {
    const slow = await startPortcullis({ KEY_REFRESH_INTERVAL: '1h', KEY_ACTIVATION_DELAY: '2h' });
    try {
      const published = async () => ((await (await fetch(`${slow.issuer}/jwks`)).json()) as { keys: { kid: string }[] }).keys.map((key) => key.kid);
      const within = async (condition: (kids: string[]) => boolean) => {
        const deadline = Date.now() + 5000;
        for (let kids = await published(); !condition(kids); kids = await published()) {
          if (Date.now() > deadline) throw new Error(`not seen within 5 s; published: ${kids.join(' ')}`);
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      };
      const old = await published();
      type Key = { kid: string; status: string };
      const rotated = JSON.parse((await slow.cli(['keys', 'rotate', '--now', '--json'])).stdout) as Key[];
      const fresh = rotated.filter((key) => key.status === 'current').map((key) => key.kid);
      expect(fresh).toHaveLength(2);
      await within((kids) => fresh.every((kid) => kids.includes(kid)));
      const retired = await slow.cli(['keys', 'retire', old[0]!, '--compromised']);
      expect(retired.code, retired.stderr).toBe(0);
      await within((kids) => !kids.includes(old[0]!));
    } finally {
      await slow.close();
    }
  });
});

describe('replaced keys stay published as long as the server\'s tokens live', () => {
  it('a rotation run with shorter lifetimes than the server\'s is lengthened by the server, which keys retire then goes by', async () => {
    // The server's tokens live three hours (its sessions one at most); the CLI's environment says a second.
    const server = await startPortcullis({ ACCESS_TOKEN_TTL: '3h', SESSION_MAX_AGE: '1h', KEY_REFRESH_INTERVAL: '1s', KEY_ACTIVATION_DELAY: '5s' });
    try {
      const short = { ...server.env, ACCESS_TOKEN_TTL: '1s', ID_TOKEN_TTL: '1s', SESSION_MAX_AGE: '1s' };
      type Key = { kid: string; alg: string; status: string; activates_at: string; publish_until: string | null };
      const before = new Set((JSON.parse((await server.cli(['keys', 'list', '--json'])).stdout) as Key[]).map((key) => key.kid));
      const rotated = JSON.parse((await runCli(['keys', 'rotate', '--now', '--json'], short)).stdout) as Key[];
      const replaced = rotated.filter((key) => before.has(key.kid));
      expect(replaced.length).toBe(2); // ES256 and RS256
      const activatedAt = Date.parse(rotated.find((key) => key.status === 'current')!.activates_at);
      const window = (key: Key) => Date.parse(key.publish_until!) - activatedAt;
      // (The CLI's rotation gave them its own, shorter window. Not checked
      // here: the server, told at once on PostgreSQL or refreshing every
      // second, may have lengthened it by the time the CLI lists the keys.)

      // Once the server has seen the rotation (announced, or its next KEY_REFRESH_INTERVAL; polled, as a loaded machine may be slow):
      const lengthened = async () => {
        const listed = JSON.parse((await server.cli(['keys', 'list', '--json'])).stdout) as Key[];
        return replaced.every(({ kid }) => window(listed.find((key) => key.kid === kid)!) >= 3 * 3600_000);
      };
      const deadline = Date.now() + 15_000;
      while (!(await lengthened()) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 250));
      expect(await lengthened()).toBe(true);
    } finally {
      await server.close();
    }
  });

  it('an ID token from before a rotation still names its session as id_token_hint after every token it could sign has expired', async () => {
    // Tokens live two seconds, sessions an hour at most: what a rotated key
    // signed is expired within a minute, but its ID tokens are hints for the hour.
    const server = await startPortcullis({ ACCESS_TOKEN_TTL: '2s', ID_TOKEN_TTL: '2s', SESSION_TTL: '10m', SESSION_MAX_AGE: '1h', KEY_REFRESH_INTERVAL: '1s', KEY_ACTIVATION_DELAY: '5s' });
    try {
      const hanna = { email: 'hanna@example.com', password: 'hannas password' };
      await server.createUser(hanna.email, hanna.password, 'Hanna');
      const app = await server.createClient({ name: 'Hinting', redirectUris: [REDIRECT_URI] });
      const rp = await discover(server.issuer, app.client_id, app.client_secret);
      const ua = new UserAgent();
      const { tokens } = await logIn(ua, rp, 'openid', hanna);
      expect((await server.cli(['keys', 'rotate', '--now'])).code).toBe(0);
      // Ten minutes on for the keys (the rows' times moved back), the server reloading them.
      const db = server.outsideConnection();
      await db.connect();
      try {
        await db.query(`UPDATE signing_keys SET activates_at = activates_at - interval '10 minutes', rotated_at = rotated_at - interval '10 minutes',
          publish_until = publish_until - interval '10 minutes'`);
      } finally {
        await db.end();
      }
      await new Promise((resolve) => setTimeout(resolve, 2500)); // > KEY_REFRESH_INTERVAL
      const check = await authorizationRequest(rp, 'openid', { prompt: 'none', id_token_hint: tokens.id_token! });
      const answer = new URL((await visit(ua, check.url)).url).searchParams;
      expect(answer.get('error')).toBeNull();
      expect(answer.get('code')).toBeTruthy();
      // And the sign-out page takes it too, naming the app (not a 400 "could not validate id_token_hint").
      const logout = await ua.open(`${server.issuer}/session/end?${new URLSearchParams({ id_token_hint: tokens.id_token!, client_id: app.client_id })}`);
      expect(logout.status).toBe(200);
      expect(logout.html).toContain('Hinting');
    } finally {
      await server.close();
    }
  });
});

describe('a compromised signing key', () => {
  it('rotate --now, then retire --compromised: it leaves the JWKS at once, and what it signed no longer verifies', async () => {
    const { client_id, client_secret } = await pc.createClient({ name: 'Leaked', redirectUris: [REDIRECT_URI], idTokenAlg: 'ES256' });
    const max = { email: 'max@example.com', password: 'maxs password' };
    await pc.createUser(max.email, max.password);
    const rp = await discover(pc.issuer, client_id, client_secret);
    const signedByLeaked = (await logIn(new UserAgent(), rp, 'openid', max)).tokens.id_token!;
    const leaked = decodeProtectedHeader(signedByLeaked).kid!;
    // An API following the recipe (examples/resource-server), with a JWKS it trusts for a second
    // (ES256 access tokens: the key the ID token above was signed with).
    const api = await pc.cli(['api', 'create', '--identifier', 'https://leaky.example.com', '--scope', 'read:orders', '--json']);
    expect(api.code, api.stderr).toBe(0);
    const robot = await pc.createClient({ name: 'Leaky robot', grantTypes: ['client_credentials'], scope: 'read:orders' });
    const accessToken = (await oidc.clientCredentialsGrant(await discover(pc.issuer, robot.client_id, robot.client_secret), { resource: 'https://leaky.example.com', scope: 'read:orders' })).access_token;
    expect(decodeProtectedHeader(accessToken).kid).toBe(leaked);
    const servers: Server[] = [];
    const orders = await serveExampleApi({ issuer: pc.issuer, audience: 'https://leaky.example.com', jwksMaxAge: 1000 }, servers);
    const callApi = () => fetch(`${orders}/orders`, { headers: { authorization: `Bearer ${accessToken}` } });
    expect((await callApi()).status).toBe(200);

    const rotated = await pc.cli(['keys', 'rotate', '--now', '--json']);
    expect(rotated.code, rotated.stderr).toBe(0);
    const successor = (JSON.parse(rotated.stdout) as { kid: string; alg: string; status: string }[]).find((key) => key.alg === 'ES256' && key.status === 'current')!.kid;
    const current = await pc.cli(['keys', 'retire', successor, '--compromised']);
    expect([current.code, current.stderr]).toEqual([1, expect.stringContaining('is current')]);
    const early = await pc.cli(['keys', 'retire', leaked]);
    expect([early.code, early.stderr]).toEqual([1, expect.stringContaining('--compromised')]);

    const retired = await pc.cli(['keys', 'retire', leaked, '--compromised', '--json']);
    expect(retired.code, retired.stderr).toBe(0);
    expect(JSON.parse(retired.stdout)).toEqual({ kid: leaked, retired: true, compromised: true });
    await new Promise((resolve) => setTimeout(resolve, 1100)); // > KEY_REFRESH_INTERVAL
    const published = (await (await fetch(`${pc.issuer}/jwks`)).json()) as { keys: { kid: string }[] };
    expect(published.keys.map((key) => key.kid)).not.toContain(leaked);
    expect(published.keys.map((key) => key.kid)).toContain(successor);
    // A resource server fetching the JWKS now refuses what the leaked key signed...
    const jwks = createRemoteJWKSet(new URL(`${pc.issuer}/jwks`));
    await expect(jwtVerify(signedByLeaked, jwks, { issuer: pc.issuer })).rejects.toMatchObject({ code: 'ERR_JWKS_NO_MATCHING_KEY' });
    // ...and accepts what the server signs now.
    const fresh = (await logIn(new UserAgent(), rp, 'openid', max)).tokens.id_token!;
    expect(decodeProtectedHeader(fresh).kid).toBe(successor);
    await jwtVerify(fresh, jwks, { issuer: pc.issuer });
    // The API refuses the leaked key's token once its JWKS is older than it trusts one (jose alone keeps one 10 minutes).
    try {
      const refused = await callApi();
      expect(refused.status).toBe(401);
      expect(refused.headers.get('www-authenticate')).toContain('invalid_token');
    } finally {
      await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
    }
  });
});

describe('without a running server', () => {
  it('a list or show command on an embedded database that is not there says so, and makes none (a mistyped DATA_DIR)', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-none-'));
    try {
      const missing = path.join(dir, 'mistyped', 'data');
      for (const args of [['user', 'list'], ['keys', 'list', '--json'], ['client', 'show', 'abc']]) {
        const result = await runCli(args, { ...TEST_ENV, DATA_DIR: missing });
        expect([result.code, result.stdout]).toEqual([1, '']);
        expect(result.stderr).toBe(`portcullis: DATA_DIR (${missing}) does not exist: nothing to show (check DATA_DIR; a server's start, or any command that changes something, makes it)\n`);
      }
      expect(existsSync(path.join(dir, 'mistyped'))).toBe(false);
      // A command that changes something makes it, as a first start does.
      expect((await runCli(['user', 'create', '--email', 'first@example.com', '--password-stdin'], { ...TEST_ENV, DATA_DIR: missing }, 'a first long password\n')).code).toBe(0);
      expect((await runCli(['user', 'list'], { ...TEST_ENV, DATA_DIR: missing })).stdout).toContain('first@example.com');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.skipIf(process.env.TEST_DATABASE !== 'postgres')('two first starts at once, each with a key file of its own: one makes the keys, the other stops and makes none', async () => {
    const database = await freshDatabase();
    const dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-first-'));
    try {
      const start = (name: string) => runCli(['keys', 'list', '--json'], { ...TEST_ENV, ...database.env, ENCRYPTION_KEY_FILE: path.join(dir, name, 'encryption.key') });
      const results = await Promise.all([start('a'), start('b'), start('c')]);
      expect(results.map((result) => result.code).sort()).toEqual([0, 1, 1]);
      for (const result of results.filter((r) => r.code === 1)) expect(result.stderr).toContain('the database holds keys sealed with an encryption key');
      // One set of keys, which the one key file made opens.
      const made = ['a', 'b', 'c'].filter((name) => existsSync(path.join(dir, name, 'encryption.key')));
      expect(made).toHaveLength(1);
      const listed = JSON.parse(results.find((result) => result.code === 0)!.stdout) as { alg: string; status: string }[];
      expect(listed.map((key) => `${key.alg} ${key.status}`).sort()).toEqual(['ES256 current', 'RS256 current']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
      await database.drop();
    }
  });

  it('migrate on a database a newer release migrated says so instead of "up to date" and fails, and a server on it warns', async () => {
    const database = await freshDatabase();
    try {
      const first = await startPortcullis({}, database);
      // As a newer release records a migration this one does not have.
      await first.server.services.database.prisma.$executeRaw`INSERT INTO "_prisma_migrations" (id, checksum, finished_at, migration_name, applied_steps_count)
        VALUES ('00000000-0000-4000-8000-000000000000', 'x', now(), '29991231000000_from_the_future', 1)`;
      await first.close();
      const migrated = await runCli(['migrate'], { ...TEST_ENV, ...database.env });
      // A deploy step running migrate before starting this release stops there.
      expect([migrated.code, migrated.stdout]).toEqual([1, '']);
      expect(migrated.stderr).toBe('portcullis: the database is ahead of this release: it also holds 1 migration(s) this release does not have (29991231000000_from_the_future), applied by a newer one; use that release\n');
      const second = await startPortcullis({}, database);
      await second.close();
      const warning = second.log.find((line) => line.includes('the database holds migrations this release does not have'));
      expect(warning && JSON.parse(warning)).toMatchObject({ level: 'warn', migrations: ['29991231000000_from_the_future'] });
    } finally {
      await database.drop();
    }
  });

  // What the newest migration (prisma/migrations/*_user_totp) made, undone: the database as a release before it left it.
  const UNDO_NEWEST_MIGRATION = ['DROP TABLE "totp_secrets"', 'ALTER TABLE "users" DROP COLUMN "totp_required"'];

  it('a command on a database an earlier release migrated applies nothing and says what is pending; migrate applies it, recorded; a migration another tool left unfinished says how to resolve it', async () => {
    const database = await freshDatabase();
    const env = { ...TEST_ENV, ...database.env };
    const first = await startPortcullis({}, database);
    try {
      const client = await first.createClient({ name: 'Before', redirectUris: [REDIRECT_URI] });
      // As a release before the newest migration left the database.
      const last = readdirSync('prisma/migrations').filter((name) => /^\d/.test(name)).sort().at(-1)!;
      // A migration added since is undone here as this one is (UNDO_NEWEST_MIGRATION).
      expect(last).toMatch(/_user_totp$/);
      // Through the server's own connection, which it keeps (a CLI joins it on the embedded database); it migrates only at start.
      const sql = (query: string) => first.server.services.database.prisma.$queryRawUnsafe(query);
      await sql(`DELETE FROM "_prisma_migrations" WHERE migration_name = '${last}'`);
      for (const statement of UNDO_NEWEST_MIGRATION) await sql(statement);
      for (const args of [['client', 'list', '--json'], ['client', 'update', client.client_id, '--name', 'After']]) {
        const refused = await runCli(args, env);
        expect([args, refused.code, refused.stdout]).toEqual([args, 1, '']);
        expect(refused.stderr).toBe(
          `portcullis: the database is behind this release: 1 migration(s) not applied yet (${last}); commands but \`migrate\` apply none to a database that holds some already, on which servers of an earlier release may run: ` +
            "read this release's upgrade notes (README, Operating it), then run `portcullis migrate`, or start this release's server\n",
        );
      }
      expect(await sql(`SELECT count(*)::int AS n FROM "_prisma_migrations" WHERE migration_name = '${last}'`)).toEqual([{ n: 0 }]);
      const migrated = await runCli(['migrate'], env);
      expect([migrated.code, migrated.stdout]).toEqual([0, `applied ${last}\ndatabase is up to date (${readdirSync('prisma/migrations').filter((name) => /^\d/.test(name)).length} migrations, 1 applied now)\n`]);
      // No server logs what the CLI applied: the audit trail has it.
      const audited = JSON.parse((await runCli(['audit', 'list', '--json'], env)).stdout) as { command: string; outcome: string }[];
      expect(audited.filter((event) => event.command === 'migrate').map((event) => `${event.command} ${event.outcome}`)).toEqual(['migrate ok']);
      expect((await runCli(['client', 'update', client.client_id, '--name', 'After'], env)).code).toBe(0);

      // Left unfinished by another tool (each of ours commits with its record).
      await sql(`UPDATE "_prisma_migrations" SET finished_at = NULL WHERE migration_name = '${last}'`);
      const unfinished = await runCli(['migrate'], env);
      expect(unfinished.code).toBe(1);
      expect(unfinished.stderr).toBe(
        `portcullis: migration ${last} was started by another tool and did not finish: undo what it did (prisma/migrations/${last}/migration.sql), ` +
          `mark it rolled back (UPDATE "_prisma_migrations" SET rolled_back_at = now() WHERE migration_name = '${last}' AND finished_at IS NULL), then start again\n`,
      );
      // Done as it says, the migration applies again.
      for (const statement of UNDO_NEWEST_MIGRATION) await sql(statement);
      await sql(`UPDATE "_prisma_migrations" SET rolled_back_at = now() WHERE migration_name = '${last}' AND finished_at IS NULL`);
      expect((await runCli(['migrate'], env)).stdout).toContain(`applied ${last}\n`);

      // One left unfinished before one pending: the first is what to resolve, for every command.
      const previous = readdirSync('prisma/migrations').filter((name) => /^\d/.test(name)).sort().at(-2)!;
      await sql(`UPDATE "_prisma_migrations" SET finished_at = NULL WHERE migration_name = '${previous}'`);
      await sql(`DELETE FROM "_prisma_migrations" WHERE migration_name = '${last}'`);
      for (const statement of UNDO_NEWEST_MIGRATION) await sql(statement);
      for (const args of [['migrate'], ['client', 'list']]) {
        const refused = await runCli(args, env);
        expect([args, refused.code, refused.stderr.split(':').slice(0, 2).join(':')]).toEqual([args, 1, `portcullis: migration ${previous} was started by another tool and did not finish`]);
      }

      // A newer release's, left unfinished (its `prisma migrate deploy` stopped midway): not
      // "applied by a newer release", and not run on as if it were.
      await sql(`UPDATE "_prisma_migrations" SET finished_at = now() WHERE migration_name = '${previous}'`);
      expect((await runCli(['migrate'], env)).code).toBe(0);
      await sql(`INSERT INTO "_prisma_migrations" (id, checksum, finished_at, migration_name) VALUES ('newer-unfinished', 'x', NULL, '20991231000000_newer')`);
      for (const args of [['migrate'], ['client', 'list']]) {
        const refused = await runCli(args, env);
        expect([args, refused.code, refused.stderr.split(':').slice(0, 2).join(':')]).toEqual([
          args,
          1,
          'portcullis: migration 20991231000000_newer, which this release does not have, was started by another tool and did not finish',
        ]);
      }
    } finally {
      await first.close();
      await database.drop();
    }
  });

  it.skipIf(process.env.TEST_DATABASE !== 'postgres')('a command on another application\'s database (tables, or only its own migrations) adds nothing to it', async () => {
    const database = await freshDatabase();
    const env = { ...TEST_ENV, ...database.env };
    const other = new pg.Client({ connectionString: database.env.DATABASE_URL });
    await other.connect();
    try {
      const tables = async () => (await other.query<{ tablename: string }>("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")).rows.map((row) => row.tablename);
      const notOurs = "portcullis: the database holds tables, or migrations, but none of Portcullis's: check DATABASE_URL (or DATA_DIR); Portcullis wants a database of its own, and only `portcullis migrate` or a server start would add its tables to this one\n";
      await other.query('CREATE TABLE orders (id int PRIMARY KEY)');
      const refused = await runCli(['client', 'list'], env);
      expect([refused.code, refused.stdout, refused.stderr]).toEqual([1, '', notOurs]);
      expect(await tables()).toEqual(['orders']);
      // Another Prisma application's migrations only.
      await other.query(`CREATE TABLE "_prisma_migrations" (id VARCHAR(36) PRIMARY KEY, checksum VARCHAR(64) NOT NULL, finished_at TIMESTAMPTZ, migration_name VARCHAR(255) NOT NULL,
        logs TEXT, rolled_back_at TIMESTAMPTZ, started_at TIMESTAMPTZ NOT NULL DEFAULT now(), applied_steps_count INTEGER NOT NULL DEFAULT 0)`);
      await other.query(`INSERT INTO "_prisma_migrations" (id, checksum, finished_at, migration_name) VALUES ('1', 'x', now(), '20200101000000_other_app_init')`);
      const again = await runCli(['keys', 'list'], env);
      expect([again.code, again.stderr]).toEqual([1, notOurs]);
      expect(await tables()).toEqual(['_prisma_migrations', 'orders']);
    } finally {
      await other.end();
      await database.drop();
    }
  });

  it.skipIf(process.env.TEST_DATABASE !== 'postgres')('a new database not encoded in UTF-8 is refused by migrate, other commands and the server; one an earlier release migrated is warned of', async () => {
    const database = await freshDatabase();
    const name = new URL(database.env.DATABASE_URL!).pathname.slice(1);
    const admin = new pg.Client({ connectionString: SERVER_URL });
    await admin.connect();
    try {
      await admin.query(`DROP DATABASE ${name}`);
      await admin.query(`CREATE DATABASE ${name} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0`);
      const env = { ...TEST_ENV, ...database.env };
      const refusal =
        "portcullis: the database is encoded LATIN1, which cannot hold every name, email and request parameter Portcullis stores: make a database with CREATE DATABASE … ENCODING 'UTF8' TEMPLATE template0\n";
      for (const args of [['migrate'], ['client', 'list']]) {
        const refused = await runCli(args, env);
        expect([args, refused.code, refused.stdout, refused.stderr]).toEqual([args, 1, '', refusal]);
      }
      await expect(startPortcullis({}, database)).rejects.toThrow('the database is encoded LATIN1');
      const inside = new pg.Client({ connectionString: database.env.DATABASE_URL });
      await inside.connect();
      try {
        expect((await inside.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).rows).toEqual([]);
        // An empty migration record (another tool's, stopped before its first) is no use of the database: still refused.
        await inside.query(`CREATE TABLE "_prisma_migrations" (id VARCHAR(36) PRIMARY KEY, checksum VARCHAR(64) NOT NULL, finished_at TIMESTAMPTZ, migration_name VARCHAR(255) NOT NULL,
          logs TEXT, rolled_back_at TIMESTAMPTZ, started_at TIMESTAMPTZ NOT NULL DEFAULT now(), applied_steps_count INTEGER NOT NULL DEFAULT 0)`);
        const stillRefused = await runCli(['migrate'], env);
        expect([stillRefused.code, stillRefused.stderr]).toEqual([1, refusal]);
        // As an earlier release left it (or `prisma migrate deploy`): all but the newest migration applied and recorded.
        const names = readdirSync('prisma/migrations').filter((entry) => /^\d/.test(entry)).sort().slice(0, -1);
        for (const migration of names) {
          const text = readFileSync(path.join('prisma/migrations', migration, 'migration.sql'), 'utf8');
          await inside.query(text);
          await inside.query(`INSERT INTO "_prisma_migrations" (id, checksum, finished_at, migration_name, applied_steps_count) VALUES ($1, $2, now(), $3, 1)`, [
            randomBytes(16).toString('hex'),
            createHash('sha256').update(text).digest('hex'),
            migration,
          ]);
        }
      } finally {
        await inside.end();
      }
      const started = await startPortcullis({}, database);
      await started.close();
      expect(started.log.filter((line) => line.includes('the database is encoded LATIN1')).map((line) => JSON.parse(line).level)).toEqual(['warn']);
    } finally {
      await admin.end();
      await database.drop();
    }
  });

  it.skipIf(process.env.TEST_DATABASE !== 'postgres')('a command whose database connection is lost midway says so in one line', async () => {
    const database = await freshDatabase();
    const env = { ...TEST_ENV, ...database.env };
    try {
      expect((await runCli(['user', 'list'], env)).code).toBe(0); // makes the schema
      const inside = new pg.Client({ connectionString: database.env.DATABASE_URL });
      await inside.connect();
      // As a failover or a stopped server would: the backend ends while the user goes in.
      await inside.query(`CREATE FUNCTION vanish() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NULL; END $$;
                          CREATE TRIGGER vanish BEFORE INSERT ON users FOR EACH ROW EXECUTE FUNCTION vanish()`);
      await inside.end();
      const lost = await runCli(['user', 'create', '--email', 'ada@example.com', '--password-stdin'], env, 'a long enough password\n');
      expect(lost.code).toBe(1);
      expect(lost.stderr).toMatch(/^portcullis: the database is unreachable \([^\n]+\): run the command again once it answers[^\n]*\n$/);
      noStackTrace(lost.stderr);
      // Its audit record went in on another connection, with the same words.
      const trail = JSON.parse((await runCli(['audit', 'list', '--json'], env)).stdout) as { command: string; outcome: string }[];
      expect(trail.at(-1)).toMatchObject({ command: 'user create', outcome: expect.stringMatching(/^failed: \S/) });
      expect(trail.at(-1)!.outcome).not.toContain('\n');
    } finally {
      await database.drop();
    }
  });

  it('the CLI creates the database, and the server started later serves what it made', async () => {
    const database = await freshDatabase();
    const keyDir = mkdtempSync(path.join(os.tmpdir(), 'pc-key-'));
    const keyFile = path.join(keyDir, 'encryption.key');
    const env = { ...TEST_ENV, ...database.env, ENCRYPTION_KEY_FILE: keyFile };
    try {
      const migrated = await runCli(['migrate'], env);
      expect(migrated.code).toBe(0);
      // The first keys are sealed with a key file it made: said, as the server says it at start.
      expect(migrated.stderr).toContain(`portcullis: made the encryption key file ${keyFile} (key `);
      expect(migrated.stderr).toContain("the database's keys are sealed with it");
      expect(existsSync(keyFile)).toBe(true);
      // A fresh database: every migration applied now, each named.
      const all = readdirSync('prisma/migrations').filter((name) => /^\d/.test(name)).sort();
      expect(migrated.stdout).toBe(`${all.map((name) => `applied ${name}\n`).join('')}database is up to date (${all.length} migrations, ${all.length} applied now)\n`);
      const again = await runCli(['migrate'], env);
      expect(again.stdout).toBe(`database is up to date (${all.length} migrations, 0 applied now)\n`);
      expect(again.stderr).not.toContain('made the encryption key file');
      const created = await runCli(['client', 'create', '--name', 'Early', '--redirect-uri', REDIRECT_URI, '--json'], env);
      expect(created.code).toBe(0);
      const { client_id } = JSON.parse(created.stdout);

      const port = await freePort();
      const server = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
        env: { ...process.env, ...env, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'info' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      server.stdout.on('data', (chunk) => (output += chunk));
      server.stderr.on('data', (chunk) => (output += chunk));
      await waitFor(() => output.includes('portcullis listening'), 60_000, () => output);
      const listed = await runCli(['client', 'list', '--json'], env);
      expect(JSON.parse(listed.stdout).map((client: { client_id: string }) => client.client_id)).toContain(client_id);
      const discovery = await fetch(`http://127.0.0.1:${port}/.well-known/openid-configuration`);
      expect(discovery.status).toBe(200);

      // SIGTERM shuts down cleanly.
      const exited = new Promise<number | null>((resolve) => server.once('exit', (code) => resolve(code)));
      server.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      await database.drop();
      rmSync(keyDir, { recursive: true, force: true });
    }
  });

  // Two processes opening PGlite's files at once corrupt them beyond repair:
  // "start the server, then create users" in one script must not do that.
  it.skipIf(!embedded)('on the embedded database, a lock file its writer left empty or half-written is taken over, not waited on forever', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-lock-'));
    try {
      for (const content of ['', '{"pid":']) {
        mkdirSync(dir, { recursive: true });
        const lock = path.join(dir, 'portcullis.lock');
        writeFileSync(lock, content);
        // Left by a process that died a minute ago, between creating the file and writing it.
        const then = new Date(Date.now() - 60_000);
        utimesSync(lock, then, then);
        const started = Date.now();
        const result = await runCli(['user', 'list'], { ...TEST_ENV, DATA_DIR: dir });
        expect(result.code, result.stderr).toBe(0);
        expect(Date.now() - started).toBeLessThan(30_000);
        expect(existsSync(lock)).toBe(false);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);

  // After a crash the dead server's pid may belong to another process (a container's init, a shell).
  it.skipIf(!embedded || process.platform !== 'linux')('on the embedded database, a lock naming a pid that now belongs to another process is taken over; one naming its live holder is not', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-lock-'));
    const other = spawn('sleep', ['60'], { stdio: 'ignore' });
    try {
      const ticks = Number(readFileSync(`/proc/${other.pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[19]);
      const lock = path.join(dir, 'portcullis.lock');
      const pidNamespace = readlinkSync('/proc/self/ns/pid');
      const holder = (startTicks: number) => JSON.stringify({ pid: other.pid, role: 'server', ready: true, startedAt: new Date().toISOString(), startTicks, pidNamespace });
      // The holder as recorded started at another time than the process with its pid now: stale.
      writeFileSync(lock, holder(ticks - 100));
      const taken = await runCli(['user', 'list'], { ...TEST_ENV, DATA_DIR: dir });
      expect(taken.code, taken.stderr).toBe(0);
      expect(existsSync(lock)).toBe(false);
      /** A second server's start on the directory: refused while the lock's holder runs. */
      const secondServer = async () => {
        const server = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
          env: { ...process.env, ...TEST_ENV, DATA_DIR: dir, PORT: String(await freePort()), HOST: '127.0.0.1' },
          stdio: ['ignore', 'ignore', 'pipe'],
        });
        let stderr = '';
        server.stderr.on('data', (chunk) => (stderr += chunk));
        return { code: await new Promise((resolve) => server.once('exit', resolve)), stderr };
      };
      // The same pid with its own start time: a live server, which a second server must not share.
      writeFileSync(lock, holder(ticks));
      expect(await secondServer()).toEqual({ code: 1, stderr: expect.stringContaining(`served by another Portcullis server (pid ${other.pid})`) });
      // Named from another pid namespace (a container sharing the volume), a pid says nothing of
      // the process this one sees under it: a live pid is the holder, whatever its start time.
      writeFileSync(lock, JSON.stringify({ ...JSON.parse(holder(ticks - 100)), pidNamespace: 'pid:[1]' }));
      expect(await secondServer()).toEqual({ code: 1, stderr: expect.stringContaining(`served by another Portcullis server (pid ${other.pid})`) });
      expect(existsSync(lock)).toBe(true);
    } finally {
      other.kill();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);

  // kill(pid, 0) still finds a process that has exited but is not reaped yet
  // (a zombie): a restart 0.3 s after a kill -9 was refused for one.
  it.skipIf(!embedded || process.platform !== 'linux')('on the embedded database, a lock whose holder was killed but not yet reaped (a zombie) is taken over', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-lock-'));
    // `sleep 61` takes the shell's place and never reaps the shell's child, `sleep 60`: killed, that child stays a zombie.
    const parent = spawn('sh', ['-c', 'sleep 60 & echo $!; exec sleep 61'], { stdio: ['ignore', 'pipe', 'ignore'] });
    try {
      const pid = Number(await new Promise<string>((resolve) => parent.stdout!.once('data', (chunk) => resolve(String(chunk)))));
      // Until the shell has become `sleep 61` it reaps its children itself: killed before that, the child would leave no zombie.
      for (let waited = 0; readFileSync(`/proc/${parent.pid}/cmdline`, 'utf8') !== 'sleep\u000061\u0000'; waited += 10) {
        expect(waited).toBeLessThan(5_000);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      const fields = () => readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
      const startTicks = Number(fields()[19]);
      const lock = path.join(dir, 'portcullis.lock');
      writeFileSync(lock, JSON.stringify({ pid, role: 'server', ready: true, startedAt: new Date().toISOString(), startTicks, pidNamespace: readlinkSync('/proc/self/ns/pid') }));
      process.kill(pid, 'SIGKILL');
      for (let waited = 0; fields()[0] !== 'Z'; waited += 50) {
        expect(waited).toBeLessThan(5_000);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      const taken = await runCli(['user', 'list'], { ...TEST_ENV, DATA_DIR: dir });
      expect(taken.code, taken.stderr).toBe(0);
      expect(existsSync(lock)).toBe(false);
    } finally {
      parent.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);

  // The lock takes one naming this pid for an earlier life's (a restarted container's pid 1),
  // so a second open in this process broke the first's lock and left the directory unlocked.
  it.skipIf(!embedded)('on the embedded database, a second open in the same process is refused and leaves the first its lock', async () => {
    const first = await startPortcullis();
    try {
      const lock = path.join(first.env.DATA_DIR!, 'portcullis.lock');
      const before = readFileSync(lock, 'utf8');
      await expect(Promise.all([startPortcullis({}, first.database), startPortcullis({}, first.database)])).rejects.toThrow('is already open in this process');
      // The same directory by another path: through a symlink, and with `..` in it.
      const link = `${first.env.DATA_DIR!}-link`;
      symlinkSync(first.env.DATA_DIR!, link);
      try {
        await expect(startPortcullis({ DATA_DIR: link }, first.database)).rejects.toThrow('is already open in this process');
        await expect(startPortcullis({ DATA_DIR: path.join(first.env.DATA_DIR!, '..', path.basename(link)) }, first.database)).rejects.toThrow('is already open in this process');
      } finally {
        rmSync(link);
      }
      expect(readFileSync(lock, 'utf8')).toBe(before);
      // Another process still finds the directory served: a CLI joins, a server is refused.
      const listed = await first.cli(['user', 'list']);
      expect(listed.code, listed.stderr).toBe(0);
      const second = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
        env: { ...process.env, ...first.env, PORT: String(await freePort()) },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      second.stderr.on('data', (chunk) => (stderr += chunk));
      expect(await new Promise((resolve) => second.once('exit', resolve))).toBe(1);
      expect(stderr).toContain(`served by another Portcullis server (pid ${process.pid})`);
      expect((await first.clientCredentials(await first.createClient({ name: 'still served', grantTypes: ['client_credentials'] }))).status).toBe(200);
    } finally {
      await first.close();
    }
    expect(existsSync(path.join(first.env.DATA_DIR!, 'portcullis.lock'))).toBe(false);
  }, 90_000);

  it.skipIf(!embedded)('on the embedded database, a server and CLIs started at once all succeed, and a second server is refused', async () => {
    const database = await freshDatabase();
    const env = { ...TEST_ENV, ...database.env };
    const start = (port: number) => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
        env: { ...process.env, ...env, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'info' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const run = { child, output: '', exited: new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code))) };
      child.stdout.on('data', (chunk) => (run.output += chunk));
      child.stderr.on('data', (chunk) => (run.output += chunk));
      return run;
    };
    const server = start(await freePort());
    try {
      const clis = await Promise.all(
        [1, 2, 3].map((n) => runCli(['user', 'create', '--email', `early${n}@example.com`, '--password-stdin'], env, 'a long enough password\n')),
      );
      for (const cli of clis) expect(cli.code, cli.stderr).toBe(0);
      await waitFor(() => server.output.includes('portcullis listening'), 60_000, () => server.output);

      const second = start(await freePort());
      expect(await second.exited).toBe(1);
      expect(second.output).toContain('is served by another Portcullis server');
      noStackTrace(second.output);

      // What the CLIs made is there, and the first server still serves.
      const again = await runCli(['user', 'create', '--email', 'early2@example.com', '--password-stdin'], env, 'a long enough password\n');
      expect(again.code).toBe(1);
      expect(again.stderr).toContain('already');
      // The directory holds the database files and the encryption key: its owner's alone.
      expect((await stat(database.env.DATA_DIR!)).mode & 0o777).toBe(0o700);
      server.child.kill('SIGTERM');
      expect(await server.exited).toBe(0);
    } finally {
      server.child.kill('SIGKILL');
      await database.drop();
    }
  });

  // Ctrl-C in a terminal signals the whole process group: the server hears it from the
  // terminal and again from npm, which passes it on, milliseconds apart. That is one Ctrl-C.
  it('Ctrl-C on npm start (SIGINT to its process group) drains the server rather than stopping it at once', async () => {
    const database = await freshDatabase();
    const { npm, exited, output } = startNpm(database.env, await freePort(), { detached: true });
    try {
      await waitFor(() => output().includes('portcullis listening'), 120_000, output);
      process.kill(-npm.pid!, 'SIGINT');
      await exited;
      await waitFor(() => output().includes('"shutting down"'), 15_000, output);
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(output()).not.toContain('stopping at once');
    } finally {
      try {
        process.kill(-npm.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
      await database.drop();
    }
  });

  it('npm start serves, and a SIGTERM sent to npm reaches the server, which shuts down cleanly', async () => {
    const database = await freshDatabase();
    const port = await freePort();
    const { npm, exited, output } = startNpm(database.env, port);
    try {
      await waitFor(() => output().includes('portcullis listening'), 120_000, output);
      expect((await fetch(`http://127.0.0.1:${port}/.well-known/openid-configuration`)).status).toBe(200);
      npm.kill('SIGTERM');
      await exited;
      await waitFor(() => output().includes('"shutting down"'), 15_000, output);
      // npm passes the signal on; the server drains rather than taking it for an impatient second one.
      expect(output()).not.toContain('stopping at once');
      // And says when it is done.
      await waitFor(() => output().includes('"message":"stopped"'), 15_000, output);
      // Nothing was left running: the port stops answering.
      const answers = () => fetch(`http://127.0.0.1:${port}/.well-known/openid-configuration`).then(() => true, () => false);
      const deadline = Date.now() + 15_000;
      while ((await answers()) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 200));
      expect(await answers()).toBe(false);
    } finally {
      npm.kill('SIGKILL');
      await database.drop();
    }
  });

  // A crash (power cut of the process: SIGKILL, the OOM killer) while tokens
  // are being written. On the embedded database this is PGlite's own recovery
  // at the next start, and the stale lock and socket the dead server left.
  it('killed mid-write (SIGKILL), the server starts again on the same database, and every token it handed out is still valid', async () => {
    const database = await freshDatabase();
    const env = { ...TEST_ENV, ...database.env };
    const port = await freePort();
    const issuer = `http://127.0.0.1:${port}`;
    const start = () => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
        env: { ...process.env, ...env, PORT: String(port), HOST: '127.0.0.1', ISSUER: issuer, LOG_LEVEL: 'info' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const run = { child, output: '', exited: new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code))) };
      child.stdout.on('data', (chunk) => (run.output += chunk));
      child.stderr.on('data', (chunk) => (run.output += chunk));
      return run;
    };
    let server = start();
    try {
      await waitFor(() => server.output.includes('portcullis listening'), 60_000, () => server.output);
      const created = await runCli(['client', 'create', '--name', 'Robot', '--grant-type', 'client_credentials', '--json'], env);
      expect(created.code, created.stderr).toBe(0);
      const robot = JSON.parse(created.stdout) as { client_id: string; client_secret: string };
      const authorization = `Basic ${Buffer.from(`${robot.client_id}:${robot.client_secret}`).toString('base64')}`;
      const post = (path: string, body: Record<string, string>) =>
        fetch(`${issuer}${path}`, { method: 'POST', headers: { authorization, 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(body) });

      // Eight clients asking at once until the server dies under them; a token
      // counts as handed out once its response arrived.
      const handedOut: string[] = [];
      const ask = async () => {
        for (;;) {
          const response = await post('/token', { grant_type: 'client_credentials' }).catch(() => undefined);
          if (!response) return;
          const body = (await response.json().catch(() => ({}))) as { access_token?: string };
          if (response.status === 200 && body.access_token) handedOut.push(body.access_token);
        }
      };
      const askers = Array.from({ length: 8 }, ask);
      await waitFor(() => handedOut.length >= 200, 60_000, () => server.output);
      server.child.kill('SIGKILL');
      await server.exited;
      await Promise.all(askers);

      server = start();
      await waitFor(() => server.output.includes('portcullis listening'), 60_000, () => server.output);
      const inactive: string[] = [];
      for (let i = 0; i < handedOut.length; i += 16) {
        await Promise.all(
          handedOut.slice(i, i + 16).map(async (token) => {
            const { active } = (await (await post('/token/introspection', { token })).json()) as { active: boolean };
            if (!active) inactive.push(token);
          }),
        );
      }
      expect(inactive, `${inactive.length} of ${handedOut.length} tokens handed out before the crash are gone`).toEqual([]);
      expect((await post('/token', { grant_type: 'client_credentials' })).status).toBe(200);
      expect(server.output).not.toContain('"level":"error"');
      server.child.kill('SIGTERM');
      expect(await server.exited).toBe(0);
    } finally {
      server.child.kill('SIGKILL');
      await database.drop();
    }
  });

  it.each([
    [{ PORT: 'eighty', ARGON2_MEMORY_KIB: '12' }, ['PORT', 'ARGON2_MEMORY_KIB'], []],
    // Endpoints are served at the root: an issuer with a path would name addresses nothing serves.
    [{ ISSUER: 'https://id.example.com/auth-server' }, ['ISSUER', 'the origin alone', 'it has a path (/auth-server)'], []],
    // Mistyped: these stopped the server with "Invalid URL" (exit 1), naming nothing.
    [{ ISSUER: 'id.example.com' }, ['ISSUER', 'is not a URL with a host'], []],
    [{ ISSUER: 'https://id.example.com:99999' }, ['ISSUER', 'is not a URL with a host'], []],
    [{ ISSUER: 'https://id example.com' }, ['ISSUER', 'is not a URL with a host'], []],
    [{ ISSUER: 'ftp://id.example.com' }, ['ISSUER', 'must be an https'], []],
    [{ ISSUER: 'http://localhost:3000?x=1' }, ['ISSUER', 'the origin alone', 'it has a query'], []],
    // Every token's iss is ISSUER as written: it must be the origin exactly as a URL parser writes it.
    [{ ISSUER: 'https://ID.example.com' }, ['ISSUER', 'write it as https://id.example.com, as a URL parser does (lower-case'], []],
    [{ ISSUER: 'https://id.example.com:443' }, ['ISSUER', 'it names the default port of https'], []],
    [{ ISSUER: 'https://id.example.com/?' }, ['ISSUER', 'the origin alone'], []],
    // Timers that would spin (0, or beyond what a Node timer holds), a token that expires at once;
    // a variable set to nothing counts as unset.
    [
      { PORT: '', KEY_REFRESH_INTERVAL: '0', SWEEP_INTERVAL: '30d', ACCESS_TOKEN_TTL: '0s' },
      ['KEY_REFRESH_INTERVAL', 'shorter than the least allowed', 'SWEEP_INTERVAL', 'longer than the most allowed', 'ACCESS_TOKEN_TTL'],
      ['PORT'],
    ],
    // Number() read these as ports (0x1068 and 42e2 as 4200); blanks count as unset.
    [{ PORT: '0x1068', DATABASE_POOL_SIZE: '1e1' }, ['PORT', 'decimal digits', 'DATABASE_POOL_SIZE'], []],
    // A number out of range says the range, in the words of the other lines.
    [{ PORT: '0', METRICS_PORT: '70000' }, ['PORT: must be from 1 to 65535', 'METRICS_PORT: must be from 1 to 65535'], ['Too small', 'Too big']],
    [{ DATABASE_TIMEOUT: '0s' }, ['DATABASE_TIMEOUT', 'shorter than the least allowed'], []],
    [{ SHUTDOWN_DELAY: '10m' }, ['SHUTDOWN_DELAY', 'longer than the most allowed'], []],
    // A reuse interval is a moment's grace, not a second life.
    [{ REFRESH_TOKEN_REUSE_INTERVAL: '10m' }, ['REFRESH_TOKEN_REUSE_INTERVAL', 'longer than the most allowed, 300 s'], []],
    // Each most allowed is itself allowed (PORT fails the start, and only PORT); a second more is not.
    [{ PORT: '0x1', SHUTDOWN_DELAY: '5m', REFRESH_TOKEN_REUSE_INTERVAL: '300s', KEY_ACTIVATION_DELAY: '30d' }, ['PORT'], ['SHUTDOWN_DELAY', 'REFRESH_TOKEN_REUSE_INTERVAL', 'KEY_ACTIVATION_DELAY']],
    [
      { SHUTDOWN_DELAY: '301s', REFRESH_TOKEN_REUSE_INTERVAL: '301s', KEY_ACTIVATION_DELAY: `${30 * 86400 + 1}s` },
      ['SHUTDOWN_DELAY: "301s" is longer than the most allowed, 300 s', 'REFRESH_TOKEN_REUSE_INTERVAL: "301s" is longer than the most allowed, 300 s', `KEY_ACTIVATION_DELAY: "${30 * 86400 + 1}s" is longer than the most allowed, 30 days`],
      [],
    ],
    // Lifetimes that end after year 9999 failed every request storing one (500), and the CLI.
    [
      { PORT: ' ', ACCESS_TOKEN_TTL: '3000000d', GRANT_TTL: '100000000d', KEY_ACTIVATION_DELAY: '300000d' },
      ['ACCESS_TOKEN_TTL', 'longer than the most allowed, 36500 days', 'GRANT_TTL', 'KEY_ACTIVATION_DELAY', 'longer than the most allowed, 30 days'],
      ['PORT'],
    ],
    // A list built from an empty variable ("$KEY,") is not "no list".
    [{ COOKIE_KEYS: ',', ENCRYPTION_KEYS: ' , ' }, ['COOKIE_KEYS', 'holds no key', 'ENCRYPTION_KEYS'], []],
    // Keys that seal the signing keys and sign the cookies: 32 characters at least, each.
    [{ ENCRYPTION_KEYS: 'short', COOKIE_KEYS: `${'k'.repeat(32)},${'x'.repeat(31)}` }, ['ENCRYPTION_KEYS', 'at least 32 characters', 'COOKIE_KEYS'], []],
    // Exactly 32 is enough.
    [{ PORT: '0x1', ENCRYPTION_KEYS: 'e'.repeat(32), COOKIE_KEYS: 'k'.repeat(32) }, ['PORT'], ['ENCRYPTION_KEYS', 'COOKIE_KEYS']],
    [{ DATABASE_URL: 'postgres://u:pw@127.0.0.1:notaport/x' }, ['DATABASE_URL', 'not a valid URL'], []],
    // Prisma's schema= is not the pg driver's: the tables went to public regardless.
    [{ DATABASE_URL: 'postgresql://127.0.0.1:5432/x?sslmode=disable&schema=auth' }, ['DATABASE_URL: must not set schema='], []],
    // A misspelt sslmode was TLS with the certificate checked in full, and a driver's message naming no setting.
    [{ DATABASE_URL: 'postgresql://127.0.0.1:5432/x?sslmode=disabel' }, ['DATABASE_URL: must set sslmode= to one of disable, prefer, require, verify-ca, verify-full, no-verify'], ['disabel']],
    [{ PORT: '0x1', DATABASE_URL: 'postgresql://127.0.0.1:5432/x?sslrootcert=/ca.pem&sslmode=verify-full' }, ['PORT'], ['DATABASE_URL']],
    // With uselibpqcompat=true the driver reads sslmode as libpq does, which has no no-verify: it was TLS checked in full (review BI).
    [{ DATABASE_URL: 'postgresql://127.0.0.1:5432/x?uselibpqcompat=true&sslmode=no-verify' }, ['DATABASE_URL: must set sslmode= to one of disable, prefer, require, verify-ca, verify-full (with uselibpqcompat=true)'], []],
    [{ PORT: '0x1', DATABASE_URL: 'postgresql://127.0.0.1:5432/x?uselibpqcompat=true&sslmode=require' }, ['PORT'], ['DATABASE_URL']],
    // Written with an escape: the driver decodes it only sometimes (not beside a % that escapes nothing, as
    // in this password), and then read `disab%6ce`, TLS checked in full (review BI).
    [{ DATABASE_URL: 'postgresql://postgres:50%off@127.0.0.1:5432/x?sslmode=disab%6ce' }, ['DATABASE_URL: must set sslmode= to one of disable, prefer, require, verify-ca, verify-full, no-verify, written as such'], []],
    // Shown on every page, as client and people's names, which refuse the same.
    [{ ISSUER_NAME: 'Acme\u202eDI' }, ['ISSUER_NAME', 'bidirectional overrides'], []],
    // Choices take blanks around them as numbers do (a `.env` line's trailing space), and a wrong one names the choices.
    [
      { PORT: '0x1', LOG_LEVEL: 'info ', SIGNING_ALG: 'ES256 ', PKCE_REQUIRED: ' all', TRUST_PROXY: 'true ' },
      ['PORT'],
      ['LOG_LEVEL', 'SIGNING_ALG', 'PKCE_REQUIRED', 'TRUST_PROXY'],
    ],
    // No proxy in front, said as a count.
    [{ PORT: '0x1', TRUST_PROXY: '0' }, ['PORT'], ['TRUST_PROXY']],
    // One digit: ten proxies in front is a typo. (PORT stops the start, were TRUST_PROXY taken.)
    [{ PORT: '0x1', TRUST_PROXY: '10' }, ['PORT', 'TRUST_PROXY: must be true, false, or the number of proxies in front (0-9)'], []],
    // So do addresses and paths: a DATA_DIR with a trailing blank opened a new, empty database.
    [{ PORT: '0x1', ISSUER: 'http://localhost:3000 ', DATABASE_URL: ' postgresql://127.0.0.1:5432/x\n' }, ['PORT'], ['ISSUER', 'DATABASE_URL']],
    // A file where the embedded database's directory should be (the key file's message named neither).
    [{ DATA_DIR: 'package.json' }, ['DATA_DIR: names a file, not a directory'], ['encryption']],
    // Its socket's path would be cut short (to 107 bytes), and the next start find it in its way (EADDRINUSE).
    [{ DATA_DIR: `/tmp/${'d'.repeat(86)}` }, [`DATA_DIR: /tmp/${'d'.repeat(86)} is 91 bytes long, more than the 90 the embedded database allows`], ['EADDRINUSE']],
    [{ LOG_LEVEL: 'loud', SIGNING_ALG: 'HS256' }, ['LOG_LEVEL: must be one of debug, info, warn, error, silent', 'SIGNING_ALG: must be one of ES256, EdDSA, RS256'], []],
  ])('the server refuses to start on bad configuration, naming the variable (%j)', async (env, named, notNamed) => {
    const result = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
        env: { ...process.env, ...env },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (chunk) => (stderr += chunk));
      child.once('exit', (code) => resolve({ code, stderr }));
    });
    expect(result.code).toBe(2);
    for (const text of named) expect(result.stderr).toContain(text);
    for (const text of notNamed) expect(result.stderr).not.toContain(text);
    noStackTrace(result.stderr);
  });
});

describe('the server\'s command line', () => {
  const server = (args: string[]) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', ...args], { env: { ...process.env, ...TEST_ENV }, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk) => (stdout += chunk));
      child.stderr.on('data', (chunk) => (stderr += chunk));
      child.once('exit', (code) => resolve({ code, stdout, stderr }));
    });

  it('answers --version and --help without starting, and refuses any other argument rather than start as if it were not there', async () => {
    const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    // Nothing on stderr: not even oidc-provider's warning about Node 20 as it
    // loads, which a start alone needs.
    const asked = await server(['--version']);
    expect([asked.code, asked.stdout, asked.stderr]).toEqual([0, `portcullis ${version}\n`, '']);
    const help = await server(['--help']);
    expect([help.code, help.stderr]).toEqual([0, '']);
    expect(help.stdout).toContain('configured by its environment');
    const wrong = await server(['--port', '4000']);
    expect([wrong.code, wrong.stdout]).toEqual([2, '']);
    expect(wrong.stderr).toContain('the server takes no arguments (got "--port")');
    expect(wrong.stderr).not.toContain('oidc-provider');
    noStackTrace(wrong.stderr);
  });
});

describe('start-up failures name what to fix', () => {
  const start = (env: Record<string, string>) =>
    new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], { env: { ...process.env, ...TEST_ENV, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (chunk) => (stderr += chunk));
      child.once('exit', (code) => resolve({ code, stderr }));
    });

  it.each([
    // A HOST that names no address of this machine is bad configuration (exit 2).
    ['an address nothing can listen on', () => ({ HOST: 'no-such-host.invalid' }), 'HOST=no-such-host.invalid', 2],
    ['an address of another machine', () => ({ HOST: '192.0.2.1' }), 'HOST=192.0.2.1', 2],
    ['a database that does not answer', () => ({ DATABASE_URL: 'postgresql://postgres@127.0.0.1:1/portcullis' }), 'DATABASE_URL'],
    // PostgreSQL refuses the session: the answer named neither the variable nor the database.
    ['session options the database refuses', () => ({ DATABASE_URL: withOptions(process.env.TEST_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres', '-c statement_timeout=abc') }), 'cannot use the database at DATABASE_URL: invalid value for parameter "statement_timeout"'],
    // PGlite's error for this was "undefined".
    ['an embedded database that is a file', (dir: string) => {
      mkdirSync(path.join(dir, 'data'), { recursive: true });
      writeFileSync(path.join(dir, 'data', 'pgdata'), 'not a database\n');
      return {};
    }, 'in DATA_DIR'],
    // A DATA_DIR of 90 bytes, the most the embedded database allows, is taken: the start goes on
    // to open it (a file where its database should be, here), rather than refusing its length.
    ['an embedded database that is a file, in a DATA_DIR of 90 bytes', (dir: string) => {
      const dataDir = path.join(dir, 'd'.repeat(90 - Buffer.byteLength(dir) - 1));
      expect(Buffer.byteLength(dataDir)).toBe(90);
      mkdirSync(dataDir, { recursive: true });
      writeFileSync(path.join(dataDir, 'pgdata'), 'not a database\n');
      return { DATA_DIR: dataDir };
    }, 'in DATA_DIR'],
    ['an encryption key file holding a short key', (dir: string) => {
      writeFileSync(path.join(dir, 'short.key'), 'too short\n', { mode: 0o600 });
      return { ENCRYPTION_KEY_FILE: path.join(dir, 'short.key') };
    }, 'ENCRYPTION_KEY_FILE'],
  ] as [string, (dir: string) => Record<string, string>, string, number?][])('%s', async (_, env, named, code = 1) => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-start-'));
    try {
      const result = await start({ DATA_DIR: path.join(dir, 'data'), PORT: String(await freePort()), ...env(dir) });
      expect(result.code).toBe(code);
      expect(result.stderr).toContain(named);
      noStackTrace(result.stderr);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('a variable a typo away from one of ours', () => {
  // Set, such a variable changes nothing: the server would run on the default without a word.
  // (SIGNIN_MAXFAILURES is two edits away: a long name may have two.)
  const typos = { DATABSE_URL: 'postgresql://nowhere.example/x', LOGLEVEL: 'debug', ENCRYPTON_KEYS: 'a-secret-that-must-not-be-logged-anywhere', SIGNIN_MAX_FAILURES: '3', SIGNIN_MAXFAILURES: '4' };
  // What machines set besides: none of it is taken for a typo. Nor are names of four letters,
  // too few to tell (PROT and HOTS are a swap away from PORT and HOST, as HOME is not).
  const others = { HOSTNAME: 'pod-1', HOME_DIR: '/x', PORTCULLIS_SERVICE_HOST: '10.0.0.1', KUBERNETES_PORT: 'tcp://10.0.0.1:443', NODE_ENV: 'production', PGHOST: 'db', PROT: 'x', HOTS: 'x' };
  const expected = [['DATABSE_URL', 'DATABASE_URL'], ['LOGLEVEL', 'LOG_LEVEL'], ['ENCRYPTON_KEYS', 'ENCRYPTION_KEYS'], ['SIGNIN_MAX_FAILURES', 'SIGN_IN_MAX_FAILURES'], ['SIGNIN_MAXFAILURES', 'SIGN_IN_MAX_FAILURES']];

  it('is named at the server\'s start, with the variable meant and without its value', async () => {
    const pc = await startPortcullis({ ...typos, ...others });
    try {
      const warnings = pc.log.map((line) => JSON.parse(line) as { level: string; message: string; variable?: string; meant?: string }).filter((line) => line.variable);
      expect(warnings.map((line) => [line.variable, line.meant])).toEqual(expected);
      expect(warnings[0]).toMatchObject({ level: 'warn', message: 'DATABSE_URL is not a variable Portcullis reads: did you mean DATABASE_URL?' });
      expect(pc.log.join('\n')).not.toContain(typos.ENCRYPTON_KEYS);
    } finally {
      await pc.close();
    }
  });

  it('is named also when the start fails, where it may be why: on bad configuration, and on a failure after it (which waits for no SHUTDOWN_DELAY)', async () => {
    const database = await freshDatabase();
    const taken = createServer();
    const port = await freePort();
    await new Promise<void>((resolve) => taken.listen(port, '127.0.0.1', resolve));
    const start = (env: Record<string, string>) =>
      new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        const { DATABASE_URL: _, DATA_DIR: __, ...inherited } = process.env;
        const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], { env: { ...inherited, ...TEST_ENV, ...database.env, LOGLEVEL: 'debug', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (chunk) => (stdout += chunk));
        child.stderr.on('data', (chunk) => (stderr += chunk));
        child.once('exit', (code) => resolve({ code, stdout, stderr }));
      });
    const hint = 'LOGLEVEL is not a variable Portcullis reads: did you mean LOG_LEVEL?';
    try {
      const misconfigured = await start({ SHUTDOWN_DELAY: 'soon' });
      expect(misconfigured.code).toBe(2);
      expect(misconfigured.stderr).toContain('SHUTDOWN_DELAY');
      expect(misconfigured.stderr).toContain(`portcullis: ${hint}\n`);
      // (At info, which the shutdown delay's line is logged at.)
      const refused = await start({ HOST: '127.0.0.1', PORT: String(port), ISSUER: `http://localhost:${port}`, SHUTDOWN_DELAY: '30s', LOG_LEVEL: 'info' });
      expect(refused.code).not.toBe(0);
      expect(refused.stderr).toContain('failed to start');
      const logged = refused.stdout.split('\n').filter(Boolean).map((line) => JSON.parse(line) as { message: string; level: string; error?: string; stack?: string });
      const lines = logged.map((line) => line.message);
      expect(lines[0]).toBe(hint);
      expect(lines).not.toContain('serving on until the shutdown delay ends');
      // The failure is a log line too, for a collector of JSON lines; a port
      // taken is a reason, not a fault: no stack.
      expect(logged.at(-1)).toEqual({ time: expect.any(String), level: 'error', message: 'failed to start', error: expect.stringContaining('EADDRINUSE') });
    } finally {
      taken.close();
      await database.drop();
    }
  });

  it('is named by the CLI on standard error, the command going on', async () => {
    const database = await freshDatabase();
    try {
      const listed = await runCli(['client', 'list'], { ...TEST_ENV, ...database.env, ...typos, ...others });
      expect([listed.code, listed.stdout]).toEqual([0, 'no clients\n']);
      // (On a new embedded database, a line on the key file it made follows.)
      expect(listed.stderr.startsWith(expected.map(([name, meant]) => `portcullis: ${name} is not a variable Portcullis reads: did you mean ${meant}?\n`).join(''))).toBe(true);
    } finally {
      await database.drop();
    }
  });
});

describe('the portcullis bin', () => {
  // A copy of the bin in a tree of its own: sources that say "sources" (in
  // TypeScript, which only tsx runs), a build that says "build".
  const tree = () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-bin-'));
    mkdirSync(path.join(dir, 'src', 'cli'), { recursive: true });
    mkdirSync(path.join(dir, 'src', 'accounts'));
    mkdirSync(path.join(dir, 'dist', 'cli'), { recursive: true });
    writeFileSync(path.join(dir, 'package.json'), '{"type":"module"}\n');
    writeFileSync(path.join(dir, 'src', 'cli', 'portcullis.mjs'), readFileSync('src/cli/portcullis.mjs'));
    writeFileSync(path.join(dir, 'src', 'cli', 'index.ts'), 'const from: string = "sources";\nprocess.stdout.write(from);\n');
    writeFileSync(path.join(dir, 'src', 'accounts', 'accounts.ts'), 'export {};\n');
    writeFileSync(path.join(dir, 'dist', 'cli', 'index.js'), 'process.stdout.write("build");\n');
    writeFileSync(path.join(dir, 'dist', '.tsbuildinfo'), '{}\n');
    symlinkSync(path.resolve('node_modules'), path.join(dir, 'node_modules'));
    // Sources an hour old, the build a minute old.
    const hourAgo = new Date(Date.now() - 3_600_000);
    for (const file of ['src/cli/portcullis.mjs', 'src/cli/index.ts', 'src/accounts/accounts.ts']) utimesSync(path.join(dir, file), hourAgo, hourAgo);
    const minuteAgo = new Date(Date.now() - 60_000);
    utimesSync(path.join(dir, 'dist', '.tsbuildinfo'), minuteAgo, minuteAgo);
    return dir;
  };
  const run = (dir: string) => runCli([], {}, '', path.join(dir, 'src', 'cli', 'portcullis.mjs'));

  it('runs the build when it is newer than every source, else the sources', async () => {
    const dir = tree();
    try {
      expect((await run(dir)).stdout).toBe('build');
      // One source changed since the build (in a folder other than the CLI's).
      utimesSync(path.join(dir, 'src', 'accounts', 'accounts.ts'), new Date(), new Date());
      expect((await run(dir)).stdout).toBe('sources');
      // Built again.
      utimesSync(path.join(dir, 'dist', '.tsbuildinfo'), new Date(Date.now() + 1_000), new Date(Date.now() + 1_000));
      expect((await run(dir)).stdout).toBe('build');
      // Never built.
      rmSync(path.join(dir, 'dist'), { recursive: true });
      expect((await run(dir)).stdout).toBe('sources');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  /** A copy of the installation, so that its default database is its own; and a directory elsewhere. */
  const installed = () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'portcullis-install-'));
    for (const part of ['src', 'dist', 'prisma', 'views', 'package.json']) cpSync(part, path.join(dir, part), { recursive: true, preserveTimestamps: true });
    symlinkSync(path.resolve('node_modules'), path.join(dir, 'node_modules'));
    return { dir, elsewhere: mkdtempSync(path.join(os.tmpdir(), 'portcullis-elsewhere-')) };
  };

  it('without DATA_DIR opens the embedded database in its own directory, from whatever directory it runs', async () => {
    const { dir, elsewhere } = installed();
    try {
      const cli = (args: string[], cwd: string, stdin = '') =>
        new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
          const child = spawn(process.execPath, [path.join(dir, 'src', 'cli', 'portcullis.mjs'), ...args], {
            cwd,
            env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...TEST_ENV },
          });
          let [stdout, stderr] = ['', ''];
          child.stdout.on('data', (chunk) => (stdout += chunk));
          child.stderr.on('data', (chunk) => (stderr += chunk));
          child.once('close', (code) => resolve({ code, stdout, stderr }));
          child.stdin.end(stdin);
        });
      const created = await cli(['user', 'create', '--email', 'wanda@example.com', '--password-stdin'], elsewhere, 'wandas long password\n');
      expect(created.code, created.stderr).toBe(0);
      const listed = await cli(['user', 'list', '--json'], path.join(dir, 'views'));
      expect(listed.code, listed.stderr).toBe(0);
      expect(listed.stdout).toContain('wanda@example.com');
      expect([existsSync(path.join(elsewhere, 'data')), existsSync(path.join(dir, 'views', 'data')), existsSync(path.join(dir, 'data', 'encryption.key'))]).toEqual([false, false, true]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
      rmSync(elsewhere, { recursive: true, force: true });
    }
  });

  it('without DATA_DIR, started where ./data holds a database (as releases before 0.5.6 kept it), warns and names DATA_DIR', async () => {
    const { dir, elsewhere } = installed();
    mkdirSync(path.join(elsewhere, 'data', 'pgdata'), { recursive: true });
    const server = spawn(process.execPath, [path.join(dir, 'dist', 'main.js')], {
      cwd: elsewhere,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...TEST_ENV, PORT: String(await freePort()), HOST: '127.0.0.1', LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    server.stdout.on('data', (chunk) => (output += chunk));
    server.stderr.on('data', (chunk) => (output += chunk));
    try {
      await waitFor(() => output.includes('portcullis listening') || server.exitCode !== null, 60_000, () => output);
      const warning = output.split('\n').find((line) => line.includes('DATA_DIR is unset'));
      expect(warning, output).toBeDefined();
      expect(JSON.parse(warning!)).toMatchObject({ level: 'warn', dataDir: path.join(dir, 'data'), found: path.join(elsewhere, 'data') });
    } finally {
      server.kill('SIGTERM');
      await new Promise((resolve) => (server.exitCode !== null ? resolve(undefined) : server.once('exit', resolve)));
      rmSync(dir, { recursive: true, force: true });
      rmSync(elsewhere, { recursive: true, force: true });
    }
  });
});

/** Waits until `count` statements on the test database wait for a lock (`watcher`: a connection of its own), or fails after 20 s. */
async function lockWaiters(watcher: { query: (text: string) => Promise<{ rows: { count: string }[] }> }, count: number): Promise<void> {
  const deadline = Date.now() + 20_000;
  const waiting = async () =>
    Number((await watcher.query(`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`)).rows[0]!.count);
  while ((await waiting()) < count) {
    if (Date.now() > deadline) throw new Error(`fewer than ${count} statements ever waited for a lock`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** A connection string with PostgreSQL session options added. */
function withOptions(url: string, options: string): string {
  const parsed = new URL(url);
  parsed.searchParams.set('options', options);
  return parsed.toString();
}

async function waitFor(condition: () => boolean, timeoutMs: number, describe: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out; output so far:\n${describe()}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** `npm start` on `env`'s database at `port`, its output gathered; `detached`: in a process group of its own. */
function startNpm(env: Record<string, string>, port: number, { detached = false } = {}) {
  const npm = spawn('npm', ['start'], {
    env: { ...process.env, ...TEST_ENV, ...env, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached,
  });
  let output = '';
  npm.stdout.on('data', (chunk) => (output += chunk));
  npm.stderr.on('data', (chunk) => (output += chunk));
  const exited = new Promise<number | null>((resolve) => npm.once('exit', (code) => resolve(code)));
  return { npm, exited, output: () => output };
}
