// The account page, /account, as an operator runs it and as the standards
// and the README describe what it does: paths as the 405 table and the router
// match them (any case), a callback loaded twice at once, what `user show`
// and the metrics say afterwards, the page's sign-out link, and what a new
// password leaves working.
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startPortcullis, type TestPortcullis } from '../support/portcullis.js';
import { ACCOUNT_PASSWORD, isAccountPage, openSignedIn as openSignedInOf, peopleOf, refreshOutcome } from '../support/account-page.js';
import { discover, logIn, pageKind, signIn } from '../support/relying-party.js';
import { UserAgent, type Page } from '../support/user-agent.js';

const PASSWORD = ACCOUNT_PASSWORD;

let pc: TestPortcullis;
let rp: oidc.Configuration;
let appId: string;

beforeAll(async () => {
  pc = await startPortcullis({ LOG_LEVEL: 'info', METRICS_PORT: String(await freePort()), SIGN_IN_MAX_FAILURES: '3', SIGN_IN_FAILURE_WINDOW: '60s' });
  const app = await pc.createClient({ name: 'Photo Album', redirectUris: ['http://127.0.0.1:9999/callback'], grantTypes: ['authorization_code', 'refresh_token'], scope: 'openid email offline_access' });
  appId = app.client_id;
  rp = await discover(pc.issuer, app.client_id, app.client_secret);
});

afterAll(async () => {
  await pc?.close();
});

const person = peopleOf(() => pc);
const accountUrl = () => `${pc.issuer}/account`;
const openSignedIn = (ua: UserAgent, email: string) => openSignedInOf(pc, ua, email);
const refresh = (token: string) => refreshOutcome(rp, token);

const metrics = async () => (await fetch(pc.server.metricsUrl!)).text();
const sample = (text: string, series: string) => Number(new RegExp(`^${series.replace(/[{}"()[\]]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);

describe('paths in another case (the router and the 405 table take them)', () => {
  it('are answered as /account is: no-store, and a form from another site refused', async () => {
    const email = await person('Ada');
    const ua = new UserAgent();
    const { tokens } = await logIn(ua, rp, 'openid offline_access', { email, password: PASSWORD }, { prompt: 'consent' });
    // Signed in to an app: the account page opens at once (single sign-on).
    const page = await ua.open(accountUrl());
    expect(isAccountPage(page)).toBe(true);
    for (const path of ['/Account', '/ACCOUNT/']) {
      const other = await ua.open(`${pc.issuer}${path}`);
      expect(isAccountPage(other), path).toBe(true);
      // A page of one person's, with the secret of their forms: never stored by a cache.
      expect(other.headers?.get('cache-control'), path).toBe('no-store');
    }
    const crossSite = await ua.open(`${pc.issuer}/ACCOUNT/apps/remove`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'sec-fetch-site': 'cross-site' },
      body: new URLSearchParams({ token: UserAgent.formFields(page, '/account/password').token!, client_id: appId }).toString(),
    });
    expect(crossSite.status).toBe(403);
    expect(crossSite.html).toContain('This form did not come from our page');
    expect(await refresh(tokens.refresh_token!)).toBe('refreshed');
  });
});

describe('the sign-in\'s callback', () => {
  it('loaded twice at once (a double navigation, a restored tab) shows the page, never a 500', async () => {
    const email = await person('Grace');
    const before = pc.errors.length;
    for (let round = 0; round < 4; round++) {
      const ua = new UserAgent();
      const login = await ua.open(accountUrl());
      const callback = await ua.post(login, UserAgent.formAction(login, '/login'), { ...UserAgent.formFields(login, '/login'), email, password: PASSWORD }, `${pc.issuer}/account/callback`);
      expect(callback.url).toMatch(new RegExp(`^${pc.issuer}/account/callback\\?code=`));
      const answers = await Promise.all([1, 2, 3].map(() => ua.open(callback.url)));
      for (const answer of answers) {
        expect(answer.status, answer.html.slice(0, 800)).not.toBe(500);
        // Signed in: each is shown the account page (as one opened again from the history is).
        expect(isAccountPage(answer), answer.html.slice(0, 800)).toBe(true);
      }
    }
    expect(pc.errors.slice(before)).toEqual([]);
  });
});

describe('what the operator sees', () => {
  it('user show lists no consent of a deleted client for a person who only opened the account page', async () => {
    const email = await person('Linus');
    await openSignedIn(new UserAgent(), email);
    const shown = await pc.cli(['user', 'show', email]);
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).not.toContain('(deleted client)');
    const json = await pc.cli(['user', 'show', email, '--json']);
    // README: "the consents they gave"; nobody is asked to consent to the account page.
    expect((JSON.parse(json.stdout) as { consents: { client_id: string }[] }).consents).toEqual([]);
  });

  it('the metrics count the account page under a route of its own, not with the addresses nothing serves', async () => {
    const ua = new UserAgent();
    const before = await metrics();
    const otherBefore = sample(before, 'portcullis_http_request_duration_seconds_count{route="other",status="303"}');
    const page = await ua.open(accountUrl(), {}, `${pc.issuer}/auth`);
    expect(page.status).toBe(303);
    const after = await metrics();
    // README (Metrics): `other` is "for addresses nothing serves, 404".
    expect(sample(after, 'portcullis_http_request_duration_seconds_count{route="other",status="303"}')).toBe(otherBefore);
    expect(after).toMatch(/portcullis_http_request_duration_seconds_count\{route="account",status="303"\} [1-9]/);
  });

  it('the metrics see someone guessing the current password on the account page (a rise in throttled)', async () => {
    const email = await person('Hedy');
    const ua = new UserAgent();
    let page = await openSignedIn(ua, email);
    const before = await metrics();
    for (let attempt = 0; attempt < 4; attempt++) {
      page = await ua.post(page, '/account/password', { ...UserAgent.formFields(page, '/account/password'), current_password: `guess ${attempt}`, new_password: 'an even longer passphrase', new_password_again: 'an even longer passphrase' });
    }
    expect(/role="alert" id="password-error">([^<]*)</.exec(page.html)?.[1]).toMatch(/^Too many failed sign-ins/);
    const after = await metrics();
    const series = 'portcullis_sign_ins_total{outcome="throttled"}';
    expect(sample(after, series)).toBeGreaterThan(sample(before, series));
  });
});

describe('signing out from the page\'s link', () => {
  it('asks about this server only (the account page is its sign-in), and "Stay signed in" says nobody signed out (review BT)', async () => {
    const email = await person('Barbara');
    const ua = new UserAgent();
    const page = await openSignedIn(ua, email);
    const link = /<a href="(\/session\/end[^"]*)"/.exec(page.html)![1]!.replace(/&amp;/g, '&');
    const confirm = await ua.open(new URL(link, pc.issuer).href);
    expect(confirm.html).not.toContain('Portcullis account');
    const stay = await ua.post(confirm, UserAgent.formAction(confirm, '/session/end/confirm'), UserAgent.formFields(confirm, '/session/end/confirm'));
    expect(stay.status).toBe(200);
    expect(stay.html).toContain('<h1>You are still signed in</h1>');
    expect(stay.html).not.toContain('You have signed out of');
    expect(isAccountPage(await ua.open(accountUrl()))).toBe(true);
    const signOut = await ua.open(new URL(link, pc.issuer).href);
    await ua.post(signOut, UserAgent.formAction(signOut, '/session/end/confirm'), { ...UserAgent.formFields(signOut, '/session/end/confirm'), logout: 'yes' });
    expect(pageKind(await ua.open(accountUrl()))).toBe('login');
  });
});

describe('a new password', () => {
  it('does not tell the person every app asks again while an app with offline access keeps it', async () => {
    const email = await person('Margaret');
    const ua = new UserAgent();
    const { tokens } = await logIn(ua, rp, 'openid offline_access', { email, password: PASSWORD }, { prompt: 'consent' });
    const page = await ua.open(accountUrl());
    expect(isAccountPage(page)).toBe(true);
    const NEW = 'an even longer passphrase';
    const changed = await ua.post(page, '/account/password', { ...UserAgent.formFields(page, '/account/password'), current_password: PASSWORD, new_password: NEW, new_password_again: NEW });
    expect(changed.status).toBe(200);
    // As `user set-password`: a consent with offline_access, and its refresh tokens, stay (README, CLI).
    expect(await refresh(tokens.refresh_token!)).toBe('refreshed');
    // The CLI says how many stay and how to end them; the page must not say the opposite.
    expect(changed.html).not.toContain('apps that were signed in with your old password ask you to sign in again');
  });
});
