// Measuring a server under load: one phase with the CPU and memory of every
// process around it, interleaved slices against the baseline merged into one
// measurement, and the figures the report takes from it.
import path from 'node:path';
import pg from 'pg';
import type { LoadSpec, PhaseResult, Scenario } from '../load.js';
import type { Client } from './browser.js';
import { log, round } from './log.js';
import type { Options } from './options.js';
import { percentile } from './percentile.js';
import { BENCH_DIR, cpuSeconds, LoadGenerator, machineBusySeconds, type BenchDatabase, type Service } from './processes.js';
import type { Figures, PortcullisFigures, ScenarioReport } from './report.js';

/** A server under load: Portcullis or the baseline. */
export interface Target {
  name: 'portcullis' | 'baseline';
  url: string;
  service: Service;
  client: Client;
  /** Unused refresh tokens, made on demand. */
  refreshTokens(count: number): Promise<string[]>;
  /** A rough guess of its refresh rate, to size the warm-up's pool. */
  expectedRefreshRate: number;
  /** Measured pool = warm-up rate × duration × this (minting is cheap for the baseline, slow for Portcullis). */
  poolMargin: number;
}

/** Unmeasured load before each interleaved slice (Harness.interleave). */
export const SETTLE_SECONDS = 1;

/** One server's share of an interleaved measurement (Harness.interleave). */
export interface Lane {
  url: string;
  service: Service;
  /** Count the database's CPU (Portcullis's lane). */
  track: boolean;
  /** The scenario of the next slice, or null when there is nothing left to send. */
  next(): Scenario | null;
  done?(result: PhaseResult): void;
}

export interface Measured {
  result: PhaseResult;
  rssStart: number | null;
  rssEnd: number | null;
  cpuCores: Record<string, number | null>;
  cpuMsPerOp: Record<string, number | null>;
  /** What the figures above are made of, to merge slices (see combine()). */
  raw: {
    /** CPU seconds per process over the slice. */
    cpu: Record<string, number | null>;
    /** CPU seconds of everything else on the machine, and the wall seconds that was over. */
    other: number | null;
    wall: number;
  };
}

/** Figures per second and per operation from a (possibly merged) measurement. */
function derive(result: PhaseResult, rssStart: number | null, rssEnd: number | null, raw: Measured['raw']): Measured {
  const per = (divisor: number, digits: number, scale = 1) =>
    Object.fromEntries(Object.entries(raw.cpu).map(([who, value]) => [who, value === null || divisor <= 0 ? null : round((value * scale) / divisor, digits)]));
  // When a refresh pool ran out, the processes' CPU covers more than the measured interval.
  const exact = result.pool_exhausted_after_s === undefined;
  return {
    result,
    rssStart,
    rssEnd,
    cpuCores: exact ? { ...per(result.seconds, 2), other: raw.other === null ? null : round(raw.other / raw.wall) } : {},
    cpuMsPerOp: exact ? per(result.completed, 3, 1000) : {},
    raw,
  };
}

const sum = (values: Array<number | null | undefined>): number | null =>
  values.some((value) => value === null || value === undefined) ? null : values.reduce<number>((total, value) => total + value!, 0);

/** One measurement from its slices: counts and CPU add up, latencies merge exactly. */
function combine(slices: Measured[]): Measured {
  if (slices.length === 1) return slices[0]!;
  const results = slices.map((slice) => slice.result);
  const latencies = results.flatMap((result) => result.latencies_ms ?? []).sort((a, b) => a - b);
  const seconds = sum(results.map((result) => result.seconds))!;
  const completed = sum(results.map((result) => result.completed))!;
  const requests = sum(results.map((result) => result.http_requests))!;
  const errorKinds: Record<string, number> = {};
  for (const result of results) for (const [kind, count] of Object.entries(result.error_kinds)) errorKinds[kind] = (errorKinds[kind] ?? 0) + count;
  const exhausted = results.findIndex((result) => result.pool_exhausted_after_s !== undefined);
  const poolUsed = sum(results.map((result) => result.pool_used));
  const merged: PhaseResult = {
    label: 'measure',
    seconds: round(seconds, 3),
    connections: results[0]!.connections,
    completed,
    rate: round(completed / seconds, 1),
    p50_ms: percentile(latencies, 50),
    p99_ms: percentile(latencies, 99),
    max_ms: percentile(latencies, 100),
    errors: sum(results.map((result) => result.errors))!,
    error_kinds: errorKinds,
    ...(results.find((result) => result.error_sample) ? { error_sample: results.find((result) => result.error_sample)!.error_sample } : {}),
    http_requests: requests,
    http_rps: round(requests / seconds, 1),
    ...(poolUsed !== null ? { pool_used: poolUsed } : {}),
    ...(exhausted >= 0 ? { pool_exhausted_after_s: round(seconds, 3) } : {}),
    cpu_seconds: round(sum(results.map((result) => result.cpu_seconds))!, 2),
    process_cpu_seconds: round(sum(results.map((result) => result.process_cpu_seconds))!, 2),
  };
  const cpu: Record<string, number | null> = {};
  for (const who of Object.keys(slices[0]!.raw.cpu)) cpu[who] = sum(slices.map((slice) => slice.raw.cpu[who]));
  return derive(merged, slices[0]!.rssStart, slices.at(-1)!.rssEnd, {
    cpu,
    other: sum(slices.map((slice) => slice.raw.other)),
    wall: sum(slices.map((slice) => slice.raw.wall))!,
  });
}

export class Harness {
  private loadGenerator?: LoadGenerator;
  private dbStats?: pg.Client;
  rssMax: number | null = null;
  /** Measured phases, in wall-clock time, for the CPU profiles. */
  readonly phases: Array<{ service: Service; scenario: string; from: number; to: number; operations: number }> = [];
  currentScenario = '';
  firstMeasureStart?: { at: number; rss: number | null };
  lastMeasureEnd?: { at: number; rss: number | null };

  constructor(
    readonly options: Options,
    readonly database: BenchDatabase,
  ) {}

  async connectStats(): Promise<void> {
    if (!this.database.url) return;
    this.dbStats = new pg.Client({ connectionString: this.database.url });
    await this.dbStats.connect();
  }

  /** CPU seconds used so far by the PostgreSQL backends serving the benchmark database. */
  private async databaseCpu(): Promise<Map<number, number> | null> {
    if (!this.dbStats) return null;
    const { rows } = await this.dbStats.query<{ pid: number }>(
      'SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()',
    );
    const cpu = new Map<number, number>();
    for (const { pid } of rows) {
      const seconds = cpuSeconds(pid);
      if (seconds !== null) cpu.set(pid, seconds);
    }
    return cpu;
  }

  /** Stands in for autovacuum where the server has it off (see BenchDatabase.tidy). */
  async tidy(when: string): Promise<void> {
    const seconds = await this.database.tidy?.();
    if (seconds != null) log(`VACUUM (ANALYZE) ${when}: ${round(seconds, 1)} s`);
  }

  runLoad(spec: LoadSpec): Promise<PhaseResult[]> {
    this.loadGenerator ??= new LoadGenerator(path.join(BENCH_DIR, 'load.ts'));
    return this.loadGenerator.run(spec);
  }

  spec(url: string, scenario: Scenario, label: string, seconds: number, keepLatencies = false): LoadSpec {
    return { url, connections: this.options.connections, phases: [{ label, seconds }], scenario, keepLatencies };
  }

  async warmup(url: string, scenario: Scenario): Promise<PhaseResult> {
    const [result] = await this.runLoad(this.spec(url, scenario, 'warm-up', this.options.warmup));
    return result!;
  }

  /** One measured phase, with the RSS and CPU of the process under load around it. */
  async measure(url: string, scenario: Scenario, service: Service, trackPortcullis: boolean, seconds = this.options.duration): Promise<Measured> {
    const rssStart = service.rss();
    const machineBusy = machineBusySeconds();
    const serviceCpu = cpuSeconds(service.pid);
    const databaseCpu = trackPortcullis ? await this.databaseCpu() : null;
    const startedAt = Date.now();
    if (trackPortcullis) this.firstMeasureStart ??= { at: startedAt, rss: rssStart };
    const [result] = await this.runLoad(this.spec(url, scenario, 'measure', seconds, true));
    const rssEnd = service.rss();
    if (trackPortcullis) this.lastMeasureEnd = { at: Date.now(), rss: rssEnd };
    this.phases.push({ service, scenario: this.currentScenario, from: startedAt, to: Date.now(), operations: result!.completed });
    const serviceCpuEnd = cpuSeconds(service.pid);
    const machineBusyEnd = machineBusySeconds();
    let database: number | null = null;
    if (databaseCpu) {
      const after = (await this.databaseCpu())!;
      database = 0;
      for (const [pid, seconds] of after) database += seconds - (databaseCpu.get(pid) ?? 0);
    }
    const cpu: Record<string, number | null> = {
      [service.name]: serviceCpu === null || serviceCpuEnd === null ? null : serviceCpuEnd - serviceCpu,
      ...(trackPortcullis ? { database: database } : {}),
      load_generator: result!.cpu_seconds,
    };
    // Everything else the machine did meanwhile (the harness, PostgreSQL's background
    // writers, and any other program): a large figure means the run was disturbed.
    const ours =
      Object.values(cpu).reduce<number>((sum, value) => sum + (value ?? 0), 0) + (result!.process_cpu_seconds - result!.cpu_seconds);
    const other = machineBusy === null || machineBusyEnd === null ? null : Math.max(0, machineBusyEnd - machineBusy - ours);
    // Averaged over the whole window (the load generator's start and exit included), not just the phase.
    const wall = (Date.now() - startedAt) / 1000;
    const otherCores = other === null ? null : round(other / wall);
    if (otherCores !== null && otherCores > 0.3) {
      log(`warning: ${otherCores} cores were busy with other work during this measurement; its figures may be low`);
    }
    return derive(result!, rssStart, rssEnd, { cpu, other, wall });
  }

  /**
   * Measures every lane for the configured duration in `rounds` slices, the
   * lanes taking turns P B B P P B … (ABBA), so that drift and bursts of other
   * work on a shared machine land on all of them alike instead of on whichever
   * ran during the burst. Each slice starts after SETTLE_SECONDS of
   * unmeasured load on its server. A lane whose next() has nothing left (a
   * refresh pool ran out) sits out the remaining slices. With one lane: one slice.
   */
  async interleave(lanes: Lane[]): Promise<Measured[]> {
    const rounds = lanes.length > 1 ? this.options.rounds : 1;
    const seconds = this.options.duration / rounds;
    const slices: Measured[][] = lanes.map(() => []);
    for (let round = 0; round < rounds; round++) {
      const order = lanes.map((_, index) => index);
      if (round % 2 === 1) order.reverse();
      for (const index of order) {
        const lane = lanes[index]!;
        let scenario = lane.next();
        if (!scenario) continue;
        if (rounds > 1) {
          // The other lane just had the machine: a second of load, unmeasured,
          // brings this server back to the steady state it left.
          lane.done?.((await this.runLoad(this.spec(lane.url, scenario, 'settle', SETTLE_SECONDS)))[0]!);
          scenario = lane.next();
          if (!scenario) continue;
        }
        const measured = await this.measure(lane.url, scenario, lane.service, lane.track, seconds);
        lane.done?.(measured.result);
        slices[index]!.push(measured);
        if (rounds > 1) log(`  slice ${round + 1}/${rounds} ${lane.service.name}: ${measured.result.rate}/s, p99 ${measured.result.p99_ms} ms`);
      }
    }
    return slices.map((list, index) => {
      if (list.length === 0) throw new Error(`${lanes[index]!.service.name}: nothing measured`);
      return combine(list);
    });
  }

  sampleRss(service: Service): NodeJS.Timeout {
    return setInterval(() => {
      const rss = service.rss();
      if (rss !== null) this.rssMax = Math.max(this.rssMax ?? 0, rss);
    }, 1000).unref();
  }

  async close(): Promise<void> {
    await this.loadGenerator?.close().catch(() => undefined);
    await this.dbStats?.end().catch(() => undefined);
  }
}

export function ratio(entry: ScenarioReport): number | null {
  return entry.portcullis && entry.baseline && entry.baseline.rps > 0 ? round(entry.portcullis.rps / entry.baseline.rps) : null;
}

export function figures(measured: Measured): Figures {
  const r = measured.result;
  return {
    rps: r.rate,
    p50_ms: r.p50_ms,
    p99_ms: r.p99_ms,
    errors: r.errors,
    seconds: r.seconds,
    connections: r.connections,
    completed: r.completed,
    http_rps: r.http_rps,
    ...(r.errors ? { error_kinds: r.error_kinds, error_sample: r.error_sample } : {}),
    cpu_cores: measured.cpuCores,
    cpu_ms_per_op: measured.cpuMsPerOp,
  };
}

export function portcullisFigures(measured: Measured): PortcullisFigures {
  return { ...figures(measured), rss_mb_start: measured.rssStart, rss_mb_end: measured.rssEnd };
}
