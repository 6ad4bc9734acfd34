// The TOTP mends (review BN, BO) under concurrency and operator mistakes
// (review BP): setup pages opened at once, reset-totp beside a setup page,
// wrong codes sent at once past the lock, a page left open after --totp off,
// and the server secret the keys are sealed under restored from elsewhere.
// Each test here but the --totp off one failed when written.
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshDatabase } from '../support/database.js';
import { startPortcullis, type TestPortcullis } from '../support/portcullis.js';
import { authorizationRequest, discover, pageKind, REDIRECT_URI, signIn, visit, type AuthorizationRequest } from '../support/relying-party.js';
import { codeAt, CodeClock, enterCode, isCodePage, keyOn, passwordStep as passwordStepOf, SET_UP_HEADING, toApp as toAppOf, totpPerson, wrongCode } from '../support/totp.js';
import { UserAgent, type Page } from '../support/user-agent.js';

const PASSWORD = 'a long enough password';
const POSTGRES = process.env.TEST_DATABASE === 'postgres';

let pc: TestPortcullis;
let rp: oidc.Configuration;
const clock = new CodeClock();

beforeAll(async () => {
  // The per-account limit above the concurrency used here; the address limit out of the way.
  pc = await startPortcullis({ SIGN_IN_MAX_FAILURES: '10', SIGN_IN_MAX_FAILURES_PER_ADDRESS: '100000', SIGN_IN_FAILURE_WINDOW: '10m' });
  const app = await pc.createClient({ name: 'Second factor races', redirectUris: [REDIRECT_URI] });
  rp = await discover(pc.issuer, app.client_id, app.client_secret);
});

afterAll(async () => {
  await pc?.close();
});

const person = (name: string) => totpPerson(pc, name, PASSWORD);


const passwordStep = (ua: UserAgent, email: string) => passwordStepOf(ua, rp, email, PASSWORD);


const toApp = (ua: UserAgent, page: Page, request: AuthorizationRequest) => toAppOf(ua, page, request, rp);


const userId = async (email: string) => (await pc.outsideQuery<{ id: string }>('SELECT id FROM users WHERE email = $1', [email])).rows[0]!.id;
const errorsSince = (from: number) => pc.errors.slice(from).map((line) => (JSON.parse(line) as { error?: string }).error?.split('\n')[0]);

describe('setup pages opened at once', () => {
  it('by two sessions (the person on two devices, or someone else who has the password): each page shows a key, none fails (500)', async () => {
    const email = await person('two-devices');
    const browsers = [new UserAgent(), new UserAgent(), new UserAgent()];
    const pages = await Promise.all(browsers.map((ua) => passwordStep(ua, email)));
    const from = pc.errors.length;
    const statuses: number[] = [];
    for (let round = 0; round < 5; round++) {
      const opened = await Promise.all(browsers.map((ua, i) => ua.open(pages[i]!.page.url)));
      statuses.push(...opened.map((page) => page.status));
    }
    // SecondFactors.stepFor threw "the TOTP key made for this session was replaced at once by another session".
    expect(errorsSince(from)).toEqual([]);
    expect(statuses.filter((status) => status !== 200)).toEqual([]);
    pc.errors.length = from;
  });

  it('in two tabs of one session: both show the same key, the one its row keeps ("a reload or a second tab shows the key the app already scanned")', async () => {
    const email = await person('two-tabs');
    const ua = new UserAgent();
    const { page } = await passwordStep(ua, email);
    expect(page.html).toContain(SET_UP_HEADING);
    const id = await userId(email);
    const shownPerRound: string[][] = [];
    for (let round = 0; round < 10; round++) {
      // As before the first page of a setup: no key yet.
      await pc.outsideQuery('DELETE FROM totp_secrets WHERE user_id = $1', [id]);
      const tabs = await Promise.all([0, 1, 2, 3].map(() => ua.open(page.url)));
      shownPerRound.push(tabs.map((tab) => keyOn(tab).secret));
    }
    expect(shownPerRound.filter((shown) => new Set(shown).size > 1)).toEqual([]);
  });
});

describe.runIf(POSTGRES)('user reset-totp beside a setup page', () => {
  it("takes its locks in the order a setup page's key takes them (users, then totp_secrets): neither fails with a deadlock", async () => {
    const email = await person('reset-beside');
    const ua = new UserAgent();
    const first = await passwordStep(ua, email);
    expect(first.page.html).toContain(SET_UP_HEADING);
    await passwordStep(new UserAgent(), email); // the key is now another session's: ua's page makes a new one
    const id = await userId(email);
    const from = pc.errors.length;
    // A reader of the person's row (as a setup page's FOR SHARE is) holds reset-totp's
    // transaction at its UPDATE of users, whatever it did before that.
    const reader = pc.outsideConnection();
    const watcher = pc.outsideConnection();
    await reader.connect();
    await watcher.connect();
    const waitingOn = async (statement: string) => {
      for (let i = 0; i < 100; i++) {
        const { rows } = await watcher.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1", [`%${statement}%`]);
        if (rows[0]!.n > 0) return true;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      return false;
    };
    try {
      await reader.query('BEGIN');
      await reader.query('SELECT 1 FROM users WHERE id = $1 FOR SHARE', [id]);
      const reset = pc.cli(['user', 'reset-totp', email]);
      expect(await waitingOn('signed_out_at')).toBe(true);
      // The setup page opened meanwhile: its key's INSERT shares the person's row with the reader.
      const opened = ua.open(first.page.url);
      await waitingOn('INSERT INTO totp_secrets');
      await reader.query('COMMIT');
      const [done, page] = await Promise.all([reset, opened]);
      expect([done.code, done.stderr]).toEqual([0, '']);
      expect(page.status).not.toBe(500);
      expect(errorsSince(from).filter((error) => error?.includes('deadlock'))).toEqual([]);
    } finally {
      await reader.end();
      await watcher.end();
      pc.errors.length = from;
    }
  });
});

describe('the lock after 100 wrong codes in a row', () => {
  it('checks no more than 100 wrong codes, also when several are sent at once', async () => {
    const email = await person('guessed-at-once');
    const ua = new UserAgent();
    const { request, page } = await passwordStep(ua, email);
    const { totp } = keyOn(page);
    await toApp(ua, await enterCode(ua, page, codeAt(totp, await clock.freshStep(email))), request);
    const id = await userId(email);
    // 99 wrong codes in a row already.
    await pc.outsideQuery('UPDATE totp_secrets SET failures = 99 WHERE user_id = $1', [id]);
    const guessers = await Promise.all(Array.from({ length: 8 }, async () => {
      const guesser = new UserAgent();
      return { guesser, page: (await passwordStep(guesser, email)).page };
    }));
    const wrong = wrongCode(totp);
    await Promise.all(guessers.map(({ guesser, page: codePage }) => enterCode(guesser, codePage, wrong)));
    const { failures } = (await pc.outsideQuery<{ failures: number }>('SELECT failures FROM totp_secrets WHERE user_id = $1', [id])).rows[0]!;
    // Each increment is a wrong code that was checked against the key.
    expect(failures).toBeLessThanOrEqual(100);
  });
});

describe('--totp off while a code page is open', () => {
  it('the page opened again goes on without a code, amr ["pwd"] (README: "a code page left open goes on without one")', async () => {
    const email = await person('left-open');
    const ua = new UserAgent();
    const { request, page } = await passwordStep(ua, email);
    expect(page.html).toContain(SET_UP_HEADING);
    expect((await pc.cli(['user', 'update', email, '--totp', 'off'])).code).toBe(0);
    const reopened = await ua.open(page.url, {}, REDIRECT_URI);
    expect(isCodePage(reopened)).toBe(false);
    expect((await toApp(ua, reopened, request)).claims()!.amr).toEqual(['pwd']);
  });
});

describe("the server secret 'totp keys' restored from another deployment (same ENCRYPTION_KEYS)", () => {
  it('is named as what does not open the keys: the start refuses, or the failure says so, not "set ENCRYPTION_KEYS"', async () => {
    const keys = { ENCRYPTION_KEYS: 'review-bp-encryption-key-0123456789abcdefghij' };
    const database = await freshDatabase();
    const mine = await startPortcullis(keys, database);
    const theirs = await startPortcullis(keys);
    let restarted: TestPortcullis | undefined;
    try {
      expect((await mine.cli(['user', 'create', '--email', 'kept@example.com', '--password-stdin', '--totp', 'required'], `${PASSWORD}\n`)).code).toBe(0);
      const client = await mine.createClient({ name: 'Kept app', redirectUris: [REDIRECT_URI] });
      const ua = new UserAgent();
      const page = await signIn(ua, await visit(ua, (await authorizationRequest(await discover(mine.issuer, client.client_id, client.client_secret), 'openid')).url), 'kept@example.com', PASSWORD);
      const { totp } = keyOn(page);
      expect(pageKind(await enterCode(ua, page, codeAt(totp, await clock.freshStep('kept'))))).not.toBe('other');
      // The row of another database (a backup of staging, say), put in place of this one's.
      const other = (await theirs.outsideQuery<{ secret: string }>("SELECT secret FROM server_secrets WHERE name = 'totp keys'")).rows[0]!.secret;
      await mine.outsideQuery("UPDATE server_secrets SET secret = $1 WHERE name = 'totp keys'", [other]);
      await mine.close();
      let refused: unknown;
      restarted = await startPortcullis(keys, database).catch((error: unknown) => {
        refused = error;
        return undefined;
      });
      if (refused) {
        expect(String(refused)).toContain("'totp keys'");
        return;
      }
      const again = new UserAgent();
      const codePage = await signIn(again, await visit(again, (await authorizationRequest(await discover(restarted!.issuer, client.client_id, client.client_secret), 'openid')).url), 'kept@example.com', PASSWORD);
      await enterCode(again, codePage, codeAt(totp, await clock.freshStep('kept')));
      const logged = restarted!.errors.join('\n');
      expect(logged).not.toContain('set ENCRYPTION_KEYS to include the key');
      expect(logged).toContain("'totp keys'");
    } finally {
      await theirs.close();
      if (restarted) {
        restarted.errors.length = 0;
        await restarted.close();
      }
      await database.drop();
    }
  });
});
