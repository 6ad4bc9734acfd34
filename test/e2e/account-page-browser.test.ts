// The account page (/account) in a real browser (Debian's Chromium via
// playwright-core): where the focus and the messages land after each of the
// password form's refusals, the sign-out it offers, and whether its words are
// true to what the server then does. Screenshots go to test/artifacts/.
import pg from 'pg';
import * as oidc from 'openid-client';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchBrowser, snapshot } from '../support/browser.js';
import { startPortcullis, type TestPortcullis } from '../support/portcullis.js';
import { discover, logIn, REDIRECT_URI } from '../support/relying-party.js';
import { startRpApp, type RpApp } from '../support/rp-app.js';
import { UserAgent } from '../support/user-agent.js';

const PASSWORD = 'a long enough password';
const NEW_PASSWORD = 'an even longer passphrase';

let pc: TestPortcullis;
let browser: Browser;
let photos: RpApp;
const contexts: BrowserContext[] = [];

beforeAll(async () => {
  pc = await startPortcullis({ ISSUER_NAME: 'Acme Identity', SIGN_IN_MAX_FAILURES: '3', SIGN_IN_FAILURE_WINDOW: '60s' });
  photos = await startRpApp(pc.issuer, async ({ redirectUri, postLogoutRedirectUri }) => {
    const made = await pc.cli(['client', 'create', '--name', 'Photo Album', '--redirect-uri', redirectUri, '--post-logout-redirect-uri', postLogoutRedirectUri, '--json']);
    if (made.code !== 0) throw new Error(made.stderr);
    return JSON.parse(made.stdout) as { client_id: string; client_secret?: string };
  });
  browser = await launchBrowser();
});

afterAll(async () => {
  await browser?.close();
  await photos?.close();
  expect(pc?.errors ?? []).toEqual([]);
  await pc?.close();
});

let people = 0;
/** A new person (`NAME-N@example.com`) with PASSWORD. */
async function person(name: string): Promise<string> {
  const email = `${name.toLowerCase()}-${++people}@example.com`;
  await pc.createUser(email, PASSWORD, name);
  return email;
}

async function newPage(viewport = { width: 1280, height: 800 }): Promise<Page> {
  const context = await browser.newContext({ viewport });
  contexts.push(context);
  return context.newPage();
}

/** Opens /account and signs in there with the keyboard: the account page. */
async function openSignedIn(page: Page, email: string, password = PASSWORD): Promise<void> {
  await page.goto(`${pc.issuer}/account`);
  await page.waitForFunction(() => document.activeElement?.id === 'email', undefined, { timeout: 5000 });
  await page.keyboard.type(email);
  await page.keyboard.press('Tab');
  await page.keyboard.type(password);
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'Your account', level: 1 }).waitFor();
}

/** Fills the password form and sends it with Enter from the last field, as a keyboard user does. */
async function sendPasswordForm(page: Page, current: string, next: string, again = next) {
  await page.getByLabel('Current password').fill(current);
  await page.getByLabel('New password', { exact: true }).fill(next);
  await page.getByLabel('New password again').fill(again);
  const [response] = await Promise.all([page.waitForNavigation(), page.getByLabel('New password again').press('Enter')]);
  await page.waitForLoadState('load');
  return response;
}

/** Whether the element is wholly inside the viewport. */
const inView = (page: Page, selector: string) =>
  page.locator(selector).first().evaluate((element) => {
    const box = element.getBoundingClientRect();
    return box.top >= 0 && box.bottom <= window.innerHeight;
  });

describe('the password form\'s refusals', () => {
  // As the sign-in page's (browser.test.ts, "at 400% zoom a failed sign-in shows its message"):
  // the message sits right by the field that has the focus.
  it.each([
    ['at 100%', { width: 1280, height: 800 }],
    ['at 400% zoom', { width: 320, height: 256 }],
  ])('%s a wrong current password shows its message in view beside the focused field (WCAG 3.3.1, 1.4.10)', async (zoom, viewport) => {
    const email = await person('Rosalind');
    const page = await newPage(viewport);
    await openSignedIn(page, email);
    await sendPasswordForm(page, 'not my password', NEW_PASSWORD);
    await page.getByRole('alert').waitFor();
    await page.waitForFunction(() => document.activeElement?.id === 'current-password', undefined, { timeout: 5000 });
    // The browser scrolls the autofocused field into view just after load.
    await page.waitForFunction(() => {
      const box = document.activeElement!.getBoundingClientRect();
      return box.top >= 0 && box.bottom <= window.innerHeight;
    }, undefined, { timeout: 3000 }).catch(() => undefined);
    // Measured before the screenshot, which scrolls a full page.
    const seen = { alert: await inView(page, '[role=alert]'), field: await inView(page, '#current-password') };
    await snapshot(page, 'account-page', `wrong-current-password-${viewport.width}`);
    expect(seen).toEqual({ alert: true, field: true });
  });

  it('too many wrong current passwords: the focus goes where the message is read, and the message is in view', async () => {
    const email = await person('Barbara');
    const page = await newPage();
    await openSignedIn(page, email);
    // Three wrong (SIGN_IN_MAX_FAILURES), then refused whatever is typed (Post/Redirect/Get: the page, with why).
    for (let attempt = 0; attempt < 4; attempt++) await sendPasswordForm(page, `guess ${attempt}`, NEW_PASSWORD);
    await page.getByRole('alert').waitFor();
    expect(await page.getByRole('alert').textContent()).toMatch(/^Too many failed sign-ins/);
    // Before review BS, nothing had the focus (the page opened at its top), and the message was far below, out of sight.
    const focus = await page.evaluate(() => {
      const active = document.activeElement;
      const described = (active?.getAttribute('aria-describedby') ?? '').split(' ');
      return { onSomething: active !== document.body, describedByTheAlert: described.includes(document.querySelector('[role=alert]')?.id ?? '-') };
    });
    const alertInView = await inView(page, '[role=alert]');
    await snapshot(page, 'account-page', 'throttled');
    expect({ ...focus, alertInView }).toEqual({ onSomething: true, describedByTheAlert: true, alertInView: true });
  });

  it('after the new passwords differ, the focus lands on the first field left to fill, not past the emptied current password (WCAG 3.3.1, 3.3.3)', async () => {
    const email = await person('Dorothy');
    const page = await newPage();
    await openSignedIn(page, email);
    await sendPasswordForm(page, PASSWORD, NEW_PASSWORD, `${NEW_PASSWORD}!`);
    await page.getByRole('alert').waitFor();
    // (autofocus lands just after load)
    await page.waitForFunction(() => document.activeElement !== document.body, undefined, { timeout: 5000 });
    // Today the message is "The two new passwords are not the same. Type the new password twice.", and the page comes back with all three fields empty: the current password
    // (which was right) must be typed again too, but the focus skips it.
    const state = await page.evaluate(() => {
      const fields = [...document.querySelectorAll<HTMLInputElement>('form[action="/account/password"] input[required]')];
      const focused = fields.indexOf(document.activeElement as HTMLInputElement);
      return { focused: fields[focused]?.id, emptyBefore: fields.slice(0, Math.max(focused, 0)).filter((field) => field.value === '').map((field) => field.id) };
    });
    expect(state.emptyBefore, `the focus is on ${state.focused}`).toEqual([]);
  });
});

describe('what the account page says is true', () => {
  it('"Sign out" from the account page: the page after either choice says what is so', async () => {
    const email = await person('Ida');
    const page = await newPage();
    await openSignedIn(page, email);
    await page.getByRole('link', { name: /^Sign out of/ }).click();
    const stay = page.getByRole('button', { name: /^Stay signed in/ });
    await page.getByRole('button', { name: 'Sign out', exact: true }).waitFor();
    // Offered, "Stay signed in" must then not say the account page was signed out of.
    if (await stay.count()) {
      await stay.click();
      await page.getByRole('heading', { level: 1 }).waitFor();
      const said = await page.locator('main').innerText();
      await snapshot(page, 'account-page', 'stay-signed-in');
      await page.goto(`${pc.issuer}/account`);
      const accountPageOpen = (await page.getByRole('heading', { name: 'Your account', level: 1 }).count()) === 1;
      // Today: "You have signed out of Acme Identity account." — and /account opens at once, signed in.
      expect({ saysSignedOutOfTheAccountPage: /signed out of\s+Acme Identity account/.test(said), accountPageOpen }).not.toEqual({ saysSignedOutOfTheAccountPage: true, accountPageOpen: true });
    }
  });

  it('a new password: the page that says "signed out everywhere" names the apps that keep access (offline_access)', async () => {
    const email = await person('Lise');
    // Someone with the old password signs in to a mail app on their own device, which keeps access (offline_access).
    const made = await pc.cli(['client', 'create', '--name', 'Mail App', '--redirect-uri', REDIRECT_URI, '--grant-type', 'authorization_code', '--grant-type', 'refresh_token', '--json']);
    const app = JSON.parse(made.stdout) as { client_id: string; client_secret: string };
    const rp = await discover(pc.issuer, app.client_id, app.client_secret);
    const { tokens } = await logIn(new UserAgent(), rp, 'openid offline_access', { email, password: PASSWORD }, { prompt: 'consent' });

    const page = await newPage();
    await openSignedIn(page, email);
    expect(await page.locator('p#password-rules').innerText()).toContain('A new password signs you out everywhere');
    await sendPasswordForm(page, PASSWORD, NEW_PASSWORD);
    await page.getByRole('heading', { name: 'Your password is changed' }).waitFor();
    const said = await page.locator('main').innerText();
    await snapshot(page, 'account-page', 'password-changed');
    const stillWorks = await oidc.refreshTokenGrant(rp, tokens.refresh_token!).then(() => true, () => false);
    // Today: "You are signed out everywhere, on this device too: apps that were signed in with your
    // old password ask you to sign in again." — while Mail App goes on refreshing its tokens.
    if (stillWorks) expect(said).toContain('Mail App');
  });
});

describe('the account page\'s error pages lead back to it', () => {
  it('its form\'s address opened as a link (the address bar after a refusal, a bookmark) leads back to the account page', async () => {
    const page = await newPage();
    await page.goto(`${pc.issuer}/account/password`);
    // Sent on to the account page (its sign-in here), or told the way there.
    if (new URL(page.url()).pathname.startsWith('/interaction/')) {
      expect(await page.title()).toContain('Acme Identity account');
      return;
    }
    const said = await page.locator('main').innerText();
    await snapshot(page, 'account-page', 'password-address-opened');
    // Today (405): "This address takes only the forms of the sign-in and sign-out pages … Go back to the application", and no link.
    expect(said).not.toMatch(/sign-in and sign-out pages|Go back to the application/);
    expect(await page.getByRole('link', { name: 'Open your account page' }).getAttribute('href')).toBe('/account');
  });

  it('reloading "Your password is changed" does not say that nothing was changed', async () => {
    const email = await person('Chien-Shiung');
    const page = await newPage();
    await openSignedIn(page, email);
    await sendPasswordForm(page, PASSWORD, NEW_PASSWORD);
    await page.getByRole('heading', { name: 'Your password is changed' }).waitFor();
    await page.reload();
    await page.getByRole('heading', { level: 1 }).waitFor();
    const said = await page.locator('main').innerText();
    await snapshot(page, 'account-page', 'password-changed-reloaded');
    // Today: "You are signed out — You signed out (in another tab, say), or your sign-in ended, so nothing was changed."
    expect(said).not.toContain('nothing was changed');
  });
});

describe('accessible names', () => {
  it('each "Remove access" button names its app in its accessible name (a screen reader\'s list of buttons, voice control)', async () => {
    const email = await person('Katherine');
    const page = await newPage();
    await page.goto(`${photos.url}/login`);
    await page.getByLabel('Email').fill(email);
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('button', { name: 'Allow' }).click();
    await page.locator('#user').waitFor();
    await page.goto(`${pc.issuer}/account`);
    await page.getByRole('heading', { name: 'Your account', level: 1 }).waitFor();
    // Today every such button is called "Remove access"; the app is only in its description.
    expect(await page.getByRole('button', { name: /^Remove access\b.*Photo Album/ }).count()).toBe(1);
  });
});

describe('performance', () => {
  // As the adapter's test of lookups once the table has grown (test/persistence/adapter.test.ts):
  // one person's page must not read every artifact of every person.
  it.runIf(process.env.TEST_DATABASE === 'postgres')('opening the account page reads the rows of the person, not those of everybody', { timeout: 120_000 }, async () => {
    const email = await person('Hopper');
    const page = await newPage();
    await openSignedIn(page, email);
    const admin = new pg.Client({ connectionString: pc.env.DATABASE_URL });
    await admin.connect();
    try {
      // Other people's sessions and tokens: 5,000 people, 20,000 rows.
      await admin.query(`INSERT INTO provider_artifacts (kind, id, payload, account_id, client_id, expires_at)
                         SELECT CASE WHEN i % 10 = 0 THEN 'Session' ELSE 'AccessToken' END, md5(i::text),
                                jsonb_build_object('accountId', md5((i % 5000)::text), 'pad', repeat('p', 200)), md5((i % 5000)::text), 'someone', now() + interval '1 hour'
                         FROM generate_series(1, 20000) i`);
      await admin.query('ANALYZE provider_artifacts');
      // The table's and its indexes' pages read (from the cache or the disk), once every
      // connection has reported its counters: a backend reports them when idle, but one that
      // reported less than a second before waits up to ten seconds (PGSTAT_IDLE_INTERVAL).
      const pagesRead = async () => {
        await new Promise((resolve) => setTimeout(resolve, 11_000));
        const { rows } = await admin.query(`SELECT heap_blks_read + heap_blks_hit + coalesce(idx_blks_read, 0) + coalesce(idx_blks_hit, 0) AS n
                                            FROM pg_statio_user_tables WHERE relname = 'provider_artifacts'`);
        return Number(rows[0].n);
      };
      const before = await pagesRead();
      const OPENINGS = 5;
      for (let i = 0; i < OPENINGS; i++) {
        await page.reload();
        await page.getByRole('heading', { name: 'Your account', level: 1 }).waitFor();
      }
      // Today each opening counts the person's sessions (accounts.show, made for `user show`),
      // which the page never shows, by reading every session of everybody (2,000 here, some
      // 1,400 pages), as no index holds a session's accountId.
      const perOpening = ((await pagesRead()) - before) / OPENINGS;
      expect(perOpening).toBeLessThan(150);
    } finally {
      await admin.end();
    }
  });
});
