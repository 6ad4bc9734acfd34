// A person in a real browser (Debian's Chromium via playwright-core), signing in
// to relying-party apps built on openid-client. Screenshots of every page go to
// test/artifacts/ for a reviewer.
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as OTPAuth from 'otpauth';
import { launchBrowser, snapshot } from '../support/browser.js';
import { startPortcullis, type TestPortcullis } from '../support/portcullis.js';
import { startRpApp, type RpApp } from '../support/rp-app.js';

const require = createRequire(import.meta.url);

const frida = { email: 'frida@example.com', password: 'fridas secret words', name: 'Frida Kahlo' };

let pc: TestPortcullis;
let browser: Browser;
let photos: RpApp;
let notes: RpApp;
const contexts: BrowserContext[] = [];

async function registerClient(name: string, extra: string[] = []) {
  return async ({ redirectUri, postLogoutRedirectUri }: { redirectUri: string; postLogoutRedirectUri: string }) => {
    const result = await pc.cli([
      'client', 'create', '--name', name, '--redirect-uri', redirectUri, '--post-logout-redirect-uri', postLogoutRedirectUri, ...extra, '--json',
    ]);
    if (result.code !== 0) throw new Error(result.stderr);
    return JSON.parse(result.stdout) as { client_id: string; client_secret?: string };
  };
}

beforeAll(async () => {
  pc = await startPortcullis({ ISSUER_NAME: 'Acme Identity' });
  await pc.createUser(frida.email, frida.password, frida.name);
  photos = await startRpApp(pc.issuer, await registerClient('Photo Album', [
    '--client-uri', 'https://photos.example.com', '--policy-uri', 'https://photos.example.com/privacy', '--tos-uri', 'https://photos.example.com/terms',
  ]));
  notes = await startRpApp(pc.issuer, await registerClient('Notes', ['--public']));
  browser = await launchBrowser();
});

afterAll(async () => {
  await browser?.close();
  await photos?.close();
  await notes?.close();
  expect(pc?.errors ?? []).toEqual([]);
  await pc?.close();
});

async function newPage(viewport = { width: 1280, height: 800 }): Promise<Page> {
  const context = await browser.newContext({ viewport });
  contexts.push(context);
  const page = await context.newPage();
  // A page's console errors (a CSP violation, say) fail the journey.
  const problems: string[] = [];
  page.on('console', (message) => message.type() === 'error' && problems.push(message.text()));
  page.on('pageerror', (error) => problems.push(error.message));
  (page as Page & { problems: string[] }).problems = problems;
  return page;
}

const problemsOf = (page: Page) => (page as Page & { problems: string[] }).problems;

/**
 * An axe-core audit (WCAG 2.2 AA and best practices) of the page as it is, in
 * both colour schemes; each violation added to `found`, named after `step`.
 */
async function auditWithAxe(page: Page, step: string, found: string[]): Promise<void> {
  const axeSource = await readFile(require.resolve('axe-core/axe.min.js'), 'utf8');
  // Evaluated through the DevTools protocol, which the pages' CSP does not govern
  // (a <script> tag would need script-src 'unsafe-inline'): the audit sees the page as served.
  await page.evaluate(axeSource);
  for (const colorScheme of ['light', 'dark'] as const) {
    await page.emulateMedia({ colorScheme });
    const violations = await page.evaluate(async () => {
      const { violations } = await (window as unknown as { axe: typeof import('axe-core') }).axe.run(document, {
        runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice'] },
      });
      return violations.map(({ id, help, nodes }) => ({ id, help, targets: nodes.map((node) => node.target.join(' ')) }));
    });
    for (const { id, help, targets } of violations) found.push(`${step} (${colorScheme}): ${id}: ${help}: ${targets.join(', ')}`);
  }
  await page.emulateMedia({ colorScheme: 'light' });
}

async function signIn(page: Page, journey: string, password = frida.password) {
  await expect(page.getByRole('heading', { name: 'Sign in' })).toBeTruthy();
  await snapshot(page, journey, '1-login');
  await page.getByLabel('Email').fill(frida.email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

/** Signs in and allows if asked (whether consent is asked depends on earlier journeys). */
async function signInToApp(page: Page, journey: string) {
  await signIn(page, journey);
  await page.locator('#user').or(page.getByRole('button', { name: 'Allow' })).waitFor();
  if (await page.getByRole('button', { name: 'Allow' }).count()) await page.getByRole('button', { name: 'Allow' }).click();
  await page.locator('#user').waitFor();
}

describe('journeys', () => {
  it('first login and consent for client A lands back signed in with the name shown', async () => {
    const page = await newPage();
    await page.goto(`${photos.url}/login`);
    expect(new URL(page.url()).pathname).toMatch(/^\/interaction\//);
    expect(await page.title()).toBe('Sign in to \u2068Photo Album\u2069 · Acme Identity');
    await signIn(page, 'first-login');

    await page.getByRole('button', { name: 'Allow' }).waitFor();
    await snapshot(page, 'first-login', '2-consent');
    const consent = await page.locator('main').innerText();
    expect(consent).toContain('Photo Album wants to access your account');
    expect(consent).toContain('See your name');
    expect(consent).toContain('See your email address');
    expect(await page.getByRole('link', { name: 'Privacy policy' }).getAttribute('href')).toBe('https://photos.example.com/privacy');
    expect(await page.getByRole('link', { name: 'Terms of service' }).getAttribute('href')).toBe('https://photos.example.com/terms');
    // Links that open a new tab say so (WCAG G201).
    expect(await page.getByRole('link', { name: 'Privacy policy (opens in a new tab)', exact: true }).count()).toBe(1);
    // Each choice is described by what it does (WCAG 2.4.6): a screen reader tabbing to it hears that, and only that.
    const description = (name: string) => page.getByRole('button', { name }).evaluate((button) => document.getElementById(button.getAttribute('aria-describedby') ?? '')?.textContent ?? '');
    expect(await description('Allow')).toMatch(/^Allow shares this with Photo Album .*so you are not asked again for the same access before then\.$/);
    expect(await description('Deny')).toBe('Deny sends you back without sharing anything.');
    await page.getByRole('button', { name: 'Allow' }).click();

    await page.locator('#user').waitFor();
    await snapshot(page, 'first-login', '3-signed-in');
    expect(page.url().startsWith(photos.url)).toBe(true);
    expect(await page.locator('#user').innerText()).toBe(frida.name);
    expect(problemsOf(page)).toEqual([]);
  });

  it('SSO: signed in through client A, client B asks only for consent', async () => {
    const page = await newPage();
    await page.goto(`${photos.url}/login`);
    await signInToApp(page, 'sso');

    await page.goto(`${notes.url}/login`);
    await page.getByRole('button', { name: 'Allow' }).waitFor();
    await snapshot(page, 'sso', '2-consent-for-notes');
    expect(await page.getByLabel('Password').count()).toBe(0);
    await page.getByRole('button', { name: 'Allow' }).click();
    await page.locator('#user').waitFor();
    expect(page.url().startsWith(notes.url)).toBe(true);
    await snapshot(page, 'sso', '3-signed-in-to-notes');
  });

  it('"Not you?" on the consent page: someone else signs in on the same browser', async () => {
    const diego = { email: 'diego@example.com', password: 'diegos own password', name: 'Diego Rivera' };
    await pc.createUser(diego.email, diego.password, diego.name);
    const page = await newPage();
    await page.goto(`${photos.url}/login`);
    await signInToApp(page, 'not-you');
    const tablet = await startRpApp(pc.issuer, await registerClient('Shared Tablet'));
    try {
      await page.goto(`${tablet.url}/login`);
      await page.getByRole('button', { name: 'Allow' }).waitFor();
      await snapshot(page, 'not-you', '2-consent-as-frida');
      await page.getByRole('button', { name: 'Not you? Use another account' }).click();
      await page.getByLabel('Email').fill(diego.email);
      await page.getByLabel('Password').fill(diego.password);
      await page.getByRole('button', { name: 'Sign in' }).click();
      // Frida's session ends (oidc-provider's self-submitting form, under our CSP), then Diego consents.
      await page.getByRole('button', { name: 'Allow' }).waitFor();
      expect(await page.locator('main').innerText()).toContain(diego.email);
      await snapshot(page, 'not-you', '3-consent-as-diego');
      await page.getByRole('button', { name: 'Allow' }).click();
      await page.locator('#user').waitFor();
      expect(await page.locator('#user').innerText()).toBe(diego.name);
      expect(problemsOf(page)).toEqual([]);
    } finally {
      await tablet.close();
    }
  });

  it('a sign-in in a popup leaves the popup, back at the app, able to tell the page that opened it', async () => {
    // How oidc-client-ts (signinPopup), MSAL (loginPopup) and auth0-spa-js hand the result over.
    const page = await newPage();
    await page.goto(notes.url);
    const [popup] = await Promise.all([page.waitForEvent('popup'), page.evaluate(() => void window.open('/login', 'sign-in', 'width=480,height=640'))]);
    await popup.waitForLoadState();
    await signInToApp(popup, 'popup');
    expect(await popup.evaluate(() => window.opener !== null)).toBe(true);
  });

  it('remembered consent: signing in again goes straight back to the app', async () => {
    const page = await newPage();
    await page.goto(`${photos.url}/login`);
    await signInToApp(page, 'remembered-consent');
    await page.goto(`${photos.url}/login`);
    await page.locator('#user').waitFor();
    await snapshot(page, 'remembered-consent', '2-straight-back');
    expect(await page.locator('#user').innerText()).toBe(frida.name);
  });

  it('Deny returns access_denied to the app', async () => {
    const page = await newPage();
    const denied = await startRpApp(pc.issuer, await registerClient('Denied App'));
    try {
      await page.goto(`${denied.url}/login`);
      await signIn(page, 'deny');
      await page.getByRole('button', { name: 'Deny' }).click();
      await page.locator('#error').waitFor();
      await snapshot(page, 'deny', '2-back-at-app');
      expect(await page.locator('#error').innerText()).toBe('access_denied');
    } finally {
      await denied.close();
    }
  });

  it('Back from the consent page says the sign-in goes on, and leads back to it; Back from the app says consent was given', async () => {
    const leonora = { email: 'leonora@example.com', password: 'leonoras secret words', name: 'Leonora Carrington' };
    await pc.createUser(leonora.email, leonora.password, leonora.name);
    const page = await newPage();
    await page.goto(`${photos.url}/login`);
    await page.getByLabel('Email').fill(leonora.email);
    await page.getByLabel('Password').fill(leonora.password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('button', { name: 'Allow' }).waitFor();

    await page.goBack();
    await page.getByRole('heading', { name: 'You already signed in' }).waitFor();
    await snapshot(page, 'back-from-consent', '1-already-signed-in');
    // Not an error: nothing is announced as one.
    expect(await page.getByRole('alert').count()).toBe(0);
    // The name is isolated by an element, not by marks a screen reader would meet.
    expect(await page.locator('main').innerText()).toContain('A sign-in to Photo Album is still in progress in this browser.');
    expect(await page.locator('main').innerHTML()).toContain('A sign-in to <bdi>Photo Album</bdi> is still');
    await page.getByRole('link', { name: 'Continue signing in' }).click();
    await page.getByRole('button', { name: 'Allow' }).click();
    await page.locator('#user').waitFor();
    expect(await page.locator('#user').innerText()).toBe(leonora.name);

    // Back from the app: the consent page's address says consent was given, not that the sign-in expired.
    await page.goBack();
    await page.getByRole('heading', { name: 'You already allowed this' }).waitFor();
    await snapshot(page, 'back-from-consent', '2-already-allowed');
    expect(await page.locator('main').innerText()).toContain('You allowed Photo Album from this page already.');
    expect(problemsOf(page)).toEqual([]);
  });

  it('a wrong password shows an announced message; the right one then works', async () => {
    const page = await newPage();
    await page.goto(`${photos.url}/login`);
    await signIn(page, 'wrong-password', 'not my password');
    const alert = page.getByRole('alert');
    await alert.waitFor();
    await snapshot(page, 'wrong-password', '2-error');
    expect(await alert.innerText()).toContain('email or password is not right');
    expect(await page.getByLabel('Email').inputValue()).toBe(frida.email);
    await page.getByLabel('Password').fill(frida.password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.locator('#user').waitFor();
  });

  it('someone guessing at the email does not lock its owner out of the browser they signed in with before', async () => {
    const gus = { email: 'gus@example.com', password: 'guss long password' };
    await pc.createUser(gus.email, gus.password, 'Gus');
    const signInAs = async (page: Page, password: string) => {
      await page.getByLabel('Email').fill(gus.email);
      await page.getByLabel('Password').fill(password);
      await page.getByRole('button', { name: 'Sign in' }).click();
    };
    const own = await newPage();
    await own.goto(`${photos.url}/login`);
    await signInAs(own, gus.password);
    await own.getByRole('button', { name: 'Allow' }).click();
    await own.locator('#user').waitFor();
    const device = (await own.context().cookies()).find((cookie) => cookie.name === '_device');
    expect(device).toMatchObject({ path: '/interaction/', sameSite: 'Strict', httpOnly: true });

    // Another browser guesses until the email is held (SIGN_IN_MAX_FAILURES, 10)...
    const other = await newPage();
    await other.goto(`${photos.url}/login`);
    for (let i = 0; i < 10; i++) {
      await signInAs(other, `guess ${i}`);
      await other.getByRole('alert').waitFor();
    }
    await signInAs(other, gus.password);
    await other.getByText('Too many failed sign-ins').waitFor();
    await snapshot(other, 'device-cookie', '1-held');

    // ...while Gus, signed out (session cookie gone), signs in from his own browser: Chromium
    // sends the device cookie with the sign-in form it posts to our own page.
    await own.context().clearCookies({ name: /session/ });
    await own.goto(`${photos.url}/login`);
    await signInAs(own, gus.password);
    await own.locator('#user').waitFor();
    await snapshot(own, 'device-cookie', '2-own-browser');
    expect(problemsOf(own)).toEqual([]);
  });

  it('RP-initiated logout asks for confirmation, and then a new login needs the password', async () => {
    const page = await newPage();
    await page.goto(`${photos.url}/login`);
    await signInToApp(page, 'logout');

    await page.getByRole('link', { name: 'Sign out' }).click();
    await page.getByRole('button', { name: 'Sign out' }).waitFor();
    await snapshot(page, 'logout', '2-confirm');
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.locator('#signed-out').waitFor();
    expect(page.url()).toBe(`${photos.url}/`);
    await snapshot(page, 'logout', '3-back-at-app');

    await page.goto(`${photos.url}/login`);
    await page.getByLabel('Password').waitFor();
    await snapshot(page, 'logout', '4-login-again');
  });

  it('keyboard only: login and consent without a mouse', async () => {
    const page = await newPage();
    const keyboardApp = await startRpApp(pc.issuer, await registerClient('Keyboard App'));
    try {
      await page.goto(`${keyboardApp.url}/login`);
      // The email field has focus on arrival (autofocus lands just after load); Tab moves to password, then to Sign in.
      await page.waitForFunction(() => document.activeElement?.id === 'email', undefined, { timeout: 5000 });
      await page.keyboard.type(frida.email);
      await page.keyboard.press('Tab');
      expect(await page.evaluate(() => document.activeElement?.id)).toBe('password');
      await page.keyboard.type(frida.password);
      await page.keyboard.press('Tab');
      expect(await page.evaluate(() => document.activeElement?.textContent)).toBe('Sign in');
      await snapshot(page, 'keyboard', '1-focus-on-sign-in');
      await page.keyboard.press('Enter');

      await page.getByRole('button', { name: 'Allow' }).waitFor();
      // In reading order: the way out for someone else, then the choice.
      await page.keyboard.press('Tab');
      expect(await page.evaluate(() => document.activeElement?.textContent)).toBe('Not you? Use another account');
      await page.keyboard.press('Tab');
      expect(await page.evaluate(() => document.activeElement?.textContent)).toBe('Allow');
      await snapshot(page, 'keyboard', '2-focus-on-allow');
      await page.keyboard.press('Enter');
      await page.locator('#user').waitFor();
    } finally {
      await keyboardApp.close();
    }
  });

  it('at 400% zoom a failed sign-in shows its message, and the password field that has the focus (WCAG 1.4.10, 3.3.1)', async () => {
    // 1280 × 1024 at 400%: 320 × 256 CSS pixels.
    const page = await newPage({ width: 320, height: 256 });
    await page.goto(`${photos.url}/login`);
    await page.getByLabel('Email').fill(frida.email);
    await page.getByLabel('Password').fill('not her password');
    await page.getByRole('button', { name: 'Sign in' }).click();
    const alert = page.getByRole('alert');
    await alert.waitFor();
    await page.waitForFunction(() => document.activeElement?.id === 'password', undefined, { timeout: 5000 });
    const inView = async (box: { y: number; height: number } | null) => box !== null && box.y >= 0 && box.y + box.height <= 256;
    const seen = { alert: await inView(await alert.boundingBox()), password: await inView(await page.getByLabel('Password').boundingBox()) };
    await snapshot(page, 'zoom-400', 'login-error');
    expect(seen).toEqual({ alert: true, password: true });
  });

  it('an app named in a right-to-left script keeps its own order inside our sentences (bidi isolation)', async () => {
    const hebrewApp = await startRpApp(pc.issuer, await registerClient('חשבון Pro 365'));
    try {
      const page = await newPage();
      await page.goto(`${hebrewApp.url}/login`);
      await page.getByLabel('Email').waitFor();
      // Read right to left, the name starts with its Hebrew word: on screen
      // that word stands to the right of "Pro 365", as in the app's own pages.
      const order = await page.evaluate(() => {
        const name = [...document.querySelectorAll('main strong')].find((element) => element.textContent === 'חשבון Pro 365')!;
        const text = name.querySelector('bdi')?.firstChild ?? name.firstChild!;
        const left = (from: number, to: number) => {
          const range = document.createRange();
          range.setStart(text, from);
          range.setEnd(text, to);
          return range.getBoundingClientRect().left;
        };
        return { hebrew: left(0, 5), latin: left(6, 9) };
      });
      expect(order.hebrew).toBeGreaterThan(order.latin);
      await signIn(page, 'right-to-left');
      await page.getByRole('button', { name: 'Allow' }).waitFor();
      // A title holds no markup: the name is isolated there by FSI and PDI.
      expect(await page.title()).toBe('\u2068חשבון Pro 365\u2069 wants access · Acme Identity');
    } finally {
      await hebrewApp.close();
    }
  });

  it('at 320 px wide no page scrolls sideways, long names included (WCAG 1.4.10)', async () => {
    const page = await newPage({ width: 320, height: 640 });
    const longEmail = 'christopher.montgomery-worthington@engineering.example-company.com';
    await pc.createUser(longEmail, frida.password, 'Christopher Montgomery-Worthington');
    const wide = async (step: string) => {
      await snapshot(page, 'phone', step);
      return page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
    };
    const phoneApp = await startRpApp(pc.issuer, await registerClient('A Client With A Rather Long Name For A Small Screen, AndOneWordLongerThanAnyPhone'));
    try {
      await page.goto(`${phoneApp.url}/login`);
      expect(await wide('1-login')).toBe(false);
      await page.getByLabel('Email').fill(longEmail);
      await page.getByLabel('Password').fill('wrong password here');
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByRole('alert').waitFor();
      expect(await wide('2-login-error')).toBe(false);
      await page.getByLabel('Password').fill(frida.password);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByRole('button', { name: 'Allow' }).waitFor();
      expect(await wide('3-consent')).toBe(false);
      await page.goto(`${pc.issuer}/auth?client_id=unknown&response_type=code&scope=openid`);
      expect(await wide('4-error')).toBe(false);
      // The person's name and email in a button ("Continue as …").
      await page.goto(`${phoneApp.url}/login?prompt=select_account`);
      await page.getByRole('button', { name: /^Continue as/ }).waitFor();
      expect(await wide('5-select-account')).toBe(false);
      // The app's name in a link drawn as a button ("Go to …"), one word longer than the screen.
      const registered = await pc.cli(['client', 'create', '--name', 'SupercalifragilisticexpialidociousApplication', '--redirect-uri', 'https://app.example.com/cb', '--client-uri', 'https://app.example.com/', '--json']);
      const { client_id } = JSON.parse(registered.stdout) as { client_id: string };
      await page.goto(`${pc.issuer}/auth?client_id=${client_id}&response_type=code&scope=openid&redirect_uri=https://app.example.com/elsewhere`);
      await page.getByRole('link', { name: /^Go to/ }).waitFor();
      expect(await wide('6-error-with-app')).toBe(false);
    } finally {
      await phoneApp.close();
    }
  });

  it('at 320 px wide with text spacing raised (WCAG 1.4.12), a button\'s words wrap whole, never cut in two', async () => {
    const page = await newPage({ width: 320, height: 640 });
    // The words of every button split over two lines, with the spacing WCAG 1.4.12 has pages withstand.
    const cutWords = () =>
      page.evaluate(() => {
        Object.assign(document.body.style, { letterSpacing: '0.12em', wordSpacing: '0.16em', lineHeight: '1.5' });
        const cut: string[] = [];
        for (const button of document.querySelectorAll('button, a.button')) {
          const walker = document.createTreeWalker(button, NodeFilter.SHOW_TEXT);
          for (let node = walker.nextNode(); node; node = walker.nextNode()) {
            for (const match of node.textContent!.matchAll(/\S+/g)) {
              const range = document.createRange();
              range.setStart(node, match.index!);
              range.setEnd(node, match.index! + match[0].length);
              const lines = new Set([...range.getClientRects()].map((rect) => Math.round(rect.top)));
              if (lines.size > 1) cut.push(match[0]);
            }
          }
        }
        return cut;
      });
    await page.goto(`${photos.url}/login`);
    await signInToApp(page, 'text-spacing');
    // The app's sign-out: its confirmation names the server in "Stay signed in to Acme Identity",
    // beside "Sign out". A server named in a language of long words (ISSUER_NAME) as well.
    await page.getByRole('link', { name: 'Sign out' }).click();
    await page.getByRole('button', { name: /^Stay signed in to/ }).waitFor();
    expect(await cutWords()).toEqual([]);
    await page.evaluate(() => (document.querySelector('button bdi')!.textContent = 'Zugangsverwaltung'));
    expect(await cutWords()).toEqual([]);
    await snapshot(page, 'text-spacing', 'sign-out');
  });
});

describe('pages', () => {
  it('text follows the browser\'s font size setting, the fine print staying smaller than the rest (WCAG 1.4.4, technique C14)', async () => {
    const page = await newPage();
    await page.goto(`${pc.issuer}/auth?client_id=unknown&response_type=code&scope=openid`);
    // A browser's "very large" text setting is a 24 px root font size.
    const sizes = await page.evaluate(() => {
      document.documentElement.style.fontSize = '24px';
      const size = (selector: string) => parseFloat(getComputedStyle(document.querySelector(selector)!).fontSize);
      return { body: size('body'), alert: size('[role=alert]'), fine: size('.muted'), heading: size('h1') };
    });
    expect(sizes.body).toBe(24);
    expect(sizes.alert).toBe(24);
    expect(sizes.fine).toBeLessThan(sizes.body);
    expect(sizes.heading).toBeGreaterThan(sizes.body);
  });

  it('carry strict security headers and work without JavaScript', async () => {
    const context = await browser.newContext({ javaScriptEnabled: false });
    contexts.push(context);
    const page = await context.newPage();
    const response = await page.goto(`${photos.url}/login`);
    const headers = response!.headers();
    expect(headers['content-security-policy']).toMatch(/default-src 'none'/);
    expect(headers['content-security-policy']).toMatch(/frame-ancestors 'none'/);
    expect(headers['content-security-policy']).toMatch(/style-src 'nonce-[^']+'/);
    expect(headers['x-content-type-options']).toBe('nosniff');
    expect(headers['referrer-policy']).toBe('no-referrer');
    expect(headers['cache-control']).toBe('no-store');
    // Styles applied under the CSP: the button is not the browser default.
    const background = await page.getByRole('button', { name: 'Sign in' }).evaluate((button) => getComputedStyle(button).backgroundColor);
    expect(background).toBe('rgb(29, 78, 216)');
    await signInToApp(page, 'no-javascript');

    // The library's page that carries a response to the app by POST
    // (response_mode=form_post) shows its Continue button without JavaScript,
    // in our layout and styles, which its policy allows beside its script's hash.
    // Here it carries an error (consent_required: Poster was never allowed), so
    // it is answered 400, which Chromium reports; the page is the same for a code.
    const violations: string[] = [];
    page.on('console', (message) => message.type() === 'error' && !message.text().includes('status of 400') && violations.push(message.text()));
    const poster = await pc.createClient({ name: 'Poster', redirectUris: ['https://poster.example/cb'], scope: 'openid' });
    const formPost = await page.goto(`${pc.issuer}/auth?${new URLSearchParams({
      client_id: poster.client_id, response_type: 'code', scope: 'openid', redirect_uri: 'https://poster.example/cb',
      response_mode: 'form_post', prompt: 'none', state: 's', code_challenge: 'x'.repeat(43), code_challenge_method: 'S256',
    })}`);
    expect(formPost!.headers()['content-security-policy']).toMatch(/style-src 'nonce-[^']+'.*script-src 'self' 'sha256-/);
    await page.getByRole('heading', { name: 'Returning you to the application…' }).waitFor();
    await snapshot(page, 'no-javascript', '2-form-post');
    expect(await page.locator('header').innerText()).toBe('Acme Identity');
    const continueButton = page.getByRole('button', { name: 'Continue' });
    expect(await continueButton.evaluate((button) => getComputedStyle(button).backgroundColor)).toBe('rgb(29, 78, 216)');
    expect(await page.locator('main').evaluate((main) => getComputedStyle(main).backgroundColor)).toBe('rgb(255, 255, 255)');
    expect(violations).toEqual([]);
  });

  // Whether the app then gets the person back without a password shows whether the page told the truth.
  it.each([
    ['Sign out', 'You are signed out', 'Signed out', 'signed-out'],
    ['Stay signed in', 'You are still signed in', 'Still signed in', 'stay-signed-in'],
  ])('"%s" on the sign-out page, with no app to return to, ends on "%s", and it is true', async (button, heading, title, journey) => {
    const page = await newPage();
    await page.goto(`${photos.url}/login`);
    await signInToApp(page, journey);
    await page.goto(`${pc.issuer}/session/end`);
    await page.getByRole('button', { name: button, exact: true }).click();
    await page.getByRole('heading', { name: heading }).waitFor();
    await snapshot(page, journey, '1-after-the-choice');
    expect(await page.title()).toBe(`${title} · Acme Identity`);
    await page.goto(`${photos.url}/login`);
    if (button === 'Sign out') await page.getByLabel('Password').waitFor();
    else await page.locator('#user').waitFor();
  });

  it('errors a person can meet explain what happened, in the same layout', async () => {
    const page = await newPage();
    const cases: [string, string, string][] = [
      ['unknown-client', `${pc.issuer}/auth?client_id=nobody&response_type=code&scope=openid&redirect_uri=https://x.example/cb`, 'Unknown application'],
      ['bad-redirect-uri', `${photos.url}/login`, 'Unexpected return address'],
      ['unknown-interaction', `${pc.issuer}/interaction/no-such-thing`, 'Your sign-in expired'],
    ];
    for (const [name, url, heading] of cases) {
      if (name === 'bad-redirect-uri') {
        // The app's login link, with the redirect_uri swapped for one it never registered.
        const response = await fetch(url, { redirect: 'manual' });
        const target = new URL(response.headers.get('location')!);
        target.searchParams.set('redirect_uri', 'https://attacker.example/cb');
        await page.goto(target.href);
      } else {
        await page.goto(url);
      }
      await page.getByRole('heading', { name: heading }).waitFor();
      await snapshot(page, 'errors', name);
      expect(await page.title()).toBe(`${heading} · Acme Identity`);
      expect(await page.locator('header').innerText()).toBe('Acme Identity');
      expect(await page.getByRole('alert').count()).toBe(1);
      // The way back to an app that registered a home page (Photo Album did); none to an unknown one.
      const home = page.getByRole('link', { name: 'Go to Photo Album', exact: true });
      if (name === 'bad-redirect-uri') expect(await home.getAttribute('href')).toBe('https://photos.example.com/');
      else expect(await page.getByRole('link').count()).toBe(0);
    }
  });

  it('text meets WCAG AA contrast (4.5:1) on every element of the login, consent and choice-of-account pages', async () => {
    const page = await newPage();
    const contrastApp = await startRpApp(pc.issuer, await registerClient('Contrast', ['--policy-uri', 'https://c.example/p']));
    try {
      await page.goto(`${contrastApp.url}/login`);
      await page.getByLabel('Email').fill(frida.email);
      await page.getByLabel('Password').fill('wrong password!');
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByRole('alert').waitFor();
      const checkPage = () =>
        page.evaluate(() => {
          const parse = (color: string) => (color.match(/[\d.]+/g) ?? []).map(Number);
          const luminance = ([r, g, b]: number[]) => {
            const channel = (value: number) => {
              const c = value / 255;
              return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
            };
            return 0.2126 * channel(r!) + 0.7152 * channel(g!) + 0.0722 * channel(b!);
          };
          const background = (element: Element | null): number[] => {
            for (let node = element; node; node = node.parentElement) {
              const color = parse(getComputedStyle(node).backgroundColor);
              if (color.length === 3 || (color.length === 4 && color[3]! > 0)) return color.slice(0, 3);
            }
            return [255, 255, 255];
          };
          const failures: string[] = [];
          for (const element of document.querySelectorAll('body *')) {
            const own = [...element.childNodes].some((node) => node.nodeType === 3 && node.textContent!.trim());
            if (!own) continue;
            const fg = luminance(parse(getComputedStyle(element).color));
            const bg = luminance(background(element));
            const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
            if (ratio < 4.5) failures.push(`${element.tagName} "${element.textContent!.trim().slice(0, 30)}": ${ratio.toFixed(2)}`);
          }
          return failures;
        });
      // Both colour schemes: the pages follow the system's (prefers-color-scheme).
      const bothSchemes = async (step: string) => {
        for (const colorScheme of ['light', 'dark'] as const) {
          await page.emulateMedia({ colorScheme });
          const background = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
          expect(background).toBe(colorScheme === 'dark' ? 'rgb(17, 24, 39)' : 'rgb(243, 244, 246)');
          await snapshot(page, 'contrast', `${step}-${colorScheme}`);
          expect(await checkPage()).toEqual([]);
        }
        await page.emulateMedia({ colorScheme: 'light' });
      };
      await bothSchemes('1-login-error');
      await page.getByLabel('Password').fill(frida.password);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByRole('button', { name: 'Allow' }).waitFor();
      await bothSchemes('2-consent');
      await page.getByRole('button', { name: 'Allow' }).click();
      await page.locator('#user').waitFor();
      // The app asks to choose the account (prompt=select_account): nothing
      // has the focus on arrival, so a screen reader starts with the question;
      // going on as Frida is the first Tab stop, and Enter takes her back.
      await page.goto(`${contrastApp.url}/login?prompt=select_account`);
      await page.getByRole('heading', { name: 'Choose an account to continue to Contrast' }).waitFor();
      await page.waitForLoadState('load');
      expect(await page.evaluate(() => document.activeElement?.tagName)).toBe('BODY');
      await page.keyboard.press('Tab');
      expect(await page.evaluate(() => document.activeElement?.textContent)).toMatch(/^Continue as/);
      // "Use another account" sits below the button, clear of it and of its focus ring (3 px + 2 px offset).
      const continueBox = (await page.getByRole('button', { name: /^Continue as/ }).boundingBox())!;
      const otherBox = (await page.getByRole('button', { name: 'Use another account' }).boundingBox())!;
      expect(otherBox.y).toBeGreaterThanOrEqual(continueBox.y + continueBox.height + 5);
      await bothSchemes('3-select-account');
      await page.keyboard.press('Enter');
      await page.locator('#user').waitFor();
    } finally {
      await contrastApp.close();
    }
  });

  it('the sign-in, consent, account choice, sign-out, error and form_post pages pass an axe-core audit (WCAG 2.2 AA and best practices) in both colour schemes', async () => {
    const page = await newPage();
    // A logo and links, so that the consent page shows everything it can.
    const axeApp = await startRpApp(pc.issuer, await registerClient('Axe App', [
      '--logo-uri', 'https://a.example/logo.png', '--policy-uri', 'https://a.example/p', '--tos-uri', 'https://a.example/t',
    ]));
    // Every page's violations, gathered so that one run names them all.
    const found: string[] = [];
    const audit = (step: string) => auditWithAxe(page, step, found);
    try {
      await page.goto(`${axeApp.url}/login`);
      await audit('login');
      await signIn(page, 'axe', 'wrong password!');
      await page.getByRole('alert').waitFor();
      await audit('login after a wrong password');
      await page.getByLabel('Password').fill(frida.password);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByRole('button', { name: 'Allow' }).waitFor();
      await audit('consent');
      await page.getByRole('button', { name: 'Allow' }).click();
      await page.locator('#user').waitFor();
      await page.goBack();
      await page.getByRole('heading', { name: 'You already allowed this' }).waitFor();
      await audit('consent page opened again after Allow');
      await page.goto(`${axeApp.url}/login?prompt=select_account`);
      await page.getByRole('heading', { name: 'Choose an account to continue to Axe App' }).waitFor();
      await audit('choice of account');
      await page.getByRole('button', { name: /^Continue as/ }).click();
      await page.locator('#user').waitFor();
      await page.goto(`${pc.issuer}/session/end`);
      await page.getByRole('button', { name: 'Sign out', exact: true }).waitFor();
      await audit('logout confirmation');
      await page.getByRole('button', { name: 'Sign out', exact: true }).click();
      await page.getByRole('heading', { name: 'You are signed out' }).waitFor();
      await audit('signed out');
      await page.goto(`${pc.issuer}/auth?client_id=nobody&response_type=code&scope=openid&redirect_uri=https://x.example/cb`);
      await page.getByRole('heading', { name: 'Unknown application' }).waitFor();
      await audit('error');
      // The library's own page that carries a response to the app by POST
      // (response_mode=form_post), as a person without JavaScript sees it:
      // no script (it would submit the form at once), the <noscript> shown.
      const poster = await pc.createClient({ name: 'Poster', redirectUris: ['https://poster.example/cb'], scope: 'openid' });
      const formPost = await fetch(`${pc.issuer}/auth?${new URLSearchParams({
        client_id: poster.client_id, response_type: 'code', scope: 'openid', redirect_uri: 'https://poster.example/cb',
        response_mode: 'form_post', prompt: 'none', state: 's', code_challenge: 'x'.repeat(43), code_challenge_method: 'S256',
      })}`);
      const html = await formPost.text();
      expect(html).toContain('name="error" value="login_required"');
      await page.setContent(html.replace(/<script>[\s\S]*?<\/script>/, '').replace(/<\/?noscript>/g, ''));
      await page.getByRole('button', { name: 'Continue' }).waitFor();
      await page.getByRole('heading', { name: 'Returning you to the application…' }).waitFor();
      await audit('form_post');
      // The same page carries a sign-out on to its confirmation when nobody is signed in.
      expect(await (await fetch(`${pc.issuer}/session/end`)).text()).toContain('<h1>Signing you out…</h1>');
    } finally {
      await axeApp.close();
    }
    expect(found, `axe-core found:\n${found.join('\n')}`).toEqual([]);
  });

  it('a device\'s code, typed with the keyboard: the entry, confirmation and end pages pass an axe-core audit, with no console errors', async () => {
    const made = await pc.cli(['client', 'create', '--name', 'Kitchen TV', '--public', '--grant-type', 'device_code', '--scope', 'openid', '--json']);
    const tv = JSON.parse(made.stdout) as { client_id: string };
    const ask = async () => {
      const response = await fetch(`${pc.issuer}/device/auth`, { method: 'POST', body: new URLSearchParams({ client_id: tv.client_id, scope: 'openid' }) });
      return (await response.json()) as { device_code: string; user_code: string; verification_uri: string; verification_uri_complete: string };
    };
    const started = await ask();
    const page = await newPage();
    const found: string[] = [];
    await page.goto(started.verification_uri);
    const field = page.getByLabel('Enter the code your device shows');
    await expect(field.evaluate((element) => element === document.activeElement)).resolves.toBe(true);
    // The field's description says what a code looks like (WCAG 3.3.2), and after a wrong code, why too.
    expect(await field.getAttribute('aria-describedby')).toBe('code-hint');
    expect(await page.locator('#code-hint').innerText()).toBe('8 letters, such as BCDF-GHJK: with or without the dash, in capitals or not.');
    await snapshot(page, 'device', '1-code');
    await auditWithAxe(page, 'device code entry', found);
    await page.keyboard.type('BBBB-BBBB');
    await page.keyboard.press('Enter');
    await page.getByRole('alert').waitFor();
    expect(await page.getByRole('alert').textContent()).toContain('That code is not right.');
    expect(await field.getAttribute('aria-describedby')).toBe('code-hint code-error');
    await auditWithAxe(page, 'device code entry after a wrong code', found);
    await field.fill('');
    await page.keyboard.type(started.user_code.toLowerCase());
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Connect Kitchen TV?' }).waitFor();
    await snapshot(page, 'device', '2-confirm');
    await auditWithAxe(page, 'device confirmation', found);
    await page.getByRole('button', { name: 'Continue' }).click();
    await signIn(page, 'device');
    await page.getByRole('button', { name: 'Allow' }).click();
    await page.getByRole('heading', { name: 'Your device is connected' }).waitFor();
    await snapshot(page, 'device', '3-connected');
    await auditWithAxe(page, 'device connected', found);
    const tokens = await fetch(`${pc.issuer}/token`, {
      method: 'POST',
      body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:device_code', device_code: started.device_code, client_id: tv.client_id }),
    });
    expect(tokens.status).toBe(200);

    // The address with the code in it: the library's page posts it on by
    // script (allowed by the page's CSP), to the confirmation.
    const second = await ask();
    await page.goto(second.verification_uri_complete);
    await page.getByRole('heading', { name: 'Connect Kitchen TV?' }).waitFor();
    expect(await page.locator('#user-code').textContent()).toBe(second.user_code);
    expect(problemsOf(page)).toEqual([]);
    expect(found, `axe-core found:\n${found.join('\n')}`).toEqual([]);
  });

  it('two-step verification: the setup page (QR code, key, link) and the code page work by keyboard, announce a wrong code, fit 320 px, and pass an axe-core audit in both colour schemes', async () => {
    const gabo = { email: 'gabo@example.com', password: 'gabos secret words' };
    await pc.createUser(gabo.email, gabo.password, 'Gabriel García');
    expect((await pc.cli(['user', 'update', gabo.email, '--totp', 'required'])).code).toBe(0);
    const page = await newPage({ width: 320, height: 640 });
    const found: string[] = [];
    const audit = (step: string) => auditWithAxe(page, step, found);
    const fitsWidth = async () => expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(320);
    const signInAsGabo = async () => {
      await page.getByLabel('Email').fill(gabo.email);
      await page.getByLabel('Password').fill(gabo.password);
      await page.keyboard.press('Enter');
    };
    await page.goto(`${photos.url}/login`);
    await signInAsGabo();
    await page.getByRole('heading', { name: 'Set up two-step verification' }).waitFor();
    await snapshot(page, 'totp', '1-setup');
    // It opens at its top, the QR code in view: no autofocus scrolls it away on a small screen (review BP).
    expect(await page.evaluate(() => window.scrollY)).toBe(0);
    expect(await page.locator('svg.qr').evaluate((svg) => svg.getBoundingClientRect().top)).toBeGreaterThanOrEqual(0);
    // The QR code is an image with a name; the key is what an app's "enter a setup key" takes.
    await page.getByRole('img', { name: 'QR code for adding Acme Identity to an authenticator app' }).waitFor();
    // The field says what to enter when it has the focus; it takes a code as apps show it, with a space or a dash.
    const field = page.getByLabel('Code', { exact: true });
    expect(await field.evaluate((input) => (input.getAttribute('aria-describedby') ?? '').split(' ').map((id) => document.getElementById(id)?.textContent).join(' '))).toMatch(/6-digit code/);
    for (const typed of ['123 456', '123-456']) {
      await field.fill(typed);
      expect([typed, await field.evaluate((input) => (input as HTMLInputElement).validity.valid)]).toEqual([typed, true]);
    }
    await field.fill('');
    const grouped = (await page.locator('#totp-key').textContent())!;
    expect(grouped).toMatch(/^([A-Z2-7]{4} )+[A-Z2-7]{1,4}$/);
    const uri = new URL((await page.getByRole('link', { name: 'open this link in the app' }).getAttribute('href'))!);
    expect(uri.searchParams.get('secret')).toBe(grouped.replace(/ /g, ''));
    const totp = new OTPAuth.TOTP({ secret: OTPAuth.Secret.fromBase32(grouped.replace(/ /g, '')) });
    await fitsWidth();
    await audit('totp setup');
    // The field focused (a click, or Tab past the link), the code typed and sent from the keyboard alone.
    await field.focus();
    await page.keyboard.type('000000' === totp.generate() ? '111111' : '000000');
    await page.keyboard.press('Enter');
    await page.getByRole('alert').waitFor();
    expect(await page.getByRole('alert').textContent()).toBe('That code is not right, or was used already. Enter the code your authenticator app shows now.');
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('code');
    expect(await page.getByLabel('Code', { exact: true }).getAttribute('aria-invalid')).toBe('true');
    await snapshot(page, 'totp', '2-wrong-code');
    await audit('totp setup after a wrong code');
    await page.keyboard.type(totp.generate());
    await page.keyboard.press('Enter');
    await page.getByRole('button', { name: 'Allow' }).waitFor();
    await page.getByRole('button', { name: 'Allow' }).click();
    await page.locator('#user').waitFor();
    expect(await page.locator('#user').textContent()).toContain('Gabriel García');

    // Signed out, and in again: the code page, with no key shown again.
    await page.goto(`${pc.issuer}/session/end`);
    await page.getByRole('button', { name: 'Sign out', exact: true }).click();
    await page.getByRole('heading', { name: 'You are signed out' }).waitFor();
    await page.goto(`${photos.url}/login`);
    await signInAsGabo();
    await page.getByRole('heading', { name: 'Enter your verification code' }).waitFor();
    await snapshot(page, 'totp', '3-code');
    expect(await page.locator('#totp-key, svg').count()).toBe(0);
    await fitsWidth();
    await audit('totp code');
    // The next step's code: the one just taken is not taken again.
    await page.keyboard.type(totp.generate({ timestamp: Date.now() + 30_000 }));
    await page.keyboard.press('Enter');
    // Asked again: a consent without offline_access ended with the sign-out.
    await page.getByRole('button', { name: 'Allow' }).click();
    await page.locator('#user').waitFor();
    expect(problemsOf(page)).toEqual([]);
    expect(found, `axe-core found:\n${found.join('\n')}`).toEqual([]);
  });

  it('the account page: signed in by keyboard, an app removed, a refused and an accepted new password, at 320 px, passing an axe-core audit in both colour schemes', async () => {
    const ines = { email: 'ines@example.com', password: 'ines secret words' };
    await pc.createUser(ines.email, ines.password, 'Inés Suárez');
    const page = await newPage({ width: 320, height: 640 });
    const found: string[] = [];
    const audit = (step: string) => auditWithAxe(page, step, found);
    const fitsWidth = async () => expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(320);
    // Signed in to an app first: the account page then opens without a sign-in, and lists it.
    await page.goto(`${photos.url}/login`);
    await page.getByLabel('Email').fill(ines.email);
    await page.getByLabel('Password').fill(ines.password);
    await page.keyboard.press('Enter');
    await page.getByRole('button', { name: 'Allow' }).click();
    await page.locator('#user').waitFor();
    await page.goto(`${pc.issuer}/account`);
    await page.getByRole('heading', { name: 'Your account', level: 1 }).waitFor();
    expect(await page.title()).toBe('Your account · Acme Identity');
    await snapshot(page, 'account', '1-page');
    await fitsWidth();
    await audit('account page');
    // The button names its app for whoever hears it (its accessible name, review BS), and takes the keyboard.
    const remove = page.getByRole('button', { name: 'Remove access for Photo Album', exact: true });
    expect(await remove.evaluate((button) => document.getElementById(button.getAttribute('aria-describedby') ?? '')?.textContent)).toMatch(/^Removing an app's access/);
    await remove.focus();
    await page.keyboard.press('Enter');
    await page.getByRole('status').waitFor();
    expect(await page.getByRole('status').textContent()).toBe('Photo Album no longer has access to your account.');
    expect(await page.getByRole('button', { name: /^Remove access/ }).count()).toBe(0);
    expect(await page.title()).toBe('\u2068Photo Album\u2069 no longer has access – Your account · Acme Identity');
    await audit('account page after removing an app');

    // A wrong current password: said beside the form, the field focused and marked.
    await page.getByLabel('Current password').fill('not my password');
    await page.getByLabel('New password', { exact: true }).fill('a brand new passphrase');
    await page.getByLabel('New password again').fill('a brand new passphrase');
    await page.keyboard.press('Enter');
    await page.getByRole('alert').waitFor();
    expect(await page.getByRole('alert').textContent()).toBe('Your current password is not right.');
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('current-password');
    expect(await page.getByLabel('Current password').getAttribute('aria-invalid')).toBe('true');
    expect(await page.title()).toBe('Error: Your current password is not right – Your account · Acme Identity');
    await snapshot(page, 'account', '2-wrong-password');
    await fitsWidth();
    await audit('account page after a wrong password');
    await page.getByLabel('Current password').fill(ines.password);
    await page.getByLabel('New password', { exact: true }).fill('a brand new passphrase');
    await page.getByLabel('New password again').fill('a brand new passphrase');
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Your password is changed' }).waitFor();
    await snapshot(page, 'account', '3-changed');
    await audit('password changed');
    // Signed out everywhere: the page's link leads to a sign-in, which the new password passes.
    await page.getByRole('link', { name: 'Sign in with your new password' }).click();
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    await page.getByLabel('Email').fill(ines.email);
    await page.getByLabel('Password').fill('a brand new passphrase');
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Your account', level: 1 }).waitFor();
    expect(problemsOf(page)).toEqual([]);
    expect(found, `axe-core found:\n${found.join('\n')}`).toEqual([]);
  });

  it('an expired or lost sign-in explains itself with no internals', async () => {
    const page = await newPage();
    await page.goto(`${photos.url}/login`);
    await page.getByLabel('Email').waitFor();
    await page.context().clearCookies();
    await page.getByLabel('Email').fill(frida.email);
    await page.getByLabel('Password').fill(frida.password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Your sign-in expired' }).waitFor();
    await snapshot(page, 'errors', 'cookie-lost');
    const text = await page.locator('main').innerText();
    expect(text).toContain('Start signing in to Photo Album again with the button below.');
    expect(text).not.toMatch(/Error:|at \w+ \(|SessionNotFound/);
    // The form brought back the app's request: starting again is signing in to the app again.
    // (Here the app lost its own cookies too, so it would refuse the answer: not followed further.)
    await page.getByRole('button', { name: 'Start again' }).click();
    await page.getByLabel('Email').waitFor();
    expect(await page.locator('main').innerText()).toContain('to continue to Photo Album');
  });
});
