// What a person sees: login, consent, remembered consent, single sign-on, deny.
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256 } from '../support/digest.js';
import { embedded, heldAtTheLock } from '../support/locks.js';
import { startPortcullis, type TestPortcullis } from '../support/portcullis.js';
import { allow, authorizationRequest, deny, discover, logIn, pageKind, REDIRECT_URI, signIn, signInRefusal, useAnotherAccount, visit } from '../support/relying-party.js';
import { UserAgent, type Page } from '../support/user-agent.js';

const bob = { email: 'bob@example.com', password: 'a long enough password' };

let pc: TestPortcullis;
let appA: oidc.Configuration;
let appB: oidc.Configuration;

beforeAll(async () => {
  pc = await startPortcullis();
  await pc.createUser(bob.email, bob.password, 'Bob <script>alert(1)</script>');
  const a = await pc.createClient({ name: 'Calendar & Co', redirectUris: [REDIRECT_URI] });
  const b = await pc.createClient({ name: 'Notes', redirectUris: [REDIRECT_URI], public: true });
  appA = await discover(pc.issuer, a.client_id, a.client_secret);
  appB = await discover(pc.issuer, b.client_id);
});

afterAll(async () => {
  expect(pc?.errors ?? []).toEqual([]);
  await pc?.close();
});

/** Confirms sign-out on the logout page `logout` (opened with the session to end). */
function signOut(ua: UserAgent, logout: Page) {
  return ua.post(logout, UserAgent.formAction(logout, '/session/end/confirm'), { ...UserAgent.hiddenFields(logout), logout: 'yes' });
}

/** Bob signed in (through app A) on a new browser, its logout page open, and app B's consent page for `scope`. */
async function consentingWhileSignedIn(scope: string) {
  const ua = new UserAgent();
  await logIn(ua, appA, 'openid', bob);
  const logout = await ua.open(`${pc.issuer}/session/end`);
  const request = await authorizationRequest(appB, scope, { prompt: 'consent' });
  const consent = await visit(ua, request.url);
  return { ua, logout, request, consent };
}

describe('login page', () => {
  it('has labelled Email and Password inputs and a Sign in button', async () => {
    const page = await visit(new UserAgent(), (await authorizationRequest(appA, 'openid')).url);
    expect(page.status).toBe(200);
    expect(page.html).toMatch(/<label for="email">Email<\/label>/);
    expect(page.html).toMatch(/<input id="email" name="email" type="email"/);
    expect(page.html).toMatch(/<label for="password">Password<\/label>/);
    expect(page.html).toMatch(/<button[^>]*type="submit">Sign in<\/button>/);
    expect(page.html).not.toMatch(/<script|https?:\/\/[^"]*\.(css|js)/); // no script, no external assets
  });

  it("fills in an app's login_hint only when it is an email address, and then focuses the password", async () => {
    const emailField = async (hint: string) => {
      const page = await visit(new UserAgent(), (await authorizationRequest(appA, 'openid', { login_hint: hint })).url);
      expect(pageKind(page)).toBe('login');
      return /<input id="email"[^>]* value="([^"]*)"[^>]*>/.exec(page.html)?.[0];
    };
    expect(await emailField(' Bob@Example.com ')).toMatch(/value="bob@example.com"(?![^>]*autofocus)/);
    // A look-alike domain (a Cyrillic а) is shown as what it is.
    expect(await emailField('bob@ex\u0430mple.com')).toMatch(/value="bob@xn--exmple-4nf.com"/);
    // Shown as "comp@example.com" by its right-to-left override; an opaque id; markup; too long for an address.
    for (const hint of ['\u202emoc.elpmaxe@pmoc', 'user-12345', '"><b>x</b>', `${'a'.repeat(250)}@example.com`]) {
      expect(await emailField(hint)).toMatch(/value="" autofocus>$/);
    }
  });

  it('a wrong password re-shows the login page with one message for either mistake', async () => {
    const ua = new UserAgent();
    const login = await visit(ua, (await authorizationRequest(appA, 'openid')).url);
    const wrongPassword = await signIn(ua, login, bob.email, 'not the password');
    const unknownEmail = await signIn(ua, wrongPassword, 'nobody@example.com', bob.password);
    for (const page of [wrongPassword, unknownEmail]) expect(signInRefusal(page)).toBe('wrong_credentials');
    // The message is tied to both fields and named in the title (WCAG 3.3.1, 1.3.1); a fresh page has neither.
    for (const page of [wrongPassword, unknownEmail]) {
      expect(page.html).toContain('<title>Error: The email or password is not right – Sign in to \u2068Calendar &amp; Co\u2069 · ');
      expect(page.html).toMatch(/<div class="alert" role="alert" id="sign-in-error">/);
      expect(page.html).toMatch(/<input id="email"[^>]* aria-invalid="true" aria-describedby="sign-in-error"/);
      expect(page.html).toMatch(/<input id="password"[^>]* aria-invalid="true" aria-describedby="sign-in-error"/);
    }
    expect(login.html).not.toContain('aria-invalid');
    expect(login.html).toContain('<title>Sign in to \u2068Calendar &amp; Co\u2069 · ');
    const message = (html: string) => /role="alert"[^>]*>([^<]*)</.exec(html)?.[1];
    expect(message(wrongPassword.html)).toBe(message(unknownEmail.html));
    // And the right password then works in the same interaction.
    const consent = await signIn(ua, unknownEmail, bob.email, bob.password);
    expect(pageKind(consent)).toBe('consent');
  });
});

describe('a browser that keeps no cookie of ours', () => {
  it('is told so on the sign-in page it is sent to, not that its sign-in expired', async () => {
    const request = await authorizationRequest(appA, 'openid');
    const sent = await new UserAgent().open(request.url.href, {}, `${pc.issuer}/interaction/`);
    // The browser stored nothing, and sends nothing back.
    const page = await new UserAgent().open(sent.url);
    expect(page.status).toBe(400);
    expect(page.html).toContain('<h1>Your browser did not keep our cookie</h1>');
    expect(page.html).toContain('Allow cookies for this site');
    expect(page.html).not.toContain('expired');
  });
});

/** The consent page's lists of permissions: each list's labelling paragraph and its items. */
function permissionLists(html: string): [string, string[]][] {
  return [...html.matchAll(/<ul class="scopes" aria-labelledby="([^"]+)">([\s\S]*?)<\/ul>/g)].map(([, intro, items]) => [
    intro!,
    [...items!.matchAll(/<li>([^<]*)<\/li>/g)].map((item) => item[1]!),
  ]);
}

describe('consent', () => {
  it('names the client and lists each requested scope in plain words, escaped', async () => {
    const ua = new UserAgent();
    const login = await visit(ua, (await authorizationRequest(appA, 'openid profile email offline_access', { prompt: 'consent' })).url);
    const consent = await signIn(ua, login, bob.email, bob.password);
    expect(pageKind(consent)).toBe('consent');
    // Every mention escaped: the title, the heading, the list's introduction, the note under the buttons.
    expect(consent.html.split('Calendar &amp; Co').length - 1).toBeGreaterThanOrEqual(4);
    expect(consent.html).not.toContain('Calendar & Co');
    expect(consent.html).toContain('See your name');
    expect(consent.html).toContain('See your email address');
    expect(consent.html).toContain('Keep access while you are not using it');
    expect(consent.html).not.toContain('as you allowed before');
    expect(consent.html).toMatch(/>Allow<\/button>/);
    expect(consent.html).toMatch(/>Deny<\/button>/);
    expect(consent.html).not.toContain('<script>alert(1)</script>');
    expect(consent.html).toContain('&lt;script&gt;');
    // Where Allow or Deny leads: the redirect URI's host, which the app's name cannot fake.
    expect(consent.html).toContain('you then go back to <strong class="destination">127.0.0.1:9999</strong>');
  });

  it('shows a registered logo and links, escaped', async () => {
    const branded = await pc.cli([
      'client', 'create', '--name', 'Branded', '--redirect-uri', REDIRECT_URI, '--json',
      '--logo-uri', 'https://cdn.example.com/logo.png?a=1&b="2"', '--tos-uri', 'https://example.com/tos',
    ]);
    const { client_id, client_secret } = JSON.parse(branded.stdout);
    const rp = await discover(pc.issuer, client_id, client_secret);
    const ua = new UserAgent();
    const consent = await signIn(ua, await visit(ua, (await authorizationRequest(rp, 'openid email')).url), bob.email, bob.password);
    expect(consent.html).toContain('<img class="logo" src="https://cdn.example.com/logo.png?a=1&amp;b=%222%22" alt="" width="48" height="48" referrerpolicy="no-referrer">');
    expect(consent.html).toContain('href="https://example.com/tos" rel="noopener noreferrer"');
  });

  it('shows a logo on http://localhost or 127.0.0.1 (development), which its CSP lets load, and leaves off one it cannot', async () => {
    const consentFor = async (logo: string) => {
      const created = await pc.cli(['client', 'create', '--name', 'Local', '--redirect-uri', REDIRECT_URI, '--logo-uri', logo, '--json']);
      const { client_id, client_secret } = JSON.parse(created.stdout);
      const rp = await discover(pc.issuer, client_id, client_secret);
      const ua = new UserAgent();
      return signIn(ua, await visit(ua, (await authorizationRequest(rp, 'openid')).url), bob.email, bob.password);
    };
    /** Whether the page's img-src lets `url` load (its sources: scheme, or scheme://host:*). */
    const allowsImage = (page: Page, url: string) => {
      const sources = /img-src ([^;]+)/.exec(page.headers!.get('content-security-policy')!)![1]!.split(' ');
      const { protocol, hostname } = new URL(url);
      return sources.includes(protocol) || sources.includes(`${protocol}//${hostname}:*`);
    };
    for (const logo of ['http://localhost:8080/logo.png', 'http://127.0.0.1:8080/logo.png', 'https://cdn.example.com/logo.png']) {
      const consent = await consentFor(logo);
      expect(pageKind(consent)).toBe('consent');
      expect(consent.html).toContain(`<img class="logo" src="${logo}"`);
      expect(allowsImage(consent, logo)).toBe(true);
    }
    // A CSP source cannot name an IPv6 address: the browser would show a broken image.
    const ipv6 = await consentFor('http://[::1]:8080/logo.png');
    expect(pageKind(ipv6)).toBe('consent');
    expect(ipv6.html).not.toContain('<img');
  });

  it('leaves off plain http addresses on other hosts that an earlier release registered (a logo, a home page)', async () => {
    const created = await pc.cli(['client', 'create', '--name', 'Legacy', '--redirect-uri', REDIRECT_URI, '--json']);
    const { client_id, client_secret } = JSON.parse(created.stdout);
    const db = pc.outsideConnection();
    await db.connect();
    try {
      await db.query(`UPDATE clients SET metadata = metadata || '{"logo_uri": "http://legacy.example.com/logo.png", "client_uri": "http://legacy.example.com/", "tos_uri": "http://legacy.example.com/tos"}' WHERE client_id = $1`, [client_id]);
    } finally {
      await db.end();
    }
    const rp = await discover(pc.issuer, client_id, client_secret);
    const ua = new UserAgent();
    const consent = await signIn(ua, await visit(ua, (await authorizationRequest(rp, 'openid')).url), bob.email, bob.password);
    expect(pageKind(consent)).toBe('consent');
    expect(consent.html).not.toContain('legacy.example.com');
  });

  it('Deny sends access_denied back to the client', async () => {
    const ua = new UserAgent();
    const request = await authorizationRequest(appA, 'openid');
    const consent = await signIn(ua, await visit(ua, request.url), bob.email, bob.password);
    const back = await deny(ua, consent);
    const callback = new URL(back.url);
    expect(`${callback.origin}${callback.pathname}`).toBe(REDIRECT_URI);
    expect(callback.searchParams.get('error')).toBe('access_denied');
    expect(callback.searchParams.get('state')).toBe(request.state);
    await expect(
      oidc.authorizationCodeGrant(appA, callback, { pkceCodeVerifier: request.verifier, expectedState: request.state }),
    ).rejects.toMatchObject({ error: 'access_denied' });
  });

  it('Deny after Allow on the same page withdraws the first consent Allow saved, unless another sign-in used it meanwhile', async () => {
    const allowed = (ua: UserAgent, consent: Page) => ua.post(consent, UserAgent.formAction(consent, '/confirm'), UserAgent.hiddenFields(consent), `${pc.issuer}/auth/`);
    const denied = async (ua: UserAgent, consent: Page) => {
      const back = await ua.post(consent, UserAgent.formAction(consent, '/abort'), UserAgent.hiddenFields(consent), REDIRECT_URI);
      return new URL(back.url).searchParams.get('error');
    };
    const consentPage = async (ua: UserAgent, who: { email: string; password: string }) => {
      const page = await signIn(ua, await visit(ua, (await authorizationRequest(appA, 'openid')).url), who.email, who.password);
      expect(pageKind(page)).toBe('consent');
      return page;
    };
    // Allow, then Deny before the redirect that follows Allow is taken: the app is told no, and the page is shown again next time.
    const dee = { email: 'dee@example.com', password: 'dees long password' };
    await pc.createUser(dee.email, dee.password);
    const deesBrowser = new UserAgent();
    const deesPage = await consentPage(deesBrowser, dee);
    expect((await allowed(deesBrowser, deesPage)).status).toBe(303);
    expect(await denied(deesBrowser, deesPage)).toBe('access_denied');
    expect((await logIn(new UserAgent(), appA, 'openid', dee)).seen).toEqual(['login', 'consent']);
    // Meanwhile another browser of the same person signed in and got tokens under that consent: it stays.
    const ezra = { email: 'ezra@example.com', password: 'ezras long password' };
    await pc.createUser(ezra.email, ezra.password);
    const ezrasBrowser = new UserAgent();
    const ezrasPage = await consentPage(ezrasBrowser, ezra);
    expect((await allowed(ezrasBrowser, ezrasPage)).status).toBe(303);
    const elsewhere = await logIn(new UserAgent(), appA, 'openid', ezra);
    expect(elsewhere.seen).toEqual(['login']);
    expect(await denied(ezrasBrowser, ezrasPage)).toBe('access_denied');
    expect((await oidc.tokenIntrospection(appA, elsewhere.tokens.access_token)).active).toBe(true);
    expect((await logIn(new UserAgent(), appA, 'openid', ezra)).seen).toEqual(['login']);
  });

  it('is remembered per person and client, and new scopes ask only for those', async () => {
    const ua = new UserAgent();
    const first = await logIn(ua, appA, 'openid email', bob);
    expect(first.seen).toEqual(['login', 'consent']);

    const again = await logIn(ua, appA, 'openid email', bob);
    expect(again.seen).toEqual([]);

    // In a new browser the password is needed again, but not the consent.
    const elsewhere = await logIn(new UserAgent(), appA, 'openid email', bob);
    expect(elsewhere.seen).toEqual(['login']);

    const more = await authorizationRequest(appA, 'openid email profile');
    const consent = await visit(ua, more.url);
    expect(pageKind(consent)).toBe('consent');
    // What is new first; then what the request asks for that was given before,
    // which Allow keeps too: the person sees all they agree to.
    expect(permissionLists(consent.html)).toEqual([
      ['permissions-intro', ['See your name']],
      ['already-given-intro', ['Confirm that it is you when you sign in', 'See your email address and whether it is verified']],
    ]);
    const back = await allow(ua, consent);
    const tokens = await oidc.authorizationCodeGrant(appA, new URL(back.url), {
      pkceCodeVerifier: more.verifier,
      expectedState: more.state,
      expectedNonce: more.nonce,
    });
    expect(tokens.scope?.split(' ').sort()).toEqual(['email', 'openid', 'profile']);
  });
});

describe('a finished interaction', () => {
  it("opened again (Back from the app) says what this browser did there, and leads on to the app, not that the sign-in expired", async () => {
    const app = await pc.createClient({ name: 'Homely', redirectUris: [REDIRECT_URI], postLogoutRedirectUris: [REDIRECT_URI] });
    const config = await discover(pc.issuer, app.client_id, app.client_secret);
    const ua = new UserAgent();
    const login = await visit(ua, (await authorizationRequest(config, 'openid email')).url);
    const consent = await signIn(ua, login, bob.email, bob.password);
    expect(pageKind(consent)).toBe('consent');
    // Back from the consent page: the sign-in page's step is done, and the consent's goes on.
    const backToSignIn = await ua.open(login.url);
    expect([backToSignIn.status, backToSignIn.html.includes('<h1>You already signed in</h1>')]).toEqual([200, true]);
    expect(backToSignIn.html).toContain('A sign-in to <bdi>Homely</bdi> is still in progress');
    expect(backToSignIn.html).toContain(`href="${new URL(consent.url).pathname}">Continue signing in`);
    expect(new URL((await allow(ua, consent)).url).searchParams.has('code')).toBe(true);

    // Back from the app: no link to it, as it registered no home page.
    const back = await ua.open(consent.url);
    expect([back.status, pageKind(back)]).toEqual([200, 'other']);
    expect(back.html).toContain('<h1>You already allowed this</h1>');
    expect(back.html).toContain('You allowed <bdi>Homely</bdi> from this page already.');
    expect(back.html).toContain('go forward in your browser');
    expect(back.html).not.toContain('role="alert"');
    // With a home page registered since, the page leads there.
    const updated = await pc.cli(['client', 'update', app.client_id, '--client-uri', 'https://homely.example/']);
    expect(updated.code, updated.stderr).toBe(0);
    const deadline = Date.now() + 5000;
    while (!(await ua.open(consent.url)).html.includes('<a class="button" href="https://homely.example/">Go to <bdi>Homely</bdi></a>')) {
      expect(Date.now()).toBeLessThan(deadline);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    // Only the browser that finished it is told so.
    const elsewhere = await new UserAgent().open(consent.url);
    expect([elsewhere.status, elsewhere.html.includes('Your sign-in expired')]).toEqual([400, true]);

    // Deny is remembered as such.
    const again = await visit(ua, (await authorizationRequest(config, 'openid profile')).url);
    expect(pageKind(again)).toBe('consent');
    expect(new URL((await deny(ua, again)).url).searchParams.get('error')).toBe('access_denied');
    expect((await ua.open(again.url)).html).toContain('You declined what <bdi>Homely</bdi> asked for from this page already.');
    // "Stay signed in" forgets nothing; a sign-out on this browser forgets
    // what it did, also one on the way back to the app.
    const end = `${pc.issuer}/session/end?${new URLSearchParams({ client_id: app.client_id, post_logout_redirect_uri: REDIRECT_URI })}`;
    let logout = await ua.open(end);
    await ua.post(logout, UserAgent.formAction(logout, '/session/end/confirm'), UserAgent.hiddenFields(logout), REDIRECT_URI);
    expect((await ua.open(again.url)).status).toBe(200);
    logout = await ua.open(end);
    expect((await ua.post(logout, UserAgent.formAction(logout, '/session/end/confirm'), { ...UserAgent.hiddenFields(logout), logout: 'yes' }, REDIRECT_URI)).url).toContain(REDIRECT_URI);
    const forgotten = await ua.open(consent.url);
    expect([forgotten.status, forgotten.html.includes('Your sign-in expired')]).toEqual([400, true]);
  });

  it('Allow sent again once its first answer was followed (a double click whose first answer the browser dropped) offers the request again, which reaches the app', async () => {
    const app = await pc.createClient({ name: 'Double', redirectUris: [REDIRECT_URI] });
    const config = await discover(pc.issuer, app.client_id, app.client_secret);
    const ua = new UserAgent();
    const request = await authorizationRequest(config, 'openid');
    const consent = await signIn(ua, await visit(ua, request.url), bob.email, bob.password);
    expect(pageKind(consent)).toBe('consent');
    const first = await allow(ua, consent);
    expect(new URL(first.url).searchParams.has('code')).toBe(true);
    const second = await ua.post(consent, UserAgent.formAction(consent, '/confirm'), UserAgent.formFields(consent, '/confirm'), REDIRECT_URI);
    expect([second.status, second.html.includes('<h1>You already allowed this</h1>')]).toEqual([200, true]);
    expect(second.html).toContain('If <bdi>Double</bdi> did not open, continue to it with the button below.');
    expect(second.html).toContain('<button class="primary" type="submit">Continue to <bdi>Double</bdi></button>');
    // Deny sent after Allow went through is told what was done, and offered nothing that would overrule it.
    const denied = await deny(ua, consent);
    expect([denied.status, denied.html.includes('<h1>You already allowed this</h1>'), denied.html.includes('Continue to')]).toEqual([200, true, false]);
    // The request again: consent given, it goes straight to the app, with the app's own state.
    const callback = await ua.post(second, UserAgent.formAction(second, '/auth'), UserAgent.formFields(second, '/auth'), REDIRECT_URI);
    const tokens = await oidc.authorizationCodeGrant(config, new URL(callback.url), { pkceCodeVerifier: request.verifier, expectedState: request.state, expectedNonce: request.nonce });
    expect(tokens.access_token).toBeTruthy();
  });

  it('resumed twice at once (a double submit) gives one authorization code, not two', async () => {
    await logIn(new UserAgent(), appA, 'openid', bob); // consent given, so the resume goes straight to the code
    const ua = new UserAgent();
    const login = await visit(ua, (await authorizationRequest(appA, 'openid')).url);
    const resume = await ua.post(login, UserAgent.formAction(login, '/login'), { email: bob.email, password: bob.password }, `${pc.issuer}/auth/`);
    expect(resume.url).toMatch(/\/auth\//);
    const answers = await Promise.all([ua.open(resume.url, {}, REDIRECT_URI), ua.open(resume.url, {}, REDIRECT_URI)]);
    const codes = answers.filter((page) => new URL(page.url).searchParams.has('code'));
    expect(codes).toHaveLength(1);
    const other = answers.find((page) => !codes.includes(page))!;
    expect(other.status).toBe(400);
    expect(other.html).toContain('Your sign-in expired');
  });

  it('posted five times at once (a double click) saves one grant', async () => {
    const app = await pc.createClient({ name: 'Impatient', redirectUris: [REDIRECT_URI] });
    const config = await discover(pc.issuer, app.client_id, app.client_secret);
    const ua = new UserAgent();
    const consent = await signIn(ua, await visit(ua, (await authorizationRequest(config, 'openid email')).url), bob.email, bob.password);
    expect(pageKind(consent)).toBe('consent');
    const action = UserAgent.formAction(consent, '/confirm');
    // Each post stops at the redirect to the authorization endpoint: the resume is another step.
    const posts = await Promise.all(Array.from({ length: 5 }, () => ua.post(consent, action, {}, `${pc.issuer}/auth/`)));
    for (const post of posts) expect(post.url).toMatch(/\/auth\//);
    const db = pc.outsideConnection();
    await db.connect();
    try {
      expect(app.client_id).toMatch(/^[\w-]+$/); // inlined: simple-protocol statements only on the embedded database
      const { rows } = await db.query(`SELECT count(*)::int AS n FROM provider_artifacts WHERE kind = 'Grant' AND client_id = '${app.client_id}'`);
      expect(rows[0].n).toBe(1);
    } finally {
      await db.end();
    }
    // And the consent given is the one the code is issued under.
    const callback = await ua.open(posts[0]!.url, {}, REDIRECT_URI);
    expect(new URL(callback.url).searchParams.has('code')).toBe(true);
  });

  it('its sign-in, choice-of-account or consent form posted many times at once, each post followed to the end: one code', async () => {
    const app = await pc.createClient({ name: 'Hasty', redirectUris: [REDIRECT_URI] });
    const config = await discover(pc.issuer, app.client_id, app.client_secret);
    const codesOf = (pages: Page[]) => pages.filter((page) => pageKind(page) === 'callback' && new URL(page.url).searchParams.has('code'));
    const each = (post: () => Promise<Page>) => Promise.all(Array.from({ length: 12 }, post));

    const ua = new UserAgent();
    const consent = await signIn(ua, await visit(ua, (await authorizationRequest(config, 'openid')).url), bob.email, bob.password);
    expect(pageKind(consent)).toBe('consent');
    const consented = await each(() => allow(ua, consent));
    expect(codesOf(consented)).toHaveLength(1);
    // The others were answered as a sign-in already used (or, sent with the
    // cookie the first answer set, as a step this browser finished), not with an error of ours.
    for (const page of consented.filter((page) => pageKind(page) !== 'callback')) expect(page.html).toMatch(/Your sign-in expired|<h1>You already allowed this<\/h1>/);

    // Consent given: the sign-in form's resume goes straight to the code.
    const login = await visit(ua, (await authorizationRequest(config, 'openid', { prompt: 'login' })).url);
    expect(pageKind(login)).toBe('login');
    expect(codesOf(await each(() => signIn(ua, login, bob.email, bob.password)))).toHaveLength(1);

    // (Whichever answer came last set this browser's session cookie: a
    // refused resume's names the session before the sign-in. Signed in anew.)
    await logIn(ua, config, 'openid', bob);
    const choice = await visit(ua, (await authorizationRequest(config, 'openid', { prompt: 'select_account' })).url);
    const chosen = await each(() => ua.post(choice, UserAgent.formAction(choice, '/select'), {}, REDIRECT_URI));
    expect(codesOf(chosen)).toHaveLength(1);
  });
});

describe('single sign-on', () => {
  it('ends SESSION_MAX_AGE after the sign-in, however often the session is used meanwhile', async () => {
    const server = await startPortcullis({ SESSION_MAX_AGE: '6s' });
    try {
      await server.createUser(bob.email, bob.password, 'Bob');
      const client = await server.createClient({ name: 'Aging', redirectUris: [REDIRECT_URI] });
      const app = await discover(server.issuer, client.client_id, client.client_secret);
      const ua = new UserAgent();
      // The sign-in's time (whole seconds) is between these two.
      const before = Date.now() - 1000;
      await logIn(ua, app, 'openid', bob);
      const after = Date.now();
      const silently = async () => new URL((await visit(ua, (await authorizationRequest(app, 'openid', { prompt: 'none' })).url)).url).searchParams;
      // Used every second (each use renews SESSION_TTL), it still ends at six.
      while (Date.now() - before < 4000) {
        expect((await silently()).get('code')).toBeTruthy();
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, after + 6500 - Date.now())));
      expect((await silently()).get('error')).toBe('login_required');
      // Signing in again starts a new one.
      expect((await logIn(ua, app, 'openid', bob)).seen).toEqual(['login']);
      expect((await silently()).get('code')).toBeTruthy();
    } finally {
      await server.close();
    }
  });

  it('prompt=select_account (Core §3.1.2.1): someone signed in chooses to go on as themselves or as someone else', async () => {
    const erin = { email: 'erin@example.com', password: 'erins long password' };
    await pc.createUser(erin.email, erin.password, 'Erin');
    const ua = new UserAgent();
    await logIn(ua, appA, 'openid email', bob);

    // Going on as the person signed in: a code for them, without the password.
    const request = await authorizationRequest(appA, 'openid email', { prompt: 'select_account' });
    const choice = await visit(ua, request.url);
    expect(choice.html).toContain('Choose an account to continue to <bdi>Calendar &amp; Co</bdi>');
    // The title names the app too (a tab list shows it), escaped.
    expect(choice.html).toMatch(/<title>Choose an account for \u2068Calendar &amp; Co\u2069 · [^<]+<\/title>/);
    expect(choice.html).toContain('Continue as <bdi>Bob &lt;script&gt;alert(1)&lt;/script&gt;</bdi> (<bdi>bob@example.com</bdi>)</button>');
    // Cancel, as on the other pages: back to the app with access_denied, and nobody signed out.
    const declined = await ua.post(choice, UserAgent.formAction(choice, '/abort'), {}, REDIRECT_URI);
    expect(pageKind(declined)).toBe('callback');
    expect(new URL(declined.url).searchParams.get('error')).toBe('access_denied');
    expect(new URL(declined.url).searchParams.get('state')).toBe(request.state);
    const stillSignedIn = await authorizationRequest(appA, 'openid email', { prompt: 'none' });
    expect(new URL((await visit(ua, stillSignedIn.url)).url).searchParams.get('code')).toBeTruthy();

    const retry = await authorizationRequest(appA, 'openid email', { prompt: 'select_account' });
    const retryChoice = await visit(ua, retry.url);
    const same = await ua.post(retryChoice, UserAgent.formAction(retryChoice, '/select'), {}, REDIRECT_URI);
    expect(pageKind(same)).toBe('callback');
    const tokens = await oidc.authorizationCodeGrant(appA, new URL(same.url), { pkceCodeVerifier: retry.verifier, expectedState: retry.state, expectedNonce: retry.nonce });
    expect(tokens.claims()?.email).toBe(bob.email);

    // Using another account: the sign-in page, and the code is for whoever signed in.
    const again = await authorizationRequest(appA, 'openid email', { prompt: 'select_account' });
    const chooser = await visit(ua, again.url);
    const login = await useAnotherAccount(ua, chooser);
    expect(pageKind(login)).toBe('login');
    // oidc-provider ends Bob's session before Erin's begins: a form the browser submits by itself.
    const handOver = await signIn(ua, login, erin.email, erin.password);
    let page = await ua.post(handOver, UserAgent.formAction(handOver, '/session/end/confirm'), UserAgent.hiddenFields(handOver), REDIRECT_URI);
    if (pageKind(page) === 'consent') page = await allow(ua, page);
    expect(pageKind(page)).toBe('callback');
    const erinsTokens = await oidc.authorizationCodeGrant(appA, new URL(page.url), { pkceCodeVerifier: again.verifier, expectedState: again.state, expectedNonce: again.nonce });
    expect(erinsTokens.claims()?.email).toBe(erin.email);

    // Nobody signed in: the sign-in page is the choice, and is not followed by another.
    const fresh = new UserAgent();
    const first = await authorizationRequest(appB, 'openid', { prompt: 'select_account' });
    const signInPage = await visit(fresh, first.url);
    expect(pageKind(signInPage)).toBe('login');
    const next = await signIn(fresh, signInPage, bob.email, bob.password);
    expect(['consent', 'callback']).toContain(pageKind(next));
  });

  it('"Not you?" on the consent page signs someone else in for the same request', async () => {
    const eve = { email: 'eve@example.com', password: 'eves own password' };
    await pc.createUser(eve.email, eve.password, 'Eve');
    const ua = new UserAgent();
    const bobs = await logIn(ua, appA, 'openid', bob); // Bob is signed in on this browser
    const app = await pc.createClient({ name: 'Shared Tablet', redirectUris: [REDIRECT_URI] });
    const rp = await discover(pc.issuer, app.client_id, app.client_secret);
    const request = await authorizationRequest(rp, 'openid', { login_hint: bob.email });
    const consent = await visit(ua, request.url);
    expect(pageKind(consent)).toBe('consent');
    expect(consent.html).toContain('bob@example.com');
    expect(consent.html).toContain('Not you? Use another account');
    // A form, not a link: the request's parameters stay out of the address bar.
    expect(consent.html).not.toMatch(/<a href="[^"]*\/auth\?/);
    const login = await useAnotherAccount(ua, consent);
    expect(pageKind(login)).toBe('login');
    // The hint named the other person: not filled in. The page says who is signed in, and what signing in as another does.
    expect(login.html).toMatch(/<input id="email"[^>]* value=""/);
    expect(login.html).toContain('<p class="muted" id="cancel-help">Cancel sends you back to <bdi>Shared Tablet</bdi> without signing in.');
    expect(login.html).toMatch(/<button class="secondary" type="submit" aria-describedby="cancel-help">Cancel<\/button>/);
    // The name isolated alone: a right-to-left one would carry the email's parentheses with it.
    expect(login.html).toContain('<p class="muted" id="signed-in-as">You are signed in as <strong><bdi>Bob &lt;script&gt;alert(1)&lt;/script&gt;</bdi> (<bdi>bob@example.com</bdi>)</strong> on this device: signing in as someone else signs them out here.</p>');
    // Read out with the email field, which has the focus: a screen reader would skip it otherwise.
    expect(login.html).toMatch(/<input id="email"[^>]* aria-describedby="signed-in-as"[^>]* autofocus>/);
    // oidc-provider ends Bob's session before Eve's begins: a form the browser submits by itself.
    expect(ua.cookie('_interaction_done')).toBeTruthy(); // Bob's sign-in through app A
    const handOver = await signIn(ua, login, eve.email, eve.password);
    expect(handOver.html).toContain('<h1>Switching accounts…</h1>');
    const endSession = UserAgent.formAction(handOver, '/session/end/confirm');
    const eveConsent = await ua.post(handOver, endSession, UserAgent.hiddenFields(handOver), REDIRECT_URI);
    expect(pageKind(eveConsent)).toBe('consent');
    // Bob's sign-out forgot what this browser finished before it (Eve's sign-in is noted afresh when she allows).
    expect(ua.cookie('_interaction_done')).toBeUndefined();
    expect(eveConsent.html).toContain('eve@example.com');
    const callback = await allow(ua, eveConsent);
    const tokens = await oidc.authorizationCodeGrant(rp, new URL(callback.url), {
      pkceCodeVerifier: request.verifier,
      expectedState: request.state,
      expectedNonce: request.nonce,
    });
    expect(tokens.claims()!.sub).not.toBe(bobs.tokens.claims()!.sub);
    expect((await oidc.fetchUserInfo(rp, tokens.access_token, tokens.claims()!.sub)).sub).toBe(tokens.claims()!.sub);
  });

  it('"Not you?" keeps a state with a line break as it was sent: a link then, since a browser posts a form\'s line breaks as CRLF', async () => {
    const ua = new UserAgent();
    await logIn(ua, appA, 'openid', bob);
    const request = await authorizationRequest(appA, 'openid', { prompt: 'consent', state: 'line1\nline2' });
    const consent = await visit(ua, request.url);
    expect(pageKind(consent)).toBe('consent');
    expect(consent.html).not.toContain('id="switch-account"');
    const login = await useAnotherAccount(ua, consent);
    expect(pageKind(login)).toBe('login');
    let page = await signIn(ua, login, bob.email, bob.password);
    if (pageKind(page) === 'consent') page = await allow(ua, page);
    expect(new URL(page.url).searchParams.get('state')).toBe('line1\nline2');
  });

  it('after login through client A, client B asks for consent but not the password', async () => {
    const ua = new UserAgent();
    const a = await logIn(ua, appA, 'openid', bob);
    expect(a.seen[0]).toBe('login');
    const b = await logIn(ua, appB, 'openid', bob);
    expect(b.seen).toEqual(['consent']);
    expect(b.tokens.claims()!.sub).toBe(a.tokens.claims()!.sub);
  });

  it('a public client must use PKCE', async () => {
    const url = oidc.buildAuthorizationUrl(appB, { redirect_uri: REDIRECT_URI, scope: 'openid', state: 'xyz' });
    const page = await visit(new UserAgent(), url);
    const callback = new URL(page.url);
    expect(callback.searchParams.get('error')).toBe('invalid_request');
    expect(callback.searchParams.get("error_description")).toMatch(/PKCE/);
  });

  it('a request whose id_token_hint names someone else gets login_required when another person signs in (Core §3.1.2.1)', async () => {
    const dana = { email: 'dana@example.com', password: 'danas own password' };
    await pc.createUser(dana.email, dana.password, 'Dana');
    const bobs = await logIn(new UserAgent(), appA, 'openid', bob);
    // Another browser, where nobody is signed in: Dana signs in, though the app named Bob.
    const ua = new UserAgent();
    const request = await authorizationRequest(appA, 'openid', { id_token_hint: bobs.tokens.id_token! });
    const login = await visit(ua, request.url);
    expect(pageKind(login)).toBe('login');
    // The hint's person is not named: the app was given no email (scope openid), and would read it off this page.
    expect(login.html).toMatch(/<input id="email"[^>]* value=""/);
    expect(login.html).not.toContain(bob.email);
    const back = new URL((await signIn(ua, login, dana.email, dana.password)).url);
    expect(back.origin + back.pathname).toBe(REDIRECT_URI);
    expect(Object.fromEntries(back.searchParams)).toMatchObject({ error: 'login_required', state: request.state });
    // The person the hint names signs in as usual.
    const asBob = await logIn(new UserAgent(), appA, 'openid', bob, { id_token_hint: bobs.tokens.id_token! });
    expect(asBob.tokens.claims()!.sub).toBe(bobs.tokens.claims()!.sub);

    // Nor does "Not you?" on the consent page get round it: Bob is signed in, the app asks for Bob, Dana signs in.
    const bobsBrowser = new UserAgent();
    await logIn(bobsBrowser, appA, 'openid', bob);
    const again = await authorizationRequest(appA, 'openid', { id_token_hint: bobs.tokens.id_token!, prompt: 'consent' });
    const consent = await visit(bobsBrowser, again.url);
    expect(pageKind(consent)).toBe('consent');
    const switched = await useAnotherAccount(bobsBrowser, consent);
    expect(pageKind(switched)).toBe('login');
    let page = await signIn(bobsBrowser, switched, dana.email, dana.password);
    // oidc-provider ends Bob's session before Dana's begins: a form the browser submits by itself.
    if (!page.url.startsWith(REDIRECT_URI)) page = await bobsBrowser.post(page, UserAgent.formAction(page, '/session/end/confirm'), UserAgent.hiddenFields(page), REDIRECT_URI);
    const answer = new URL(page.url);
    expect(answer.origin + answer.pathname).toBe(REDIRECT_URI);
    expect(answer.searchParams.get('error')).toBe('login_required');
  });

  it('prompt=select_account with an id_token_hint naming someone other than the person signed in asks for the named person to sign in', async () => {
    const fay = { email: 'fay@example.com', password: 'fays own password' };
    await pc.createUser(fay.email, fay.password, 'Fay');
    const bobs = await logIn(new UserAgent(), appA, 'openid', bob);
    // Fay is signed in on this browser; the app asks again for Bob and for the choice of account.
    const ua = new UserAgent();
    await logIn(ua, appA, 'openid', fay);
    const request = await authorizationRequest(appA, 'openid', { id_token_hint: bobs.tokens.id_token!, prompt: 'select_account' });
    const page = await visit(ua, request.url);
    // Not "Continue as Fay", which gave the app a code for Fay: the sign-in, and Fay's password does not pass it.
    expect(pageKind(page)).toBe('login');
    expect(page.html).not.toContain('Continue as');
    const refused = new URL((await signIn(ua, page, fay.email, fay.password)).url);
    expect(refused.origin + refused.pathname).toBe(REDIRECT_URI);
    expect(Object.fromEntries(refused.searchParams)).toMatchObject({ error: 'login_required', state: request.state });

    // Bob signing in gets Bob's code (Fay's session handed over first).
    const retry = await authorizationRequest(appA, 'openid', { id_token_hint: bobs.tokens.id_token!, prompt: 'select_account' });
    const login = await visit(ua, retry.url);
    expect(pageKind(login)).toBe('login');
    let next = await signIn(ua, login, bob.email, bob.password);
    if (!next.url.startsWith(REDIRECT_URI)) next = await ua.post(next, UserAgent.formAction(next, '/session/end/confirm'), UserAgent.hiddenFields(next), REDIRECT_URI);
    const tokens = await oidc.authorizationCodeGrant(appA, new URL(next.url), { pkceCodeVerifier: retry.verifier, expectedState: retry.state, expectedNonce: retry.nonce });
    expect(tokens.claims()!.sub).toBe(bobs.tokens.claims()!.sub);

    // The hint naming the person signed in: the choice, as without a hint.
    const same = await authorizationRequest(appA, 'openid', { id_token_hint: bobs.tokens.id_token!, prompt: 'select_account' });
    const choice = await visit(ua, same.url);
    expect(choice.html).toContain('Continue as <bdi>Bob');
  });

  it('prompt=login asks for the password even within a session', async () => {
    const ua = new UserAgent();
    await logIn(ua, appA, 'openid', bob);
    const forced = await logIn(ua, appA, 'openid', bob, { prompt: 'login' });
    expect(forced.seen[0]).toBe('login');
  });

  it('signing out holds against requests the browser made with the session meanwhile (each saves the session back when it ends)', async () => {
    for (let round = 0; round < 3; round++) {
      const ua = new UserAgent();
      await logIn(ua, appA, 'openid', bob);
      const logout = await ua.open(`${pc.issuer}/session/end`);
      const confirm = UserAgent.formAction(logout, '/session/end/confirm');
      // Silent authorizations (an app's hidden iframe, say) in flight as the person clicks "Sign out".
      const silently = async () => visit(ua, (await authorizationRequest(appA, 'openid', { prompt: 'none' })).url);
      const [signedOut] = await Promise.all([
        ua.post(logout, confirm, { ...UserAgent.hiddenFields(logout), logout: 'yes' }),
        silently(), silently(), silently(), silently(),
      ]);
      expect(signedOut.status).toBe(200);
      // Whichever session cookie the browser kept, nobody is signed in on it.
      const after = await visit(ua, (await authorizationRequest(appA, 'openid', { prompt: 'none' })).url);
      expect(new URL(after.url).searchParams.get('error'), `round ${round}`).toBe('login_required');
    }
  });

  it('the sign-out page asked for while silent authorizations are in flight still signs out when confirmed: their saves keep its details', async () => {
    const refused: number[] = [];
    for (let round = 0; round < 8; round++) {
      const ua = new UserAgent();
      await logIn(ua, appA, 'openid', bob);
      const silent = await Promise.all(Array.from({ length: 4 }, () => authorizationRequest(appA, 'openid', { prompt: 'none' })));
      // The silent requests load the session first; the sign-out page stores its details in it while they run.
      const inFlight = silent.map((request) => visit(ua, request.url));
      await new Promise((resolve) => setTimeout(resolve, round % 4));
      const logout = await ua.open(`${pc.issuer}/session/end`);
      await Promise.all(inFlight);
      const signedOut = await ua.post(logout, UserAgent.formAction(logout, '/session/end/confirm'), { ...UserAgent.hiddenFields(logout), logout: 'yes' });
      if (signedOut.status !== 200 || !signedOut.html.includes('You are signed out')) {
        refused.push(round); // "could not find logout details", the person still signed in
        continue;
      }
      const after = await visit(ua, (await authorizationRequest(appA, 'openid', { prompt: 'none' })).url);
      expect(new URL(after.url).searchParams.get('error'), `round ${round}`).toBe('login_required');
    }
    expect(refused).toEqual([]);
  });

  it('signing out holds against a consent finishing at the same moment, which gives the session a new id', async () => {
    let signedOut = 0;
    for (let round = 0; round < 6; round++) {
      const { ua, logout, request, consent } = await consentingWhileSignedIn('openid');
      expect(pageKind(consent)).toBe('consent');
      // Allow, up to the redirect that finishes the authorization (/auth/:uid, where the session gets its new id).
      const allowed = await ua.post(consent, UserAgent.formAction(consent, '/confirm'), UserAgent.hiddenFields(consent), `${pc.issuer}/auth/`);
      const [finished, confirmed] = await Promise.all([
        visit(ua, allowed.url),
        ua.open(new URL(UserAgent.formAction(logout, '/session/end/confirm'), pc.issuer).href, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ ...UserAgent.hiddenFields(logout), logout: 'yes' }).toString(),
        }),
      ]);
      // A sign-out that said it succeeded must hold (one that raced a stale
      // cookie may be refused instead, and can be tried again).
      if (!confirmed.url.includes('/session/end/success')) continue;
      signedOut++;
      const after = await visit(ua, (await authorizationRequest(appA, 'openid', { prompt: 'none' })).url);
      expect(new URL(after.url).searchParams.get('error'), `round ${round}`).toBe('login_required');
      // The code the consent gave was tied to the session: it is worth nothing now.
      const callback = new URL(finished.url);
      if (callback.searchParams.get('code')) {
        await expect(
          oidc.authorizationCodeGrant(appB, callback, { pkceCodeVerifier: request.verifier, expectedState: request.state, expectedNonce: request.nonce }),
        ).rejects.toMatchObject({ error: 'invalid_grant' });
      }
    }
    expect(signedOut).toBeGreaterThan(0);
  });

  it('asked by an app with no address to return to, "Stay signed in" ends on a page that leads to the app, where it registered a home page', async () => {
    const created = await pc.cli(['client', 'create', '--name', 'Homeward', '--redirect-uri', REDIRECT_URI, '--client-uri', 'https://homeward.example/', '--json']);
    expect(created.code, created.stderr).toBe(0);
    const { client_id, client_secret } = JSON.parse(created.stdout) as { client_id: string; client_secret: string };
    const app = await discover(pc.issuer, client_id, client_secret);
    const ua = new UserAgent();
    await logIn(ua, app, 'openid', bob);
    const stayFor = async (clientId: string) => {
      const logout = await ua.open(`${pc.issuer}/session/end?client_id=${clientId}`);
      return ua.post(logout, UserAgent.formAction(logout, '/session/end/confirm'), UserAgent.hiddenFields(logout));
    };
    const stayed = await stayFor(client_id);
    expect(stayed.url).toContain('/session/end/success');
    expect(stayed.html).toContain('<h1>You are still signed in</h1>');
    expect(stayed.html).toContain('<a class="button" href="https://homeward.example/">Go to <bdi>Homeward</bdi></a>');
    // Without a home page, no link: appA registered none.
    await logIn(ua, appA, 'openid', bob);
    const plain = await stayFor(appA.clientMetadata().client_id);
    expect(plain.html).toContain('<h1>You are still signed in</h1>');
    expect(plain.html).not.toContain('class="button"');
  });

  it('a consent given and then signed out of before its redirect finished ends with the sign-out, as one finished would', async () => {
    const ua = new UserAgent();
    await logIn(ua, appA, 'openid', bob);
    const request = await authorizationRequest(appB, 'openid email', { prompt: 'consent' });
    const consent = await visit(ua, request.url);
    expect(pageKind(consent)).toBe('consent');
    // Allow, and stop at the redirect that would finish the authorization (/auth/:uid).
    const allowed = await ua.post(consent, UserAgent.formAction(consent, '/confirm'), UserAgent.hiddenFields(consent), `${pc.issuer}/auth/`);
    const logout = await ua.open(`${pc.issuer}/session/end`);
    const signedOut = await signOut(ua, logout);
    expect(signedOut.url).toContain('/session/end/success');
    // The redirect, followed now, gives no code…
    const finished = await visit(ua, allowed.url);
    expect(new URL(finished.url).searchParams.get('code')).toBeNull();
    // …and the consent went with the session: the next sign-in asks for it again.
    const again = await logIn(new UserAgent(), appB, 'openid email', bob);
    expect(again.seen).toEqual(['login', 'consent']);
  });

  it.skipIf(embedded)("a sign-out that read the session's consents before one being given was saved: the consent is withdrawn all the same, and another browser's sign-in goes on", async () => {
    // Bob's phone uses the consent that the laptop's page adds a scope to.
    const phone = new UserAgent();
    const atPhone = await logIn(phone, appB, 'openid', bob);
    await new Promise((resolve) => setTimeout(resolve, 1100)); // sign-ins are timed to the second: the sign-out comes in a later one
    const { ua, logout, consent } = await consentingWhileSignedIn('openid profile');
    const uid = /\/interaction\/([^/"]+)\/confirm/.exec(consent.html)![1]!;
    const admin = pc.outsideConnection();
    await admin.connect();
    try {
      // The consent's grant is saved; the interaction's result (what the sign-out reads) waits at the lock.
      await admin.query('BEGIN');
      await admin.query(`SELECT 1 FROM provider_artifacts WHERE kind = 'Interaction' AND id = $1 FOR UPDATE`, [sha256(uid)]);
      const allowing = ua.post(consent, UserAgent.formAction(consent, '/confirm'), UserAgent.hiddenFields(consent), `${pc.issuer}/auth/`);
      await heldAtTheLock(admin);
      const signedOut = await signOut(ua, logout);
      expect(signedOut.url).toContain('/session/end/success');
      await admin.query('COMMIT');
      const allowed = await allowing;
      expect(allowed.url).not.toContain('/auth/'); // no redirect on to a code: the page says the session ended
    } finally {
      await admin.end();
    }
    // The phone's sign-in goes on: its token, and a silent renewal under the consent it holds, withdrawn now.
    const sub = atPhone.tokens.claims()!.sub;
    expect((await oidc.fetchUserInfo(appB, atPhone.tokens.access_token, sub)).sub).toBe(sub);
    const renewed = await logIn(phone, appB, 'openid', bob, { prompt: 'none' });
    expect(renewed.seen).toEqual([]);
    const db = pc.outsideConnection();
    await db.connect();
    try {
      const grantOf = async (token: string) =>
        (await db.query(`SELECT t.grant_id, g.consumed_at IS NOT NULL AS withdrawn FROM provider_artifacts t
           LEFT JOIN provider_artifacts g ON g.kind = 'Grant' AND g.payload->>'jti' = t.grant_id WHERE t.id = $1`, [sha256(token)])).rows[0];
      const before = await grantOf(atPhone.tokens.access_token);
      expect(before).toMatchObject({ withdrawn: true });
      expect(await grantOf(renewed.tokens.access_token)).toEqual(before);
    } finally {
      await db.end();
    }
    const again = await logIn(new UserAgent(), appB, 'openid profile', bob);
    expect(again.seen).toEqual(['login', 'consent']);
  });

  it.skipIf(embedded)('a sign-out that ran while a consent was resumed (its interaction used up, the session naming it not yet stored): the consent ends all the same', async () => {
    const { ua, logout, request, consent } = await consentingWhileSignedIn('openid address');
    const allowed = await ua.post(consent, UserAgent.formAction(consent, '/confirm'), UserAgent.hiddenFields(consent), `${pc.issuer}/auth/`);
    const admin = pc.outsideConnection();
    await admin.connect();
    try {
      // The session's row held: the sign-out waits to end it, and then the
      // resume (which has used up the interaction by then) waits to replace it.
      await admin.query('BEGIN');
      await admin.query(`SELECT 1 FROM provider_artifacts WHERE kind = 'Session' AND id = $1 FOR UPDATE`, [sha256(ua.cookie('_session')!)]);
      const signingOut = signOut(ua, logout);
      await heldAtTheLock(admin);
      const resuming = visit(ua, allowed.url);
      await heldAtTheLock(admin, 2);
      await admin.query('COMMIT');
      expect((await signingOut).url).toContain('/session/end/success');
      const finished = await resuming;
      const code = new URL(finished.url).searchParams.get('code');
      if (code) {
        await expect(
          oidc.authorizationCodeGrant(appB, new URL(finished.url), { pkceCodeVerifier: request.verifier, expectedState: request.state, expectedNonce: request.nonce }),
        ).rejects.toMatchObject({ error: 'invalid_grant' });
      }
    } finally {
      await admin.end();
    }
    expect((await logIn(new UserAgent(), appB, 'openid address', bob)).seen).toEqual(['login', 'consent']);
  });

  it('two tabs finishing consent at once both leave the person signed in, and one sign-out ends both', async () => {
    for (let round = 0; round < 5; round++) {
      const ua = new UserAgent();
      await logIn(ua, appA, 'openid', bob);
      // Two consents, each up to the redirect that finishes it (/auth/:uid, where the session gets a new id).
      // In either order: the browser keeps whichever new session id came last.
      const apps = round % 2 === 0 ? [appA, appB] : [appB, appA];
      const requests = [];
      for (const app of apps) requests.push(await authorizationRequest(app, 'openid', { prompt: 'consent' }));
      const pages = [];
      for (const request of requests) pages.push(await visit(ua, request.url));
      const allowed = [];
      for (const page of pages) allowed.push(await ua.post(page, UserAgent.formAction(page, '/confirm'), UserAgent.hiddenFields(page), `${pc.issuer}/auth/`));
      const finished = await Promise.all(allowed.map((page) => visit(ua, page.url)));
      for (const page of finished) expect(new URL(page.url).searchParams.get('code'), `round ${round}`).toBeTruthy();
      void requests;
      const silently = async () => new URL((await visit(ua, (await authorizationRequest(appA, 'openid', { prompt: 'none' })).url)).url).searchParams.get('error');
      expect(await silently(), `round ${round}`).toBeNull();
      const logout = await ua.open(`${pc.issuer}/session/end`);
      const signedOut = await signOut(ua, logout);
      expect(signedOut.url).toContain('/session/end/success');
      expect(await silently(), `round ${round}`).toBe('login_required');
      // …and ends both consents, whichever of the session's ids each was given through.
      for (const app of [appA, appB]) {
        const again = await logIn(new UserAgent(), app, 'openid', bob);
        expect(again.seen, `round ${round}`).toEqual(['login', 'consent']);
      }
    }
  });

  it('signing out in one browser leaves an app the offline access it was given in another, whose consent the sign-in there reused', async () => {
    const { client_id, client_secret } = await pc.createClient({ name: 'Backup', redirectUris: [REDIRECT_URI], scope: 'openid email offline_access' });
    const backup = await discover(pc.issuer, client_id, client_secret);
    const person = { email: 'olga@example.com', password: 'olgas own password' };
    await pc.createUser(person.email, person.password);
    const { tokens } = await logIn(new UserAgent(), backup, 'openid offline_access', person, { prompt: 'consent' });
    // Elsewhere, the same app without offline_access: the consent is remembered, nothing is asked.
    const laptop = new UserAgent();
    expect((await logIn(laptop, backup, 'openid', person)).seen).toEqual(['login']);
    expect((await signOut(laptop, await laptop.open(`${pc.issuer}/session/end`))).url).toContain('/session/end/success');
    // The app's offline access, given with offline_access, outlives that sign-out (README: Sessions).
    expect((await oidc.refreshTokenGrant(backup, tokens.refresh_token!)).access_token).toBeTruthy();
    expect((await logIn(new UserAgent(), backup, 'openid', person)).seen).toEqual(['login']);

    // The other order: given without offline_access first, then given it in another browser.
    // Signing out where it was first used keeps it too.
    const pia = { email: 'pia@example.com', password: 'pias own password' };
    await pc.createUser(pia.email, pia.password);
    const desktop = new UserAgent();
    expect((await logIn(desktop, backup, 'openid', pia)).seen).toEqual(['login', 'consent']);
    const offline = await logIn(new UserAgent(), backup, 'openid offline_access', pia, { prompt: 'consent' });
    expect((await signOut(desktop, await desktop.open(`${pc.issuer}/session/end`))).url).toContain('/session/end/success');
    expect((await oidc.refreshTokenGrant(backup, offline.tokens.refresh_token!)).access_token).toBeTruthy();
    // The sign-out itself happened: that browser signs in again.
    expect((await logIn(desktop, backup, 'openid', pia)).seen).toEqual(['login']);
  });

  it('a sign-out link opened where nobody is signed in ends on a page that says just that, not that someone signed out', async () => {
    const ua = new UserAgent();
    const page = await ua.open(`${pc.issuer}/session/end`);
    const done = await ua.post(page, UserAgent.formAction(page, '/session/end/confirm'), UserAgent.hiddenFields(page));
    expect(done.url).toContain('/session/end/success');
    expect(done.html).toContain('<h1>You are signed out</h1>');
    expect(done.html).toContain('You are not signed in to');
    expect(done.html).not.toContain('You have signed out');
  });

  it('a sign-out request the app got wrong says the person is still signed in, and offers a sign-out that works', async () => {
    const ua = new UserAgent();
    await logIn(ua, appA, 'openid', bob);
    const silently = async () => new URL((await visit(ua, (await authorizationRequest(appA, 'openid', { prompt: 'none' })).url)).url).searchParams.get('error');
    // A return address the app did not register: the request is refused, as it must be.
    const wrong = `${pc.issuer}/session/end?client_id=${appA.clientMetadata().client_id}&post_logout_redirect_uri=${encodeURIComponent('https://elsewhere.example/')}`;
    const asBrowser = { headers: { accept: 'text/html,application/xhtml+xml,*/*;q=0.8' } };
    const refused = await ua.open(wrong, asBrowser);
    expect(refused.status).toBe(400);
    expect(refused.html).toContain('<h1>We could not sign you out</h1>');
    expect(refused.html).toMatch(/role="alert">[^<]* You are still signed in\.<\/div>/);
    // Named as the app's mistake it is, as /auth names an unregistered redirect_uri.
    expect(refused.html).toContain('to an address it did not register');
    const button = /<a class="button" href="([^"]+)">Sign out<\/a>/.exec(refused.html);
    expect(button?.[1]).toBe(`${pc.issuer}/session/end`);
    expect(await silently()).toBeNull(); // still signed in, as the page says
    const logout = await ua.open(button![1]!);
    expect((await signOut(ua, logout)).url).toContain('/session/end/success');
    expect(await silently()).toBe('login_required');
    // Signed out, the same request says there is nothing to sign out of, and offers no button.
    const again = await ua.open(wrong, asBrowser);
    expect(again.status).toBe(400);
    expect(again.html).toContain('You are not signed in to');
    expect(again.html).not.toContain('class="button"');
    // A hint naming an app we do not know (another server's, a deleted app's) is said to be that, not an app that is not registered.
    const part = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
    const foreign = `${part({ alg: 'ES256', kid: 'elsewhere' })}.${part({ iss: 'https://other.example', aud: 'an-app-of-another-server', sub: 'x' })}.c2ln`;
    const unknown = await ua.open(`${pc.issuer}/session/end?id_token_hint=${foreign}`, asBrowser);
    expect(unknown.status).toBe(400);
    expect(unknown.html).toContain('We could not tell which application sent you here to sign out');
  });

  it('the consent page says how long the choice is kept: until sign-out, or beyond it with offline_access', async () => {
    const ua = new UserAgent();
    const plain = await signIn(ua, await visit(ua, (await authorizationRequest(appA, 'openid', { prompt: 'consent' })).url), bob.email, bob.password);
    expect(pageKind(plain)).toBe('consent');
    expect(plain.html).toContain('remembers your choice until you sign out');
    const offline = await visit(ua, (await authorizationRequest(appA, 'openid offline_access', { prompt: 'consent' })).url);
    expect(pageKind(offline)).toBe('consent');
    expect(offline.html).toContain('remembers your choice, also after you sign out');
  });

  it('a sign-out page opened twice says the older one is out of date, not that the app erred, and the newer one signs out', async () => {
    const ua = new UserAgent({ accept: 'text/html,application/xhtml+xml,*/*;q=0.8' });
    await logIn(ua, appA, 'openid', bob);
    const older = await ua.open(`${pc.issuer}/session/end`);
    const newer = await ua.open(`${pc.issuer}/session/end`);
    const refused = await signOut(ua, older);
    expect(refused.status).toBe(400);
    expect(refused.html).toContain('only the newest one can sign you out');
    expect(refused.html).toMatch(/role="alert">[^<]* You are still signed in\.<\/div>/);
    expect(refused.html).not.toContain('The application sent');
    expect((await signOut(ua, newer)).url).toContain('/session/end/success');
    // Signed out there, the older page says so.
    const again = await signOut(ua, older);
    expect(again.status).toBe(400);
    expect(again.html).toContain('you already signed out');
    expect(again.html).toContain('You are not signed in to');
  });

  it('prompt=none without a session returns login_required', async () => {
    const request = await authorizationRequest(appA, 'openid', { prompt: 'none' });
    const page = await visit(new UserAgent(), request.url);
    expect(new URL(page.url).searchParams.get('error')).toBe('login_required');
  });
});

describe('a client changed while someone is signing in to it (client update)', () => {
  const MOVED = 'http://127.0.0.1:9999/moved';

  /** A new confidential client with `scope`, its configuration, and a browser on its consent page (bob signed in). */
  async function onConsentPage(scope: string, registered = 'openid email profile', extra: Record<string, string> = {}) {
    const made = await pc.createClient({ name: `Changing ${Math.random().toString(36).slice(2, 8)}`, redirectUris: [REDIRECT_URI], scope: registered });
    const rp = await discover(pc.issuer, made.client_id, made.client_secret);
    const ua = new UserAgent();
    const request = await authorizationRequest(rp, scope, extra);
    const consent = await signIn(ua, await visit(ua, request.url), bob.email, bob.password);
    expect(pageKind(consent)).toBe('consent');
    return { clientId: made.client_id, rp, ua, request, consent };
  }
  /** How many consents the client holds, read from outside. */
  async function grantsOf(clientId: string): Promise<number> {
    const db = pc.outsideConnection();
    await db.connect();
    try {
      expect(clientId).toMatch(/^[\w-]+$/); // inlined: simple-protocol statements only on the embedded database
      const { rows } = await db.query(`SELECT count(*)::int AS n FROM provider_artifacts WHERE kind = 'Grant' AND client_id = '${clientId}'`);
      return rows[0].n as number;
    } finally {
      await db.end();
    }
  }

  it('a redirect URI removed meanwhile gets no code: the consent ends on a page saying why, and nothing is sent there', async () => {
    const { clientId, ua, consent } = await onConsentPage('openid email');
    expect((await pc.cli(['client', 'update', clientId, '--redirect-uri', MOVED])).code).toBe(0);
    const stopped = await allow(ua, consent);
    expect(stopped.url.startsWith(REDIRECT_URI)).toBe(false);
    expect(stopped.status).toBe(400);
    expect(stopped.html).toContain('changed its registration');
    expect(stopped.html).toContain('no longer registered for the client');
    expect(await grantsOf(clientId)).toBe(0);
  });

  it('so does a sign-in still on the login page', async () => {
    const made = await pc.createClient({ name: 'Changing at login', redirectUris: [REDIRECT_URI] });
    const rp = await discover(pc.issuer, made.client_id, made.client_secret);
    const ua = new UserAgent();
    const login = await visit(ua, (await authorizationRequest(rp, 'openid')).url);
    expect(pageKind(login)).toBe('login');
    expect((await pc.cli(['client', 'update', made.client_id, '--redirect-uri', MOVED])).code).toBe(0);
    const stopped = await signIn(ua, login, bob.email, bob.password);
    expect([stopped.status, stopped.url.startsWith(REDIRECT_URI)]).toEqual([400, false]);
    expect(stopped.html).toContain('changed its registration');
  });

  it('a scope removed meanwhile is not given: the app gets invalid_scope, and no consent is stored', async () => {
    const { clientId, ua, request, consent } = await onConsentPage('openid email');
    expect((await pc.cli(['client', 'update', clientId, '--scope', 'openid profile'])).code).toBe(0);
    const back = await allow(ua, consent);
    expect(pageKind(back)).toBe('callback');
    const callback = new URL(back.url);
    expect(callback.searchParams.get('error')).toBe('invalid_scope');
    expect(callback.searchParams.get('state')).toBe(request.state);
    expect(callback.searchParams.get('code')).toBeNull();
    expect(await grantsOf(clientId)).toBe(0);
  });

  /** An API of this test's own, with one scope. */
  async function newApi(): Promise<string> {
    const identifier = `https://changing-${Math.random().toString(36).slice(2, 8)}.example.com`;
    expect((await pc.cli(['api', 'create', '--identifier', identifier, '--scope', 'reports:read=Read your reports'])).code).toBe(0);
    return identifier;
  }

  // Each: what is taken away while the consent page is open, and what gives it back (and the scope's description then).
  it.each([
    [
      "an API's scope taken from the client",
      (api: string, clientId: string) => [['client', 'update', clientId, '--scope', 'openid']],
      (api: string, clientId: string) => [['client', 'update', clientId, '--scope', 'openid reports:read']],
      'Read your reports',
    ],
    [
      'an API deleted (and made again under its identifier)',
      (api: string) => [['api', 'delete', api]],
      (api: string, clientId: string) => [
        ['api', 'create', '--identifier', api, '--scope', 'reports:read=Read and share your reports'],
        ['client', 'update', clientId, '--scope', 'openid reports:read'],
      ],
      'Read and share your reports',
    ],
  ])('%s while the page was open is not remembered as consented to: once it is back, the person is asked again', async (_what, takeAway, giveBack, described) => {
    const api = await newApi();
    const { clientId, rp, ua, consent } = await onConsentPage('openid reports:read', 'openid reports:read', { resource: api });
    expect(consent.html).toContain('Read your reports');
    for (const args of takeAway(api, clientId)) expect((await pc.cli(args)).code).toBe(0);
    const back = await allow(ua, consent);
    expect(new URL(back.url).searchParams.get('error')).toBe('invalid_target');
    for (const args of giveBack(api, clientId)) expect((await pc.cli(args)).code).toBe(0);
    const again = await visit(ua, (await authorizationRequest(rp, 'openid reports:read', { resource: api })).url);
    expect(pageKind(again)).toBe('consent');
    expect(again.html).toContain(described);
  });

  it('an API deleted and made again while the page was open is asked for again: the page described the one before', async () => {
    const api = await newApi();
    const { clientId, ua, consent } = await onConsentPage('openid reports:read', 'openid reports:read', { resource: api });
    // Times are whole seconds: an API made in the second the sign-in began cannot be told from one made before it.
    await new Promise((resolve) => setTimeout(resolve, 1100));
    expect((await pc.cli(['api', 'delete', api])).code).toBe(0);
    expect((await pc.cli(['api', 'create', '--identifier', api, '--scope', 'reports:read=Read and delete your reports'])).code).toBe(0);
    expect((await pc.cli(['client', 'update', clientId, '--scope', `openid reports:read`])).code).toBe(0);
    const next = await allow(ua, consent);
    expect(pageKind(next)).toBe('consent');
    expect(next.html).toContain('Read and delete your reports');
  });

  it('a code sent to a redirect URI removed since it was issued is not exchanged, and stays unused (invalid_grant)', async () => {
    const { clientId, rp, ua, request, consent } = await onConsentPage('openid');
    const back = await allow(ua, consent);
    expect(pageKind(back)).toBe('callback');
    expect((await pc.cli(['client', 'update', clientId, '--redirect-uri', MOVED])).code).toBe(0);
    const checks = { pkceCodeVerifier: request.verifier, expectedState: request.state, expectedNonce: request.nonce };
    await expect(oidc.authorizationCodeGrant(rp, new URL(back.url), checks)).rejects.toMatchObject({ error: 'invalid_grant' });
    // Registered again, the address gets its code exchanged: the refusal consumed nothing.
    expect((await pc.cli(['client', 'update', clientId, '--redirect-uri', REDIRECT_URI, '--redirect-uri', MOVED])).code).toBe(0);
    expect((await oidc.authorizationCodeGrant(rp, new URL(back.url), checks)).access_token).toBeTruthy();
  });
});
