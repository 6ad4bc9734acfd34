// A sign-in in progress belongs to the browser that started it
// (src/provider/browser-binding.ts). Its interaction cookies name it and
// nothing else, and a page on a related domain can plant them in another
// browser (RFC 9700 §4.7): the person there must not sign in for the
// browser that started the request, nor be signed in as whoever started it.
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256 } from '../support/digest.js';
import { startPortcullis, type TestPortcullis } from '../support/portcullis.js';
import { allow, authorizationRequest, discover, pageKind, REDIRECT_URI, signIn, signInRefusal, visit } from '../support/relying-party.js';
import { UserAgent } from '../support/user-agent.js';

const victim = { email: 'vera@example.com', password: 'veras long password' };
const attacker = { email: 'mallory@example.com', password: 'mallorys long password' };

let pc: TestPortcullis;
let rp: oidc.Configuration;

beforeAll(async () => {
  pc = await startPortcullis();
  await pc.createUser(victim.email, victim.password, 'Vera');
  await pc.createUser(attacker.email, attacker.password, 'Mallory');
  const client = await pc.createClient({ name: 'Notes', redirectUris: [REDIRECT_URI], scope: 'openid email' });
  rp = await discover(pc.issuer, client.client_id, client.client_secret);
});

afterAll(async () => {
  expect(pc?.errors ?? []).toEqual([]);
  await pc?.close();
});

/** Whether `ua` is signed in here: an authorization request with prompt=none gets a code. */
async function signedIn(ua: UserAgent): Promise<string | null> {
  const silent = await visit(ua, (await authorizationRequest(rp, 'openid email', { prompt: 'none' })).url);
  const callback = new URL(silent.url);
  return callback.searchParams.get('error') ?? (callback.searchParams.has('code') ? 'signed in' : null);
}

describe('a sign-in in progress', () => {
  it('takes its forms only from its own pages: a form another site posts (Sec-Fetch-Site, or else Origin) is refused, and the sign-in goes on', async () => {
    const sam = { email: 'sam@example.com', password: 'sams long password' };
    await pc.createUser(sam.email, sam.password, 'Sam');
    const ua = new UserAgent();
    const login = await visit(ua, (await authorizationRequest(rp, 'openid email')).url);
    const action = UserAgent.formAction(login, '/login');
    for (const site of ['same-site', 'cross-site']) {
      const posted = await ua.open(new URL(action, login.url).href, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', 'sec-fetch-site': site },
        body: new URLSearchParams(sam).toString(),
      }, REDIRECT_URI);
      expect([site, posted.status]).toEqual([site, 403]);
      expect(posted.html).toContain('This form did not come from our page');
    }
    // A browser without Fetch Metadata still says where the form came from in Origin; "null" says nothing.
    const fromOrigin = (origin: string) =>
      ua.open(new URL(action, login.url).href, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', origin },
        body: new URLSearchParams({ email: sam.email, password: 'not sams password' }).toString(),
      }, REDIRECT_URI);
    for (const origin of ['http://evil.example', new URL(pc.issuer).origin.replace('localhost', '127.0.0.1')]) {
      const posted = await fromOrigin(origin);
      expect([origin, posted.status]).toEqual([origin, 403]);
      expect(posted.html).toContain('This form did not come from our page');
    }
    for (const origin of [new URL(pc.issuer).origin, 'null']) expect(signInRefusal(await fromOrigin(origin))).toBe('wrong_credentials');
    // One the person sent themselves (a form sent again from history, marked 'none' by some browsers) is answered as any.
    const reloaded = await ua.open(new URL(action, login.url).href, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'sec-fetch-site': 'none' },
      body: new URLSearchParams({ email: sam.email, password: 'not sams password' }).toString(),
    }, REDIRECT_URI);
    expect(signInRefusal(reloaded)).toBe('wrong_credentials');
    // The same form from our own page (as a browser marks it), or from a client that says nothing, is taken.
    const consent = await ua.open(new URL(action, login.url).href, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'sec-fetch-site': 'same-origin' },
      body: new URLSearchParams(sam).toString(),
    }, REDIRECT_URI);
    expect(pageKind(consent)).toBe('consent');
    const refused = await ua.open(new URL(UserAgent.formAction(consent, '/confirm'), consent.url).href, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'sec-fetch-site': 'same-site' },
      body: '',
    }, REDIRECT_URI);
    expect(refused.status).toBe(403);
    expect(pageKind(await allow(ua, consent))).toBe('callback');
  });

  it('opened again after the step is done (Back from the consent page) offers the sign-in still in progress in this browser, and only to it', async () => {
    const bea = { email: 'bea@example.com', password: 'beas long password' };
    await pc.createUser(bea.email, bea.password, 'Bea');
    const ua = new UserAgent();
    const login = await visit(ua, (await authorizationRequest(rp, 'openid email')).url);
    const consent = await signIn(ua, login, bea.email, bea.password);
    expect(pageKind(consent)).toBe('consent');

    const back = await ua.open(login.url);
    expect([pageKind(back), back.status]).toEqual(['other', 200]);
    expect(back.html).toContain('You signed in to <bdi>Notes</bdi> from this page already.');
    expect(back.html).toContain('A sign-in to <bdi>Notes</bdi> is still in progress in this browser.');
    const onward = /<a class="button" href="([^"]+)">Continue signing in<\/a>/.exec(back.html)?.[1];
    expect(onward).toBe(new URL(consent.url).pathname);
    // A pointer whose signature does not hold is ignored.
    const signature = ua.cookie('_interaction_current.sig')!;
    ua.alterCookie('_interaction_current.sig', () => 'forged');
    expect((await ua.open(login.url)).html).not.toContain('Continue signing in');
    ua.alterCookie('_interaction_current.sig', () => signature);
    // The sign-in form sent again to the consent step (a stale tab) leads to that step's page.
    const resent = await ua.post(consent, `${new URL(consent.url).pathname}/login`, bea);
    expect([resent.status, /<a class="button" href="([^"]+)">Continue signing in<\/a>/.exec(resent.html)?.[1]]).toEqual([400, onward]);
    const again = await ua.open(new URL(onward!, pc.issuer).href);
    expect(pageKind(again)).toBe('consent');

    // Another browser holding the same pointer is not offered a sign-in that is not its own.
    const other = new UserAgent();
    await visit(other, (await authorizationRequest(rp, 'openid email')).url);
    expect(ua.plantCookies(other, ['_interaction_current', '_interaction_current.sig'])).toEqual(['_interaction_current', '_interaction_current.sig']);
    const elsewhere = await other.open(login.url);
    expect(elsewhere.html).toContain('Your sign-in expired');
    expect(elsewhere.html).not.toContain('Continue signing in');

    // Once the consent is given, nothing is in progress: the page says only what was done there.
    const done = await allow(ua, again);
    expect(done.url.startsWith(REDIRECT_URI)).toBe(true);
    const later = await ua.open(login.url);
    expect(later.html).toContain('You signed in to <bdi>Notes</bdi> from this page already.');
    expect(later.html).not.toContain('Continue signing in');
    // Without the note of what this browser finished, the page says the sign-in expired.
    ua.alterCookie('_interaction_done.sig', () => 'forged');
    const unnoted = await ua.open(login.url);
    expect([unnoted.status, unnoted.html.includes('Your sign-in expired')]).toEqual([400, true]);
  });

  it("opened with interaction cookies planted from another browser is refused: the person cannot sign in for that browser", async () => {
    const theirs = new UserAgent();
    const login = await visit(theirs, (await authorizationRequest(rp, 'openid email')).url);
    expect(pageKind(login)).toBe('login');
    // The attacker keeps the resume cookie, and plants the interaction's in the victim's browser.
    const mine = new UserAgent();
    expect(theirs.plantCookies(mine, ['_interaction', '_interaction.sig'])).toEqual(['_interaction', '_interaction.sig']);

    const shown = await mine.open(login.url);
    expect(pageKind(shown)).toBe('other');
    expect(shown.html).toContain('Your sign-in expired');
    // Nor is the password taken, should the form be posted anyway.
    const posted = await mine.post(login, UserAgent.formAction(login, '/login'), victim, REDIRECT_URI);
    expect(pageKind(posted)).toBe('other');
    expect(posted.html).toContain('Your sign-in expired');
    expect(pc.log.some((line) => line.includes('sign-in opened in a browser other than the one that started it'))).toBe(true);
    expect(pc.errors).toEqual([]);

    // The browser that started it resumes with nobody signed in: asked to sign in again.
    const uid = new URL(login.url).pathname.split('/')[2]!;
    const resumed = await theirs.open(`${pc.issuer}/auth/${uid}`, {}, REDIRECT_URI);
    expect(pageKind(resumed)).toBe('login');
    expect(await signedIn(theirs)).toBe('login_required');
    expect(await signedIn(mine)).toBe('login_required');
  });

  it("another browser's interaction cookie, planted under this browser's own sign-in address, is refused there: the person does not sign in for that browser", async () => {
    const theirs = new UserAgent();
    const their = await visit(theirs, (await authorizationRequest(rp, 'openid email')).url);
    // The victim's browser has a sign-in of its own (so its binding holds for its own address).
    const mine = new UserAgent();
    const own = await visit(mine, (await authorizationRequest(rp, 'openid email')).url);
    expect([pageKind(their), pageKind(own)]).toEqual(['login', 'login']);
    // The attacker's interaction cookies, with the values of their sign-in, at the victim's sign-in's path.
    for (const name of ['_interaction', '_interaction.sig']) mine.alterCookie(name, () => theirs.cookie(name)!);

    const posted = await mine.post(own, UserAgent.formAction(own, '/login'), victim, REDIRECT_URI);
    expect(pageKind(posted)).toBe('other');
    // The attacker's browser resumes with nobody signed in.
    const theirUid = new URL(their.url).pathname.split('/')[2]!;
    expect(pageKind(await theirs.open(`${pc.issuer}/auth/${theirUid}`, {}, REDIRECT_URI))).toBe('login');
    expect(await signedIn(theirs)).toBe('login_required');
    expect(pc.errors).toEqual([]);
  });

  it('resumed with a resume cookie planted from another browser is refused: the person is not signed in as whoever started it', async () => {
    const theirs = new UserAgent();
    const login = await visit(theirs, (await authorizationRequest(rp, 'openid email')).url);
    // The attacker signs in as themselves and stops before resuming.
    const resume = await theirs.post(login, UserAgent.formAction(login, '/login'), attacker, `${pc.issuer}/auth/`);
    expect(resume.url).toMatch(new RegExp(`^${pc.issuer}/auth/[^/]+$`));
    const mine = new UserAgent();
    expect(theirs.plantCookies(mine, ['_interaction_resume', '_interaction_resume.sig'])).toEqual(['_interaction_resume', '_interaction_resume.sig']);

    const refused = await mine.open(resume.url, {}, REDIRECT_URI);
    expect(pageKind(refused)).toBe('other');
    expect(refused.html).toContain('Your sign-in expired');
    expect(await signedIn(mine)).toBe('login_required');
    // The browser that started it goes on as before.
    const consent = await theirs.open(resume.url, {}, REDIRECT_URI);
    expect(pageKind(consent)).toBe('consent');
    expect(pageKind(await allow(theirs, consent))).toBe('callback');
  });

  it('found without its binding is refused, unless it was made before the server started (by a release that did not bind them)', async () => {
    const ua = new UserAgent();
    const login = await visit(ua, (await authorizationRequest(rp, 'openid email')).url);
    const uid = new URL(login.url).pathname.split('/')[2]!;
    const db = pc.outsideConnection();
    await db.connect();
    try {
      // A binding lost (its write failed, or has not landed yet): no browser may use the sign-in.
      const { rowCount } = await db.query(`DELETE FROM provider_artifacts WHERE kind = 'InteractionBrowser' AND id = '${sha256(uid)}'`);
      expect(rowCount).toBe(1);
      expect((await ua.open(login.url)).html).toContain('Your sign-in expired');
      // Made an hour before the server started, as by the release before: it goes on.
      await db.query(`UPDATE provider_artifacts SET payload = jsonb_set(payload, '{iat}', to_jsonb((payload->>'iat')::int - 3600))
                      WHERE kind = 'Interaction' AND id = '${sha256(uid)}'`);
    } finally {
      await db.end();
    }
    const consent = await signIn(ua, login, victim.email, victim.password);
    expect(pageKind(consent)).toBe('consent');
    expect(pageKind(await allow(ua, consent))).toBe('callback');
  });

  it("the consent's sign-in, planted in a browser that has started sign-ins of its own, is refused there too", async () => {
    // The victim's browser has its own binding value.
    const mine = new UserAgent();
    const own = await visit(mine, (await authorizationRequest(rp, 'openid email')).url);
    expect(pageKind(own)).toBe('login');
    expect(mine.cookie('_browser')).toBeTruthy();
    // The attacker signs in as themselves and reaches a consent page (a new interaction, made at the resume).
    const theirs = new UserAgent();
    const login = await visit(theirs, (await authorizationRequest(rp, 'openid email', { prompt: 'consent' })).url);
    const consent = await signIn(theirs, login, attacker.email, attacker.password);
    expect(pageKind(consent)).toBe('consent');
    // (Each at its path: the sign-in's and the consent's.)
    expect(new Set(theirs.plantCookies(mine, ['_interaction', '_interaction.sig', '_interaction_resume', '_interaction_resume.sig']))).toEqual(
      new Set(['_interaction', '_interaction.sig', '_interaction_resume', '_interaction_resume.sig']),
    );
    // Refused; the way on offered is the victim's own sign-in, never the attacker's.
    const offered = (page: { html: string }) => /<a class="button" href="([^"]+)">Continue signing in</.exec(page.html)?.[1];
    const shown = await mine.open(consent.url, {}, REDIRECT_URI);
    expect([pageKind(shown), offered(shown)]).toEqual(['other', new URL(own.url).pathname]);
    const allowed = await mine.post(consent, UserAgent.formAction(consent, '/confirm'), {}, REDIRECT_URI);
    expect([pageKind(allowed), offered(allowed)]).toEqual(['other', new URL(own.url).pathname]);
    const uid = new URL(consent.url).pathname.split('/')[2]!;
    const resumed = await mine.open(`${pc.issuer}/auth/${uid}`, {}, REDIRECT_URI);
    expect(pageKind(resumed)).toBe('other');
    expect(await signedIn(mine)).toBe('login_required');
    // The attacker's own browser still goes on.
    expect(pageKind(await allow(theirs, consent))).toBe('callback');
  });

  it("each browser has its own binding, and one browser's several sign-ins share it", async () => {
    const one = new UserAgent();
    const other = new UserAgent();
    await visit(one, (await authorizationRequest(rp, 'openid email')).url);
    const first = one.cookie('_browser');
    // A second tab's sign-in, while the first is in progress: the first still goes on.
    const firstLogin = await visit(one, (await authorizationRequest(rp, 'openid email')).url);
    const secondLogin = await visit(one, (await authorizationRequest(rp, 'openid email')).url);
    expect(one.cookie('_browser')).toBe(first);
    await visit(other, (await authorizationRequest(rp, 'openid email')).url);
    expect(first).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(other.cookie('_browser')).not.toBe(first);
    // Both tabs' sign-ins are this browser's.
    expect(pageKind(await one.open(firstLogin.url))).toBe('login');
    expect(pageKind(await one.open(secondLogin.url))).toBe('login');
    // (Vera gave this app her consent in an earlier test: no consent page.)
    expect(pageKind(await signIn(one, secondLogin, victim.email, victim.password))).toBe('callback');
    // Stored as a digest only: the cookie's value is nowhere in the database.
    const db = pc.outsideConnection();
    await db.connect();
    try {
      const { rows } = await db.query(`SELECT payload::text AS payload FROM provider_artifacts WHERE kind = 'InteractionBrowser'`);
      expect(rows.length).toBeGreaterThan(0);
      expect(rows.some((row: { payload: string }) => row.payload.includes(sha256(first!)))).toBe(true);
      expect(rows.some((row: { payload: string }) => row.payload.includes(first!))).toBe(false);
    } finally {
      await db.end();
    }
  });
});
