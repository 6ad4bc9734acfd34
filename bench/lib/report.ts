// The run's results: bench/results/latest.json and docs/benchmarks.md.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { TripCount } from './db-trips.js';
import type { ScenarioName } from './options.js';

export interface Figures {
  /** Requests per second (logins per second for interactive_login), successful ones only. */
  rps: number;
  p50_ms: number;
  p99_ms: number;
  errors: number;
  seconds: number;
  connections: number;
  completed: number;
  http_rps: number;
  error_kinds?: Record<string, number>;
  error_sample?: string;
  /** Cores' worth of CPU used during the measurement, per process (the server, its database, the load generator). */
  cpu_cores?: Record<string, number | null>;
  /** CPU milliseconds per completed operation, per process. */
  cpu_ms_per_op?: Record<string, number | null>;
}

export interface PortcullisFigures extends Figures {
  rss_mb_start: number | null;
  rss_mb_end: number | null;
  /** Counted one request at a time. */
  db_round_trips?: TripCount;
  /** Counted with `concurrency` requests at a time. */
  db_round_trips_concurrent?: TripCount & { concurrency: number };
}

export interface ScenarioReport {
  name: ScenarioName;
  unit: 'requests/s' | 'logins/s';
  description: string;
  portcullis: PortcullisFigures | null;
  baseline: Figures | null;
  ratio: number | null;
  target: string;
  met: boolean | null;
  skipped?: string;
  failed?: string;
  notes: string[];
}

export interface Report {
  generated_at: string;
  command: string;
  smoke: boolean;
  machine: {
    cores: number;
    cpu: string;
    memory_gib: number;
    os: string;
    node: string;
    database: string;
    load_generator: string;
  };
  settings: {
    duration_s: number;
    warmup_s: number;
    /** Slices per measurement, Portcullis and the baseline in turn (absent in reports before it existed). */
    rounds?: number;
    connections: number;
    database_pool_size: number | string;
    users: number;
  };
  argon2: {
    type: 'argon2id';
    memory_kib: number;
    time_cost: number;
    parallelism: number;
    owasp_minimum_met: boolean;
    cpu_seconds_per_verify: number;
    wall_seconds_per_verify: number;
    /** cores / cpu_seconds_per_verify: logins per second if verifying passwords were all the CPU did. */
    login_ceiling_per_s: number;
    /** Verifications per second measured with every core verifying at once (absent in older reports). */
    all_cores_verifies_per_s?: number;
    login_fraction_of_ceiling: number | null;
  };
  portcullis_process: {
    rss_mb_start: number | null;
    rss_mb_end: number | null;
    rss_mb_max: number | null;
    seconds: number | null;
    stable: boolean | null;
    error_log_lines: number;
    soak: {
      workload: string;
      seconds: number;
      requests: number;
      errors: number;
      rss_mb_start: number | null;
      rss_mb_end: number | null;
      rss_mb_max: number | null;
      rss_mb_samples: number[];
    } | null;
    /** Error lines about requests the load generator abandoned when a phase ended. */
    aborted_request_log_lines: number;
  };
  scenarios: ScenarioReport[];
}

/**
 * RSS under a steady load saws up and down with garbage collection, so its
 * start and end points alone say little. What grows with a leak is the level it
 * falls back to: the lowest RSS of the soak's last third, against its first third.
 */
export function soakTroughs(soak: Report['portcullis_process']['soak']): { first: number; last: number } | null {
  const samples = soak?.rss_mb_samples ?? [];
  if (samples.length < 6) return null;
  const third = Math.floor(samples.length / 3);
  return { first: Math.min(...samples.slice(0, third)), last: Math.min(...samples.slice(-third)) };
}

export function soakIsStable(soak: Report['portcullis_process']['soak']): boolean | null {
  const troughs = soakTroughs(soak);
  return troughs ? troughs.last <= troughs.first * 1.1 : null;
}

export function writeJson(file: string, report: Report): void {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
}

const INTRO = `# Benchmarks

What Portcullis sustains on a given machine, measured by \`npm run bench\`, next to a bare
[oidc-provider](https://github.com/panva/node-oidc-provider) with its in-memory adapter (the
*baseline*). We claim speed only where this harness measured it: run it on your own machine
before relying on any figure below. Everything from "Latest run" down is written by the harness.

## Running it

\`\`\`sh
npm run bench                      # PostgreSQL at 127.0.0.1:5432 (user postgres), about 6 minutes
npm run bench -- --pglite          # the embedded PGlite instead
npm run bench -- --smoke           # ~1 s per scenario, about 30 s: checks that the harness works (CI)
npm run bench -- --cpu-prof        # also profile Portcullis and the baseline: summaries per scenario in bench/results/profiles/
npm run bench -- --help            # duration, warm-up, connections, argon2 cost, --only, ...
\`\`\`

The harness creates (and drops) its own database, starts Portcullis as its own process
as \`npm start\` runs it (compiled, \`node dist/main.js\`), seeds a confidential client, users and an API with the
\`portcullis\` CLI, starts the baseline (\`bench/baseline.ts\`: the same client metadata, opaque
tokens, \`client_secret_basic\`, refresh-token rotation, ES256 ID tokens: the benchmark client is
registered with \`--id-token-alg ES256\`), and drives each scenario with
[autocannon](https://github.com/mcollina/autocannon) from a separate process (\`bench/load.ts\`):
a warm-up, then a fixed duration at a fixed number of connections. Where there is a baseline
(the first three scenarios), both servers are warmed up and the measured duration is cut into
slices (\`--rounds\`, 4 by default) that Portcullis and the baseline take in turn, P B B P P B B P,
each after a second of unmeasured load on its server, so that a burst of other work on a shared machine, or a slow drift, lands on both rather than
on whichever happened to run then; the slices' counts add up and their latencies are merged
before the percentiles are taken. Where the PostgreSQL server runs with autovacuum off, the
harness runs \`VACUUM (ANALYZE)\` on its database before each scenario and after making a
refresh-token pool, as autovacuum would have by then and as pgbench does before its runs: a
scenario then meets the dead rows it makes itself, not those of the scenarios before it. It writes
\`bench/results/latest.json\` and this file (a smoke run writes \`bench/results/smoke.json\` and
\`smoke.md\` instead), and exits non-zero when a scenario fails (with \`--smoke\`, also when any
request failed).

| Scenario | One operation |
|---|---|
| \`client_credentials\` | \`POST /token\` \`grant_type=client_credentials\`, \`client_secret_basic\` |
| \`refresh_token\` | \`POST /token\` \`grant_type=refresh_token\` with rotation; every request presents a refresh token never presented before, from a pool made beforehand (Portcullis: through the real consent and code exchange; baseline: minted with the provider's own \`Grant\` and \`RefreshToken\` models) |
| \`introspection\` | \`POST /token/introspection\` (\`token_type_hint=access_token\`) of valid opaque access tokens, 100 distinct ones in turn so that concurrent requests ask about different tokens |
| \`interactive_login\` | a whole login in a fresh browser: \`GET /auth\` (\`prompt=consent\`), login page, login form post, resume, consent page, consent post, resume, code exchange: 8 requests, counted as completed logins per second |
| \`jwt_verify\` | \`GET /orders\` on the example resource server (\`examples/resource-server\`) with a JWT access token from \`client_credentials\` with \`resource\`; the API verifies it against Portcullis's JWKS |

Latencies are per operation (a request, or a whole login), timed in the load generator.
*Errors* are responses other than the expected status and body, connection errors and
timeouts. The *ratio* is Portcullis's rate over the baseline's in the same run. The argon2id
*login ceiling* is cores ÷ CPU seconds per verification, measured by the harness before
anything else runs and again right after the logins, the faster of the two counting (on a
shared machine argon2's cost moves between runs, and a slow measurement would make the target
easy). *RSS* is read from \`/proc\` at the start and end of each measurement and
through a steady \`client_credentials\` soak (\`--soak\`, 60 s). *Database round trips* are
counted on a second, unmeasured Portcullis process whose PostgreSQL connections pass
through a counting relay (\`bench/lib/db-trips.ts\`), one request at a time and with 16 at once.
`;

const fmt = (value: number | null | undefined, digits = 1) =>
  value === null || value === undefined ? '–' : value.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: 0 });

function metCell(met: boolean | null): string {
  if (met === null) return '–';
  return met ? 'yes' : '**no**';
}

const ANALYSIS_START = '<!-- analysis: kept when the harness rewrites this file -->';
const ANALYSIS_END = '<!-- /analysis -->';

export function renderMarkdown(report: Report, previous?: string): string {
  const lines: string[] = [INTRO];
  lines.push(`## ${report.smoke ? 'Latest smoke run (not a measurement)' : 'Latest run'}`, '');
  lines.push(`\`${report.command}\` on ${report.generated_at.slice(0, 16).replace('T', ' ')} UTC.`, '');
  const m = report.machine;
  lines.push('| Cores | CPU | Memory | OS | Node | Database | Load generator |', '|---|---|---|---|---|---|---|');
  lines.push(`| ${m.cores} | ${m.cpu} | ${m.memory_gib} GiB | ${m.os} | ${m.node} | ${m.database} | ${m.load_generator} |`, '');
  const s = report.settings;
  lines.push(
    `${s.duration_s} s measured per scenario after ${s.warmup_s} s of warm-up` +
      (s.rounds && s.rounds > 1 ? ` (against the baseline: in ${s.rounds} slices of ${fmt(s.duration_s / s.rounds, 2)} s, the two taking turns P B B P …)` : '') +
      `, ${s.connections} connections, ` +
      `Portcullis database pool ${s.database_pool_size}, ${s.users} ${s.users === 1 ? 'person' : 'people'} logging in.`,
    '',
  );
  const a = report.argon2;
  lines.push('| argon2id | memory | iterations | parallelism | OWASP minimum | CPU per verify | wall per verify | login ceiling (cores / CPU per verify) | verifies/s, every core verifying at once |');
  lines.push('|---|---|---|---|---|---|---|---|---|');
  lines.push(
    `| | ${a.memory_kib} KiB | ${a.time_cost} | ${a.parallelism} | ${a.owasp_minimum_met ? 'met' : '**below**'} | ` +
      `${fmt(a.cpu_seconds_per_verify * 1000)} ms | ${fmt(a.wall_seconds_per_verify * 1000)} ms | ${fmt(a.login_ceiling_per_s)} logins/s | ${fmt(a.all_cores_verifies_per_s)} |`,
    '',
  );

  lines.push('### Results', '');
  lines.push('| Scenario | Portcullis | p50 | p99 | errors | Baseline | p50 | p99 | errors | Ratio | Target | Met |');
  lines.push('|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const scenario of report.scenarios) {
    const p = scenario.portcullis;
    const b = scenario.baseline;
    if (!p) {
      const why = scenario.skipped ? `skipped: ${scenario.skipped}` : `failed: ${scenario.failed ?? 'unknown'}`;
      lines.push(`| ${scenario.name} | ${escapeCell(why)} | | | | | | | | | ${scenario.target} | – |`);
      continue;
    }
    lines.push(
      `| ${scenario.name} | ${fmt(p.rps)} ${scenario.unit} | ${fmt(p.p50_ms)} ms | ${fmt(p.p99_ms)} ms | ${p.errors} | ` +
        (b ? `${fmt(b.rps)} ${scenario.unit} | ${fmt(b.p50_ms)} ms | ${fmt(b.p99_ms)} ms | ${b.errors} | ` : '– | | | | ') +
        `${scenario.ratio === null ? '–' : `${fmt(scenario.ratio, 2)}×`} | ${scenario.target} | ${metCell(scenario.met)} |`,
    );
  }
  lines.push('');
  const notes = report.scenarios.flatMap((scenario) => scenario.notes.map((note) => `- \`${scenario.name}\`: ${note}`));
  if (notes.length) lines.push(...notes, '');

  lines.push('### Where the time goes', '');
  lines.push(
    'CPU comes from /proc: the server process (all its threads), the PostgreSQL backends serving it, the load ' +
      'generator, and *other* (the rest of the machine: the harness, PostgreSQL\'s background writers, anything else ' +
      'running; much above 0.1 means the run was disturbed). Round trips are counted on a separate Portcullis process.',
    '',
  );
  lines.push('| Scenario | Portcullis RSS start → end | CPU cores busy (server / database / load generator / other) | CPU ms per operation: Portcullis + database | baseline | DB round trips per operation: alone / concurrent | Statements per operation (alone) |');
  lines.push('|---|---|---|---|---|---|---|');
  for (const scenario of report.scenarios) {
    const p = scenario.portcullis;
    if (!p) continue;
    const server = (cpu: Record<string, number | null> | undefined) => {
      if (!cpu) return null;
      const key = Object.keys(cpu).find((name) => !['database', 'load_generator', 'other'].includes(name));
      return key ? cpu[key] : null;
    };
    const cores = p.cpu_cores;
    const perOp = p.cpu_ms_per_op;
    const basePerOp = scenario.baseline?.cpu_ms_per_op;
    const trips = p.db_round_trips;
    const statements = trips
      ? Object.entries(trips.byStatement)
          .map(([statement, count]) => `${statement} ×${fmt(count, 2)}`)
          .join('; ')
      : '–';
    lines.push(
      `| ${scenario.name} | ${scenario.name === 'jwt_verify' ? 'resource server: ' : ''}${fmt(p.rss_mb_start)} → ${fmt(p.rss_mb_end)} MiB | ` +
        `${fmt(server(cores), 2)} / ${fmt(cores?.database, 2)} / ${fmt(cores?.load_generator, 2)} / ${fmt(cores?.other, 2)} | ` +
        `${fmt(server(perOp), 2)} + ${fmt(perOp?.database, 2)} | ${basePerOp ? fmt(server(basePerOp), 2) : '–'} | ` +
        `${trips ? fmt(trips.total, 2) : '–'} / ${p.db_round_trips_concurrent ? `${fmt(p.db_round_trips_concurrent.total, 2)} (${p.db_round_trips_concurrent.concurrency} at a time)` : '–'} | ${escapeCell(statements)} |`,
    );
  }
  const rp = report.portcullis_process;
  lines.push('');
  if (rp.soak) {
    const k = rp.soak;
    const troughs = soakTroughs(k);
    lines.push(
      `Portcullis RSS under ${fmt(k.seconds, 0)} s of steady \`${k.workload}\` load (${fmt(k.requests, 0)} requests, ${k.errors} errors): ` +
        `${fmt(k.rss_mb_start)} MiB at the start, ${fmt(k.rss_mb_end)} MiB at the end, peak ${fmt(k.rss_mb_max)} MiB` +
        (troughs
          ? `; lowest ${fmt(troughs.first)} MiB in the first third and ${fmt(troughs.last)} MiB in the last third` +
            (rp.stable ? ' — stable (the level garbage collection returns to rose by less than 10%).' : ' — **the level garbage collection returns to rose by more than 10%**.')
          : '.'),
      '',
    );
  }
  lines.push(
    `Over the whole run: ${fmt(rp.rss_mb_start)} MiB at the start of the first measurement, ${fmt(rp.rss_mb_end)} MiB at the end ` +
      `of the last, ${fmt(rp.seconds, 0)} s later (peak ${fmt(rp.rss_mb_max)} MiB). ` +
      `Error lines in the Portcullis log: ${rp.error_log_lines}` +
      (rp.aborted_request_log_lines ? ` (plus ${rp.aborted_request_log_lines} about requests the load generator abandoned when a phase ended).` : '.'),
    '',
  );

  const analysis = previous ? extractAnalysis(previous) : undefined;
  lines.push(ANALYSIS_START, analysis ?? '## Analysis\n\n(Not written yet.)', ANALYSIS_END, '');
  return lines.join('\n');
}

function extractAnalysis(markdown: string): string | undefined {
  const start = markdown.indexOf(ANALYSIS_START);
  const end = markdown.indexOf(ANALYSIS_END);
  if (start < 0 || end < start) return undefined;
  return markdown.slice(start + ANALYSIS_START.length, end).trim();
}

function escapeCell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

export function writeMarkdown(file: string, report: Report): void {
  mkdirSync(path.dirname(file), { recursive: true });
  // Judged the same way whichever version of the harness wrote the JSON.
  if (report.portcullis_process.soak) report.portcullis_process.stable = soakIsStable(report.portcullis_process.soak);
  const previous = existsSync(file) ? readFileSync(file, 'utf8') : undefined;
  writeFileSync(file, renderMarkdown(report, previous));
}
