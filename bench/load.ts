// The load generator process: autocannon's programmatic API, run apart from
// every server it loads. The harness keeps one running for the whole benchmark
// (`load.ts --serve`, specs and results over IPC); by hand,
// `node --import tsx bench/load.ts SPEC.json RESULT.json` runs each phase of
// the spec (warm-up, measurement) and writes one result per phase. Latency is timed per request here (sub-millisecond resolution): from
// building the request to parsing its response, as autocannon itself does.
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { percentile } from './lib/percentile.js';
// autocannon ships no types; the surface used here is small.
// @ts-expect-error no declaration file
import autocannon from 'autocannon';

export interface Phase {
  label: string;
  seconds: number;
}

export type Scenario =
  | {
      kind: 'fixed';
      method: 'GET' | 'POST';
      path: string;
      headers: Record<string, string>;
      body?: string;
      /** Bodies to send in turn instead of `body` (e.g. distinct tokens, so that concurrent requests differ). */
      bodies?: string[];
      expectStatus: number;
      /** A 200 that lacks this text counts as an error (e.g. `"active":true` for introspection). */
      expectBody?: string;
    }
  | {
      kind: 'refresh';
      path: string;
      authorization: string;
      /** Unused refresh tokens; each request presents the next one. */
      pool: string[];
    }
  | {
      kind: 'login';
      clientId: string;
      authorization: string;
      redirectUri: string;
      scope: string;
      users: { email: string; password: string }[];
    };

export interface LoadSpec {
  url: string;
  connections: number;
  phases: Phase[];
  scenario: Scenario;
  /** Return every latency (latencies_ms), so that slices of one measurement can be merged exactly. */
  keepLatencies?: boolean;
}

export interface PhaseResult {
  label: string;
  seconds: number;
  connections: number;
  /** Completed operations: successful responses, or completed logins for `login`. */
  completed: number;
  rate: number;
  /** Latency of one operation (a request, or a whole login) in ms. */
  p50_ms: number;
  p99_ms: number;
  max_ms: number;
  errors: number;
  error_kinds: Record<string, number>;
  error_sample?: string;
  /** HTTP requests (all steps) sent and answered. */
  http_requests: number;
  http_rps: number;
  pool_used?: number;
  /** Seconds into the phase when the refresh-token pool ran out (the phase is measured up to there). */
  pool_exhausted_after_s?: number;
  /** Every completed operation's latency in ms, sorted (with keepLatencies). */
  latencies_ms?: number[];
  /** CPU seconds the load generator itself used in this phase. */
  cpu_seconds: number;
  /** CPU seconds the load-generator process used for the whole spec (all its phases; with a file spec, start-up excluded). */
  process_cpu_seconds: number;
}

interface Counters {
  completed: number;
  latencies: number[];
  errors: Record<string, number>;
  sample?: string;
  requests: number;
  /** Refresh tokens handed to requests (sent, whether or not answered before the phase ended). */
  poolUsed: number;
  /** When the refresh-token pool ran out, if it did. */
  exhaustedAt?: number;
}

// Per-connection context autocannon hands to setupRequest/onResponse.
type Context = Record<string, any>;
type Headers = Record<string, string | string[]>;

interface Request {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string;
  setupRequest?: (request: Request, context: Context) => Request | null;
  onResponse?: (status: number, body: string, context: Context, headers: Headers) => void;
}

function fail(counters: Counters, kind: string, detail: string): void {
  counters.errors[kind] = (counters.errors[kind] ?? 0) + 1;
  counters.sample ??= detail.slice(0, 400);
}


function buildRequests(scenario: Scenario, counters: Counters, control: { stop(): void }): Request[] {
  const now = () => performance.now();
  if (scenario.kind === 'fixed') {
    let turn = 0;
    const bodies = scenario.bodies;
    return [
      {
        method: scenario.method,
        path: scenario.path,
        headers: scenario.headers,
        body: scenario.body,
        setupRequest: (request, context) => {
          context.started = now();
          return bodies ? { ...request, body: bodies[turn++ % bodies.length] } : request;
        },
        onResponse: (status, body, context) => {
          counters.requests++;
          if (status !== scenario.expectStatus) return fail(counters, `status ${status}`, body);
          if (scenario.expectBody && !body.includes(scenario.expectBody)) return fail(counters, 'unexpected body', body);
          counters.completed++;
          counters.latencies.push(now() - context.started);
        },
      },
    ];
  }

  if (scenario.kind === 'refresh') {
    let next = 0;
    return [
      {
        method: 'POST',
        path: scenario.path,
        headers: { authorization: scenario.authorization, 'content-type': 'application/x-www-form-urlencoded' },
        setupRequest: (request, context) => {
          const token = scenario.pool[next];
          if (token === undefined) {
            // Out of fresh tokens (the pool is sized from the warm-up's rate):
            // the measurement ends here; what is still sent is not counted.
            counters.exhaustedAt ??= now();
            control.stop();
            context.exhausted = true;
          } else {
            counters.poolUsed = ++next;
            context.exhausted = false;
          }
          context.started = now();
          return { ...request, body: `grant_type=refresh_token&refresh_token=${token ?? 'pool-exhausted'}` };
        },
        onResponse: (status, body, context) => {
          counters.requests++;
          // Answers after the pool ran out fall outside the measured interval.
          if (context.exhausted || counters.exhaustedAt !== undefined) return;
          if (status !== 200) return fail(counters, `status ${status}`, body);
          if (!body.includes('"refresh_token"')) return fail(counters, 'no rotated refresh token', body);
          counters.completed++;
          counters.latencies.push(now() - context.started);
        },
      },
    ];
  }

  // A whole interactive login in a fresh cookie jar, request by request. Every
  // step checks its answer; a failed step counts one error and starts over.
  let person = 0;
  const step = (request: Omit<Request, 'headers'> & { headers?: Record<string, string> }): Request => ({
    headers: {},
    ...request,
    setupRequest: (built, context) => {
      if (context.failed) return null; // autocannon then restarts the sequence with a fresh context
      const prepared = request.setupRequest ? request.setupRequest(built, context) : built;
      if (!prepared) return null;
      const cookie = cookieHeader(context, prepared.path);
      return { ...prepared, headers: { ...prepared.headers, ...(cookie ? { cookie } : {}) } };
    },
    onResponse: (status, body, context, headers) => {
      counters.requests++;
      storeCookies(context, headers);
      try {
        request.onResponse!(status, body, context, headers);
      } catch (error) {
        context.failed = true;
        fail(counters, (error as Error).message, `${(error as Error).message}: ${status} ${body}`);
      }
    },
  });
  const redirect = (status: number, headers: Headers, pattern: RegExp, what: string): RegExpExecArray => {
    const location = header(headers, 'location');
    const match = location ? pattern.exec(location) : null;
    if (status < 300 || status >= 400 || !match) throw new Error(`${what}: expected a redirect`);
    return match;
  };
  const page = (status: number, body: string, marker: string, what: string) => {
    if (status !== 200 || !body.includes(marker)) throw new Error(`${what}: expected the page`);
  };
  const form = { 'content-type': 'application/x-www-form-urlencoded' };

  return [
    step({
      method: 'GET',
      path: '/auth',
      setupRequest: (request, context) => {
        context.started = now();
        context.cookies = {};
        context.person = scenario.users[person++ % scenario.users.length];
        context.verifier = randomBytes(32).toString('base64url');
        context.state = randomBytes(12).toString('base64url');
        const query = new URLSearchParams({
          client_id: scenario.clientId,
          response_type: 'code',
          redirect_uri: scenario.redirectUri,
          scope: scenario.scope,
          state: context.state,
          nonce: randomBytes(12).toString('base64url'),
          code_challenge: createHash('sha256').update(context.verifier).digest('base64url'),
          code_challenge_method: 'S256',
          prompt: 'consent',
        });
        return { ...request, path: `/auth?${query}` };
      },
      onResponse: (status, _body, context, headers) => {
        context.uid = redirect(status, headers, /\/interaction\/([^/?#]+)/, 'authorization request')[1];
      },
    }),
    step({
      method: 'GET',
      path: '/interaction',
      setupRequest: (request, context) => ({ ...request, path: `/interaction/${context.uid}` }),
      onResponse: (status, body, context) => page(status, body, `/interaction/${context.uid}/login`, 'login page'),
    }),
    step({
      method: 'POST',
      path: '/login',
      headers: form,
      setupRequest: (request, context) => ({
        ...request,
        path: `/interaction/${context.uid}/login`,
        body: new URLSearchParams({ email: context.person.email, password: context.person.password }).toString(),
      }),
      onResponse: (status, _body, context, headers) => {
        context.resume = redirect(status, headers, /^(?:https?:\/\/[^/]+)?(\/auth\/[^?#]+)/, 'login form post')[1];
      },
    }),
    step({
      method: 'GET',
      path: '/resume',
      setupRequest: (request, context) => ({ ...request, path: context.resume }),
      onResponse: (status, _body, context, headers) => {
        context.uid = redirect(status, headers, /\/interaction\/([^/?#]+)/, 'resume after login')[1];
      },
    }),
    step({
      method: 'GET',
      path: '/interaction',
      setupRequest: (request, context) => ({ ...request, path: `/interaction/${context.uid}` }),
      onResponse: (status, body, context) => page(status, body, `/interaction/${context.uid}/confirm`, 'consent page'),
    }),
    step({
      method: 'POST',
      path: '/confirm',
      headers: form,
      setupRequest: (request, context) => ({ ...request, path: `/interaction/${context.uid}/confirm`, body: 'confirm=yes' }),
      onResponse: (status, _body, context, headers) => {
        context.resume = redirect(status, headers, /^(?:https?:\/\/[^/]+)?(\/auth\/[^?#]+)/, 'consent form post')[1];
      },
    }),
    step({
      method: 'GET',
      path: '/resume',
      setupRequest: (request, context) => ({ ...request, path: context.resume }),
      onResponse: (status, _body, context, headers) => {
        const callback = new URL(redirect(status, headers, /^.*$/, 'resume after consent')[0]);
        if (!callback.href.startsWith(scenario.redirectUri)) throw new Error('resume after consent: expected the callback');
        if (callback.searchParams.get('state') !== context.state) throw new Error('callback: state mismatch');
        context.code = callback.searchParams.get('code');
        if (!context.code) throw new Error('callback: no code');
      },
    }),
    step({
      method: 'POST',
      path: '/token',
      headers: { ...form, authorization: scenario.authorization },
      setupRequest: (request, context) => ({
        ...request,
        body: new URLSearchParams({
          grant_type: 'authorization_code',
          code: context.code,
          redirect_uri: scenario.redirectUri,
          code_verifier: context.verifier,
        }).toString(),
        // the token endpoint gets no cookies
        path: '/token',
      }),
      onResponse: (status, body, context) => {
        if (status !== 200 || !body.includes('"access_token"') || !body.includes('"id_token"')) throw new Error('code exchange: expected tokens');
        counters.completed++;
        counters.latencies.push(now() - context.started);
      },
    }),
  ];
}

function header(headers: Headers, name: string): string | undefined {
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() === name) return Array.isArray(value) ? value[0] : value;
  }
  return undefined;
}

function storeCookies(context: Context, headers: Headers): void {
  if (!context.cookies) return;
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() !== 'set-cookie') continue;
    for (const line of Array.isArray(value) ? value : [value]) {
      const [pair, ...attributes] = line.split(';').map((part) => part.trim());
      const index = pair!.indexOf('=');
      const pathAttribute = attributes.find((attribute) => attribute.toLowerCase().startsWith('path='));
      const cookiePath = pathAttribute ? pathAttribute.slice(5) : '/';
      const expired = attributes.some((attribute) => /^expires=/i.test(attribute) && Date.parse(attribute.slice(8)) <= Date.now());
      const id = `${pair!.slice(0, index)};${cookiePath}`;
      if (expired) delete context.cookies[id];
      else context.cookies[id] = { name: pair!.slice(0, index), value: pair!.slice(index + 1), path: cookiePath };
    }
  }
}

function cookieHeader(context: Context, requestPath: string): string {
  if (requestPath === '/token') return '';
  const pathname = requestPath.split('?')[0]!;
  return Object.values(context.cookies ?? {})
    .filter((cookie: any) => pathname === cookie.path || pathname.startsWith(cookie.path.endsWith('/') ? cookie.path : `${cookie.path}/`))
    .map((cookie: any) => `${cookie.name}=${cookie.value}`)
    .join('; ');
}

async function runPhase(spec: LoadSpec, phase: Phase, scenario: Scenario): Promise<PhaseResult> {
  const counters: Counters = { completed: 0, latencies: [], errors: {}, requests: 0, poolUsed: 0 };
  let instance: { stop(): void } | undefined;
  let stopped = false;
  const control = {
    stop() {
      if (!stopped && instance) instance.stop();
      stopped = true;
    },
  };
  const requests = buildRequests(scenario, counters, control);
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  const result = await new Promise<any>((resolve, reject) => {
    instance = autocannon(
      {
        url: spec.url,
        connections: spec.connections,
        duration: phase.seconds,
        pipelining: 1,
        timeout: 10,
        sampleInt: 250,
        requests,
      },
      (error: Error | null, output: unknown) => (error ? reject(error) : resolve(output)),
    );
  });
  const cpu = process.cpuUsage(cpuBefore);
  // Connection errors and timeouts are counted by autocannon itself.
  if (result.errors - result.timeouts > 0) counters.errors.connection = result.errors - result.timeouts;
  if (result.timeouts > 0) counters.errors.timeout = result.timeouts;
  const latencies = counters.latencies.sort((a, b) => a - b);
  const exhaustedAfter = counters.exhaustedAt === undefined ? undefined : Math.round(counters.exhaustedAt - started) / 1000;
  const seconds = exhaustedAfter ?? (result.duration as number);
  const used = scenario.kind === 'refresh' ? counters.poolUsed : undefined;
  return {
    label: phase.label,
    seconds,
    connections: spec.connections,
    completed: counters.completed,
    rate: Math.round((counters.completed / seconds) * 10) / 10,
    p50_ms: percentile(latencies, 50),
    p99_ms: percentile(latencies, 99),
    max_ms: percentile(latencies, 100),
    errors: Object.values(counters.errors).reduce((sum, count) => sum + count, 0),
    error_kinds: counters.errors,
    ...(counters.sample ? { error_sample: counters.sample } : {}),
    http_requests: counters.requests,
    http_rps: Math.round((counters.requests / seconds) * 10) / 10,
    ...(used !== undefined ? { pool_used: used } : {}),
    ...(exhaustedAfter !== undefined ? { pool_exhausted_after_s: exhaustedAfter } : {}),
    ...(spec.keepLatencies ? { latencies_ms: latencies.map((ms) => Math.round(ms * 100) / 100) } : {}),
    cpu_seconds: Math.round((cpu.user + cpu.system) / 1e4) / 100,
    process_cpu_seconds: 0,
  };
}

async function run(spec: LoadSpec): Promise<PhaseResult[]> {
  const cpuBefore = process.cpuUsage();
  const results: PhaseResult[] = [];
  let scenario = spec.scenario;
  for (const phase of spec.phases) {
    const result = await runPhase(spec, phase, scenario);
    results.push(result);
    // The next phase presents only tokens this one did not send.
    if (scenario.kind === 'refresh') scenario = { ...scenario, pool: scenario.pool.slice(result.pool_used ?? 0) };
  }
  const total = process.cpuUsage(cpuBefore);
  for (const result of results) result.process_cpu_seconds = Math.round((total.user + total.system) / 1e4) / 100;
  return results;
}

type Reply = { results: PhaseResult[] } | { error: string };

async function main(): Promise<void> {
  const [specFile, resultFile] = process.argv.slice(2);
  if (specFile === '--serve') {
    // One process for a whole benchmark, so that its JIT is warm for every
    // measured slice instead of each slice paying for a fresh process's start.
    process.on('message', (message: { spec: LoadSpec }) => {
      run(message.spec).then(
        (results) => process.send!({ results } satisfies Reply),
        (error: Error) => process.send!({ error: String(error?.stack ?? error) } satisfies Reply),
      );
    });
    process.once('disconnect', () => process.exit(0));
    return;
  }
  if (!specFile || !resultFile) throw new Error('usage: load.ts SPEC.json RESULT.json | load.ts --serve (IPC)');
  const spec = JSON.parse(readFileSync(specFile, 'utf8')) as LoadSpec;
  writeFileSync(resultFile, JSON.stringify(await run(spec)));
}

await main();
