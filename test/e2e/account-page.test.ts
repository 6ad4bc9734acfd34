// The account page, /account: a person signs in as they do for any app,
// sees the apps they let in and takes that back, sees whether two-step
// verification is on, and changes their password. Driven as a person's
// browser would (the pages, their forms), with openid-client as the apps.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { decodeJwt } from 'jose';
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPortcullis, type TestPortcullis } from '../support/portcullis.js';
import { ACCOUNT_HEADING, ACCOUNT_PASSWORD, changePassword, isAccountPage, openSignedIn as openSignedInOf, peopleOf, refreshOutcome } from '../support/account-page.js';
import { authorizationRequest, deny, discover, logIn, pageKind, REDIRECT_URI, signIn, signInRefusal, visit } from '../support/relying-party.js';
import { alertOn, CodeClock, ENTER_HEADING, enterCode, keyOn, SET_UP_HEADING, setUpTotp, totpPerson } from '../support/totp.js';
import { UserAgent, type Page } from '../support/user-agent.js';

const PASSWORD = ACCOUNT_PASSWORD;

let pc: TestPortcullis;
let rp: oidc.Configuration;
let appId: string;
let logouts: { path: string; body: string }[] = [];
let appServer: http.Server;

beforeAll(async () => {
  // The app's back-channel logout endpoint (OpenID Connect Back-Channel Logout 1.0).
  appServer = http.createServer((request, response) => {
    let body = '';
    request.on('data', (chunk) => (body += chunk));
    request.on('end', () => {
      logouts.push({ path: request.url ?? '', body });
      response.end();
    });
  });
  await new Promise<void>((resolve) => appServer.listen(0, '127.0.0.1', resolve));
  const logoutUri = `http://127.0.0.1:${(appServer.address() as AddressInfo).port}/logout`;
  pc = await startPortcullis({ LOG_LEVEL: 'info', SIGN_IN_MAX_FAILURES: '3', SIGN_IN_FAILURE_WINDOW: '60s' });
  const made = await pc.cli(['client', 'create', '--name', 'Photo Album', '--redirect-uri', REDIRECT_URI, '--grant-type', 'authorization_code', '--grant-type', 'refresh_token', '--backchannel-logout-uri', logoutUri, '--json']);
  expect(made.code, made.stderr).toBe(0);
  const app = JSON.parse(made.stdout) as { client_id: string; client_secret: string };
  appId = app.client_id;
  rp = await discover(pc.issuer, app.client_id, app.client_secret);
});

afterAll(async () => {
  expect(pc?.errors ?? []).toEqual([]);
  await pc?.close();
  await new Promise((resolve) => appServer?.close(resolve));
});

const person = peopleOf(() => pc);
const accountUrl = () => `${pc.issuer}/account`;
const openSignedIn = (ua: UserAgent, email: string, password = PASSWORD) => openSignedInOf(pc, ua, email, password);
const refresh = (token: string) => refreshOutcome(rp, token);

/** The names of the apps the page lists (each an <h3>). */
const appsOn = (page: Page) => [...page.html.matchAll(/<h3 id="app-\d+"><bdi>([^<]*)<\/bdi><\/h3>/g)].map((match) => match[1]);

/** Posts the page's "Remove access" form of the app `clientId`. */
function removeAccess(ua: UserAgent, page: Page, clientId: string, fields: Record<string, string> = {}): Promise<Page> {
  return ua.post(page, '/account/apps/remove', { token: UserAgent.formFields(page, '/account/password').token!, client_id: clientId, ...fields });
}


describe('signing in to the account page', () => {
  it('goes through the sign-in apps get, asks no consent, and shows who is signed in', async () => {
    const email = await person('Ada');
    const ua = new UserAgent();
    const login = await ua.open(accountUrl());
    expect(pageKind(login)).toBe('login');
    expect(login.url).toMatch(new RegExp(`^${pc.issuer}/interaction/`));
    const page = await signIn(ua, login, email, PASSWORD);
    expect(page.url).toBe(accountUrl());
    expect(page.html).toContain(ACCOUNT_HEADING);
    expect(page.html).toContain(`Signed in as <strong><bdi>Ada</bdi> (<bdi>${email}</bdi>)</strong>`);
    expect(page.headers?.get('cache-control')).toBe('no-store');
    // Nobody is asked to let the account page in, and it is not among the apps.
    expect(appsOn(page)).toEqual([]);
    expect(page.html).toContain('No app has access to your account.');
    expect(page.html).toContain('Off: signing in asks for your password only.');
    // Opened again: no sign-in.
    expect(isAccountPage(await ua.open(accountUrl()))).toBe(true);
    // Nor is it a consent the operator is shown.
    const shown = await pc.cli(['user', 'show', email, '--json']);
    expect(shown.code, shown.stderr).toBe(0);
    expect(JSON.parse(shown.stdout)).toMatchObject({ sessions: 1, consents: [] });
  });

  it('is open at once to a browser signed in to an app (single sign-on), and closed after a sign-out', async () => {
    const email = await person('Grace');
    const ua = new UserAgent();
    await logIn(ua, rp, 'openid', { email, password: PASSWORD });
    const page = await ua.open(accountUrl());
    expect(isAccountPage(page)).toBe(true);
    expect(appsOn(page)).toEqual(['Photo Album']);
    // Signed out from the page's link: the account page asks for a sign-in again.
    const signOut = /<a href="(\/session\/end[^"]*)"/.exec(page.html)?.[1];
    expect(signOut).toBeDefined();
    const confirm = await ua.open(new URL(signOut!.replace(/&amp;/g, '&'), pc.issuer).href);
    await ua.post(confirm, UserAgent.formAction(confirm, '/session/end/confirm'), { ...UserAgent.formFields(confirm, '/session/end/confirm'), logout: 'yes' });
    expect(pageKind(await ua.open(accountUrl()))).toBe('login');
  });

  it('spends the sign-in\'s code once, and only in the browser that started it', async () => {
    const email = await person('Linus');
    const ua = new UserAgent();
    const login = await ua.open(accountUrl());
    // Stop at the callback, to open it again and elsewhere.
    const callback = await ua.post(login, UserAgent.formAction(login, '/login'), { ...UserAgent.formFields(login, '/login'), email, password: PASSWORD }, `${pc.issuer}/account/callback`);
    expect(callback.url).toMatch(new RegExp(`^${pc.issuer}/account/callback\\?code=`));
    expect(new URL(callback.url).searchParams.get('iss')).toBe(pc.issuer);
    // Another browser (no sign-in cookie): refused, and the code is not spent.
    const elsewhere = await new UserAgent().open(callback.url);
    expect(elsewhere.status).toBe(400);
    expect(elsewhere.html).toContain('This sign-in link is out of date');
    expect(elsewhere.html).toContain('href="/account"');
    const opened = await ua.open(callback.url);
    expect(isAccountPage(opened)).toBe(true);
    // Opened again from the history: the code is spent; signed in, the browser is shown the page.
    const again = await ua.open(callback.url);
    expect(isAccountPage(again)).toBe(true);
    ua.forgetCookies();
    const signedOut = await ua.open(callback.url);
    expect(signedOut.status).toBe(400);
    expect(signedOut.html).toContain('This sign-in link is out of date');
  });

  it('refuses a callback whose state or code is not the one sent, with a page (never a 500)', async () => {
    const ua = new UserAgent();
    const login = await ua.open(accountUrl());
    const started = new URL(login.url);
    expect(started.pathname).toMatch(/^\/interaction\//);
    for (const query of ['', '?state=x', '?code=abc&state=', '?error=access_denied', '?code=abc&state=abc&iss=https%3A%2F%2Fevil.example']) {
      const page = await ua.open(`${pc.issuer}/account/callback${query}`);
      expect(page.status, query).toBe(400);
      expect(page.html, query).toContain('This sign-in link is out of date');
    }
  });

  it('says so when the person cancels the sign-in', async () => {
    const ua = new UserAgent();
    const login = await ua.open(accountUrl());
    const page = await deny(ua, login);
    expect(page.url).toMatch(new RegExp(`^${pc.issuer}/account/callback\\?error=access_denied`));
    expect(page.status).toBe(200);
    expect(page.html).toContain('<h1>You did not sign in</h1>');
    expect(page.html).toContain('href="/account"');
  });

  it('asks a person who must use two-step verification for a code, and says it is on', async () => {
    const email = await totpPerson(pc, `totp-${Date.now()}`, PASSWORD);
    const clock = new CodeClock();
    const ua = new UserAgent();
    const { key } = await setUpTotp(ua, rp, email, PASSWORD, clock);
    // A new browser: the password, then the code, then the account page.
    const other = new UserAgent();
    const login = await other.open(accountUrl());
    const codePage = await signIn(other, login, email, PASSWORD);
    expect(codePage.html).toContain('<h1>Enter your verification code</h1>');
    // Not open with the password alone: opened again, it asks for the code.
    const before = await other.open(accountUrl());
    expect(isAccountPage(before)).toBe(false);
    expect(before.html).toContain('<h1>Enter your verification code</h1>');
    const page = await enterCode(other, codePage, await clock.freshCode(email, key.totp));
    expect(isAccountPage(page), alertOn(page) ?? page.html.slice(0, 1000)).toBe(true);
    expect(page.html).toMatch(/On: each sign-in asks for a code from the authenticator app you set up on <time datetime="[^"]+">\d{4}-\d{2}-\d{2}<\/time>\./);
  });
});

describe('what the page carries from a form to the next page', () => {
  it('is said only to the session it was for: a cookie planted from someone else\'s session (a sibling subdomain) puts no words on the page', async () => {
    const planter = new UserAgent();
    const theirs = await openSignedIn(planter, await person('Mallory'));
    const victim = new UserAgent();
    await openSignedIn(victim, await person('Alice'));
    // The planter's own refusal, signed by the server for the planter's session, not read yet.
    const carried = await planter.post(theirs, '/account/password', { ...UserAgent.formFields(theirs, '/account/password'), current_password: 'not my password', new_password: 'x', new_password_again: 'x' }, `${pc.issuer}/account`);
    expect(carried.status).toBe(303);
    expect(planter.plantCookies(victim, ['_account_notice', '_account_notice.sig'])).toEqual(['_account_notice', '_account_notice.sig']);
    const page = await victim.open(accountUrl());
    expect(isAccountPage(page)).toBe(true);
    expect(alertOn(page)).toBeUndefined();
  });
});

describe('the apps a person let in', () => {
  it('lists each app with what it may do, and removing one ends its tokens, tells it, and asks consent again', async () => {
    const email = await person('Margaret');
    const ua = new UserAgent();
    const { tokens } = await logIn(ua, rp, 'openid email offline_access', { email, password: PASSWORD }, { prompt: 'consent' });
    const sid = decodeJwt(tokens.id_token!).sid;
    const page = await ua.open(accountUrl());
    expect(appsOn(page)).toEqual(['Photo Album']);
    expect(page.html).toContain('<li>See your email address and whether it is verified</li>');
    expect(page.html).toContain('<li>Keep access while you are not using it, even after you sign out</li>');
    expect(await refresh(tokens.refresh_token!)).toBe('refreshed');

    logouts = [];
    const removed = await removeAccess(ua, page, appId);
    expect(removed.url).toBe(accountUrl());
    expect(removed.html).toContain('<div class="notice" role="status"><bdi>Photo Album</bdi> no longer has access to your account.</div>');
    expect(appsOn(removed)).toEqual([]);
    // Said once.
    expect(await ua.open(accountUrl()).then((again) => again.html)).not.toContain('role="status"');
    expect(await refresh(tokens.refresh_token!)).toBe('invalid_grant');
    // The app was told its part of the session ended.
    expect(logouts).toHaveLength(1);
    const logoutToken = decodeJwt(new URLSearchParams(logouts[0]!.body).get('logout_token')!);
    expect(logoutToken.sid).toBe(sid);
    expect(logoutToken.aud).toBe(appId);
    // Still signed in here; the app asks again.
    expect(isAccountPage(await ua.open(accountUrl()))).toBe(true);
    const request = await authorizationRequest(rp, 'openid email');
    expect(pageKind(await visit(ua, request.url))).toBe('consent');
  });

  it('takes no form without the page\'s secret, from another site, or after a sign-out', async () => {
    const email = await person('Barbara');
    const ua = new UserAgent();
    const { tokens } = await logIn(ua, rp, 'openid offline_access', { email, password: PASSWORD }, { prompt: 'consent' });
    const page = await ua.open(accountUrl());
    const forged = await removeAccess(ua, page, appId, { token: 'not-the-token' });
    expect(forged.status).toBe(403);
    expect(forged.html).toContain('This account page is out of date');
    const crossSite = await ua.open(`${pc.issuer}/account/apps/remove`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'sec-fetch-site': 'cross-site' },
      body: new URLSearchParams({ ...UserAgent.formFields(page, '/account/apps/remove') }).toString(),
    });
    expect(crossSite.status).toBe(403);
    expect(crossSite.html).toContain('This form did not come from our page');
    // A page of another browser's sign-in carries that session's secret, not this one's.
    const other = new UserAgent();
    const otherPage = await openSignedIn(other, email);
    const mixed = await ua.post(page, '/account/apps/remove', { token: UserAgent.formFields(otherPage, '/account/password').token!, client_id: appId });
    expect(mixed.status).toBe(403);
    expect(await refresh(tokens.refresh_token!)).toBe('refreshed');
    // Signed out: nobody's form.
    const signedOut = new UserAgent();
    const stale = await signedOut.post(page, '/account/apps/remove', { token: 'x', client_id: appId });
    expect(stale.status).toBe(403);
    expect(stale.html).toContain('<h1>You are signed out</h1>');
    expect(appsOn(await ua.open(accountUrl()))).toEqual(['Photo Album']);
  });

  it('answers an unknown or missing app with the page or an error page, and the wrong method with 405', async () => {
    const email = await person('Edsger');
    const ua = new UserAgent();
    const page = await openSignedIn(ua, email);
    const unknown = await removeAccess(ua, page, 'no-such-app');
    expect(isAccountPage(unknown)).toBe(true);
    expect(unknown.html).not.toContain('role="status"');
    const missing = await removeAccess(ua, page, '');
    expect(missing.status).toBe(400);
    expect(missing.html).toContain('The form was incomplete');
    const itself = await removeAccess(ua, page, 'portcullis-account');
    expect(itself.status).toBe(400);
    const get = await ua.open(`${pc.issuer}/account/password`);
    expect(get.status).toBe(405);
  });
});

describe('two-step verification turned on by the person', () => {
  it('takes the current password, then sets up the app as a sign-in does, and from then on every sign-in asks for a code', async () => {
    const email = await person('Radia');
    const ua = new UserAgent();
    let page = await openSignedIn(ua, email);
    const turnOn = (password: string) => ua.post(page, '/account/two-step', { ...UserAgent.formFields(page, '/account/two-step'), current_password: password });
    const totpOf = async () => (JSON.parse((await pc.cli(['user', 'show', email, '--json'])).stdout) as { totp: string }).totp;

    page = await turnOn('not my password');
    expect(isAccountPage(page)).toBe(true);
    expect(/<div class="alert" role="alert" id="two-step-error">([^<]*)</.exec(page.html)?.[1]).toBe('Your current password is not right.');
    expect(page.html).toMatch(/id="two-step-password"[^>]*aria-invalid="true"[^>]*autofocus/);
    expect(await totpOf()).toBe('off');

    // Everyone signed out, this browser too (review BU): the password again, then the setup.
    const elsewhere = new UserAgent();
    await openSignedIn(elsewhere, email);
    const login = await turnOn(PASSWORD);
    expect(pageKind(login)).toBe('login');
    expect(pageKind(await elsewhere.open(accountUrl()))).toBe('login');
    const setup = await signIn(ua, login, email, PASSWORD);
    expect(setup.html).toContain(SET_UP_HEADING);
    expect(await totpOf()).toBe('required');
    const key = keyOn(setup);
    const clock = new CodeClock();
    const back = await enterCode(ua, setup, await clock.freshCode(email, key.totp));
    expect(isAccountPage(back), alertOn(back) ?? back.html.slice(0, 1000)).toBe(true);
    expect(back.html).toContain('On: each sign-in asks for a code');
    expect(back.html).not.toContain('Turn on two-step verification');
    expect(await totpOf()).toBe('set_up');

    // Another browser: the password is not enough any more.
    const other = new UserAgent();
    const codePage = await signIn(other, await other.open(accountUrl()), email, PASSWORD);
    expect(codePage.html).toContain(ENTER_HEADING);
    expect(isAccountPage(await enterCode(other, codePage, await clock.freshCode(email, key.totp)))).toBe(true);
  });

  it('cannot be turned on with a stolen session alone: an empty or wrong password changes nothing', async () => {
    const email = await person('Shafi');
    const ua = new UserAgent();
    const page = await openSignedIn(ua, email);
    const empty = await ua.post(page, '/account/two-step', { ...UserAgent.formFields(page, '/account/two-step'), current_password: '' });
    expect(/id="two-step-error">([^<]*)</.exec(empty.html)?.[1]).toBe('Enter your current password.');
    const forged = await ua.post(page, '/account/two-step', { token: 'forged', current_password: PASSWORD });
    expect(forged.status).toBe(403);
    expect((JSON.parse((await pc.cli(['user', 'show', email, '--json'])).stdout) as { totp: string }).totp).toBe('off');
  });
});

describe('signing out everywhere', () => {
  it('ends the person\'s sessions in every browser, this one too, tells the apps, and leaves consents that outlive a sign-out', async () => {
    const email = await person('Katherine');
    const ua = new UserAgent();
    const laptop = new UserAgent();
    const { tokens } = await logIn(laptop, rp, 'openid offline_access', { email, password: PASSWORD }, { prompt: 'consent' });
    const page = await openSignedIn(ua, email);
    logouts = [];
    const done = await ua.post(page, '/account/sign-out-everywhere', UserAgent.formFields(page, '/account/sign-out-everywhere'));
    expect(done.status).toBe(200);
    expect(done.html).toContain('<h1>You are signed out everywhere</h1>');
    // The app whose access outlives it is named (reviews BR, BT).
    expect(done.html).toMatch(/<ul class="scopes" aria-labelledby="keeping-intro">\s*<li><bdi>Photo Album<\/bdi><\/li>/);
    expect(pageKind(await ua.open(accountUrl()))).toBe('login');
    expect(pageKind(await laptop.open(accountUrl()))).toBe('login');
    // The app in the other browser was told; its offline access stays, as the page says.
    expect(logouts).toHaveLength(1);
    expect(decodeJwt(new URLSearchParams(logouts[0]!.body).get('logout_token')!).sid).toBe(decodeJwt(tokens.id_token!).sid);
    expect(page.html).toContain('Apps that keep access after you sign out keep it');
    expect(await refresh(tokens.refresh_token!)).toBe('refreshed');
    // Nothing else changed: the password signs in.
    await openSignedIn(new UserAgent(), email);
  });

  it('takes the form only with the page\'s secret', async () => {
    const email = await person('Dorothy');
    const ua = new UserAgent();
    const page = await openSignedIn(ua, email);
    const forged = await ua.post(page, '/account/sign-out-everywhere', { token: 'forged' });
    expect(forged.status).toBe(403);
    expect(isAccountPage(await ua.open(accountUrl()))).toBe(true);
  });
});

describe('a new password', () => {
  it('needs the current password, the policy\'s length, the same twice; then signs the person out everywhere', async () => {
    const email = await person('Alan');
    const ua = new UserAgent();
    const elsewhere = new UserAgent();
    await openSignedIn(elsewhere, email);
    let page = await openSignedIn(ua, email);
    const NEW = 'an even longer passphrase';

    page = await changePassword(ua, page, 'not my password', NEW);
    // Post/Redirect/Get: the page, with why.
    expect([page.status, page.url]).toEqual([200, accountUrl()]);
    expect(alertOn(page)).toBe('Your current password is not right.');
    expect(page.html).toMatch(/<title>Error: Your current password is not right – Your account/);
    expect(page.html).toMatch(/id="current-password"[^>]*aria-invalid="true"[^>]*autofocus/);
    // Said once: reloaded, the page has no message.
    expect(alertOn(await ua.open(accountUrl()))).toBeUndefined();

    page = await changePassword(ua, page, PASSWORD, 'short');
    expect(page.status).toBe(200);
    expect(alertOn(page)).toMatch(/^The new password must be at least \d+ characters\. Enter your current password, then another new password twice\.$/);

    page = await changePassword(ua, page, PASSWORD, NEW, `${NEW}!`);
    expect(page.status).toBe(200);
    expect(alertOn(page)).toBe('The two new passwords are not the same. Enter your current password, then the new password twice.');

    page = await changePassword(ua, page, '', NEW);
    expect(page.status).toBe(200);
    expect(alertOn(page)).toBe('Fill in all three password fields.');

    const changed = await changePassword(ua, page, PASSWORD, NEW);
    expect(changed.status).toBe(200);
    expect(changed.html).toContain('<h1>Your password is changed</h1>');
    // Signed out here and in the other browser.
    expect(pageKind(await ua.open(accountUrl()))).toBe('login');
    expect(pageKind(await elsewhere.open(accountUrl()))).toBe('login');
    // The old password is refused, the new one signs in.
    const fresh = new UserAgent();
    const refused = await signIn(fresh, await fresh.open(accountUrl()), email, PASSWORD);
    expect(signInRefusal(refused)).toBe('wrong_credentials');
    await openSignedIn(new UserAgent(), email, NEW);
  });

  it('counts wrong current passwords as failed sign-ins: the throttle stops guessing', async () => {
    const email = await person('Hedy');
    const ua = new UserAgent();
    let page = await openSignedIn(ua, email);
    for (let attempt = 0; attempt < 3; attempt++) {
      page = await changePassword(ua, page, `guess ${attempt}`, 'an even longer passphrase');
      expect(alertOn(page)).toBe('Your current password is not right.');
    }
    const refused = await changePassword(ua, page, PASSWORD, 'an even longer passphrase');
    expect(alertOn(refused)).toMatch(/^Too many failed sign-ins\. Try again in/);
    // Nothing changed: the old password still signs in (after the window, elsewhere: the throttle counts the address too).
    expect(pc.log.some((line) => line.includes('password change refused: too many failures'))).toBe(true);
    expect(pc.log.some((line) => line.includes(PASSWORD))).toBe(false);
  });
});

describe('review BR', () => {
  it('after a new password, does not tell the person every app asks again while an app with offline access keeps working', async () => {
    const email = await person('Dorothy');
    const ua = new UserAgent();
    const { tokens } = await logIn(ua, rp, 'openid offline_access', { email, password: PASSWORD }, { prompt: 'consent' });
    const page = await ua.open(accountUrl());
    const changed = await changePassword(ua, page, PASSWORD, 'an even longer passphrase');
    expect(changed.status).toBe(200);
    expect(changed.html).toContain('<h1>Your password is changed</h1>');
    // The page says "apps that were signed in with your old password ask you to
    // sign in again". `user set-password` keeps consents with offline_access
    // and tells the operator so ("the apps' refresh tokens keep working"):
    // either the app's access ends too, or the page names the app that keeps it.
    const keepsAccess = (await refresh(tokens.refresh_token!)) === 'refreshed';
    expect(keepsAccess && !changed.html.includes('Photo Album'), 'Photo Album keeps its refresh token, and the page does not say so').toBe(false);
  });

  it("does not show the account page's own grant to the operator as a consent of a deleted client", async () => {
    const email = await person('Frances');
    await openSignedIn(new UserAgent(), email);
    const text = await pc.cli(['user', 'show', email]);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).not.toContain('(deleted client)');
    const shown = await pc.cli(['user', 'show', email, '--json']);
    const consents = (JSON.parse(shown.stdout) as { consents: { client_id: string; client_name: string | null }[] }).consents;
    expect(consents.filter((consent) => consent.client_name === null)).toEqual([]);
  });

  it('answers a client_id with a NUL character with a page, never a 500', async () => {
    const email = await person('Niklaus');
    const ua = new UserAgent();
    const page = await openSignedIn(ua, email);
    const before = pc.errors.length;
    const answer = await removeAccess(ua, page, `${appId}\u0000`);
    const logged = pc.errors.splice(before);
    expect(answer.status).not.toBe(500);
    expect(logged).toEqual([]);
  });

  it('says an app "no longer has access" only of an app whose access was removed, not of any app named in the address', async () => {
    const other = await pc.createClient({ name: 'Call 555-0100 to restore your account', redirectUris: [REDIRECT_URI] });
    const email = await person('Ida');
    const ua = new UserAgent();
    await openSignedIn(ua, email);
    const page = await ua.open(`${accountUrl()}?removed=${other.client_id}`);
    expect(isAccountPage(page)).toBe(true);
    expect(page.html).not.toContain('role="status"');
  });

  it('takes a new password as long as the password policy allows (at most 1024 characters)', async () => {
    const email = await person('Kenji');
    const ua = new UserAgent();
    const page = await openSignedIn(ua, email);
    const long = '日本語のパスフレーズ'.repeat(100); // 1,000 characters
    const changed = await changePassword(ua, page, PASSWORD, long);
    expect(changed.status, changed.html.match(/<h1>[^<]*/)?.[0]).toBe(200);
    expect(changed.html).toContain('<h1>Your password is changed</h1>');
  });
});
