// Online password guessing is limited: per email and per client address, for
// known and unknown emails alike, across a window that ends by itself.
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type * as oidc from 'openid-client';
import { startPortcullis, type TestPortcullis } from '../support/portcullis.js';
import { authorizationRequest, discover, pageKind, signIn, signInRefusal, visit } from '../support/relying-party.js';
import { UserAgent, type Page } from '../support/user-agent.js';

const WINDOW_SECONDS = 4;
const alice = { email: 'alice@example.com', password: 'alices long password' };
const bob = { email: 'bob@example.com', password: 'bobs long password' };

let pc: TestPortcullis;
let rp: oidc.Configuration;
let appId: string;

beforeAll(async () => {
  pc = await startPortcullis({
    SIGN_IN_MAX_FAILURES: '3',
    SIGN_IN_MAX_FAILURES_PER_ADDRESS: '5',
    SIGN_IN_FAILURE_WINDOW: `${WINDOW_SECONDS}s`,
    // Browsers at different addresses, told apart by X-Forwarded-For.
    TRUST_PROXY: 'true',
  });
  await pc.createUser(alice.email, alice.password);
  await pc.createUser(bob.email, bob.password);
  const app = await pc.createClient({ name: 'Throttled app', redirectUris: ['http://127.0.0.1:9999/callback'] });
  rp = await discover(pc.issuer, app.client_id, app.client_secret);
  appId = app.client_id;
});

afterAll(async () => {
  expect(pc?.errors ?? []).toEqual([]);
  await pc?.close();
});

/** A browser at `address` on the login page of a fresh authorization request. */
async function loginPage(address: string): Promise<{ ua: UserAgent; page: Page }> {
  const ua = new UserAgent({ 'x-forwarded-for': address });
  const page = await visit(ua, (await authorizationRequest(rp, 'openid')).url);
  expect(pageKind(page)).toBe('login');
  return { ua, page };
}

async function attempt(address: string, email: string, password: string): Promise<Page> {
  const { ua, page } = await loginPage(address);
  return signIn(ua, page, email, password);
}

function expectRefused(page: Page): void {
  expect(signInRefusal(page)).toBe('throttled');
  // Neither field is known to be wrong (the password may be right), but the
  // field a screen reader lands on reads out why, and so does the title.
  expect(page.html).not.toContain('aria-invalid');
  expect(page.html).toMatch(/<title>Error: Too many failed sign-ins – Sign in to \u2068[^<]+\u2069 · /);
  expect(page.html).toMatch(/<input id="password"[^>]* aria-describedby="sign-in-error"[^>]* autofocus>/);
  // The window is seconds long here: the page rounds up to a minute.
  expect(page.html).toContain('Try again in a minute.');
}

/** The limits named by the refusals logged since line `from`. */
function refusals(from: number): string[] {
  return pc.log
    .slice(from)
    .map((line) => JSON.parse(line) as { message: string; limits?: string; client?: string })
    .filter((line) => line.message === 'sign-in refused: too many failures')
    .map((line) => {
      expect(line.client).toBe(appId);
      return line.limits!;
    });
}

const wait = (seconds: number) => new Promise((resolve) => setTimeout(resolve, seconds * 1000));

it('refuses an email after too many wrong passwords, the right one too, until the window ends; others sign in meanwhile', async () => {
  for (let i = 0; i < 3; i++) {
    const page = await attempt('203.0.113.1', alice.email, 'a wrong guess');
    expect(signInRefusal(page)).toBe('wrong_credentials');
  }
  // From another address as well: the limit protects the account, wherever the guesses come from.
  const logged = pc.log.length;
  expectRefused(await attempt('203.0.113.2', alice.email, alice.password));
  // The log tells operators which limit it was (the page does not: see expectRefused).
  expect(refusals(logged)).toEqual(['account']);
  expect(pageKind(await attempt('203.0.113.3', bob.email, bob.password))).toBe('consent');

  await wait(WINDOW_SECONDS + 0.5);
  expect(pageKind(await attempt('203.0.113.1', alice.email, alice.password))).toBe('consent');
});

it('a form sent with a field empty (no browser check stopped it) says which to fill, marks only that one, and counts no failure', async () => {
  const cleo = { email: 'cleo@example.com', password: 'cleos long password' };
  await pc.createUser(cleo.email, cleo.password);
  const noPassword = await attempt('203.0.113.80', cleo.email, '');
  expect(signInRefusal(noPassword)).toBe('incomplete');
  expect(noPassword.html).toContain('>Enter your password.<');
  expect(noPassword.html).toMatch(/<input id="email"[^>]* value="cleo@example.com" aria-describedby="sign-in-error" >/);
  expect(noPassword.html).toMatch(/<input id="password"[^>]* aria-invalid="true" aria-describedby="sign-in-error" autofocus>/);
  const nothing = await attempt('203.0.113.80', '', '');
  expect(nothing.html).toContain('>Enter your email and password.<');
  expect(nothing.html).toMatch(/<input id="email"[^>]* aria-invalid="true"/);
  // Well past the limit of either count, and nobody is refused for it.
  for (let i = 0; i < 6; i++) expect(signInRefusal(await attempt('203.0.113.80', cleo.email, ''))).toBe('incomplete');
  expect(pageKind(await attempt('203.0.113.80', cleo.email, cleo.password))).not.toBe('login');
});

it('treats an unknown email the same, so the refusal reveals no accounts', async () => {
  for (let i = 0; i < 3; i++) expect(signInRefusal(await attempt('203.0.113.10', 'nobody@example.com', 'a guess'))).toBe('wrong_credentials');
  expectRefused(await attempt('203.0.113.11', 'nobody@example.com', 'a guess'));
});

it('an account made, or deleted, with the CLI does not inherit the guesses made at its address before', async () => {
  const nadia = { email: 'nadia@example.com', password: 'nadias long password' };
  for (let i = 0; i < 3; i++) expect(signInRefusal(await attempt('203.0.113.20', nadia.email, 'a guess'))).toBe('wrong_credentials');
  expectRefused(await attempt('203.0.113.21', nadia.email, nadia.password));
  await pc.createUser(nadia.email, nadia.password);
  expect(pageKind(await attempt('203.0.113.22', nadia.email, nadia.password))).toBe('consent');
  // Guessed at again, then deleted and made anew (a mistyped account, say): the new one starts clean.
  for (let i = 0; i < 3; i++) expect(signInRefusal(await attempt('203.0.113.23', nadia.email, 'a guess'))).toBe('wrong_credentials');
  expect((await pc.cli(['user', 'delete', nadia.email])).code).toBe(0);
  await pc.createUser(nadia.email, 'nadias second password');
  expect(pageKind(await attempt('203.0.113.24', nadia.email, 'nadias second password'))).toBe('consent');
});

it('refuses an address that tries too many emails, even with a right password; other addresses are not affected', async () => {
  for (let i = 0; i < 5; i++) expect(signInRefusal(await attempt('198.51.100.9', `guess${i}@example.com`, 'a guess'))).toBe('wrong_credentials');
  const logged = pc.log.length;
  expectRefused(await attempt('198.51.100.9', bob.email, bob.password));
  expect(refusals(logged)).toEqual(['address']);
  expect(pageKind(await attempt('198.51.100.10', bob.email, bob.password))).toBe('consent');
});

it('counts an IPv6 client by its /64 network, which one host may use the whole of', async () => {
  for (let i = 0; i < 5; i++) expect(signInRefusal(await attempt(`2001:db8:7:7::${i + 1}`, `spray${i}@example.com`, 'a guess'))).toBe('wrong_credentials');
  expectRefused(await attempt('2001:db8:7:7:aaaa:bbbb:cccc:dddd', bob.email, bob.password));
  expect(pageKind(await attempt('2001:db8:7:8::1', bob.email, bob.password))).toBe('consent');
});

it('counts an IPv4 client as itself however a proxy writes it (IPv4-mapped IPv6 in any notation, with a port), not in one count with every other', async () => {
  // With a port, as some proxies write it, too.
  const forms = ['198.51.100.60', '::ffff:198.51.100.60', '::FFFF:C633:643C', '0:0:0:0:0:ffff:198.51.100.60', '64:ff9b::198.51.100.60', '198.51.100.60:51234', '[::ffff:198.51.100.60]:443'];
  for (const [i, form] of forms.slice(0, 5).entries()) expect(signInRefusal(await attempt(form, `mapped${i}@example.com`, 'a guess'))).toBe('wrong_credentials');
  expectRefused(await attempt('::ffff:198.51.100.60', bob.email, bob.password));
  for (const form of forms.slice(5)) expectRefused(await attempt(form, bob.email, bob.password));
  expect(pageKind(await attempt('::ffff:198.51.100.61', bob.email, bob.password))).toBe('consent');
  expect(pageKind(await attempt('::1', bob.email, bob.password))).toBe('consent');
});

it('takes the address the proxy appended, not the ones the client wrote before it in X-Forwarded-For', async () => {
  // One proxy in front (TRUST_PROXY=true): it appends the address it saw to whatever the client sent.
  for (let i = 0; i < 5; i++) expect(signInRefusal(await attempt(`203.0.113.${i}, 198.51.100.77`, `spoof${i}@example.com`, 'a guess'))).toBe('wrong_credentials');
  expectRefused(await attempt('203.0.113.99, 198.51.100.77', bob.email, bob.password));
  expect(pageKind(await attempt('198.51.100.78', bob.email, bob.password))).toBe('consent');
});

it('a right password clears the count of that email', async () => {
  const carol = { email: 'carol@example.com', password: 'carols long password' };
  await pc.createUser(carol.email, carol.password);
  for (let i = 0; i < 2; i++) expect(signInRefusal(await attempt('192.0.2.1', carol.email, 'typo'))).toBe('wrong_credentials');
  expect(pageKind(await attempt('192.0.2.1', carol.email, carol.password))).toBe('consent');
  for (let i = 0; i < 2; i++) expect(signInRefusal(await attempt('192.0.2.2', carol.email, 'typo'))).toBe('wrong_credentials');
  expect(pageKind(await attempt('192.0.2.2', carol.email, carol.password))).toBe('consent');
});

it('holds the limit against guesses sent at once: no more passwords are checked than it allows', async () => {
  const dave = { email: 'dave@example.com', password: 'daves long password' };
  await pc.createUser(dave.email, dave.password);
  // Each guess from its own address, so that only the email's limit (3) applies.
  const pages = await Promise.all(Array.from({ length: 8 }, (_, i) => loginPage(`192.0.2.${100 + i}`)));
  const answers = await Promise.all(pages.map(({ ua, page }) => signIn(ua, page, dave.email, 'a wrong guess')));
  const refusals = answers.map(signInRefusal);
  expect(refusals.filter((refusal) => refusal === 'wrong_credentials')).toHaveLength(3);
  expect(refusals.filter((refusal) => refusal === 'throttled')).toHaveLength(5);
});

it('lets a burst of right passwords for one email in, a few at a time, none refused', async () => {
  const erin = { email: 'erin@example.com', password: 'erins long password' };
  await pc.createUser(erin.email, erin.password);
  // Twice the email's limit (3) at once, each from its own address.
  const pages = await Promise.all(Array.from({ length: 6 }, (_, i) => loginPage(`192.0.2.${200 + i}`)));
  const answers = await Promise.all(pages.map(({ ua, page }) => signIn(ua, page, erin.email, erin.password)));
  for (const page of answers) expect(pageKind(page)).toBe('consent');
});

it('a browser that signed in to the account before still signs in while others\' guesses hold the email; each such browser has a limit of its own; a new password ends that', async () => {
  const frank = { email: 'frank@example.com', password: 'franks long password' };
  await pc.createUser(frank.email, frank.password);
  // Frank's browsers, asked for the password each time (prompt=login), as after a sign-out.
  const browser = (address: string) => {
    const ua = new UserAgent({ 'x-forwarded-for': address });
    return async (password: string) => signIn(ua, await visit(ua, (await authorizationRequest(rp, 'openid', { prompt: 'login' })).url), frank.email, password);
  };
  const laptop = new UserAgent({ 'x-forwarded-for': '192.0.2.30' });
  const fromLaptop = async (password: string) =>
    signIn(laptop, await visit(laptop, (await authorizationRequest(rp, 'openid', { prompt: 'login' })).url), frank.email, password);
  const fromPhone = browser('192.0.2.32');
  expect(pageKind(await fromLaptop(frank.password))).toBe('consent');
  expect(pageKind(await fromPhone(frank.password))).toBe('consent');
  const device = laptop.setCookieHeaders.find((header) => header.startsWith('_device='))!.toLowerCase().split(/;\s*/);
  expect(device).toEqual(expect.arrayContaining(['path=/interaction/', 'samesite=strict', 'httponly']));
  // A browser holding a device cookie earned for another account.
  const bobs = new UserAgent({ 'x-forwarded-for': '192.0.2.31' });
  expect(pageKind(await signIn(bobs, await visit(bobs, (await authorizationRequest(rp, 'openid')).url), bob.email, bob.password))).toBe('consent');
  const bobsLoginPage = await visit(bobs, (await authorizationRequest(rp, 'openid', { prompt: 'login' })).url);

  // Someone else's guesses, from other addresses, hold the email for every other browser
  // (that one's cookie counts for nothing here)...
  for (let i = 0; i < 3; i++) expect(signInRefusal(await attempt(`192.0.2.${40 + i}`, frank.email, 'a guess'))).toBe('wrong_credentials');
  expectRefused(await attempt('192.0.2.50', frank.email, frank.password));
  expectRefused(await signIn(bobs, bobsLoginPage, frank.email, frank.password));
  // ...but not for Frank's.
  expect(pageKind(await fromLaptop(frank.password))).toBe('consent');
  // Guesses from one of them reach its own limit (the email's, 3), not the other's.
  for (let i = 0; i < 3; i++) expect(signInRefusal(await fromPhone('a typo'))).toBe('wrong_credentials');
  const logged = pc.log.length;
  expectRefused(await fromPhone(frank.password));
  expect(refusals(logged)).toEqual(['device']);
  expect(pageKind(await fromLaptop(frank.password))).toBe('consent');
  expectRefused(await attempt('192.0.2.51', frank.email, frank.password));

  // A new password (after a compromise, say) leaves every browser counted with the email again.
  const newPassword = 'franks brand new password';
  const changed = await pc.cli(['user', 'set-password', frank.email, '--password-stdin'], `${newPassword}\n`);
  expect(changed.code, changed.stderr).toBe(0);
  for (let i = 0; i < 3; i++) expect(signInRefusal(await attempt(`192.0.2.${60 + i}`, frank.email, 'a guess'))).toBe('wrong_credentials');
  expectRefused(await fromLaptop(newPassword));
});

it('a refused sign-in is answered with a redirect to its page, which says why once (Post/Redirect/Get): reloading it, or going back to it, sends no password again', async () => {
  const gail = { email: 'gail@example.com', password: 'gails long password' };
  await pc.createUser(gail.email, gail.password);
  const { ua, page } = await loginPage('192.0.2.90');
  const action = UserAgent.formAction(page, '/login');
  const typo = { email: gail.email, password: 'a typo' };
  const posted = await ua.post(page, action, typo, page.url);
  expect([posted.status, posted.url]).toEqual([303, page.url]);
  // One cookie, for this sign-in's pages only, that no script reads and no other site's request carries.
  const notices = ua.setCookieHeaders.filter((header) => header.startsWith('_sign_in_notice'));
  expect(notices).toHaveLength(1);
  expect(notices[0]!.toLowerCase().split(/;\s*/)).toEqual(expect.arrayContaining([`path=${new URL(page.url).pathname.toLowerCase()}`, 'samesite=strict', 'httponly']));
  expect((await ua.open(page.url, { method: 'HEAD' })).status).toBe(200); // takes nothing away
  const shown = await ua.open(page.url);
  expect([shown.status, signInRefusal(shown)]).toEqual([200, 'wrong_credentials']);
  expect(shown.html).toContain(`value="${gail.email}"`);
  expect(shown.html).not.toContain(typo.password);
  // Reloaded (a GET: nothing is sent again), the form is there without the message.
  const reloaded = await ua.open(page.url);
  expect([reloaded.status, pageKind(reloaded), signInRefusal(reloaded)]).toEqual([200, 'login', undefined]);

  // The message is this service's, for this sign-in only: another sign-in's
  // notice (planted by a related site, say), or an altered one, says nothing.
  const { ua: other, page: otherPage } = await loginPage('192.0.2.91');
  await other.post(otherPage, UserAgent.formAction(otherPage, '/login'), { email: 'mallory@example.com', password: 'x' }, otherPage.url);
  const othersNotice = other.cookie('_sign_in_notice')!;
  expect(othersNotice).toBeTruthy();
  // (Other emails: three failures would hold Gail's here, SIGN_IN_MAX_FAILURES=3.)
  await ua.post(page, action, { email: 'someone@example.com', password: 'x' }, page.url);
  ua.alterCookie('_sign_in_notice', () => othersNotice);
  const moved = await ua.open(page.url);
  expect([pageKind(moved), signInRefusal(moved)]).toEqual(['login', undefined]);
  expect(moved.html).not.toContain('mallory');
  await ua.post(page, action, { email: 'someone.else@example.com', password: 'x' }, page.url);
  ua.alterCookie('_sign_in_notice', (value) => `${Buffer.from(JSON.stringify({ reason: 'disabled', email: gail.email })).toString('base64url')}.${value.split('.')[1]}`);
  expect(signInRefusal(await ua.open(page.url))).toBeUndefined();
  // The same browser's own next refusal is told as before, and the right password goes on.
  expect(signInRefusal(await signIn(ua, page, gail.email, 'another typo'))).toBe('wrong_credentials');
  expect(pageKind(await signIn(ua, page, gail.email, gail.password))).toBe('consent');
});

it('says the wait in whole minutes as the window is set: a 2-minute window is "2 minutes", not one more', async () => {
  const minutes = await startPortcullis({ SIGN_IN_MAX_FAILURES: '1', SIGN_IN_FAILURE_WINDOW: '2m' });
  try {
    await minutes.createUser(alice.email, alice.password);
    const app = await minutes.createClient({ name: 'Patient app', redirectUris: ['http://127.0.0.1:9999/callback'] });
    const patient = await discover(minutes.issuer, app.client_id, app.client_secret);
    const tryOnce = async (password: string) => {
      const ua = new UserAgent();
      return signIn(ua, await visit(ua, (await authorizationRequest(patient, 'openid')).url), alice.email, password);
    };
    expect(signInRefusal(await tryOnce('not her password'))).toBe('wrong_credentials');
    const refused = await tryOnce('not her password either');
    expect(signInRefusal(refused)).toBe('throttled');
    expect(refused.html).toContain('Try again in 2 minutes.');
  } finally {
    await minutes.close();
  }
});

it('a sign-in with fewer X-Forwarded-For addresses than TRUST_PROXY says (once) that it is counted by the connection, which a proxy appending none gives everyone', async () => {
  const proxied = await startPortcullis({ TRUST_PROXY: '2' });
  try {
    await proxied.createUser(alice.email, alice.password);
    const app = await proxied.createClient({ name: 'Proxied app', redirectUris: ['http://127.0.0.1:9999/callback'] });
    const behind = await discover(proxied.issuer, app.client_id, app.client_secret);
    const tryWith = async (headers: Record<string, string>) => {
      const ua = new UserAgent(headers);
      return signIn(ua, await visit(ua, (await authorizationRequest(behind, 'openid', { prompt: 'login' })).url), alice.email, 'not her password');
    };
    const warnings = () => proxied.log.filter((line) => line.includes('X-Forwarded-For address')).map((line) => {
        const { level, message } = JSON.parse(line) as { level: string; message: string };
        return { level, message };
      });
    // Both proxies appended theirs: nothing to say.
    expect(signInRefusal(await tryWith({ 'x-forwarded-for': '198.51.100.20, 10.0.0.2' }))).toBe('wrong_credentials');
    expect(warnings()).toEqual([]);
    // One of two: the nearer proxy appended nothing, or the request came past the proxies.
    expect(signInRefusal(await tryWith({ 'x-forwarded-for': '10.0.0.2' }))).toBe('wrong_credentials');
    expect(signInRefusal(await tryWith({}))).toBe('wrong_credentials');
    expect(warnings()).toEqual([
      {
        level: 'warn',
        message: expect.stringMatching(/^TRUST_PROXY is 2, but a sign-in came with 1 of the X-Forwarded-For addresses it expects: .*proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for.*\(said once\)$/),
      },
    ]);
  } finally {
    await proxied.close();
  }
});

it('stores neither emails nor addresses in its counters', async () => {
  const db = pc.outsideConnection();
  await db.connect();
  try {
    const { rows } = await db.query<{ key: string }>('SELECT key FROM sign_in_failures');
    expect(rows.length).toBeGreaterThan(0);
    for (const { key } of rows) {
      expect(key).toMatch(/^(account|address|device):[\w-]{43}$/);
    }
    // Nor digests anyone could reverse by trying addresses or emails: they are keyed.
    const plain = (value: string) => createHash('sha256').update(value).digest('base64url');
    const keys = rows.map((row) => row.key.split(':')[1]);
    expect(keys).not.toContain(plain('198.51.100.9'));
    expect(keys).not.toContain(plain('guess0@example.com'));
  } finally {
    await db.end();
  }
});
