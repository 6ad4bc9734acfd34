// Review BU: two-step verification turned on by the person on the account
// page (POST /account/two-step), as the last review before 0.5.37 saw it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPortcullis, type TestPortcullis } from '../support/portcullis.js';
import { ACCOUNT_PASSWORD, isAccountPage, openSignedIn as openSignedInOf, peopleOf } from '../support/account-page.js';
import { deny, pageKind, signIn } from '../support/relying-party.js';
import { alertOn, CodeClock, enterCode, keyOn, SET_UP_HEADING } from '../support/totp.js';
import { UserAgent, type Page } from '../support/user-agent.js';

let pc: TestPortcullis;

beforeAll(async () => {
  pc = await startPortcullis({ LOG_LEVEL: 'info' });
});

afterAll(async () => {
  expect(pc?.errors ?? []).toEqual([]);
  await pc?.close();
});

const person = peopleOf(() => pc);
const accountUrl = () => `${pc.issuer}/account`;
const openSignedIn = (ua: UserAgent, email: string) => openSignedInOf(pc, ua, email);
const totpOf = async (email: string) => (JSON.parse((await pc.cli(['user', 'show', email, '--json'])).stdout) as { totp: string }).totp;

/**
 * Posts the page's "Turn on two-step verification" form with the right
 * password (signed out everywhere, this browser too) and signs in again:
 * the setup page.
 */
async function turnOn(ua: UserAgent, page: Page, email: string): Promise<Page> {
  const login = await ua.post(page, '/account/two-step', { ...UserAgent.formFields(page, '/account/two-step'), current_password: ACCOUNT_PASSWORD });
  expect(pageKind(login)).toBe('login');
  const setup = await signIn(ua, login, email, ACCOUNT_PASSWORD);
  expect(setup.html).toContain(SET_UP_HEADING);
  return setup;
}

describe('two-step verification turned on by the person (review BU)', () => {
  it('is not set up by a session elsewhere that passed the password only (README: "a stolen session alone cannot tie the account to someone else\'s phone")', async () => {
    const email = await person('Grace');
    // Someone who learned the password (or took a session cookie) is signed in on their own computer.
    const intruder = new UserAgent();
    await openSignedIn(intruder, email);
    // The person turns two-step verification on, so that the password alone is not enough.
    const ua = new UserAgent();
    const setup = await turnOn(ua, await openSignedIn(ua, email), email);

    // That other session passed no code: it must not be the one offered the key.
    const theirs = await intruder.open(accountUrl());
    const clock = new CodeClock();
    if (theirs.html.includes(SET_UP_HEADING)) {
      // What it leads to: the intruder's phone is the account's, and the person's own code is refused.
      await enterCode(intruder, theirs, await clock.freshCode(`${email} (intruder)`, keyOn(theirs).totp));
      expect(await totpOf(email)).toBe('set_up');
    }
    expect(theirs.html).not.toContain(SET_UP_HEADING);
    expect(isAccountPage(theirs)).toBe(false);

    // The person's own setup goes through with the key they were shown.
    const back = await enterCode(ua, setup, await clock.freshCode(email, keyOn(setup).totp));
    expect(isAccountPage(back), alertOn(back) ?? back.html.slice(0, 1000)).toBe(true);
    expect(back.html).toContain('On: each sign-in asks for a code');
    expect(isAccountPage(await intruder.open(accountUrl()))).toBe(false);
  });

  it('cancelled on the setup page, says that two-step verification is now required, not that the person cancelled signing in', async () => {
    const email = await person('Hedy');
    const ua = new UserAgent();
    const setup = await turnOn(ua, await openSignedIn(ua, email), email);
    const after = await deny(ua, setup);
    expect(after.url).toMatch(new RegExp(`^${pc.issuer}/account/callback\\?error=access_denied`));
    // Required from now on (only the operator turns it off): the page the person lands on must say so.
    expect(await totpOf(email)).toBe('required');
    expect(after.html).not.toContain('You cancelled signing in');
    expect(after.html).toMatch(/two-step verification/i);
  });
});
