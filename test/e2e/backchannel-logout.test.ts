// OpenID Connect Back-Channel Logout 1.0: apps that registered a back-channel
// logout URI are told, server to server, when a person's session with them
// ends at a sign-out here. The apps' receiving end is a real HTTP server; the
// logout tokens are checked with jose against the published JWKS, as an app
// would check them (§2.6).
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import * as oidc from 'openid-client';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { freePort, startPortcullis, type TestPortcullis } from '../support/portcullis.js';
import { allow, authorizationRequest, discover, logIn, pageKind, POST_LOGOUT_URI, REDIRECT_URI, signIn, useAnotherAccount, visit } from '../support/relying-party.js';
import { UserAgent, type Page } from '../support/user-agent.js';

const bob = { email: 'bob@example.com', password: 'a long enough password' };
const BACKCHANNEL_EVENT = 'http://schemas.openid.net/event/backchannel-logout';

interface Delivery {
  path: string;
  contentType: string | undefined;
  body: string;
}

let pc: TestPortcullis;
let apps: http.Server;
let appsBase: string;
/** An app whose server is down: connections are refused. */
let downBase: string;
const delivered: Delivery[] = [];

let calendar: { client_id: string; client_secret?: string };
let notes: { client_id: string; client_secret?: string };
let plain: { client_id: string; client_secret?: string };
let calendarApp: oidc.Configuration;
let notesApp: oidc.Configuration;
let plainApp: oidc.Configuration;

async function createClient(name: string, ...extra: string[]) {
  const result = await pc.cli(['client', 'create', '--name', name, '--redirect-uri', REDIRECT_URI, '--post-logout-redirect-uri', POST_LOGOUT_URI, '--scope', 'openid email', ...extra, '--json']);
  expect(result.stderr).toBe('');
  return JSON.parse(result.stdout) as { client_id: string; client_secret?: string; backchannel_logout_uri?: string; backchannel_logout_session_required?: boolean };
}

beforeAll(async () => {
  // The apps' servers: each path answers as one app's would; /broken fails;
  // /moved sends the request to a sign-in page, as an endpoint behind the app's own sign-in does;
  // /accepted takes it for later (202), /quiet answers 204 as some frameworks do for an empty 200.
  apps = http.createServer((request, response) => {
    let body = '';
    request.on('data', (chunk) => (body += chunk));
    request.on('end', () => {
      delivered.push({ path: request.url ?? '', contentType: request.headers['content-type'], body });
      const statuses: Record<string, number> = { '/broken': 500, '/moved': 302, '/accepted': 202, '/quiet': 204 };
      response.statusCode = statuses[request.url ?? ''] ?? 200;
      if (request.url === '/moved') response.setHeader('location', '/sign-in');
      response.end();
    });
  });
  await new Promise<void>((resolve) => apps.listen(0, '127.0.0.1', resolve));
  appsBase = `http://127.0.0.1:${(apps.address() as AddressInfo).port}`;
  // Port 2: nothing listens there, no test is given it (ports handed out are
  // ephemeral ones), and fetch does not refuse it itself (1 is a "bad port").
  downBase = 'http://127.0.0.1:2';

  pc = await startPortcullis({ LOG_LEVEL: 'info', METRICS_PORT: String(await freePort()) });
  await pc.createUser(bob.email, bob.password, 'Bob');
  calendar = await createClient('Calendar', '--backchannel-logout-uri', `${appsBase}/calendar/logout?tenant=1`);
  notes = await createClient('Notes', '--backchannel-logout-uri', `${appsBase}/notes`);
  plain = await createClient('Plain');
  calendarApp = await discover(pc.issuer, calendar.client_id, calendar.client_secret);
  notesApp = await discover(pc.issuer, notes.client_id, notes.client_secret);
  plainApp = await discover(pc.issuer, plain.client_id, plain.client_secret);
});

beforeEach(() => {
  delivered.length = 0;
});

afterAll(async () => {
  expect(pc?.errors ?? []).toEqual([]);
  await pc?.close();
  await new Promise((resolve) => apps?.close(resolve));
});

/** The logout token an app received, checked as §2.6 asks an app to check it, and its claims. */
async function verifiedLogoutToken(delivery: Delivery, clientId: string) {
  expect(delivery.contentType).toBe('application/x-www-form-urlencoded');
  const form = new URLSearchParams(delivery.body);
  expect([...form.keys()]).toEqual(['logout_token']);
  const token = form.get('logout_token')!;
  expect(decodeProtectedHeader(token).typ).toBe('logout+jwt');
  const jwks = createRemoteJWKSet(new URL(`${pc.issuer}/jwks`));
  const { payload } = await jwtVerify(token, jwks, { issuer: pc.issuer, audience: clientId, typ: 'logout+jwt', maxTokenAge: '2 minutes' });
  expect(payload.events).toEqual({ [BACKCHANNEL_EVENT]: {} });
  expect(payload).not.toHaveProperty('nonce');
  expect(typeof payload.sid).toBe('string');
  expect(payload.exp).toBe(payload.iat! + 120);
  expect(typeof payload.jti).toBe('string');
  return payload;
}

/** The portcullis_backchannel_logouts_total series. */
async function backchannelMetrics() {
  const text = await (await fetch(pc.server.metricsUrl!)).text();
  const series = (outcome: string) => Number(new RegExp(`^portcullis_backchannel_logouts_total\\{outcome="${outcome}"\\} (\\d+)$`, 'm').exec(text)?.[1]);
  return { delivered: series('delivered'), failed: series('failed') };
}

function deliveriesTo(path: string) {
  return delivered.filter((delivery) => delivery.path === path);
}

/** Bob signed in to each app in one browser (single sign-on after the first); their ID tokens' claims. */
async function signedInTo(ua: UserAgent, ...configs: oidc.Configuration[]) {
  const claims = [];
  for (const config of configs) claims.push((await logIn(ua, config, 'openid email', bob)).tokens);
  return claims;
}

async function confirmSignOut(ua: UserAgent, logout: Page, everywhere: boolean) {
  const action = UserAgent.formAction(logout, '/session/end/confirm');
  return ua.post(logout, action, { ...UserAgent.hiddenFields(logout), ...(everywhere ? { logout: 'yes' } : {}) }, POST_LOGOUT_URI);
}

describe('back-channel logout', () => {
  it('is announced in discovery, with sessions (sid)', async () => {
    const discovery = await (await fetch(`${pc.issuer}/.well-known/openid-configuration`)).json();
    expect(discovery.backchannel_logout_supported).toBe(true);
    expect(discovery.backchannel_logout_session_supported).toBe(true);
  });

  it('signing out here tells every app of the session that registered a URI, with a logout token naming the person and the session of its ID token', async () => {
    const ua = new UserAgent();
    const [calendarTokens, notesTokens, plainTokens] = await signedInTo(ua, calendarApp, notesApp, plainApp);
    const calendarId = calendarTokens!.claims()!;
    const notesId = notesTokens!.claims()!;
    // The ID tokens carry the session's id, one per app (Back-Channel Logout 1.0 §2.1):
    // every app's, told of its end or not.
    expect(typeof calendarId.sid).toBe('string');
    expect(typeof notesId.sid).toBe('string');
    expect(typeof plainTokens!.claims()!.sid).toBe('string');
    expect(new Set([calendarId.sid, notesId.sid, plainTokens!.claims()!.sid]).size).toBe(3);
    expect(delivered).toEqual([]);

    const signedOut = await confirmSignOut(ua, await ua.open(`${pc.issuer}/session/end`), true);
    expect(signedOut.status).toBe(200);
    expect(signedOut.html).toContain('You are signed out');

    // Delivered before the answer: each app once, at the address registered (its query kept).
    expect(delivered.map((delivery) => delivery.path).sort()).toEqual(['/calendar/logout?tenant=1', '/notes']);
    const toCalendar = await verifiedLogoutToken(deliveriesTo('/calendar/logout?tenant=1')[0]!, calendar.client_id);
    const toNotes = await verifiedLogoutToken(deliveriesTo('/notes')[0]!, notes.client_id);
    expect(toCalendar.sub).toBe(calendarId.sub);
    expect(toCalendar.sid).toBe(calendarId.sid);
    expect(toNotes.sub).toBe(notesId.sub);
    expect(toNotes.sid).toBe(notesId.sid);
    expect(toCalendar.jti).not.toBe(toNotes.jti);
    // A token for one app is not one for another.
    await expect(jwtVerify(new URLSearchParams(deliveriesTo('/notes')[0]!.body).get('logout_token')!, createRemoteJWKSet(new URL(`${pc.issuer}/jwks`)), { audience: calendar.client_id })).rejects.toThrow();

    // And the session did end.
    const after = await visit(ua, (await authorizationRequest(calendarApp, 'openid', { prompt: 'none' })).url);
    expect(new URL(after.url).searchParams.get('error')).toBe('login_required');
  });

  it('an app that signs the person out of itself only ("Stay signed in") is told; the other apps keep their sign-ins and are not', async () => {
    const ua = new UserAgent();
    const [calendarTokens] = await signedInTo(ua, calendarApp, notesApp);
    const end = oidc.buildEndSessionUrl(calendarApp, { id_token_hint: calendarTokens!.id_token!, post_logout_redirect_uri: POST_LOGOUT_URI, state: 'st' });
    const logout = await ua.open(end.href, {}, POST_LOGOUT_URI);
    const back = await confirmSignOut(ua, logout, false);
    expect(back.url).toBe(`${POST_LOGOUT_URI}?state=st`);

    expect(delivered.map((delivery) => delivery.path)).toEqual(['/calendar/logout?tenant=1']);
    const token = await verifiedLogoutToken(delivered[0]!, calendar.client_id);
    expect(token.sid).toBe(calendarTokens!.claims()!.sid);
    // Notes still signs Bob in silently.
    const silent = await visit(ua, (await authorizationRequest(notesApp, 'openid', { prompt: 'none' })).url);
    expect(new URL(silent.url).searchParams.get('code')).toBeTruthy();
  });

  it('another person signing in on the same browser ("Use another account") ends the first session, and its apps are told', async () => {
    const carol = { email: 'carol@example.com', password: 'carol long password' };
    await pc.createUser(carol.email, carol.password, 'Carol');
    // An app Bob never signed in to, nor consented to: its request only asks who is signed in.
    const photos = await createClient('Photos', '--backchannel-logout-uri', `${appsBase}/photos`);
    const photosApp = await discover(pc.issuer, photos.client_id, photos.client_secret);
    const ua = new UserAgent();
    const [bobsTokens] = await signedInTo(ua, calendarApp);
    const request = await authorizationRequest(photosApp, 'openid email', { prompt: 'select_account' });
    const login = await useAnotherAccount(ua, await visit(ua, request.url));
    expect(pageKind(login)).toBe('login');
    const handOver = await signIn(ua, login, carol.email, carol.password);
    expect(delivered).toEqual([]);
    let page = await ua.post(handOver, UserAgent.formAction(handOver, '/session/end/confirm'), UserAgent.hiddenFields(handOver), REDIRECT_URI);
    if (pageKind(page) === 'consent') page = await allow(ua, page);
    expect(pageKind(page)).toBe('callback');
    // Only Calendar: Photos, whose request this was, had no sign-in of Bob's in
    // the session (a token without sid would have ended Bob's sessions with it everywhere).
    expect(delivered.map((delivery) => delivery.path)).toEqual(['/calendar/logout?tenant=1']);
    const token = await verifiedLogoutToken(delivered[0]!, calendar.client_id);
    expect(token.sub).toBe(bobsTokens!.claims()!.sub);
    expect(token.sid).toBe(bobsTokens!.claims()!.sid);
  });

  it('an app that does not answer 200 does not stop the sign-out: the operator is told which app was not told, and why', async () => {
    const broken = await createClient('Broken', '--backchannel-logout-uri', `${appsBase}/broken`);
    const down = await createClient('Down', '--backchannel-logout-uri', `${downBase}/logout?key=s3cret`);
    const moved = await createClient('Moved', '--backchannel-logout-uri', `${appsBase}/moved`);
    const ua = new UserAgent();
    await signedInTo(
      ua,
      await discover(pc.issuer, broken.client_id, broken.client_secret),
      await discover(pc.issuer, down.client_id, down.client_secret),
      await discover(pc.issuer, moved.client_id, moved.client_secret),
      calendarApp,
    );
    const logged = pc.log.length;
    const before = await backchannelMetrics();

    const signedOut = await confirmSignOut(ua, await ua.open(`${pc.issuer}/session/end`), true);
    expect(signedOut.status).toBe(200);
    expect(signedOut.html).toContain('You are signed out');
    expect(deliveriesTo('/calendar/logout?tenant=1')).toHaveLength(1);
    expect(deliveriesTo('/broken')).toHaveLength(1);

    const failures = pc.log.slice(logged).filter((line) => line.includes('back-channel logout failed')).map((line) => JSON.parse(line));
    expect(failures.map((line) => line.client).sort()).toEqual([broken.client_id, down.client_id, moved.client_id].sort());
    // Back-Channel Logout 1.0 §2.8: 200 is success; a redirect (to the app's sign-in page, say) is not.
    expect(failures.find((line) => line.client === moved.client_id).reason).toBe('answered 302');
    expect(failures.find((line) => line.client === broken.client_id).reason).toContain('500');
    expect(failures.find((line) => line.client === down.client_id).reason).toBe('could not connect (ECONNREFUSED)');
    // The address without its query (which may hold a secret), the reason without the address.
    expect(failures.find((line) => line.client === down.client_id).uri).toBe(`${downBase}/logout`);
    expect(failures.find((line) => line.client === broken.client_id).reason).toBe('answered 500');
    for (const line of failures) expect(line.level).toBe('warn');
    // Nothing that would sign anyone out anywhere is written to the log.
    expect(pc.log.slice(logged).join('\n')).not.toMatch(/eyJ[\w-]+\.eyJ|s3cret/);
    const delivery = pc.log.slice(logged).filter((line) => line.includes('back-channel logout delivered')).map((line) => JSON.parse(line).client);
    expect(delivery).toEqual([calendar.client_id]);
    const after = await backchannelMetrics();
    expect([after.delivered - before.delivered, after.failed - before.failed]).toEqual([1, 3]);
  });

  it('is registered with the CLI: shown, changed at once on the running server, removed with ""; refused for a public client and for addresses that are not http(s)', async () => {
    const created = await createClient('Tasks', '--backchannel-logout-uri', `${appsBase}/tasks`);
    expect(created.backchannel_logout_uri).toBe(`${appsBase}/tasks`);
    expect(created.backchannel_logout_session_required).toBe(true);
    const shown = await pc.cli(['client', 'show', created.client_id]);
    expect(shown.stdout).toMatch(new RegExp(`back-channel logout: +${appsBase}/tasks\\n`));

    const tasksApp = await discover(pc.issuer, created.client_id, created.client_secret);
    const moved = await pc.cli(['client', 'update', created.client_id, '--backchannel-logout-uri', `${appsBase}/tasks-v2`, '--json']);
    expect(moved.stderr).toBe('');
    expect(JSON.parse(moved.stdout).backchannel_logout_uri).toBe(`${appsBase}/tasks-v2`);
    let ua = new UserAgent();
    await signedInTo(ua, tasksApp);
    await confirmSignOut(ua, await ua.open(`${pc.issuer}/session/end`), true);
    expect(delivered.map((delivery) => delivery.path)).toEqual(['/tasks-v2']);

    delivered.length = 0;
    const removed = await pc.cli(['client', 'update', created.client_id, '--backchannel-logout-uri', '', '--json']);
    expect(JSON.parse(removed.stdout)).not.toHaveProperty('backchannel_logout_uri');
    expect(JSON.parse(removed.stdout)).not.toHaveProperty('backchannel_logout_session_required');
    ua = new UserAgent();
    await signedInTo(ua, tasksApp);
    await confirmSignOut(ua, await ua.open(`${pc.issuer}/session/end`), true);
    expect(delivered).toEqual([]);

    // A sign-in from before the app registered a URI is matched too: its ID token carried the sid.
    ua = new UserAgent();
    const [before] = await signedInTo(ua, tasksApp);
    expect((await pc.cli(['client', 'update', created.client_id, '--backchannel-logout-uri', `${appsBase}/tasks-v3`])).code).toBe(0);
    await confirmSignOut(ua, await ua.open(`${pc.issuer}/session/end`), true);
    expect(delivered.map((delivery) => delivery.path)).toEqual(['/tasks-v3']);
    expect((await verifiedLogoutToken(delivered[0]!, created.client_id)).sid).toBe(before!.claims()!.sid);

    const refusals = [
      [['--public'], 'public'],
      [['--native', '--redirect-uri', 'com.example.app:/cb'], 'public or native'],
    ] as const;
    for (const [extra, message] of refusals) {
      const result = await pc.cli(['client', 'create', '--name', 'X', '--redirect-uri', REDIRECT_URI, ...extra, '--backchannel-logout-uri', `${appsBase}/x`]);
      expect(result.code).toBe(1);
      expect(result.stderr).toContain(message);
    }
    for (const uri of ['ftp://app.example/logout', 'https://app.example/logout#part', 'https://user:pw@app.example/logout', 'logout', 'https://app.example/log out']) {
      const result = await pc.cli(['client', 'create', '--name', 'X', '--redirect-uri', REDIRECT_URI, '--backchannel-logout-uri', uri]);
      expect(result.code, uri).toBe(1);
      expect(result.stderr, uri).toContain('back-channel logout URI');
      expect(result.stderr, uri).not.toContain('Usage');
    }
  }, 180_000);

  it('the CLI tells the apps of the sessions it ends: user revoke (every session of the person), revoke --client (that app\'s part only), set-password, disable, delete', async () => {
    const erin = { email: 'erin@example.com', password: 'another long password' };
    await pc.createUser(erin.email, erin.password, 'Erin');
    // An app whose ID tokens are ES256: its logout tokens are too.
    const ledger = await createClient('Ledger', '--id-token-alg', 'ES256', '--backchannel-logout-uri', `${appsBase}/ledger`);
    const ledgerApp = await discover(pc.issuer, ledger.client_id, ledger.client_secret);
    // Erin's ID tokens' subject, and the key each app's ID tokens are signed with.
    let erinsSub: unknown;
    const idTokenKids: Record<string, string | undefined> = {};
    const asErin = async (ua: UserAgent, ...configs: oidc.Configuration[]) => {
      const sids: Record<string, unknown> = {};
      for (const config of configs) {
        const { tokens } = await logIn(ua, config, 'openid email', erin);
        const clientId = config.clientMetadata().client_id;
        sids[clientId] = tokens.claims()!.sid;
        erinsSub = tokens.claims()!.sub;
        idTokenKids[clientId] = decodeProtectedHeader(tokens.id_token!).kid;
      }
      return sids;
    };
    // The sids the app at `path` was told of, each token checked as the server's are, and
    // naming Erin, signed with the key that signs the app's ID tokens.
    const receivedSids = async (path: string, clientId: string) => {
      const sids = [];
      for (const delivery of deliveriesTo(path)) {
        const token = await verifiedLogoutToken(delivery, clientId);
        expect(token.sub).toBe(erinsSub);
        expect(decodeProtectedHeader(new URLSearchParams(delivery.body).get('logout_token')!).kid).toBe(idTokenKids[clientId]);
        sids.push(token.sid);
      }
      return sids.sort();
    };

    // Two browsers: Calendar in both, Notes and Ledger in one; on the phone an
    // app Erin never consented to asks who is signed in, and is left there.
    const laptopUa = new UserAgent();
    const laptop = await asErin(laptopUa, calendarApp, notesApp, ledgerApp);
    const phoneUa = new UserAgent();
    const phone = await asErin(phoneUa, calendarApp);
    const photos = await createClient('Photos too', '--backchannel-logout-uri', `${appsBase}/photos-too`);
    const asked = await visit(phoneUa, (await authorizationRequest(await discover(pc.issuer, photos.client_id, photos.client_secret), 'openid', { prompt: 'select_account' })).url);
    expect(asked.html).toContain('Use another account');
    // The library has made Photos an entry in the phone's session, without a sid.
    const db = pc.outsideConnection();
    await db.connect();
    const { rows: parts } = await db.query<{ part: unknown }>(
      `SELECT payload->'authorizations'->$2::text AS part FROM provider_artifacts WHERE kind = 'Session' AND payload->>'accountId' = $1 AND payload->'authorizations' ? $2::text`,
      [erinsSub, photos.client_id],
    );
    await db.end();
    expect(parts.map((row) => row.part)).toEqual([{}]);

    // --client: only Notes, for its part of the laptop's session; Erin stays signed in.
    const one = await pc.cli(['user', 'revoke', erin.email, '--client', notes.client_id]);
    expect(one.stderr).toBe('');
    expect(one.stdout).toContain('told 1 app (back-channel logout)');
    expect(delivered.map((delivery) => delivery.path)).toEqual(['/notes']);
    expect(await receivedSids('/notes', notes.client_id)).toEqual([laptop[notes.client_id]]);
    const stillIn = await visit(phoneUa, (await authorizationRequest(calendarApp, 'openid', { prompt: 'none' })).url);
    expect(new URL(stillIn.url).searchParams.get('code')).toBeTruthy();
    // Told once: its part of the session ended, and a sign-in to it there gets another sid.
    delivered.length = 0;
    const twice = await pc.cli(['user', 'revoke', erin.email, '--client', notes.client_id]);
    expect([twice.code, twice.stdout]).toEqual([0, `${erin.email} gave client ${notes.client_id} nothing to revoke\n`]);
    expect(delivered).toEqual([]);
    const notesAgain = await asErin(laptopUa, notesApp);
    expect(notesAgain[notes.client_id]).toEqual(expect.any(String));
    expect(notesAgain[notes.client_id]).not.toBe(laptop[notes.client_id]);

    // Everything: each app of each session, once per session; not Photos, which only asked.
    delivered.length = 0;
    const all = await pc.cli(['user', 'revoke', erin.email, '--json']);
    expect(all.stderr).toBe('');
    const report = JSON.parse(all.stdout).backchannel_logouts as { client_id: string; delivered: boolean }[];
    expect(report.map((entry) => `${entry.client_id} ${entry.delivered}`).sort()).toEqual(
      [`${calendar.client_id} true`, `${calendar.client_id} true`, `${ledger.client_id} true`, `${notes.client_id} true`].sort(),
    );
    expect(await receivedSids('/calendar/logout?tenant=1', calendar.client_id)).toEqual([laptop[calendar.client_id], phone[calendar.client_id]].sort());
    const [toLedger] = deliveriesTo('/ledger');
    expect(decodeProtectedHeader(new URLSearchParams(toLedger!.body).get('logout_token')!).alg).toBe('ES256');
    expect((await verifiedLogoutToken(toLedger!, ledger.client_id)).sid).toBe(laptop[ledger.client_id]);
    expect(await receivedSids('/notes', notes.client_id)).toEqual([notesAgain[notes.client_id]]);
    expect(deliveriesTo('/photos-too')).toEqual([]);

    // An app that cannot be told is named on stderr; the command did what it was asked all the same.
    // (Back-Channel Logout 1.0 §2.8: 200 is success, and 204, which frameworks send for it; a redirect, or a 202, is not.)
    const broken = await createClient('Broken too', '--backchannel-logout-uri', `${appsBase}/broken`);
    const down = await createClient('Down too', '--backchannel-logout-uri', `${downBase}/logout?key=s3cret`);
    const moved = await createClient('Moved too', '--backchannel-logout-uri', `${appsBase}/moved`);
    const accepted = await createClient('Accepted too', '--backchannel-logout-uri', `${appsBase}/accepted`);
    const quiet = await createClient('Quiet too', '--backchannel-logout-uri', `${appsBase}/quiet`);
    await asErin(
      new UserAgent(),
      await discover(pc.issuer, broken.client_id, broken.client_secret),
      await discover(pc.issuer, down.client_id, down.client_secret),
      await discover(pc.issuer, moved.client_id, moved.client_secret),
      await discover(pc.issuer, accepted.client_id, accepted.client_secret),
      await discover(pc.issuer, quiet.client_id, quiet.client_secret),
      calendarApp,
    );
    delivered.length = 0;
    const changed = await pc.cli(['user', 'set-password', erin.email, '--password-stdin'], 'a brand new long password\n');
    expect(changed.code).toBe(0);
    expect(changed.stdout).toContain('signed out everywhere');
    expect(changed.stdout).toContain('told 2 apps (back-channel logout)');
    expect(changed.stderr.split('\n').filter(Boolean).sort()).toEqual([
      `portcullis: warning: client ${accepted.client_id} was not told that the session ended (back-channel logout): answered 202`,
      `portcullis: warning: client ${broken.client_id} was not told that the session ended (back-channel logout): answered 500`,
      `portcullis: warning: client ${down.client_id} was not told that the session ended (back-channel logout): could not connect (ECONNREFUSED)`,
      `portcullis: warning: client ${moved.client_id} was not told that the session ended (back-channel logout): answered 302`,
    ].sort());
    expect(delivered.map((delivery) => delivery.path).sort()).toEqual(['/accepted', '/broken', '/calendar/logout?tenant=1', '/moved', '/quiet']);

    // A disabled app is not told (the server finds no such client either); disable and delete tell the others.
    erin.password = 'a brand new long password';
    await asErin(new UserAgent(), calendarApp, ledgerApp);
    expect((await pc.cli(['client', 'disable', ledger.client_id])).code).toBe(0);
    delivered.length = 0;
    const disabled = await pc.cli(['user', 'disable', erin.email]);
    expect(disabled.stdout).toContain('told 1 app');
    expect(delivered.map((delivery) => delivery.path)).toEqual(['/calendar/logout?tenant=1']);
    expect((await pc.cli(['client', 'enable', ledger.client_id])).code).toBe(0);
    expect((await pc.cli(['user', 'enable', erin.email])).code).toBe(0);
    await asErin(new UserAgent(), ledgerApp);
    delivered.length = 0;
    const deleted = await pc.cli(['user', 'delete', erin.email, '--json']);
    expect(JSON.parse(deleted.stdout).backchannel_logouts).toEqual([{ client_id: ledger.client_id, delivered: true }]);
    expect(delivered.map((delivery) => delivery.path)).toEqual(['/ledger']);
  }, 180_000);
});
