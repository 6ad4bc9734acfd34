// `npm run bench`: starts Portcullis (and the in-memory baseline) as their own
// processes on a fresh database, seeds them through the CLI, drives each
// scenario with autocannon from a separate process, and writes
// bench/results/latest.json and docs/benchmarks.md. See docs/benchmarks.md.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Scenario } from './load.js';
import { measureArgon2, type Argon2Cost } from './lib/argon2-cost.js';
import { basicAuth, Browser, tokenRequest, type Client, type Person } from './lib/browser.js';
import { AUDIENCE, LOGIN_SCOPE, REDIRECT_URI, REFRESH_SCOPE, RESOURCE_SERVER } from './lib/fixtures.js';
import { judge } from './lib/judgement.js';
import { log, round } from './lib/log.js';
import { figures, Harness, portcullisFigures, ratio, type Lane, type Measured, type Target } from './lib/measurement.js';
import { meetsOwaspMinimum, parseOptions, USAGE, UsageError, type Options, type ScenarioName } from './lib/options.js';
import {
  BENCH_DIR,
  buildPortcullis,
  cliJson,
  createPgliteDatabase,
  createPostgresDatabase,
  freePort,
  PORTCULLIS_MAIN,
  portcullisCli,
  ROOT,
  Service,
  type BenchDatabase,
} from './lib/processes.js';
import { summariseProfiles } from './lib/profiles.js';
import { soakIsStable, writeJson, writeMarkdown, type Report, type ScenarioReport } from './lib/report.js';
import { countRoundTrips } from './lib/round-trips.js';
import { portcullisTarget, startBaseline } from './lib/targets.js';
import { clientCredentialsScenario, introspectionScenario, prepareRefresh } from './lib/token-scenarios.js';

const PROFILE_DIR = path.join(BENCH_DIR, 'results', 'profiles');
const TOKEN_TARGET = '≥ 0.8× baseline, p99 < 50 ms, no errors';

/** The options, or the exit code when there is nothing to run (help, a usage error). */
function readOptions(): Options | number {
  try {
    const parsed = parseOptions(process.argv.slice(2));
    if (parsed !== 'help') return parsed;
    process.stdout.write(USAGE);
    return 0;
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`bench: ${error.message}\n\n${USAGE}`);
    return 2;
  }
}

/** Everything a scenario needs, once Portcullis runs and is seeded. */
interface Run {
  options: Options;
  harness: Harness;
  database: BenchDatabase;
  cores: number;
  /** argon2's cost: measured before anything ran, and again after the logins. */
  argon2: Argon2Cost;
  /** Portcullis's environment, for its CLI too. */
  env: Record<string, string>;
  issuer: string;
  portcullis: Service;
  client: Client;
  people: Person[];
  own: Target;
  baseline?: Target;
  /** Started along the way, stopped at the end. */
  services: Service[];
  profiled: Service[];
  scenarios: Map<ScenarioName, ScenarioReport>;
  soak: Report['portcullis_process']['soak'];
}

async function main(): Promise<number> {
  const options = readOptions();
  if (typeof options === 'number') return options;
  if (options.renderOnly) {
    const report = JSON.parse(readFileSync(path.resolve(ROOT, options.output.json), 'utf8')) as Report;
    writeMarkdown(path.resolve(ROOT, options.output.markdown), report);
    writeJson(path.resolve(ROOT, options.output.json), report); // with judgements recomputed as this version makes them
    log(`rewrote ${options.output.markdown} from ${options.output.json}`);
    return 0;
  }
  const command = `npm run bench${options.argv.length ? ` -- ${options.argv.join(' ')}` : ''}`;
  const cores = os.availableParallelism();
  log(`${command}: ${options.duration} s per scenario after ${options.warmup} s warm-up, ${options.connections} connections, ${cores} cores`);

  // Portcullis runs as `npm start` runs it: compiled, without a loader.
  await buildPortcullis();
  // Before anything else runs, so that nothing competes with the measurement;
  // again right after the logins (see runLogins), the faster of the two counting.
  const argon2 = await measureArgon2(options);
  log(`argon2id m=${options.argon2.memoryKib} KiB t=${options.argon2.timeCost} p=${options.argon2.parallelism}: ` +
    `${round(argon2.cpu * 1000, 1)} ms CPU per verify → ceiling ${round(cores / argon2.cpu, 1)} logins/s on ${cores} cores; ` +
    `${round(argon2.allCoresRate, 1)} verifies/s with every core verifying`);

  let database: BenchDatabase;
  try {
    database = options.database === 'postgres' ? await createPostgresDatabase(options.serverUrl) : await createPgliteDatabase();
  } catch (error) {
    process.stderr.write(`bench: cannot create the benchmark database on ${options.serverUrl} (${(error as Error).message}); start PostgreSQL there, pass --database-url, or use --pglite\n`);
    return 1;
  }
  log(`database: ${database.label}`);
  const harness = new Harness(options, database);
  const services: Service[] = [];
  // Ctrl-C: the children get the signal too and stop; drop the database before leaving.
  const interrupted = () => {
    log('interrupted: stopping the servers and dropping the benchmark database');
    void Promise.all(services.map((service) => service.stop().catch(() => undefined)))
      .then(() => database.drop())
      .finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  const scenarios = new Map<ScenarioName, ScenarioReport>();
  const profiled: Service[] = [];
  let run: Run | undefined;
  try {
    await harness.connectStats();
    run = await startAndSeed(options, harness, database, { cores, argon2, services, profiled, scenarios });
    await runScenarios(run);
  } finally {
    for (const service of services.reverse()) await service.stop().catch(() => undefined);
    await harness.close();
    if (options.keepDatabase) log(`kept the benchmark database: ${database.url ?? database.env.DATA_DIR}`);
    else await database.drop().catch((error: Error) => log(`could not drop the benchmark database: ${error.message}`));
  }
  if (options.cpuProf) summariseProfiles(PROFILE_DIR, profiled, harness);
  return finish(run, command);
}

/** Starts Portcullis as an operator would, and seeds it through its CLI while it runs. */
async function startAndSeed(
  options: Options,
  harness: Harness,
  database: BenchDatabase,
  shared: Pick<Run, 'cores' | 'argon2' | 'services' | 'profiled' | 'scenarios'>,
): Promise<Run> {
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const env: Record<string, string> = {
    ...database.env,
    PORT: String(port),
    HOST: '127.0.0.1',
    ISSUER: issuer,
    LOG_LEVEL: 'warn',
    ARGON2_MEMORY_KIB: String(options.argon2.memoryKib),
    ARGON2_TIME_COST: String(options.argon2.timeCost),
    ARGON2_PARALLELISM: String(options.argon2.parallelism),
    ...(options.poolSize ? { DATABASE_POOL_SIZE: String(options.poolSize) } : {}),
  };
  if (options.cpuProf) mkdirSync(PROFILE_DIR, { recursive: true });
  const profileArgs = options.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${PROFILE_DIR}`] : [];
  const portcullis = await Service.start({
    name: 'portcullis',
    script: PORTCULLIS_MAIN,
    env,
    nodeArgs: profileArgs,
    readyUrl: `${issuer}/.well-known/openid-configuration`,
  });
  shared.services.push(portcullis);
  if (options.cpuProf) shared.profiled.push(portcullis);
  harness.sampleRss(portcullis);
  log(`portcullis listening at ${issuer} (pid ${portcullis.pid}, RSS ${portcullis.rss()} MiB)`);

  // ES256 ID tokens (a refresh issues one), as the baseline's client has: like for like.
  const client = await cliJson<Client>(
    ['client', 'create', '--name', 'Benchmark', '--redirect-uri', REDIRECT_URI,
      '--grant-type', 'client_credentials', '--grant-type', 'authorization_code', '--grant-type', 'refresh_token',
      '--scope', `${REFRESH_SCOPE} email`, '--id-token-alg', 'ES256'],
    env,
  );
  const people: Person[] = Array.from({ length: options.users }, (_, i) => ({
    email: `bench-${i + 1}@example.com`,
    password: randomBytes(12).toString('base64url'),
  }));
  const createUser = (person: Person) => cliJson(['user', 'create', '--email', person.email, '--password-stdin'], env, `${person.password}\n`);
  // PGlite: one CLI at a time joins the server's socket.
  if (options.database === 'pglite') for (const person of people) await createUser(person);
  else await Promise.all(people.map(createUser));
  log(`seeded client ${client.client_id} and ${people.length} user(s) with the CLI`);

  const wantBaseline = options.baseline && options.only.some((name) => ['client_credentials', 'refresh_token', 'introspection'].includes(name));
  const own = portcullisTarget(issuer, portcullis, client, people, options.connections);
  const baseline = wantBaseline ? await startBaseline(client, env, profileArgs) : undefined;
  if (baseline) {
    shared.services.push(baseline.service);
    if (options.cpuProf) shared.profiled.push(baseline.service);
    log(`baseline (bare oidc-provider, in-memory adapter) at ${baseline.url}`);
  }
  return { options, harness, database, env, issuer, portcullis, client, people, own, baseline, soak: null, ...shared };
}

/** Each scenario asked for, in order; one that fails is reported as failed and the rest still run. */
async function runScenarios(run: Run): Promise<void> {
  const { options, harness, scenarios } = run;
  const attempt = async (name: ScenarioName, base: { unit: ScenarioReport['unit']; description: string; target: string }, body: (entry: ScenarioReport) => Promise<void>) => {
    if (!options.only.includes(name)) return;
    const entry: ScenarioReport = { name, ratio: null, met: null, notes: [], ...base, portcullis: null, baseline: null };
    scenarios.set(name, entry);
    harness.currentScenario = name;
    log(`${name} …`);
    try {
      await harness.tidy(`before ${name}`);
      await body(entry);
      const p = entry.portcullis;
      if (p) {
        log(`${name}: ${p.rps} ${entry.unit}, p50 ${p.p50_ms} ms, p99 ${p.p99_ms} ms, ${p.errors} errors` +
          (entry.baseline ? `; baseline ${entry.baseline.rps} (${entry.ratio}×)` : ''));
      } else if (entry.skipped) {
        log(`${name}: skipped (${entry.skipped})`);
      }
    } catch (error) {
      entry.failed = (error as Error).message;
      log(`${name}: FAILED ${entry.failed}`);
    }
  };

  await attempt('client_credentials', { unit: 'requests/s', description: 'POST /token client_credentials, client_secret_basic', target: TOKEN_TARGET }, (entry) =>
    versus(run, entry, async (target) => clientCredentialsScenario(target.client)),
  );
  await attempt('refresh_token', { unit: 'requests/s', description: 'POST /token refresh_token with rotation, a fresh token per request', target: '≥ 0.6× baseline, p99 < 50 ms, no errors' }, (entry) =>
    runRefresh(run, entry),
  );
  const accessTokensOf = accessTokenPool(options.smoke ? 32 : 100);
  await attempt('introspection', { unit: 'requests/s', description: `POST /token/introspection of valid opaque access tokens (${accessTokensOf.size} in turn)`, target: TOKEN_TARGET }, (entry) =>
    versus(run, entry, async (target) => introspectionScenario(target.client, await accessTokensOf(target))),
  );
  await attempt('interactive_login', { unit: 'logins/s', description: 'authorization request, login form, consent, code exchange in a fresh browser', target: '≥ 0.85 × cores / argon2 CPU per verify, no errors' }, (entry) =>
    runLogins(run, entry),
  );
  if (options.soak > 0 && scenarios.get('client_credentials')?.portcullis) await runSoak(run);
  await attempt('jwt_verify', { unit: 'requests/s', description: 'GET /orders on the example resource server with a JWT access token', target: 'no errors' }, (entry) =>
    runJwtVerify(run, entry),
  );

  const url = run.database.url;
  if (options.dbTrips && url) {
    try {
      await countRoundTrips(harness, run.env, url, run.client, run.people, scenarios, run.own, accessTokensOf);
    } catch (error) {
      log(`round-trip count failed: ${(error as Error).message}`);
    }
  }
}

/** Runs the same scenario against Portcullis and the baseline; fills in figures and ratio. */
async function versus(run: Run, entry: ScenarioReport, make: (target: Target) => Promise<Scenario>): Promise<void> {
  const targets = run.baseline ? [run.own, run.baseline] : [run.own];
  const lanes: Lane[] = [];
  for (const target of targets) {
    const scenario = await make(target);
    await run.harness.warmup(target.url, scenario);
    lanes.push({ url: target.url, service: target.service, track: target.name === 'portcullis', next: () => scenario });
  }
  const [own, base] = await run.harness.interleave(lanes);
  entry.portcullis = portcullisFigures(own!);
  if (base) {
    entry.baseline = figures(base);
    entry.ratio = ratio(entry);
  }
}

async function runRefresh(run: Run, entry: ScenarioReport): Promise<void> {
  const own = await prepareRefresh(run.harness, run.own);
  entry.notes.push(`Portcullis pool: ${own.made} refresh tokens made through consent and code exchange in ${round(own.poolSeconds, 1)} s.`);
  const base = run.baseline ? await prepareRefresh(run.harness, run.baseline) : undefined;
  if (base) entry.notes.push(`Baseline pool: ${base.made} refresh tokens minted with the provider's Grant and RefreshToken models.`);
  const [ownMeasured, baseMeasured] = await run.harness.interleave(base ? [own.lane, base.lane] : [own.lane]);
  const ranOut = (measured: Measured, who: string) => {
    const after = measured.result.pool_exhausted_after_s;
    if (after !== undefined) entry.notes.push(`${who}'s refresh-token pool ran out after ${after} s of measurement; figures cover those ${after} s.`);
  };
  entry.portcullis = portcullisFigures(ownMeasured!);
  ranOut(ownMeasured!, 'Portcullis');
  if (baseMeasured) {
    entry.baseline = figures(baseMeasured);
    ranOut(baseMeasured, 'The baseline');
    entry.ratio = ratio(entry);
  }
}

/** Valid opaque access tokens of each server, `size` of them, from refreshes at its real token endpoint; made once per server. */
function accessTokenPool(size: number): ((target: Target) => Promise<string[]>) & { size: number } {
  const made = new Map<Target, string[]>();
  const of = async (target: Target) => {
    let tokens = made.get(target);
    if (!tokens) {
      const browser = new Browser(target.url);
      tokens = [];
      for (const refresh of await target.refreshTokens(size)) {
        tokens.push((await tokenRequest(browser, target.client, { grant_type: 'refresh_token', refresh_token: refresh })).access_token);
      }
      made.set(target, tokens);
    }
    return tokens;
  };
  return Object.assign(of, { size });
}

async function runLogins(run: Run, entry: ScenarioReport): Promise<void> {
  const { options, harness, cores, issuer } = run;
  const scenario: Scenario = {
    kind: 'login',
    clientId: run.client.client_id,
    authorization: basicAuth(run.client),
    redirectUri: REDIRECT_URI,
    scope: LOGIN_SCOPE,
    users: run.people,
  };
  await harness.warmup(issuer, scenario);
  // A login takes long enough under load that a one-second smoke would see none finish.
  const measured = await harness.measure(issuer, scenario, run.portcullis, true, options.smoke ? Math.max(options.duration, 3) : undefined);
  entry.portcullis = portcullisFigures(measured);
  // argon2's cost, measured once more now, next to the logins: on a shared
  // machine it moves (21 to 50 ms per verify between runs here), and a
  // ceiling measured while something else ran would make the target easy.
  // The faster measurement sets the ceiling: the stricter target. (Each
  // figure the faster of its two: CPU and wall per verify, and the rate with every core verifying.)
  const first = run.argon2;
  const again = await measureArgon2(options);
  const a2 = (run.argon2 = {
    ...(again.cpu < first.cpu ? { cpu: again.cpu, wall: again.wall } : { cpu: first.cpu, wall: first.wall }),
    allCoresRate: Math.max(again.allCoresRate, first.allCoresRate),
  });
  const ceiling = cores / a2.cpu;
  entry.notes.push(
    `argon2id CPU per verify: ${round(first.cpu * 1000, 1)} ms measured before anything ran, ${round(again.cpu * 1000, 1)} ms right after the logins; ` +
      `the ceiling and the budget below use the faster.`,
  );
  entry.notes.push(
    `${round(measured.result.http_rps, 0)} HTTP requests/s (8 per login); latency is that of a whole login. ` +
      `Ceiling from argon2 alone: ${round(ceiling, 1)} logins/s; achieved ${round((100 * entry.portcullis.rps) / ceiling, 0)}%. ` +
      `With every core verifying at once argon2 alone managed ${round(a2.allCoresRate, 1)} verifies/s; ` +
      `achieved ${round((100 * entry.portcullis.rps) / a2.allCoresRate, 0)}% of that.`,
  );
  // What the target leaves for everything but argon2, next to what a login used:
  // the arithmetic behind whether the target is within reach on this machine.
  const used = Object.values(measured.cpuMsPerOp).filter((ms): ms is number => ms !== null);
  if (used.length > 0) {
    const atTarget = (1000 * cores) / (0.85 * ceiling);
    const argonAlone = a2.cpu * 1000;
    const argonAllCores = (1000 * cores) / a2.allCoresRate;
    const total = used.reduce((sum, ms) => sum + ms, 0);
    entry.notes.push(
      `CPU budget: at the target a login may use ${round(atTarget, 1)} ms of CPU on all processes together; ` +
        `argon2 takes ${round(argonAlone, 1)} ms of it (${round(argonAllCores, 1)} ms per verify with every core verifying), ` +
        `leaving ${round(atTarget - argonAlone, 1)} ms (${atTarget > argonAllCores ? `${round(atTarget - argonAllCores, 1)} ms` : 'nothing'}) for the 8 requests, their statements and the load generator. ` +
        `This run used ${round(total, 1)} ms per login in all, ${round(total - argonAlone, 1)} ms of it besides argon2.`,
    );
  }
}

/** RSS over a steady load: the same requests as client_credentials for --soak seconds, sampled every second. */
async function runSoak(run: Run): Promise<void> {
  const { portcullis } = run;
  log(`RSS soak: ${run.options.soak} s of client_credentials …`);
  const samples: number[] = [];
  const sampler = setInterval(() => {
    const rss = portcullis.rss();
    if (rss !== null) samples.push(rss);
  }, 1000);
  const startRss = portcullis.rss();
  try {
    const [result] = await run.harness.runLoad(run.harness.spec(run.issuer, clientCredentialsScenario(run.client), 'soak', run.options.soak));
    const endRss = portcullis.rss();
    if (endRss !== null) samples.push(endRss);
    const soak = (run.soak = {
      workload: 'client_credentials',
      seconds: result!.seconds,
      requests: result!.completed,
      errors: result!.errors,
      rss_mb_start: startRss,
      rss_mb_end: endRss,
      rss_mb_max: samples.length ? Math.max(...samples) : null,
      rss_mb_samples: samples,
    });
    log(`RSS soak: ${soak.rss_mb_start} → ${soak.rss_mb_end} MiB (peak ${soak.rss_mb_max}) over ${soak.requests} requests, ${soak.errors} errors`);
  } catch (error) {
    log(`RSS soak failed: ${(error as Error).message}`);
  } finally {
    clearInterval(sampler);
  }
}

/** What a protected API serves: the example resource server verifying a JWT access token (JWKS fetched once, then cached). */
async function runJwtVerify(run: Run, entry: ScenarioReport): Promise<void> {
  const { env, issuer } = run;
  if (!existsSync(path.join(ROOT, RESOURCE_SERVER))) {
    entry.skipped = `${RESOURCE_SERVER} does not exist yet`;
    return;
  }
  const created = await portcullisCli(
    ['api', 'create', '--identifier', AUDIENCE, '--scope', 'read:orders', '--scope', 'write:orders', '--token-format', 'jwt', '--json'],
    env,
  );
  if (created.code !== 0) {
    entry.skipped = /unknown command/.test(created.stderr)
      ? '`portcullis api create` is not available yet'
      : `portcullis api create failed: ${created.stderr.trim().split('\n')[0]}`;
    return;
  }
  // A machine client allowed the API's read scope, as in the example's README.
  const robot = await cliJson<Client>(['client', 'create', '--name', 'Benchmark robot', '--grant-type', 'client_credentials', '--scope', 'read:orders'], env);
  const { access_token: jwt } = await tokenRequest(new Browser(issuer), robot, {
    grant_type: 'client_credentials',
    resource: AUDIENCE,
    scope: 'read:orders',
  });
  if (jwt.split('.').length !== 3) throw new Error('the access token for the API is not a JWT');
  const rsPort = await freePort();
  const rsUrl = `http://127.0.0.1:${rsPort}`;
  const resourceServer = await Service.start({
    name: 'resource-server',
    script: RESOURCE_SERVER,
    env: { PORT: String(rsPort), ISSUER: issuer, AUDIENCE },
    readyUrl: `${rsUrl}/orders`,
    readyStatuses: [401],
  });
  run.services.push(resourceServer);
  const scenario: Scenario = {
    kind: 'fixed',
    method: 'GET',
    path: '/orders',
    headers: { authorization: `Bearer ${jwt}` },
    expectStatus: 200,
  };
  await run.harness.warmup(rsUrl, scenario);
  const measured = await run.harness.measure(rsUrl, scenario, resourceServer, false);
  entry.portcullis = { ...portcullisFigures(measured) };
  entry.notes.push('Served by the example resource server alone (JWKS fetched once from Portcullis, then cached); RSS is the resource server\'s.');
  await resourceServer.stop();
}

/** Judges the scenarios, writes the report and says what it holds; the exit code. */
function finish(run: Run | undefined, command: string): number {
  if (!run) return 1;
  const { options, harness, database, cores, argon2: a2, portcullis } = run;
  const ceiling = cores / a2.cpu;
  judge(run.scenarios.values(), ratio, ceiling, options.smoke);
  const logins = run.scenarios.get('interactive_login')?.portcullis;
  // The load generator closes its connections when a phase ends; requests still
  // in flight are aborted, and Portcullis logs some of those at error level.
  const isAbort = (line: string) => /Error: aborted|ECONNRESET|socket hang up|request aborted/.test(line);
  const errorLines = portcullis.errorLines.filter((line) => !isAbort(line));
  const abortLines = portcullis.errorLines.filter(isAbort);
  const start = harness.firstMeasureStart;
  const end = harness.lastMeasureEnd;
  const result: Report = {
    generated_at: new Date().toISOString(),
    command,
    smoke: options.smoke,
    machine: {
      cores,
      cpu: os.cpus()[0]?.model.trim() ?? 'unknown',
      memory_gib: round(os.totalmem() / 2 ** 30, 1),
      os: `${os.type()} ${os.release()}`,
      node: process.version,
      database: database.label,
      load_generator: `autocannon ${autocannonVersion()} (separate process)`,
    },
    settings: {
      duration_s: options.duration,
      warmup_s: options.warmup,
      rounds: options.rounds,
      connections: options.connections,
      database_pool_size: options.database === 'pglite' ? '1 (PGlite)' : (options.poolSize ?? 'default (10)'),
      users: options.users,
    },
    argon2: {
      type: 'argon2id',
      memory_kib: options.argon2.memoryKib,
      time_cost: options.argon2.timeCost,
      parallelism: options.argon2.parallelism,
      owasp_minimum_met: meetsOwaspMinimum(options.argon2),
      cpu_seconds_per_verify: round(a2.cpu, 4),
      wall_seconds_per_verify: round(a2.wall, 4),
      login_ceiling_per_s: round(ceiling, 1),
      all_cores_verifies_per_s: round(a2.allCoresRate, 1),
      login_fraction_of_ceiling: logins && !options.smoke ? round(logins.rps / ceiling) : null,
    },
    portcullis_process: {
      rss_mb_start: start?.rss ?? null,
      rss_mb_end: end?.rss ?? null,
      rss_mb_max: harness.rssMax,
      seconds: start && end ? round((end.at - start.at) / 1000, 0) : null,
      stable: soakIsStable(run.soak),
      soak: run.soak,
      error_log_lines: errorLines.length,
      aborted_request_log_lines: abortLines.length,
    },
    scenarios: [...run.scenarios.values()],
  };
  writeJson(path.resolve(ROOT, options.output.json), result);
  writeMarkdown(path.resolve(ROOT, options.output.markdown), result);
  for (const scenario of result.scenarios) {
    const p = scenario.portcullis;
    const status = scenario.skipped ? `skipped: ${scenario.skipped}` : scenario.failed ? `FAILED: ${scenario.failed}` : '';
    log(
      `${scenario.name.padEnd(18)} ` +
        (p && !scenario.failed
          ? `${String(p.rps).padStart(8)} ${scenario.unit}  p50 ${p.p50_ms} ms  p99 ${p.p99_ms} ms  errors ${p.errors}` +
            (scenario.ratio !== null ? `  ${scenario.ratio}× baseline` : '') +
            `  target ${scenario.met ? 'met' : scenario.met === false ? 'MISSED' : '–'}`
          : status),
    );
  }
  log(`wrote ${options.output.json} and ${options.output.markdown}`);
  if (errorLines.length) log(`Portcullis logged ${errorLines.length} error line(s), e.g.: ${errorLines[0]}`);
  if (abortLines.length) log(`Portcullis logged ${abortLines.length} error line(s) for requests the load generator abandoned at the end of a phase (not counted as errors)`);

  const failed = result.scenarios.filter((scenario) => scenario.failed);
  const withErrors = result.scenarios.filter((scenario) => (scenario.portcullis?.errors ?? 0) + (scenario.baseline?.errors ?? 0) > 0);
  if (failed.length) return 1;
  if (options.smoke && (withErrors.length || errorLines.length > 0)) {
    log(`smoke: errors in ${withErrors.map((scenario) => scenario.name).join(', ') || 'the Portcullis log'}`);
    return 1;
  }
  return 0;
}

function autocannonVersion(): string {
  try {
    return (JSON.parse(readFileSync(path.join(ROOT, 'node_modules', 'autocannon', 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return '';
  }
}

main().then(
  (code) => process.exit(code),
  (error: Error) => {
    process.stderr.write(`bench: ${error.stack ?? error.message}\n`);
    process.exit(1);
  },
);
