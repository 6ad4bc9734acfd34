// Lifetimes: rows past their expiry leave the database without anyone asking,
// and nothing issued under a consent outlives it.
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { freshDatabase } from '../support/database.js';
import { embedded } from '../support/locks.js';
import { startPortcullis, type TestPortcullis } from '../support/portcullis.js';
import * as oidc from 'openid-client';
import { allow, authorizationRequest, discover, logIn, pageKind, REDIRECT_URI, signIn, visit } from '../support/relying-party.js';
import { UserAgent } from '../support/user-agent.js';

let pc: TestPortcullis;

beforeAll(async () => {
  pc = await startPortcullis({ INTERACTION_TTL: '3s', SWEEP_INTERVAL: '1s' });
});

afterAll(async () => {
  expect(pc?.errors ?? []).toEqual([]);
  await pc?.close();
});

it('expired interactions are removed by the sweeper, and an expired one shows a friendly page', async () => {
  const { client_id, client_secret } = await pc.createClient({ name: 'Sweep', redirectUris: [REDIRECT_URI] });
  const rp = await discover(pc.issuer, client_id, client_secret);
  const ua = new UserAgent();
  const login = await visit(ua, (await authorizationRequest(rp, 'openid')).url);
  const prisma = pc.server.services.database.prisma;
  expect(await prisma.providerArtifact.count({ where: { kind: 'Interaction' } })).toBe(1);

  await new Promise((resolve) => setTimeout(resolve, 5500));
  expect(await prisma.providerArtifact.count({ where: { kind: 'Interaction' } })).toBe(0);

  const late = await ua.open(login.url);
  expect(late.status).toBe(400);
  expect(late.html).toContain('Your sign-in expired');
});

it('one sweep takes every expired row, however many more than a batch (5,000) there are', async () => {
  // A backlog left while no server ran (after downtime): the next start's sweep clears it, not a
  // batch now and the rest an interval later (here an hour).
  const database = await freshDatabase();
  try {
    const before = await startPortcullis({ SWEEP_INTERVAL: '1h' }, database);
    await before.server.services.database.prisma.$executeRawUnsafe(
      `INSERT INTO provider_artifacts (kind, id, payload, expires_at)
       SELECT 'AccessToken', 'backlog-' || n, '{}'::jsonb, now() - interval '1 minute' FROM generate_series(1, 5001) AS n`,
    );
    await before.close();
    const after = await startPortcullis({ SWEEP_INTERVAL: '1h' }, database);
    try {
      const left = () => after.server.services.database.prisma.providerArtifact.count({ where: { id: { startsWith: 'backlog-' } } });
      const deadline = Date.now() + 15_000;
      while ((await left()) > 0 && Date.now() < deadline) await sleep(200);
      expect(await left()).toBe(0);
      expect(after.errors).toEqual([]);
    } finally {
      await after.close();
    }
  } finally {
    await database.drop();
  }
});

it.skipIf(embedded)('a row another transaction holds does not hold up the sweep: the rest of what expired goes, and that row once let go', async () => {
  // Another instance's sweep on the same batch, or a request on a row just expiring.
  // Expiring 2 s on, so that no sweep (every second) takes them before one is held.
  const prisma = pc.server.services.database.prisma;
  await prisma.$executeRawUnsafe(
    `INSERT INTO provider_artifacts (kind, id, payload, expires_at)
     SELECT 'AccessToken', 'held-' || n, '{}'::jsonb, now() + interval '2 seconds' FROM generate_series(1, 20) AS n`,
  );
  const left = async () => (await prisma.providerArtifact.findMany({ where: { id: { startsWith: 'held-' } }, select: { id: true } })).map((row) => row.id);
  const untilLeft = async (count: number) => {
    const deadline = Date.now() + 10_000;
    while ((await left()).length > count && Date.now() < deadline) await sleep(200);
    return left();
  };
  const holder = pc.outsideConnection();
  await holder.connect();
  try {
    await holder.query('BEGIN');
    expect((await holder.query(`SELECT 1 FROM provider_artifacts WHERE kind = 'AccessToken' AND id = 'held-7' FOR UPDATE`)).rowCount).toBe(1);
    expect(await untilLeft(1)).toEqual(['held-7']);
    await holder.query('COMMIT');
    expect(await untilLeft(0)).toEqual([]);
  } finally {
    await holder.end();
  }
});

it('the sweeper takes only what has expired: a sign-in, its code and its session live their full time across sweeps', async () => {
  await pc.createUser('swept@example.com', 'swept around long enough');
  const { client_id, client_secret } = await pc.createClient({ name: 'Swept around', redirectUris: [REDIRECT_URI] });
  const rp = await discover(pc.issuer, client_id, client_secret);
  const ua = new UserAgent();
  const request = await authorizationRequest(rp, 'openid');
  const login = await visit(ua, request.url);
  // A sweep a second (SWEEP_INTERVAL=1s): the sign-in (3 s to live) is past at least one.
  await sleep(1_500);
  const consent = await signIn(ua, login, 'swept@example.com', 'swept around long enough');
  expect(pageKind(consent)).toBe('consent');
  const callback = await allow(ua, consent);
  expect(pageKind(callback)).toBe('callback');
  // The code lives 60 s: two sweeps later it is still there to exchange.
  await sleep(2_500);
  const tokens = await oidc.authorizationCodeGrant(rp, new URL(callback.url), { pkceCodeVerifier: request.verifier, expectedState: request.state, expectedNonce: request.nonce });
  expect(tokens.access_token).toBeTruthy();
  // And the session (SESSION_TTL, 14 days) signs the person in again without a page.
  expect((await logIn(ua, rp, 'openid', { email: 'swept@example.com', password: 'swept around long enough' })).seen).toEqual([]);
});

it('a sign-in or consent page left open past its time offers to start again, as the application sent the person', async () => {
  const user = { email: 'liv@example.com', password: 'a long enough password' };
  await pc.createUser(user.email, user.password);
  const { client_id, client_secret } = await pc.createClient({ name: 'Slow reader', redirectUris: [REDIRECT_URI] });
  const rp = await discover(pc.issuer, client_id, client_secret);
  const ua = new UserAgent();
  const request = await authorizationRequest(rp, 'openid email', { login_hint: user.email });
  const login = await visit(ua, request.url);
  expect(pageKind(login)).toBe('login');
  await sleep(3500); // > INTERACTION_TTL

  // The form comes back to a sign-in that is gone.
  const expired = await signIn(ua, login, user.email, user.password);
  expect([expired.status, pageKind(expired)]).toEqual([400, 'other']);
  expect(expired.html).toContain('Your sign-in expired');
  expect(expired.html).toContain('Start signing in to <bdi>Slow reader</bdi> again with the button below.');
  // A form posted to /auth, not a link: the request (a login_hint, an email) stays out of the address bar.
  expect(expired.html).not.toMatch(/href="[^"]*login_hint/);
  const startAgain = { ...expired, html: /<form method="post" action="\/auth">[\s\S]*?<\/form>/.exec(expired.html)![0] };
  expect(startAgain.html).toContain('>Start again</button>');
  // The application's own request, as it sent it: its state and PKCE challenge hold.
  expect(UserAgent.hiddenFields(startAgain)).toEqual(Object.fromEntries(request.url.searchParams));

  // Signed in this time, then the consent page left open past its time: the same.
  const consent = await signIn(ua, await ua.post(expired, '/auth', UserAgent.hiddenFields(startAgain), REDIRECT_URI), user.email, user.password);
  expect(pageKind(consent)).toBe('consent');
  await sleep(3500);
  const late = await allow(ua, consent);
  expect([late.status, pageKind(late)]).toEqual([400, 'other']);
  const again = { ...late, html: /<form method="post" action="\/auth">[\s\S]*?<\/form>/.exec(late.html)![0] };
  // Still signed in: asked only to allow, and the code goes to the application with its state.
  const asked = await ua.post(late, '/auth', UserAgent.hiddenFields(again), REDIRECT_URI);
  expect(pageKind(asked)).toBe('consent');
  const callback = await allow(ua, asked);
  expect(pageKind(callback)).toBe('callback');
  const tokens = await oidc.authorizationCodeGrant(rp, new URL(callback.url), { pkceCodeVerifier: request.verifier, expectedState: request.state, expectedNonce: request.nonce });
  expect(tokens.claims()?.email).toBe(user.email);

  // A form that brings back no request of a known application is offered none.
  for (const restart of ['client_id=nobody&response_type=code', `client_id=${client_id}&request_uri=urn:x`, `client_id=${client_id}&${'x'.repeat(3000)}`, '']) {
    const page = await ua.post(expired, `/interaction/gone/login`, { restart, email: user.email, password: user.password });
    expect([page.status, page.html.includes('Start again')]).toEqual([400, false]);
  }
  expect(pc.errors).toEqual([]);
}, 60_000);

it('a sign-out page asked for without a session keeps its row no longer than an interaction; a signed-in session keeps SESSION_TTL', async () => {
  const brief = await startPortcullis({ INTERACTION_TTL: '30s' });
  try {
    const user = { email: 'sol@example.com', password: 'a long enough password' };
    await brief.createUser(user.email, user.password);
    const { client_id, client_secret } = await brief.createClient({ name: 'Stays', redirectUris: [REDIRECT_URI] });
    await logIn(new UserAgent(), await discover(brief.issuer, client_id, client_secret), 'openid', user);
    const prisma = brief.server.services.database.prisma;
    const signedIn = await prisma.providerArtifact.findMany({ where: { kind: 'Session' }, select: { id: true } });
    expect(signedIn.length).toBeGreaterThan(0);

    // No cookie: the library keeps the confirmation form's secret in a new session.
    const signOut = await fetch(`${brief.issuer}/session/end`);
    expect(signOut.status).toBe(200);
    const sessions = await prisma.providerArtifact.findMany({ where: { kind: 'Session' }, select: { id: true, expiresAt: true } });
    const known = new Set(signedIn.map((row) => row.id));
    const anonymous = sessions.filter((row) => !known.has(row.id));
    expect(anonymous).toHaveLength(1);
    const lifetime = (row: { expiresAt: Date | null }) => (row.expiresAt!.getTime() - Date.now()) / 1000;
    // INTERACTION_TTL (30 s), not SESSION_TTL (the default 14 days).
    expect(lifetime(anonymous[0]!)).toBeLessThanOrEqual(31);
    // (The session's earlier ids are kept, ended, for an hour: see README, Single sign-on.)
    expect(Math.max(...sessions.filter((row) => known.has(row.id)).map(lifetime))).toBeGreaterThan(13 * 24 * 3600);
    expect(brief.errors).toEqual([]);
  } finally {
    await brief.close();
  }
});

it('codes and tokens live no longer than the consent they were issued under, and consenting again renews it', async () => {
  const short = await startPortcullis({ GRANT_TTL: '20s' });
  try {
    const user = { email: 'gail@example.com', password: 'a long enough password' };
    await short.createUser(user.email, user.password);
    const client = await short.createClient({ name: 'Brief', redirectUris: [REDIRECT_URI], scope: 'openid offline_access' });
    const rp = await discover(short.issuer, client.client_id, client.client_secret);
    const introspect = async (token: string) => {
      const response = await fetch(`${short.issuer}/token/introspection`, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          authorization: `Basic ${Buffer.from(`${client.client_id}:${client.client_secret}`).toString('base64')}`,
        },
        body: new URLSearchParams({ token }),
      });
      return (await response.json()) as { active: boolean; exp: number; iat: number };
    };

    const first = await logIn(new UserAgent(), rp, 'openid offline_access', user, { prompt: 'consent' });
    expect(first.seen).toEqual(['login', 'consent']);
    const refreshToken = await introspect(first.tokens.refresh_token!);
    const accessToken = await introspect(first.tokens.access_token);
    // REFRESH_TOKEN_TTL (14 days) and ACCESS_TOKEN_TTL (1 hour) are cut to what the grant has left.
    for (const token of [refreshToken, accessToken]) {
      expect(token.active).toBe(true);
      expect(token.exp - token.iat).toBeLessThanOrEqual(20);
    }

    // Asked again later, the person consents again: remembered for GRANT_TTL from now.
    await sleep(3000);
    const second = await logIn(new UserAgent(), rp, 'openid offline_access', user, { prompt: 'consent' });
    expect(second.seen).toEqual(['login', 'consent']);
    const renewed = await introspect(second.tokens.refresh_token!);
    expect(renewed.active).toBe(true);
    expect(renewed.exp).toBeGreaterThanOrEqual(refreshToken.exp + 2);
    // The same grant: the earlier tokens live on with it, to their own exp.
    expect((await introspect(first.tokens.refresh_token!)).active).toBe(true);
    expect(short.errors).toEqual([]);
  } finally {
    await short.close();
  }
});
