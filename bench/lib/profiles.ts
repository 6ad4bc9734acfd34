// `--cpu-prof`: a summary of each profiled server's main thread, per scenario.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { summarise } from '../profile-summary.js';
import { log } from './log.js';
import type { Harness } from './measurement.js';
import { ROOT, type Service } from './processes.js';

export function summariseProfiles(dir: string, profiled: Service[], harness: Harness): void {
  for (const service of profiled) {
    // The main thread's profile: CPU.<date>.<time>.<pid>.0.<seq>.cpuprofile
    const main = readdirSync(dir).filter((file) => file.includes(`.${service.pid}.0.`) && file.endsWith('.cpuprofile'));
    for (const file of main) {
      const profile = JSON.parse(readFileSync(path.join(dir, file), 'utf8'));
      // One summary per scenario, over its measured slices: profile time ≈ wall time since the spawn.
      const byScenario = new Map<string, { windows: Array<{ from: number; to: number }>; operations: number }>();
      for (const { scenario, from, to, operations } of harness.phases.filter((phase) => phase.service === service)) {
        const entry = byScenario.get(scenario) ?? { windows: [], operations: 0 };
        entry.windows.push({ from: (from - service.startedAt) / 1000, to: (to - service.startedAt) / 1000 });
        entry.operations += operations;
        byScenario.set(scenario, entry);
      }
      const sections = [...byScenario].map(
        ([scenario, { windows, operations }]) => `## ${scenario} (measured ${windows.length > 1 ? `in ${windows.length} slices` : 'phase'})\n${summarise(profile, 15, windows, operations)}`,
      );
      const text = [`# ${service.name}`, `## whole run\n${summarise(profile, 15)}`, ...sections].join('\n\n');
      const summaryFile = path.join(dir, `${service.name}.${file.replace(/\.cpuprofile$/, '.summary.txt')}`);
      writeFileSync(summaryFile, `${text}\n`);
      log(`CPU profile of ${service.name}: ${path.relative(ROOT, path.join(dir, file))}; summary per scenario in ${path.relative(ROOT, summaryFile)}`);
    }
  }
}
