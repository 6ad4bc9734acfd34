// The OAuth 2.0 Device Authorization Grant (RFC 8628): the device is
// openid-client v6, as an app on a TV or a command-line tool would use it;
// the person is a browser at /device (the Chromium suite walks the same pages
// in a real browser, browser.test.ts).
import { gzipSync } from 'node:zlib';
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startPortcullis, type TestPortcullis } from '../support/portcullis.js';
import { basicAuth, discover, logIn, pageKind, REDIRECT_URI, signIn, useAnotherAccount } from '../support/relying-party.js';
import { UserAgent, type Page } from '../support/user-agent.js';
import { sha256 } from '../support/digest.js';

const DEVICE_CODE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
const carol = { email: 'carol@example.com', password: 'a long enough password' };
// People who have consented to nothing yet, each test its own (a consent is remembered).
const dan = { email: 'dan@example.com', password: 'a long enough password' };
const erin = { email: 'erin@example.com', password: 'a long enough password' };
const frank = { email: 'frank@example.com', password: 'a long enough password' };

let pc: TestPortcullis;
/** A public client, as an app on a TV is. */
let tv: { client_id: string };
/** A confidential one, as a command-line tool run by a server might be. */
let tool: { client_id: string; client_secret: string };
let tvApp: oidc.Configuration;
let toolApp: oidc.Configuration;
/** Each test's browser at its own address (X-Forwarded-For): wrong codes are counted per address. */
let addresses = 0;
let metricsPort: number;
/** A counter's value on the metrics listener (0 when absent). */
async function counter(series: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}
const browser = () => new UserAgent({ 'x-forwarded-for': `198.51.100.${++addresses}` });

beforeAll(async () => {
  metricsPort = await freePort();
  pc = await startPortcullis({ TRUST_PROXY: 'true', SIGN_IN_MAX_FAILURES_PER_ADDRESS: '4', METRICS_PORT: String(metricsPort) });
  await pc.createUser(carol.email, carol.password, 'Carol');
  await pc.createUser(dan.email, dan.password, 'Dan');
  await pc.createUser(erin.email, erin.password, 'Erin');
  await pc.createUser(frank.email, frank.password, 'Frank');
  const made = await pc.cli(['client', 'create', '--name', 'Living Room TV', '--public', '--grant-type', 'device_code', '--grant-type', 'refresh_token', '--scope', 'openid email offline_access', '--json']);
  expect(made.stderr).toBe('');
  tv = JSON.parse(made.stdout);
  tool = (await pc.createClient({ name: 'Deploy Tool', grantTypes: ['device_code'], scope: 'openid profile' })) as typeof tool;
  tvApp = await discover(pc.issuer, tv.client_id);
  toolApp = await discover(pc.issuer, tool.client_id, tool.client_secret);
});

afterAll(async () => {
  expect(pc?.errors ?? []).toEqual([]);
  await pc?.close();
});

/** Opens the verification page and enters `code` (as typed), up to the next page. */
async function enterCode(ua: UserAgent, code: string): Promise<Page> {
  const page = await ua.open(`${pc.issuer}/device`);
  expect(page.status).toBe(200);
  return ua.post(page, '/device', { ...UserAgent.formFields(page, '/device'), user_code: code });
}

/** The confirmation page's Continue (or Cancel). */
function confirm(ua: UserAgent, page: Page, choice: 'confirm' | 'abort' = 'confirm'): Promise<Page> {
  const forms = [...page.html.matchAll(/<form[^>]*>[\s\S]*?<\/form>/g)].map((match) => ({ ...page, html: match[0] }));
  const form = forms.find((candidate) => candidate.html.includes(`name="${choice}"`));
  if (!form) throw new Error(`no ${choice} form on ${page.url}:\n${page.html.slice(0, 2000)}`);
  return ua.post(page, UserAgent.formAction(form, '/device'), UserAgent.hiddenFields(form));
}

const START_AGAIN_TEXT = 'This sign-in has ended. If your device did not connect, start again on it to get a new code.';

/** Runs `work` on a connection to the server's database from outside. */
async function inDatabase(work: (db: ReturnType<TestPortcullis['outsideConnection']>) => Promise<void>): Promise<void> {
  const db = pc.outsideConnection();
  await db.connect();
  try {
    await work(db);
  } finally {
    await db.end();
  }
}

/** "Sign out" on the sign-out page `logout`: the page that follows. */
async function signOut(ua: UserAgent, logout: Page): Promise<string> {
  return (await ua.post(logout, UserAgent.formAction(logout, '/session/end/confirm'), { ...UserAgent.hiddenFields(logout), logout: 'yes' })).html;
}

/** A token request with the device code, as the device polls (RFC 8628 §3.4). */
async function poll(deviceCode: string, client: { client_id: string; client_secret?: string } = tv) {
  const body = new URLSearchParams({ grant_type: DEVICE_CODE_GRANT, device_code: deviceCode });
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
  if (client.client_secret) headers.authorization = basicAuth(client.client_id, client.client_secret);
  else body.set('client_id', client.client_id);
  const response = await fetch(`${pc.issuer}/token`, { method: 'POST', headers, body });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

describe('device authorization', () => {
  it('is in discovery, for clients registered with the device_code grant', async () => {
    const discovery = (await (await fetch(`${pc.issuer}/.well-known/openid-configuration`)).json()) as Record<string, unknown>;
    expect(discovery.device_authorization_endpoint).toBe(`${pc.issuer}/device/auth`);
    expect(discovery.grant_types_supported).toContain(DEVICE_CODE_GRANT);
    const shown = JSON.parse((await pc.cli(['client', 'show', tv.client_id, '--json'])).stdout);
    expect(shown.grant_types).toEqual([DEVICE_CODE_GRANT, 'refresh_token']);
    expect(shown.redirect_uris).toEqual([]);
  });

  it('a TV signs in: the person enters its code, signs in and consents in a browser; the TV gets tokens that work and refresh', async () => {
    const started = await oidc.initiateDeviceAuthorization(tvApp, { scope: 'openid email offline_access' });
    expect(started.user_code).toMatch(/^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/);
    expect(started.verification_uri).toBe(`${pc.issuer}/device`);
    expect(started.expires_in).toBe(600);

    // Until the person has finished, the device is told to wait.
    expect(await poll(started.device_code)).toEqual({ status: 400, body: expect.objectContaining({ error: 'authorization_pending' }) });

    const ua = browser();
    // Typed as people type it: lower case, no dash.
    let page = await enterCode(ua, started.user_code.replace('-', '').toLowerCase());
    expect(page.html).toContain('<h1>Connect <bdi>Living Room TV</bdi>?</h1>');
    expect(page.html).toContain(`<p class="user-code" id="user-code">${started.user_code}</p>`);
    page = await confirm(ua, page);
    expect(pageKind(page)).toBe('login');
    expect(page.html).toContain('Cancel stops <bdi>Living Room TV</bdi> on your device from signing in.');
    page = await signIn(ua, page, carol.email, carol.password);
    expect(pageKind(page)).toBe('consent');
    // Nothing to send again from a device's sign-in, and nowhere to go back to:
    // another account signs in on the sign-in's own page.
    expect(page.html).toMatch(/<a href="\/interaction\/[\w-]+\?account=other">Not you\? Use another account<\/a>/);
    expect(page.html).not.toContain('name="restart"');
    expect(page.html).toContain('Deny shares nothing with it, and the device is not signed in.');
    const consent = page;
    page = await ua.post(page, UserAgent.formAction(page, '/confirm'), UserAgent.formFields(page, '/confirm'));
    expect(page.status).toBe(200);
    expect(page.html).toContain('<h1>Your device is connected</h1>');
    // Back to the consent page: done, and the device goes on without this browser.
    const back = await ua.open(consent.url);
    expect([back.status, back.html.includes('You allowed <bdi>Living Room TV</bdi> from this page already.')]).toEqual([200, true]);
    expect(back.html).toContain('Your device goes on by itself: you can close this page.');
    // Reloaded, the page has nothing more to do, and says so without blaming a code.
    const reloaded = await ua.open(page.url);
    expect(reloaded.html).toContain('This sign-in has ended. If your device did not connect, start again on it to get a new code.');
    expect(reloaded.html).not.toContain('aria-invalid');

    const issued = await counter(`portcullis_tokens_issued_total{grant_type="${DEVICE_CODE_GRANT}"}`);
    const tokens = await oidc.pollDeviceAuthorizationGrant(tvApp, started);
    expect(await counter(`portcullis_tokens_issued_total{grant_type="${DEVICE_CODE_GRANT}"}`)).toBe(issued + 1);
    const claims = tokens.claims()!;
    expect(claims.aud).toBe(tv.client_id);
    expect(tokens.scope?.split(' ').sort()).toEqual(['email', 'offline_access', 'openid']);
    const userinfo = await oidc.fetchUserInfo(tvApp, tokens.access_token, claims.sub);
    expect(userinfo.email).toBe(carol.email);
    // With offline_access, it outlives a sign-out of that browser, as any app's does.
    expect(await signOut(ua, await ua.open(`${pc.issuer}/session/end`))).toContain('You are signed out');
    const refreshed = await oidc.refreshTokenGrant(tvApp, tokens.refresh_token!);
    expect(refreshed.access_token).not.toBe(tokens.access_token);

    // The same code entered again: used already.
    page = await enterCode(browser(), started.user_code);
    expect(page.html).toContain('That code has been used already.');
    // A device code is used once; presented again, it is taken for stolen, as
    // an authorization code is (RFC 9700 §4.14.2): what was issued from it ends.
    expect((await poll(started.device_code)).body.error).toBe('invalid_grant');
    await expect(oidc.refreshTokenGrant(tvApp, refreshed.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant' });
  });

  it('a device polling sooner than the interval is told slow_down; a code approved meanwhile is answered at once', async () => {
    const started = await oidc.initiateDeviceAuthorization(tvApp, { scope: 'openid' });
    expect(started.interval).toBe(5);
    // The last poll's row (device-flow.ts, DevicePolling), moved in time
    // rather than waited for: a slow machine must not decide what is "soon".
    const pollRow = sha256(`poll of ${started.device_code}`);
    const lastPoll = async (set?: string) => {
      let row: { expires_at: Date; window: number } | undefined;
      await inDatabase(async (db) => {
        if (set) await db.query(`UPDATE provider_artifacts SET expires_at = ${set} WHERE kind = 'DevicePoll' AND id = $1`, [pollRow]);
        const found = await db.query<{ expires_at: Date; window: number }>(
          `SELECT expires_at, EXTRACT(EPOCH FROM expires_at - created_at)::float AS window FROM provider_artifacts WHERE kind = 'DevicePoll' AND id = $1`,
          [pollRow],
        );
        row = found.rows[0];
      });
      return row;
    };
    const slowDowns = await counter('portcullis_oauth_errors_total{endpoint="token",error="slow_down"}');
    expect((await poll(started.device_code)).body.error).toBe('authorization_pending');
    // The window is the interval less a second of slack, from that poll (stored by the same statement).
    expect((await lastPoll())!.window).toBe(4);
    // RFC 8628 §3.5: a poll too soon is told to slow down, and moves nothing.
    const until = (await lastPoll(`now() + interval '1 minute'`))!.expires_at;
    expect(await poll(started.device_code)).toEqual({ status: 400, body: expect.objectContaining({ error: 'slow_down' }) });
    expect((await lastPoll())!.expires_at).toEqual(until);
    expect(await counter('portcullis_oauth_errors_total{endpoint="token",error="slow_down"}')).toBe(slowDowns + 1);
    // Once the interval has passed: another client presenting the code is
    // refused without using up the device's turn, and the device is answered.
    await lastPoll(`now() - interval '1 second'`);
    expect((await poll(started.device_code, tool)).body.error).toBe('invalid_grant');
    expect((await poll(started.device_code)).body.error).toBe('authorization_pending');
    expect((await poll(started.device_code)).body.error).toBe('slow_down');

    // Approved, the code is answered with tokens, however soon the device asks.
    const ua = browser();
    let page = await confirm(ua, await enterCode(ua, started.user_code));
    page = await signIn(ua, page, frank.email, frank.password);
    page = await ua.post(page, UserAgent.formAction(page, '/confirm'), UserAgent.formFields(page, '/confirm'));
    expect(page.html).toContain('<h1>Your device is connected</h1>');
    await lastPoll(`now() + interval '1 minute'`);
    const answer = await poll(started.device_code);
    expect(answer.status).toBe(200);
    expect(typeof answer.body.id_token).toBe('string');
  });

  it('a signed-in person is asked only to consent; a confidential client authenticates as at every grant', async () => {
    const ua = browser();
    const first = await oidc.initiateDeviceAuthorization(toolApp, { scope: 'openid profile' });
    let page = await confirm(ua, await enterCode(ua, first.user_code));
    page = await signIn(ua, page, carol.email, carol.password);
    page = await ua.post(page, UserAgent.formAction(page, '/confirm'), UserAgent.formFields(page, '/confirm'));
    expect(page.html).toContain('<h1>Your device is connected</h1>');
    const tokens = await oidc.pollDeviceAuthorizationGrant(toolApp, first);
    expect(tokens.claims()!.aud).toBe(tool.client_id);
    expect(tokens.refresh_token).toBeUndefined();

    // The same browser, a second device: signed in already, consent remembered.
    const second = await oidc.initiateDeviceAuthorization(toolApp, { scope: 'openid profile' });
    page = await enterCode(ua, second.user_code);
    // Continue connects it at once: the page says as whom, before.
    expect(page.html).toContain('You are signed in as <strong><bdi>Carol</bdi> (<bdi>carol@example.com</bdi>)</strong>: the device will use this account.');
    page = await confirm(ua, page);
    expect(page.html).toContain('<h1>Your device is connected</h1>');
    expect((await oidc.pollDeviceAuthorizationGrant(toolApp, second)).claims()!.sub).toBe(tokens.claims()!.sub);

    // The device's sign-in is the browser session's it was approved in, as
    // an app's there: without offline_access, signing out of it ends it.
    expect((await oidc.fetchUserInfo(toolApp, tokens.access_token, tokens.claims()!.sub)).sub).toBe(tokens.claims()!.sub);
    expect(await signOut(ua, await ua.open(`${pc.issuer}/session/end`))).toContain('You are signed out');
    await expect(oidc.fetchUserInfo(toolApp, tokens.access_token, tokens.claims()!.sub)).rejects.toMatchObject({ status: 401 });

    // Without its secret, the confidential client gets no code.
    const anonymous = await fetch(`${pc.issuer}/device/auth`, { method: 'POST', body: new URLSearchParams({ client_id: tool.client_id, scope: 'openid' }) });
    expect(anonymous.status).toBe(401);
    expect(((await anonymous.json()) as { error: string }).error).toBe('invalid_client');
  });

  it('Deny at consent, or Cancel at the code, tells the device access_denied; the page says the device was not connected', async () => {
    const denied = await oidc.initiateDeviceAuthorization(tvApp, { scope: 'openid email' });
    const ua = browser();
    let page = await confirm(ua, await enterCode(ua, denied.user_code));
    const login = page;
    page = await signIn(ua, page, dan.email, dan.password);
    expect(pageKind(page)).toBe('consent');
    const consent = page;
    page = await ua.post(page, UserAgent.formAction(page, '/abort'), UserAgent.formFields(page, '/abort'));
    expect(page.html).toContain('<h1>Your device was not connected</h1>');
    expect(await poll(denied.device_code)).toEqual({ status: 400, body: expect.objectContaining({ error: 'access_denied' }) });
    // Back to the consent page: declined, and the device does not go on.
    const back = await ua.open(consent.url);
    expect(back.html).toContain('<h1>You already declined this</h1>');
    expect(back.html).toContain('Your device was told so: you can close this page.');
    // The sign-in step before it did end in a sign-in, but that says nothing of the device.
    const backTwice = await ua.open(login.url);
    expect(backTwice.html).toContain('<h1>You already signed in</h1>');
    expect(backTwice.html).not.toContain('goes on');
    expect(backTwice.html).toContain('You can close this page.');

    const cancelled = await oidc.initiateDeviceAuthorization(tvApp, { scope: 'openid email' });
    page = await enterCode(ua, cancelled.user_code);
    page = await confirm(ua, page, 'abort');
    expect(page.html).toContain('<h1>Your device was not connected</h1>');
    expect(await poll(cancelled.device_code)).toEqual({ status: 400, body: expect.objectContaining({ error: 'access_denied' }) });
    // Asked again, the same answer (a refused poll changes nothing).
    await expect(oidc.pollDeviceAuthorizationGrant(tvApp, cancelled)).rejects.toMatchObject({ error: 'access_denied' });
  });

  it('an expired code: the device is told expired_token, and the page says so', async () => {
    const started = await oidc.initiateDeviceAuthorization(tvApp, { scope: 'openid' });
    await inDatabase(async (db) => {
      // Ten minutes on: the code's exp, and its row's, behind us (the sweeper has not run).
      const { rowCount } = await db.query(
        `UPDATE provider_artifacts SET expires_at = now() - interval '1 second',
                payload = jsonb_set(payload, '{exp}', to_jsonb(floor(extract(epoch FROM now())) - 1))
         WHERE kind = 'DeviceCode' AND id = $1`,
        [sha256(started.device_code)],
      );
      expect(rowCount).toBe(1);
    });
    expect(await poll(started.device_code)).toEqual({ status: 400, body: expect.objectContaining({ error: 'expired_token' }) });
    // Polled again at once, it is still expired, not too fast (RFC 8628 §3.5): the device starts over.
    expect(await poll(started.device_code)).toEqual({ status: 400, body: expect.objectContaining({ error: 'expired_token' }) });
    const ua = browser();
    expect((await enterCode(ua, started.user_code)).html).toContain('That code has expired.');
  });

  it('the device page and the sign-out page, open at once, each keep their form working', async () => {
    const ua = browser();
    const started = await oidc.initiateDeviceAuthorization(toolApp, { scope: 'openid profile' });
    let page = await confirm(ua, await enterCode(ua, started.user_code));
    page = await signIn(ua, page, carol.email, carol.password);
    if (pageKind(page) === 'consent') page = await ua.post(page, UserAgent.formAction(page, '/confirm'), UserAgent.formFields(page, '/confirm'));
    expect(page.html).toContain('<h1>Your device is connected</h1>');

    // The sign-out page opened while the device page is open: the code still goes through.
    const second = await oidc.initiateDeviceAuthorization(toolApp, { scope: 'openid profile' });
    let devicePage = await ua.open(`${pc.issuer}/device`);
    await ua.open(`${pc.issuer}/session/end`);
    page = await ua.post(devicePage, '/device', { ...UserAgent.formFields(devicePage, '/device'), user_code: second.user_code });
    expect(page.html).toContain('<h1>Connect <bdi>Deploy Tool</bdi>?</h1>');

    // The device page opened while the sign-out page is open (a QR code
    // scanned in another tab), and a code entered there: "Sign out" still signs out.
    const third = await oidc.initiateDeviceAuthorization(toolApp, { scope: 'openid profile' });
    const logout = await ua.open(`${pc.issuer}/session/end`);
    devicePage = await ua.open(`${pc.issuer}/device`);
    page = await ua.post(devicePage, '/device', { ...UserAgent.formFields(devicePage, '/device'), user_code: third.user_code });
    expect(page.html).toContain('<h1>Connect <bdi>Deploy Tool</bdi>?</h1>');
    expect(await signOut(ua, logout)).toContain('You are signed out');
  });

  it('a sign-in finishing (which gives the session a new id) leaves the other page\'s form working', async () => {
    const ua = browser();
    const started = await oidc.initiateDeviceAuthorization(toolApp, { scope: 'openid profile' });
    let page = await signIn(ua, await confirm(ua, await enterCode(ua, started.user_code)), carol.email, carol.password);
    if (pageKind(page) === 'consent') page = await ua.post(page, UserAgent.formAction(page, '/confirm'), UserAgent.formFields(page, '/confirm'));
    expect(page.html).toContain('<h1>Your device is connected</h1>');

    // The sign-out page open in one tab; a device connected in another.
    const logout = await ua.open(`${pc.issuer}/session/end`);
    const second = await oidc.initiateDeviceAuthorization(toolApp, { scope: 'openid profile' });
    page = await confirm(ua, await enterCode(ua, second.user_code));
    expect(page.html).toContain('<h1>Your device is connected</h1>');
    // The device page open in one tab; a web app's sign-in finishing in another.
    const devicePage = await ua.open(`${pc.issuer}/device`);
    const web = await pc.createClient({ name: 'Web Notes', redirectUris: [REDIRECT_URI], scope: 'openid' });
    const { seen } = await logIn(ua, await discover(pc.issuer, web.client_id, web.client_secret), 'openid', carol);
    expect(seen).toEqual(['consent']);
    const third = await oidc.initiateDeviceAuthorization(toolApp, { scope: 'openid profile' });
    page = await confirm(ua, await ua.post(devicePage, '/device', { ...UserAgent.formFields(devicePage, '/device'), user_code: third.user_code }));
    expect(page.html).toContain('<h1>Your device is connected</h1>');
    expect(await signOut(ua, logout)).toContain('You are signed out');
  });

  it('"Not you? Use another account" on a device\'s consent page: someone else signs in, and the device is theirs', async () => {
    const made = await pc.cli(['client', 'create', '--name', 'Garage TV', '--public', '--grant-type', 'device_code', '--scope', 'openid email', '--json']);
    const garage = JSON.parse(made.stdout) as { client_id: string };
    const garageApp = await discover(pc.issuer, garage.client_id);
    const ua = browser();
    // Carol connects one, allowing openid only.
    const first = await oidc.initiateDeviceAuthorization(garageApp, { scope: 'openid' });
    let page = await signIn(ua, await confirm(ua, await enterCode(ua, first.user_code)), carol.email, carol.password);
    page = await ua.post(page, UserAgent.formAction(page, '/confirm'), UserAgent.formFields(page, '/confirm'));
    const carols = (await oidc.pollDeviceAuthorizationGrant(garageApp, first)).claims()!.sub;

    // The next asks for more: the consent page, signed in as Carol. Dan uses his own account.
    const second = await oidc.initiateDeviceAuthorization(garageApp, { scope: 'openid email', login_hint: carol.email });
    page = await confirm(ua, await enterCode(ua, second.user_code));
    expect(page.html).toContain('Signed in as <strong><bdi>Carol</bdi>');
    page = await useAnotherAccount(ua, page);
    expect(pageKind(page)).toBe('login');
    expect(page.html).toContain('You are signed in as <strong><bdi>Carol</bdi>');
    // The request's login_hint names whom Dan replaces: not filled in.
    expect(page.html).toContain('name="email" type="email" autocomplete="username" required value=""');
    // A wrong password brings Dan back to this sign-in page, told so (not to Carol's consent).
    page = await signIn(ua, page, dan.email, 'not his password');
    expect(page.url).toMatch(/\?account=other$/);
    expect(page.html).toContain('The email or password is not right.');
    page = await signIn(ua, page, dan.email, dan.password);
    // The library signs Carol out first (its self-posting form, posted here as a script would),
    // on a page that says so to whoever is without JavaScript, not that Dan is being signed out.
    expect(page.html).toContain('<h1>Switching accounts…</h1>');
    expect(page.html).toContain('The account signed in here before is signed out first; then your sign-in goes on.');
    page = await ua.post(page, UserAgent.formAction(page, '/session/end/confirm'), UserAgent.hiddenFields(page));
    expect(pageKind(page)).toBe('consent');
    expect(page.html).toContain('Signed in as <strong><bdi>Dan</bdi>');
    page = await ua.post(page, UserAgent.formAction(page, '/confirm'), UserAgent.formFields(page, '/confirm'));
    expect(page.html).toContain('<h1>Your device is connected</h1>');
    const dans = (await oidc.pollDeviceAuthorizationGrant(garageApp, second)).claims()!.sub;
    expect(dans).not.toBe(carols);
    expect((await pc.cli(['user', 'show', dan.email, '--json'])).stdout).toContain(dans);
  });

  it('a browser whose session ended while the page was open is asked for the code again, and its next try works; wrong methods get 405, bodies too long 413', async () => {
    const started = await oidc.initiateDeviceAuthorization(tvApp, { scope: 'openid' });
    const opened = await browser().open(`${pc.issuer}/device`);
    // The form sent from a browser that no longer has the session (its
    // cookie cleared or blocked): the page again, with a session to send it in.
    const other = browser();
    const again = await other.post(opened, '/device', { ...UserAgent.formFields(opened, '/device'), user_code: started.user_code });
    expect(again.status).toBe(400);
    expect(again.html).toContain('This page was open too long, or in another window. Enter the code again.');
    const confirmation = await other.post(again, '/device', { ...UserAgent.formFields(again, '/device'), user_code: started.user_code });
    expect(confirmation.html).toContain('<h1>Connect <bdi>Living Room TV</bdi>?</h1>');
    // A sign-in's address under /device opened without our cookie.
    const stray = await browser().open(`${pc.issuer}/device/${'x'.repeat(21)}`);
    expect(stray.status).toBe(400);
    expect(stray.html).toContain(START_AGAIN_TEXT);

    // The endpoint takes POST alone, though its path lies under the page's sign-ins.
    for (const method of ['GET', 'HEAD', 'PUT']) {
      const refused = await fetch(`${pc.issuer}/device/auth`, { method });
      expect([method, refused.status, refused.headers.get('allow')]).toEqual([method, 405, 'POST, OPTIONS']);
    }
    const put = await fetch(`${pc.issuer}/device`, { method: 'PUT' });
    expect([put.status, put.headers.get('allow')]).toEqual([405, 'GET, POST, HEAD, OPTIONS']);
    const options = await fetch(`${pc.issuer}/device/auth`, { method: 'OPTIONS' });
    expect([options.status, options.headers.get('allow')]).toEqual([204, 'POST, OPTIONS']);

    // Bodies refused as at every endpoint: too long (413), or in a content coding not read (415).
    const form = { 'content-type': 'application/x-www-form-urlencoded' };
    const long = new URLSearchParams({ client_id: tv.client_id, scope: 'openid', padding: 'x'.repeat(70_000) });
    const tooLong = await fetch(`${pc.issuer}/device/auth`, { method: 'POST', headers: form, body: long });
    expect([tooLong.status, await tooLong.json()]).toEqual([413, { error: 'invalid_request', error_description: 'the request body is larger than 56 KiB' }]);
    const gzipped = await fetch(`${pc.issuer}/device/auth`, { method: 'POST', headers: { ...form, 'content-encoding': 'gzip' }, body: gzipSync(`client_id=${tv.client_id}`) });
    expect(gzipped.status).toBe(415);
    const entry = await browser().open(`${pc.issuer}/device`);
    const tooLongForm = await fetch(`${pc.issuer}/device`, { method: 'POST', headers: form, body: new URLSearchParams({ ...UserAgent.formFields(entry, '/device'), user_code: 'x'.repeat(70_000) }) });
    expect(tooLongForm.status).toBe(413);
    expect(await tooLongForm.text()).toContain('What you sent is too long: enter only the code your device shows.');
  });

  it('a device may ask for an API (RFC 8707): its token is the API\'s, with the scope consented to; taken away since, none', async () => {
    const API = 'https://tv-api.example.com';
    const created = await pc.cli(['api', 'create', '--identifier', API, '--scope', 'tv:watch', '--scope', 'tv:record', '--json']);
    expect(created.code, created.stderr).toBe(0);
    const made = await pc.cli(['client', 'create', '--name', 'Kitchen TV', '--public', '--grant-type', 'device_code', '--scope', 'openid tv:watch tv:record', '--json']);
    expect(made.code, made.stderr).toBe(0);
    const kitchen = await discover(pc.issuer, (JSON.parse(made.stdout) as { client_id: string }).client_id);
    const gina = { email: 'gina@example.com', password: 'a long enough password' };
    await pc.createUser(gina.email, gina.password, 'Gina');
    const approve = async (started: oidc.DeviceAuthorizationResponse, consent: boolean) => {
      const ua = browser();
      let page = await signIn(ua, await confirm(ua, await enterCode(ua, started.user_code)), gina.email, gina.password);
      // Asked once: the consent is remembered for the next device.
      expect(pageKind(page)).toBe(consent ? 'consent' : 'other');
      if (consent) page = await ua.post(page, UserAgent.formAction(page, '/confirm'), UserAgent.formFields(page, '/confirm'));
      expect(page.html).toContain('<h1>Your device is connected</h1>');
    };
    const first = await oidc.initiateDeviceAuthorization(kitchen, { scope: 'openid tv:watch', resource: API });
    await approve(first, true);
    const tokens = await oidc.pollDeviceAuthorizationGrant(kitchen, first, { resource: API });
    const claims = JSON.parse(Buffer.from(tokens.access_token.split('.')[1]!, 'base64url').toString()) as { aud: unknown; scope: unknown };
    expect([claims.aud, claims.scope]).toEqual([API, 'tv:watch']);
    // Approved, then the scope leaves the API before the device polls: no token for the API without a scope.
    const second = await oidc.initiateDeviceAuthorization(kitchen, { scope: 'openid tv:watch', resource: API });
    await approve(second, false);
    expect((await pc.cli(['api', 'update', API, '--scope', 'tv:record'])).code).toBe(0);
    await expect(oidc.pollDeviceAuthorizationGrant(kitchen, second, { resource: API })).rejects.toMatchObject({ error: 'invalid_target' });
    expect((await pc.cli(['api', 'delete', API])).code).toBe(0);
  });

  it('the address in verification_uri_complete carries the code to its confirmation', async () => {
    const started = await oidc.initiateDeviceAuthorization(tvApp, { scope: 'openid' });
    const ua = browser();
    const carrier = await ua.open(started.verification_uri_complete!);
    // The library's self-posting form, in our layout: with a script, it goes on at once.
    expect(carrier.html).toContain('<h1>Checking the code…</h1>');
    const page = await ua.post(carrier, UserAgent.formAction(carrier, '/device'), UserAgent.hiddenFields(carrier));
    expect(page.html).toContain('<h1>Connect <bdi>Living Room TV</bdi>?</h1>');
  });

  it('a code typed in full-width letters (an input method\'s full-width mode) is the code, entered or in the address', async () => {
    const fullWidth = (code: string) => code.replace(/[!-~]/g, (character) => String.fromCharCode(character.charCodeAt(0) + 0xfee0));
    const started = await oidc.initiateDeviceAuthorization(tvApp, { scope: 'openid' });
    expect(fullWidth(started.user_code)).toMatch(/^[Ｂ-Ｚ]{4}－[Ｂ-Ｚ]{4}$/);
    // Typed, with the ideographic space the input method may add.
    const entered = await enterCode(browser(), `${fullWidth(started.user_code)}\u3000`);
    expect(entered.html).toContain(`<p class="user-code" id="user-code">${started.user_code}</p>`);
    // In the address, lower case.
    const ua = browser();
    const carrier = await ua.open(`${pc.issuer}/device?user_code=${encodeURIComponent(fullWidth(started.user_code.toLowerCase()))}`);
    const page = await ua.post(carrier, UserAgent.formAction(carrier, '/device'), UserAgent.hiddenFields(carrier));
    expect(page.html).toContain(`<p class="user-code" id="user-code">${started.user_code}</p>`);
  });

  it('a wrong, empty or tampered entry is explained on the page; too many wrong codes from one address are refused for a while', async () => {
    const ua = browser();
    let page = await enterCode(ua, 'BCDF-GHJK');
    expect(page.status).toBe(200);
    expect(page.html).toContain('That code is not right.');
    expect(page.html).toContain('aria-invalid="true"');
    // The title says why first, as a tab or window list shows it (WCAG 2.4.2).
    expect(page.html).toMatch(/<title>Error: That code is not right – Connect a device · [^<]+<\/title>/);
    expect(page.html).toContain('value="BCDF-GHJK"'); // kept, to be corrected
    page = await enterCode(ua, '');
    expect(page.html).toContain('Enter the code your device shows.');
    // The form's secret missing: another browser's form, or a forged one.
    const form = await ua.open(`${pc.issuer}/device`);
    page = await ua.post(form, '/device', { user_code: 'BCDF-GHJK' });
    expect(page.status).toBe(400);
    expect(page.html).toContain('This page was open too long, or in another window.');
    expect(page.html).not.toMatch(/xsrf token|stack|\.js:\d/);
    // Not the code's fault: the field is not marked invalid.
    expect(page.html).not.toContain('aria-invalid');

    // Four wrong codes from this address (the limit here), then even a right one waits.
    await enterCode(ua, 'BCDF-GHJL');
    await enterCode(ua, 'BCDF-GHJM');
    await enterCode(ua, 'BCDF-GHJN');
    const started = await oidc.initiateDeviceAuthorization(tvApp, { scope: 'openid' });
    const refusals = await counter('portcullis_oauth_errors_total{endpoint="code_verification",error="too_many_attempts"}');
    page = await enterCode(ua, started.user_code);
    expect(page.status).toBe(429);
    expect(await counter('portcullis_oauth_errors_total{endpoint="code_verification",error="too_many_attempts"}')).toBe(refusals + 1);
    expect(page.html).toMatch(/Too many wrong codes were entered from your network\. Try again in \d+ minutes?\./);
    expect(page.headers?.get('retry-after')).toMatch(/^\d+$/);
    expect(pc.log.filter((line) => line.includes('user code refused: too many wrong codes'))).toHaveLength(1);
    // Another address is not held back by this one's guesses.
    const elsewhere = browser();
    expect((await enterCode(elsewhere, started.user_code)).html).toContain('<h1>Connect <bdi>Living Room TV</bdi>?</h1>');
  });

  it('keeps no device code or user code in the database as it was issued', async () => {
    const started = await oidc.initiateDeviceAuthorization(tvApp, { scope: 'openid email' });
    const ua = browser();
    // Up to the consent page: an interaction names the device code too.
    let page = await confirm(ua, await enterCode(ua, started.user_code));
    page = await signIn(ua, page, erin.email, erin.password);
    expect(pageKind(page)).toBe('consent');
    const normalized = started.user_code.replace('-', '');
    await inDatabase(async (db) => {
      const { rows } = await db.query<{ row: string }>('SELECT provider_artifacts::text AS row FROM provider_artifacts');
      const everything = rows.map((row) => row.row).join('\n');
      for (const secret of [started.device_code, normalized, started.user_code, sha256(normalized)]) {
        expect(everything).not.toContain(secret);
      }
      const stored = await db.query<{ user_code: string | null }>(`SELECT user_code FROM provider_artifacts WHERE kind = 'DeviceCode' AND id = $1`, [sha256(started.device_code)]);
      expect(stored.rows).toHaveLength(1);
      expect(stored.rows[0]!.user_code).toMatch(/^[\w-]{43}$/); // a keyed digest
    });
    // And the flow still ends as it should, from what was kept.
    page = await ua.post(page, UserAgent.formAction(page, '/confirm'), UserAgent.formFields(page, '/confirm'));
    expect(page.html).toContain('<h1>Your device is connected</h1>');
    expect((await oidc.pollDeviceAuthorizationGrant(tvApp, started)).claims()!.aud).toBe(tv.client_id);
  });

  it('only clients registered for it may ask, and only for what they may have', async () => {
    const web = await pc.createClient({ name: 'Web app', redirectUris: ['http://127.0.0.1:9999/callback'] });
    const refused = await fetch(`${pc.issuer}/device/auth`, {
      method: 'POST',
      headers: { authorization: basicAuth(web.client_id, web.client_secret!) },
      body: new URLSearchParams({ scope: 'openid' }),
    });
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as { error: string }).error).toBe('unauthorized_client');
    // A scope the TV was not registered for is dropped; nothing grantable is an error (RFC 6749 §3.3).
    const nothing = await fetch(`${pc.issuer}/device/auth`, { method: 'POST', body: new URLSearchParams({ client_id: tv.client_id, scope: 'profile' }) });
    expect(nothing.status).toBe(400);
    expect(((await nothing.json()) as { error: string }).error).toBe('invalid_scope');

    const cli = await pc.cli(['client', 'create', '--name', 'X', '--public', '--grant-type', 'refresh_token']);
    expect(cli.code).toBe(1);
    expect(cli.stderr).toContain('--grant-type refresh_token needs authorization_code or device_code too');
  });
});
