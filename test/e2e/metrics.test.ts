// Prometheus metrics: served on METRICS_PORT, never on the issuer; counting
// what an operator watches (tokens, OAuth errors, sign-ins, consents, grants
// revoked for a replay) and timing requests by route, with labels that no
// request can multiply.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { VERSION } from '../../src/version.js';
import { freePort, startPortcullis, TEST_ENV, type TestPortcullis } from '../support/portcullis.js';
import { allow, authorizationRequest, discover, REDIRECT_URI, signIn, signInRefusal, visit } from '../support/relying-party.js';
import { UserAgent } from '../support/user-agent.js';

/** A sample line of the text format: a metric name, its labels (quoted values, escapes allowed), a value. */
const SAMPLE = /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"(,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*\})? (-?[0-9.e+-]+|NaN|[+-]Inf)$/;

/** Samples of a Prometheus text exposition: `name{labels}` → value; every line must be a comment or a valid sample. */
async function scrape(url: string): Promise<Map<string, number>> {
  const response = await fetch(url);
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  const samples = new Map<string, number>();
  for (const line of (await response.text()).split('\n')) {
    if (!line || /^# (HELP|TYPE) /.test(line)) continue;
    expect(line).toMatch(SAMPLE);
    const at = line.lastIndexOf(' ');
    samples.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return samples;
}

/** The sum of every sample whose series begins with `prefix`. */
const total = (samples: Map<string, number>, prefix: string) => [...samples].filter(([series]) => series.startsWith(prefix)).reduce((sum, [, value]) => sum + value, 0);

const count = (samples: Map<string, number>, series: string) => samples.get(series) ?? 0;

/** How much a series grew between two scrapes. */
const growth = (before: Map<string, number>, after: Map<string, number>) => (series: string) => count(after, series) - count(before, series);

const basic = (client: { client_id: string; client_secret?: string }) => `Basic ${Buffer.from(`${client.client_id}:${client.client_secret}`).toString('base64')}`;

describe('with METRICS_PORT', () => {
  let pc: TestPortcullis;
  let metricsUrl: string;

  beforeAll(async () => {
    pc = await startPortcullis({ METRICS_PORT: String(await freePort()), SIGN_IN_MAX_FAILURES: '2' });
    metricsUrl = pc.server.metricsUrl!;
  });

  afterAll(async () => {
    expect(pc?.errors ?? []).toEqual([]);
    await pc?.close();
  });

  it('serves GET /metrics on its own port, and not on the issuer', async () => {
    expect(metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    expect(new URL(metricsUrl).port).not.toBe(new URL(pc.issuer).port);
    const samples = await scrape(metricsUrl);
    expect(samples.get(`portcullis_build_info{version="${VERSION}"}`)).toBe(1);
    expect(samples.get('process_resident_memory_bytes')).toBeGreaterThan(0);
    expect(samples.has('portcullis_database_pool_connections{state="idle"}')).toBe(true);
    expect(samples.get('portcullis_database_pool_waiting_requests')).toBe(0);
    // Counters of a fixed set of labels are there at 0 before their first event (for rates and alerts).
    for (const series of [
      'portcullis_tokens_issued_total{grant_type="refresh_token"}',
      'portcullis_sign_ins_total{outcome="throttled"}',
      'portcullis_second_factor_codes_total{outcome="wrong"}',
      'portcullis_consents_total{decision="deny"}',
      'portcullis_grant_revocations_total{reason="replay"}',
    ]) {
      expect([series, samples.get(series)]).toEqual([series, 0]);
    }

    // No gauge named as a counter (promtool's lint refuses a gauge ending in _total).
    const types = [...(await (await fetch(metricsUrl)).text()).matchAll(/^# TYPE (\S+) (\S+)$/gm)].map(([, name, type]) => [name, type]);
    expect(types.length).toBeGreaterThan(10);
    expect(types.filter(([name, type]) => name!.endsWith('_total') && type !== 'counter')).toEqual([]);

    expect((await fetch(`${pc.issuer}/metrics`)).status).toBe(404);
    const posted = await fetch(metricsUrl, { method: 'POST' });
    expect([posted.status, posted.headers.get('allow')]).toEqual([405, 'GET, HEAD']);
    // HEAD, as Allow says: GET's answer without its body.
    const head = await fetch(metricsUrl, { method: 'HEAD' });
    expect([head.status, await head.text()]).toEqual([200, '']);
    const other = await fetch(metricsUrl.replace('/metrics', '/other'));
    expect(other.status).toBe(404);
    // Text, never sniffed as something else, whatever the answer.
    for (const response of [head, posted, other]) expect(response.headers.get('x-content-type-options')).toBe('nosniff');
  });

  it('counts client-credentials tokens and the token endpoint errors by code, and times each route', async () => {
    const machine = await pc.createClient({ name: 'Machine', grantTypes: ['client_credentials'] });
    const before = await scrape(metricsUrl);
    expect((await pc.clientCredentials(machine)).status).toBe(200);
    expect((await pc.clientCredentials(machine)).status).toBe(200);
    expect((await pc.clientCredentials({ ...machine, client_secret: 'wrong' })).status).toBe(401);
    // A grant type nobody knows is counted as an error, and adds no series of its own.
    const odd = await fetch(`${pc.issuer}/token`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: basic(machine),
      },
      body: 'grant_type=urn%3Aexample%3Ainvented',
    });
    expect(odd.status).toBe(400);

    const after = await scrape(metricsUrl);
    const grew = growth(before, after);
    expect(grew('portcullis_tokens_issued_total{grant_type="client_credentials"}')).toBe(2);
    expect(grew('portcullis_oauth_errors_total{endpoint="token",error="invalid_client"}')).toBe(1);
    expect(grew('portcullis_oauth_errors_total{endpoint="token",error="unsupported_grant_type"}')).toBe(1);
    expect(grew('portcullis_http_request_duration_seconds_count{route="token",status="200"}')).toBe(2);
    expect(grew('portcullis_http_request_duration_seconds_count{route="token",status="401"}')).toBe(1);
    expect(grew('portcullis_http_request_duration_seconds_count{route="token",status="400"}')).toBe(1);
    expect([...after.keys()].filter((series) => series.includes('invented'))).toEqual([]);
  });

  it('counts sign-ins by outcome, consents, code and refresh tokens, and a grant revoked for a replayed refresh token', async () => {
    const user = { email: 'mia@example.com', password: 'a long enough password' };
    await pc.createUser(user.email, user.password);
    const app = await pc.createClient({ name: 'Counted', redirectUris: [REDIRECT_URI], grantTypes: ['authorization_code', 'refresh_token'] });
    const rp = await discover(pc.issuer, app.client_id, app.client_secret);
    const before = await scrape(metricsUrl);

    const ua = new UserAgent();
    const request = await authorizationRequest(rp, 'openid offline_access', { prompt: 'consent' });
    const login = await visit(ua, request.url);
    expect(signInRefusal(await signIn(ua, login, user.email, 'not the password'))).toBe('wrong_credentials');
    const consent = await signIn(ua, login, user.email, user.password);
    const callback = await allow(ua, consent);
    const tokens = await oidc.authorizationCodeGrant(rp, new URL(callback.url), {
      pkceCodeVerifier: request.verifier,
      expectedState: request.state,
      expectedNonce: request.nonce,
    });
    await oidc.refreshTokenGrant(rp, tokens.refresh_token!);
    await expect(oidc.refreshTokenGrant(rp, tokens.refresh_token!)).rejects.toMatchObject({ error: 'invalid_grant' });

    // Guesses at someone else's email until the throttle holds it.
    const guesser = new UserAgent();
    const other = await visit(guesser, (await authorizationRequest(rp, 'openid')).url);
    for (let guess = 0; guess < 3; guess++) await signIn(guesser, other, 'zed@example.com', `guess number ${guess}`);

    const after = await scrape(metricsUrl);
    const grew = growth(before, after);
    expect(grew('portcullis_sign_ins_total{outcome="success"}')).toBe(1);
    expect(grew('portcullis_sign_ins_total{outcome="wrong_credentials"}')).toBe(3);
    expect(grew('portcullis_sign_ins_total{outcome="throttled"}')).toBe(1);
    expect(grew('portcullis_consents_total{decision="allow"}')).toBe(1);
    expect(grew('portcullis_tokens_issued_total{grant_type="authorization_code"}')).toBe(1);
    expect(grew('portcullis_tokens_issued_total{grant_type="refresh_token"}')).toBe(1);
    expect(grew('portcullis_oauth_errors_total{endpoint="token",error="invalid_grant"}')).toBe(1);
    expect(grew('portcullis_grant_revocations_total{reason="replay"}')).toBe(1);
    expect(grew('portcullis_http_request_duration_seconds_count{route="interaction",status="200"}')).toBeGreaterThan(0);
    expect(grew('portcullis_http_request_duration_seconds_count{route="authorization",status="303"}')).toBe(2);
  });

  it('times a request answered before its route ran under that route (a method refused, a compressed body), and only what nothing serves as other', async () => {
    const before = await scrape(metricsUrl);
    expect((await fetch(`${pc.issuer}/token`)).status).toBe(405);
    const compressed = await fetch(`${pc.issuer}/token/introspection`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-encoding': 'gzip' }, body: 'token=x' });
    expect(compressed.status).toBe(415);
    expect((await fetch(`${pc.issuer}/`)).status).toBe(200);
    expect((await fetch(`${pc.issuer}/nothing-here`)).status).toBe(404);
    expect((await fetch(`${pc.issuer}/interaction/some-uid/nothing-here`)).status).toBe(404);
    const after = await scrape(metricsUrl);
    const grew = growth(before, after);
    expect(grew('portcullis_http_request_duration_seconds_count{route="token",status="405"}')).toBe(1);
    expect(grew('portcullis_http_request_duration_seconds_count{route="introspection",status="415"}')).toBe(1);
    expect(grew('portcullis_http_request_duration_seconds_count{route="home",status="200"}')).toBe(1);
    expect(grew('portcullis_http_request_duration_seconds_count{route="other",status="404"}')).toBe(2);
    expect(grew('portcullis_http_request_duration_seconds_count{route="interaction",status="404"}')).toBe(0);
    expect(grew('portcullis_http_request_duration_seconds_count{route="other",status="405"}')).toBe(0);
    // A request as slow as the database may keep one (DATABASE_TIMEOUT and 5 s) has a bucket of its own.
    expect(after.has('portcullis_http_request_duration_seconds_bucket{le="60",route="token",status="405"}')).toBe(true);
  });

  it('counts the error each response carries once, as the client got it, whatever the library named', async () => {
    const machine = await pc.createClient({ name: 'Robot', grantTypes: ['client_credentials'] });
    const spa = await pc.createClient({ name: 'Single page', redirectUris: [REDIRECT_URI], public: true });
    const form = { 'content-type': 'application/x-www-form-urlencoded' };
    const before = await scrape(metricsUrl);

    // The library says invalid_request; the client is told unauthorized_client (RFC 6749 §5.2).
    const unauthorized = await fetch(`${pc.issuer}/token`, { method: 'POST', headers: { ...form, authorization: basic(machine) }, body: 'grant_type=authorization_code&code=x&redirect_uri=x' });
    expect([unauthorized.status, ((await unauthorized.json()) as { error: string }).error]).toEqual([400, 'unauthorized_client']);
    // Refused by us after the library let it through: no event at all.
    const introspected = await fetch(`${pc.issuer}/token/introspection`, { method: 'POST', headers: form, body: `token=x&client_id=${spa.client_id}` });
    expect(introspected.status).toBe(401);
    // Two events (the response type, then the redirect URI) for one error page.
    const page = await fetch(`${pc.issuer}/auth?client_id=${machine.client_id}&response_type=nonsense&scope=openid&redirect_uri=https%3A%2F%2Fevil.example%2F`);
    expect(page.status).toBe(400);
    // An error page of a route whose errors have no event.
    expect((await fetch(`${pc.issuer}/session/end/success?client_id=nobody`)).status).toBe(400);
    // Sent back to the client by form_post: a page with the error's status, and the error in a hidden field.
    const web = await pc.createClient({ name: 'Posted to', redirectUris: [REDIRECT_URI] });
    const posted = await fetch(`${pc.issuer}/auth?${new URLSearchParams({ client_id: web.client_id, response_type: 'code', scope: 'openid', redirect_uri: REDIRECT_URI, prompt: 'none', response_mode: 'form_post' })}`);
    expect([posted.status, await posted.text()]).toEqual([400, expect.stringContaining('value="login_required"')]);
    // Refused by Node's parser, before any middleware: headers too large.
    expect((await fetch(`${pc.issuer}/auth?client_id=${'a'.repeat(20_000)}`)).status).toBe(431);

    const after = await scrape(metricsUrl);
    const grew = growth(before, after);
    expect(grew('portcullis_oauth_errors_total{endpoint="token",error="unauthorized_client"}')).toBe(1);
    expect(grew('portcullis_oauth_errors_total{endpoint="token",error="invalid_request"}')).toBe(0);
    expect(grew('portcullis_oauth_errors_total{endpoint="introspection",error="invalid_client"}')).toBe(1);
    // The error page (once, for its two events) and the form_post.
    expect(total(after, 'portcullis_oauth_errors_total{endpoint="authorization"') - total(before, 'portcullis_oauth_errors_total{endpoint="authorization"')).toBe(2);
    expect(total(after, 'portcullis_oauth_errors_total{endpoint="end_session_success"') - total(before, 'portcullis_oauth_errors_total{endpoint="end_session_success"')).toBe(1);
    expect(grew('portcullis_oauth_errors_total{endpoint="authorization",error="login_required"}')).toBe(1);
    expect(grew('portcullis_oauth_errors_total{endpoint="other",error="invalid_request"}')).toBe(1);
  });

  it('counts a denied consent, and not a cancelled sign-in, as a decision', async () => {
    const user = { email: 'noa@example.com', password: 'a long enough password' };
    await pc.createUser(user.email, user.password);
    const app = await pc.createClient({ name: 'Refused', redirectUris: [REDIRECT_URI] });
    const rp = await discover(pc.issuer, app.client_id, app.client_secret);
    const before = await scrape(metricsUrl);

    const cancelling = new UserAgent();
    const login = await visit(cancelling, (await authorizationRequest(rp, 'openid')).url);
    expect(new URL((await cancelling.post(login, UserAgent.formAction(login, '/abort'), {}, REDIRECT_URI)).url).searchParams.get('error')).toBe('access_denied');
    const denying = new UserAgent();
    const consent = await signIn(denying, await visit(denying, (await authorizationRequest(rp, 'openid')).url), user.email, user.password);
    expect(new URL((await denying.post(consent, UserAgent.formAction(consent, '/abort'), {}, REDIRECT_URI)).url).searchParams.get('error')).toBe('access_denied');

    const after = await scrape(metricsUrl);
    expect(count(after, 'portcullis_consents_total{decision="deny"}') - count(before, 'portcullis_consents_total{decision="deny"}')).toBe(1);
    // Both went back to the client as access_denied: errors too, though no status says so.
    const denied = 'portcullis_oauth_errors_total{endpoint="resume",error="access_denied"}';
    expect(count(after, denied) - count(before, denied)).toBe(2);
  });
});

it('counts the expired rows each sweep deletes, by table, from 0', async () => {
  const pc = await startPortcullis({ METRICS_PORT: String(await freePort()), SWEEP_INTERVAL: '1s' });
  try {
    const swept = async () => {
      const metrics = await scrape(pc.server.metricsUrl!);
      return [metrics.get('portcullis_expired_rows_swept_total{table="provider_artifacts"}'), metrics.get('portcullis_expired_rows_swept_total{table="sign_in_failures"}')];
    };
    expect(await swept()).toEqual([0, 0]);
    await pc.server.services.database.prisma.$executeRawUnsafe(
      `INSERT INTO provider_artifacts (kind, id, payload, expires_at)
       SELECT 'AccessToken', 'swept-' || n, '{}'::jsonb, now() - interval '1 minute' FROM generate_series(1, 7) AS n`,
    );
    const deadline = Date.now() + 10_000;
    while ((await swept())[0]! < 7 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 200));
    expect(await swept()).toEqual([7, 0]);
  } finally {
    await pc.close();
  }
});

it('counts each failed run of the periodic work by task, from 0, as its log line says', async () => {
  const pc = await startPortcullis({ METRICS_PORT: String(await freePort()), SWEEP_INTERVAL: '1s' });
  const admin = pc.outsideConnection();
  await admin.connect();
  try {
    const failures = async () => (await scrape(pc.server.metricsUrl!)).get('portcullis_background_task_failures_total{task="sweep"}');
    expect(await failures()).toBe(0);
    expect((await scrape(pc.server.metricsUrl!)).get('portcullis_background_task_failures_total{task="key_refresh"}')).toBe(0);
    // The sweep's DELETE on sign_in_failures is refused, whether or not a row has expired.
    await admin.query(`CREATE FUNCTION refuse_sweeps() RETURNS trigger LANGUAGE plpgsql AS $$
                       BEGIN RAISE EXCEPTION 'sweep refused (simulated)'; END $$`);
    await admin.query('CREATE TRIGGER refuse_sweeps BEFORE DELETE ON sign_in_failures FOR EACH STATEMENT EXECUTE FUNCTION refuse_sweeps()');
    // Deleted by those failing sweeps before they fail: counted all the same.
    await admin.query(`INSERT INTO provider_artifacts (kind, id, payload, expires_at)
                       SELECT 'AccessToken', 'before-the-failure-' || n, '{}'::jsonb, now() - interval '1 minute' FROM generate_series(1, 5) AS n`);
    const deadline = Date.now() + 10_000;
    while ((await failures())! < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 200));
    await admin.query('DROP TRIGGER refuse_sweeps ON sign_in_failures');
    const counted = (await failures())!;
    expect(counted).toBeGreaterThanOrEqual(2);
    expect((await scrape(pc.server.metricsUrl!)).get('portcullis_expired_rows_swept_total{table="provider_artifacts"}')).toBe(5);
    const logged = pc.errors.filter((line) => line.includes('sweep refused (simulated)')).map((line) => JSON.parse(line).message);
    expect(logged.length).toBeGreaterThanOrEqual(counted);
    expect(new Set(logged)).toEqual(new Set(['sweep failed']));
    // Once the database takes the sweep again, the count stays.
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    expect(await failures()).toBe(pc.errors.filter((line) => line.includes('sweep refused (simulated)')).length);
  } finally {
    await admin.query('DROP TRIGGER IF EXISTS refuse_sweeps ON sign_in_failures');
    await admin.query('DROP FUNCTION IF EXISTS refuse_sweeps()');
    await admin.end();
    await pc.close();
  }
});

it('without METRICS_PORT no metrics are served', async () => {
  const pc = await startPortcullis();
  try {
    expect(pc.server.metricsUrl).toBeUndefined();
    expect(pc.log.some((line) => line.includes('metrics listening'))).toBe(false);
  } finally {
    await pc.close();
  }
});

/** A free port other than `taken` (which nothing listens on, so freePort may name it again). */
async function otherFreePort(taken: number): Promise<number> {
  for (;;) {
    const port = await freePort();
    if (port !== taken) return port;
  }
}

// Read before any database is opened: once is enough.
it.skipIf(process.env.TEST_DATABASE === 'postgres')('a METRICS_PORT that is not a port, or is PORT, or a METRICS_HOST of another machine, stops the server at start with the reason', async () => {
  const port = await freePort();
  const start = async (metricsPort: string, extra: Record<string, string> = {}) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      env: { ...process.env, ...TEST_ENV, PORT: String(port), METRICS_PORT: metricsPort, ...extra },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    return [code, stderr] as const;
  };
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'pc-metrics-'));
  onTestFinished(() => rmSync(dataDir, { recursive: true, force: true }));
  const outcomes = await Promise.all([
    start('9x'),
    start('70000'),
    start(String(port)),
    // Said with the other bad variables, not only once they are fixed.
    start(String(port), { LOG_LEVEL: 'loud' }),
    // As HOST: configuration to fix (exit 2), not a failure to run. (It opens the database first: one of its own.)
    // Another port than PORT: nothing holds PORT, so freePort may hand it out again.
    start(String(await otherFreePort(port)), { METRICS_HOST: '192.0.2.1', DATA_DIR: dataDir }),
  ]);
  expect(outcomes).toEqual([
    [2, expect.stringContaining('METRICS_PORT: must be a whole number')],
    [2, expect.stringMatching(/METRICS_PORT: .*65535/)],
    [2, expect.stringContaining('METRICS_PORT: must differ from PORT')],
    [2, expect.stringMatching(/LOG_LEVEL: [\s\S]*METRICS_PORT: must differ from PORT|METRICS_PORT: must differ from PORT[\s\S]*LOG_LEVEL: /)],
    [2, expect.stringContaining('cannot listen on METRICS_HOST=192.0.2.1')],
  ]);
  for (const [, stderr] of outcomes) expect(stderr).not.toMatch(/\n\s+at /);
});
