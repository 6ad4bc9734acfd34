// Refusals at the edges no other file reaches (found by coverage across the
// server's and the CLI's processes, probe AW): a migration edited after it
// ran, an empty key file, a registration changed under a sign-in, a stored
// hash that is not one. Each is a decision an operator or a person would
// notice if it went the other way.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, startPortcullis, TEST_ENV, type TestPortcullis } from '../support/portcullis.js';
import { authorizationRequest, basicAuth, discover, pageKind, REDIRECT_URI, signIn, signInRefusal, visit } from '../support/relying-party.js';
import { UserAgent, type Page } from '../support/user-agent.js';

const dora = { email: 'dora@example.com', password: 'doras password' };

let pc: TestPortcullis;

beforeAll(async () => {
  pc = await startPortcullis();
  await pc.createUser(dora.email, dora.password);
});

afterAll(async () => {
  expect(pc?.errors ?? []).toEqual([]);
  await pc?.close();
});

/** A statement from outside, its rows (simple protocol: no parameters, as the embedded database's socket takes). */
const outside = async <T = Record<string, unknown>>(sql: string): Promise<T[]> => (await pc.outsideQuery(sql)).rows as T[];

describe('portcullis migrate', () => {
  it('refuses a database whose applied migration was changed since (its checksum differs), and says which', async () => {
    const [first] = await outside<{ migration_name: string; checksum: string }>(
      'SELECT migration_name, checksum FROM "_prisma_migrations" WHERE rolled_back_at IS NULL ORDER BY migration_name LIMIT 1',
    );
    expect(first!.migration_name).toMatch(/^\w+$/);
    expect(first!.checksum).toMatch(/^\w+$/);
    await outside(`UPDATE "_prisma_migrations" SET checksum = 'edited-by-hand' WHERE migration_name = '${first!.migration_name}'`);
    try {
      const migrated = await pc.cli(['migrate']);
      expect(migrated.code).toBe(1);
      expect(migrated.stderr).toContain(`migration ${first!.migration_name} was changed after it was applied`);
      expect(migrated.stdout).not.toContain('up to date');
    } finally {
      await outside(`UPDATE "_prisma_migrations" SET checksum = '${first!.checksum}' WHERE migration_name = '${first!.migration_name}'`);
    }
    const again = await pc.cli(['migrate']);
    expect([again.code, again.stdout]).toEqual([0, expect.stringContaining('database is up to date')]);
  });
});

describe('the encryption key file', () => {
  it('left empty is refused, not taken for a key (nor replaced by a new one)', async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'portcullis-empty-key-'));
    try {
      writeFileSync(path.join(dataDir, 'encryption.key'), '\n', { mode: 0o600 });
      const listed = await runCli(['keys', 'list'], { ...TEST_ENV, DATA_DIR: dataDir });
      expect(listed.code).toBe(1);
      expect(listed.stderr).toContain(`the encryption key file ${path.join(dataDir, 'encryption.key')} is empty`);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('a registration changed while a sign-in is on its page', () => {
  it('the authorization_code grant removed: the sign-in gets no code, the app gets unauthorized_client', async () => {
    const made = await pc.createClient({ name: 'Losing its code flow', redirectUris: [REDIRECT_URI], grantTypes: ['authorization_code', 'client_credentials'] });
    const rp = await discover(pc.issuer, made.client_id, made.client_secret);
    const ua = new UserAgent();
    const request = await authorizationRequest(rp, 'openid');
    const login = await visit(ua, request.url);
    expect(pageKind(login)).toBe('login');
    const updated = await pc.cli(['client', 'update', made.client_id, '--grant-type', 'client_credentials']);
    expect(updated.code, updated.stderr).toBe(0);
    const back = await signIn(ua, login, dora.email, dora.password);
    expect(pageKind(back)).toBe('callback');
    const callback = new URL(back.url);
    expect(callback.searchParams.get('code')).toBeNull();
    expect(callback.searchParams.get('error')).toBe('unauthorized_client');
    expect(callback.searchParams.get('error_description')).toBe('the client may no longer use the authorization code flow');
    expect(callback.searchParams.get('state')).toBe(request.state);
  });
});

describe('a registration changed while a device sign-in is on its page', () => {
  /** The confirmation page's Continue. */
  function confirm(ua: UserAgent, page: Page): Promise<Page> {
    const form = [...page.html.matchAll(/<form[^>]*>[\s\S]*?<\/form>/g)].map((match) => ({ ...page, html: match[0] })).find((candidate) => candidate.html.includes('name="confirm"'));
    if (!form) throw new Error(`no confirm form on ${page.url}:\n${page.html.slice(0, 2000)}`);
    return ua.post(page, UserAgent.formAction(form, '/device'), UserAgent.hiddenFields(form));
  }

  it('the device_code grant removed: the device is told unauthorized_client, and gets no tokens', async () => {
    const tool = (await pc.createClient({ name: 'Losing its device flow', grantTypes: ['device_code', 'client_credentials'], scope: 'openid' })) as { client_id: string; client_secret: string };
    const auth = basicAuth(tool.client_id, tool.client_secret);
    const started = (await (await fetch(`${pc.issuer}/device/auth`, {
      method: 'POST',
      headers: { authorization: auth, 'content-type': 'application/x-www-form-urlencoded' },
      body: 'scope=openid',
    })).json()) as { device_code: string; user_code: string };
    const ua = new UserAgent();
    const entry = await ua.open(`${pc.issuer}/device`);
    const entered = await ua.post(entry, '/device', { ...UserAgent.formFields(entry, '/device'), user_code: started.user_code });
    const login = await confirm(ua, entered);
    expect(pageKind(login)).toBe('login');
    const updated = await pc.cli(['client', 'update', tool.client_id, '--grant-type', 'client_credentials']);
    expect(updated.code, updated.stderr).toBe(0);
    const after = await signIn(ua, login, dora.email, dora.password);
    expect(pageKind(after)).not.toBe('consent');
    const polled = await fetch(`${pc.issuer}/token`, {
      method: 'POST',
      headers: { authorization: auth, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:device_code', device_code: started.device_code }),
    });
    const body = (await polled.json()) as { error?: string; access_token?: string };
    expect(body.access_token).toBeUndefined();
    expect([polled.status, body.error]).toEqual([400, 'unauthorized_client']);
  });
});

describe('a stored password hash that is not one', () => {
  it('verifies nothing: the sign-in is refused as a wrong password, with no server error', async () => {
    const mallory = { email: 'mallory@example.com', password: 'mallorys password' };
    await pc.createUser(mallory.email, mallory.password);
    await outside(`UPDATE passwords SET hash = 'not-an-argon2-hash' WHERE user_id = (SELECT id FROM users WHERE email = '${mallory.email}')`);
    const made = await pc.createClient({ name: 'Hash check', redirectUris: [REDIRECT_URI] });
    const rp = await discover(pc.issuer, made.client_id, made.client_secret);
    const ua = new UserAgent();
    const login = await visit(ua, (await authorizationRequest(rp, 'openid')).url);
    const refused = await signIn(ua, login, mallory.email, mallory.password);
    expect(refused.status).toBe(200);
    expect(signInRefusal(refused)).toBe('wrong_credentials');
  });
});

describe('portcullis api list', () => {
  it('says there are none when there are none, and lists none as JSON', async () => {
    const listed = await pc.cli(['api', 'list']);
    expect([listed.code, listed.stdout]).toEqual([0, 'no APIs\n']);
    const json = await pc.cli(['api', 'list', '--json']);
    expect([json.code, JSON.parse(json.stdout)]).toEqual([0, []]);
  });
});
