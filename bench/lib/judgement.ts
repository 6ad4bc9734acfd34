// Each scenario's figures against the targets (see docs/benchmarks.md).
import type { ScenarioReport } from './report.js';

/** p99 latency every token scenario must stay under, at the configured connections. */
const P99_LIMIT_MS = 50;

/**
 * Sets each scenario's ratio to the baseline (`ratioOf`) and whether it met
 * its target (`met`; left unset on a smoke run, whose figures are not
 * measurements), and marks a scenario that completed nothing as failed,
 * whatever its error count says. `ceiling`: the argon2 login ceiling.
 */
export function judge(scenarios: Iterable<ScenarioReport>, ratioOf: (entry: ScenarioReport) => number | null, ceiling: number, smoke: boolean): void {
  for (const scenario of scenarios) {
    for (const [who, run] of [['Portcullis', scenario.portcullis], ['baseline', scenario.baseline]] as const) {
      if (run && run.completed === 0) scenario.failed ??= `${who} completed no ${scenario.unit.replace('/s', '')} in ${run.seconds} s`;
    }
    const p = scenario.portcullis;
    scenario.ratio = ratioOf(scenario);
    if (!p || smoke) continue;
    const clean = p.errors === 0;
    const fast = p.p99_ms < P99_LIMIT_MS;
    if (scenario.name === 'client_credentials' || scenario.name === 'introspection') {
      scenario.met = scenario.ratio === null ? null : scenario.ratio >= 0.8 && fast && clean;
    } else if (scenario.name === 'refresh_token') {
      scenario.met = scenario.ratio === null ? null : scenario.ratio >= 0.6 && fast && clean;
    } else if (scenario.name === 'interactive_login') {
      scenario.met = p.rps >= 0.85 * ceiling && clean;
    } else {
      scenario.met = clean;
    }
  }
}
