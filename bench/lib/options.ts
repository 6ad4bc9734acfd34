// `npm run bench -- [flags]`: the flags, their defaults, and the usage text.
import { parseArgs } from 'node:util';

export const SCENARIOS = ['client_credentials', 'refresh_token', 'introspection', 'interactive_login', 'jwt_verify'] as const;
export type ScenarioName = (typeof SCENARIOS)[number];

export interface Options {
  smoke: boolean;
  database: 'postgres' | 'pglite';
  /** Admin connection to the PostgreSQL server; the harness creates and drops its own database there. */
  serverUrl: string;
  duration: number;
  warmup: number;
  /**
   * Slices each scenario's measurement is cut into, Portcullis and the baseline
   * taking turns (ABBA): a burst of other work on a shared machine then lands
   * on both instead of on one.
   */
  rounds: number;
  connections: number;
  argon2: { memoryKib: number; timeCost: number; parallelism: number };
  /** DATABASE_POOL_SIZE for Portcullis; undefined keeps its default. */
  poolSize?: number;
  users: number;
  /** Seconds of steady client_credentials load on Portcullis to watch its RSS (0: none). */
  soak: number;
  baseline: boolean;
  dbTrips: boolean;
  cpuProf: boolean;
  /** Leave the benchmark database in place (to inspect it) instead of dropping it. */
  keepDatabase: boolean;
  only: ScenarioName[];
  /** Only rewrite the markdown from the JSON of an earlier run. */
  renderOnly: boolean;
  output: { json: string; markdown: string };
  /** The flags as given, for the report's "command used". */
  argv: string[];
}

export const USAGE = `npm run bench -- [flags]

  --smoke                 ~1 s per scenario, small pools: checks the harness works (exit 1 on any error)
  --pglite                run Portcullis on the embedded PGlite instead of PostgreSQL
  --database-url URL      PostgreSQL server to create the benchmark database on
                          (default postgresql://postgres@127.0.0.1:5432/postgres)
  --duration S            measured seconds per scenario (default 10; smoke 1)
  --warmup S              warm-up seconds before each measurement (default 5; smoke 0.5)
  --rounds N              cut each measurement into N slices, Portcullis and the baseline
                          taking turns (P B B P ...), so that noise lands on both (default 4; smoke 1)
  --connections N         concurrent connections of the load generator (default 16)
  --argon2-memory KIB     argon2id memory cost (default 19456 = 19 MiB, the OWASP minimum)
  --argon2-time N         argon2id iterations (default 2)
  --argon2-parallelism N  argon2id lanes (default 1)
  --pool-size N           Portcullis DATABASE_POOL_SIZE (default: Portcullis's own default, 10)
  --users N               people who log in during interactive_login (default 4; smoke 1)
  --soak S                seconds of steady client_credentials load to check that Portcullis's
                          RSS is stable (default 60; smoke 0 = none)
  --only a,b              run only these scenarios (${SCENARIOS.join(', ')})
  --no-baseline           skip the in-memory oidc-provider baseline
  --no-db-trips           skip counting database round trips per request
  --cpu-prof              write V8 CPU profiles of Portcullis and the baseline to
                          bench/results/profiles/, with a summary per scenario (µs per operation)
  --keep-database         leave the benchmark database (or PGlite directory) in place to inspect it
  --json FILE             where to write the JSON (default bench/results/latest.json;
                          smoke: bench/results/smoke.json)
  --markdown FILE         where to write the report (default docs/benchmarks.md;
                          smoke: bench/results/smoke.md)
  --render-only           rewrite the report from the JSON of the last run, without running anything
  --help
`;

export class UsageError extends Error {}

function positive(value: string | undefined, flag: string, fallback: number, integer = true): number {
  if (value === undefined) return fallback;
  const number = Number(value);
  if (!Number.isFinite(number) || number <= 0 || (integer && !Number.isInteger(number))) {
    throw new UsageError(`${flag} must be a positive ${integer ? 'integer' : 'number'}, got "${value}"`);
  }
  return number;
}

export function parseOptions(argv: string[]): Options | 'help' {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      options: {
        smoke: { type: 'boolean' },
        pglite: { type: 'boolean' },
        'database-url': { type: 'string' },
        duration: { type: 'string' },
        warmup: { type: 'string' },
        rounds: { type: 'string' },
        connections: { type: 'string' },
        'argon2-memory': { type: 'string' },
        'argon2-time': { type: 'string' },
        'argon2-parallelism': { type: 'string' },
        'pool-size': { type: 'string' },
        users: { type: 'string' },
        soak: { type: 'string' },
        only: { type: 'string' },
        'no-baseline': { type: 'boolean' },
        'no-db-trips': { type: 'boolean' },
        'cpu-prof': { type: 'boolean' },
        'keep-database': { type: 'boolean' },
        json: { type: 'string' },
        markdown: { type: 'string' },
        'render-only': { type: 'boolean' },
        help: { type: 'boolean' },
      },
    }));
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  if (values.help) return 'help';
  const smoke = Boolean(values.smoke);
  const only = values.only
    ? values.only.split(',').map((name) => name.trim()).filter(Boolean)
    : [...SCENARIOS];
  for (const name of only) {
    if (!SCENARIOS.includes(name as ScenarioName)) throw new UsageError(`--only: unknown scenario "${name}" (use ${SCENARIOS.join(', ')})`);
  }
  const serverUrl = values['database-url'] ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
  if (!/^postgres(ql)?:\/\//.test(serverUrl)) throw new UsageError('--database-url must be a postgresql:// URL');
  return {
    smoke,
    database: values.pglite ? 'pglite' : 'postgres',
    serverUrl,
    duration: positive(values.duration, '--duration', smoke ? 1 : 10, false),
    warmup: positive(values.warmup, '--warmup', smoke ? 0.5 : 5, false),
    rounds: positive(values.rounds, '--rounds', smoke ? 1 : 4),
    connections: positive(values.connections, '--connections', 16),
    argon2: {
      memoryKib: positive(values['argon2-memory'], '--argon2-memory', 19456),
      timeCost: positive(values['argon2-time'], '--argon2-time', 2),
      parallelism: positive(values['argon2-parallelism'], '--argon2-parallelism', 1),
    },
    poolSize: values['pool-size'] === undefined ? undefined : positive(values['pool-size'], '--pool-size', 10),
    users: positive(values.users, '--users', smoke ? 1 : 4),
    soak: values.soak === '0' ? 0 : positive(values.soak, '--soak', smoke ? 0 : 60, false),
    baseline: !values['no-baseline'],
    dbTrips: !values['no-db-trips'],
    cpuProf: Boolean(values['cpu-prof']),
    keepDatabase: Boolean(values['keep-database']),
    only: only as ScenarioName[],
    renderOnly: Boolean(values['render-only']),
    // A smoke run is no measurement: it leaves the published figures alone.
    output: {
      json: values.json ?? (smoke ? 'bench/results/smoke.json' : 'bench/results/latest.json'),
      markdown: values.markdown ?? (smoke ? 'bench/results/smoke.md' : 'docs/benchmarks.md'),
    },
    argv,
  };
}

/**
 * The OWASP Password Storage Cheat Sheet's equally strong argon2id minimums (p=1):
 * m=46 MiB t=1, m=19 MiB t=2, m=12 MiB t=3, m=9 MiB t=4, m=7 MiB t=5.
 */
const OWASP_MINIMUMS = [
  [47104, 1],
  [19456, 2],
  [12288, 3],
  [9216, 4],
  [7168, 5],
] as const;

export function meetsOwaspMinimum(argon2: Options['argon2']): boolean {
  return argon2.parallelism >= 1 && OWASP_MINIMUMS.some(([memory, time]) => argon2.memoryKib >= memory && argon2.timeCost >= time);
}
