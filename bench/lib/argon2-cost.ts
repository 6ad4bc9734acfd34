// What one argon2id verification costs on this machine: the login ceiling.
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import argon2 from 'argon2';
import type { Options } from './options.js';

/** CPU and wall seconds per verification (the median of several batches), and verifications per second with every core verifying. */
export interface Argon2Cost {
  cpu: number;
  wall: number;
  allCoresRate: number;
}

export async function measureArgon2(options: Options): Promise<Argon2Cost> {
  const params: argon2.HashOptions = {
    type: argon2.argon2id,
    memoryCost: options.argon2.memoryKib,
    timeCost: options.argon2.timeCost,
    parallelism: options.argon2.parallelism,
  };
  const password = randomBytes(12).toString('base64url');
  const hash = await argon2.hash(password, params);
  await argon2.verify(hash, password); // warm the native module and the allocator
  // The median of several batches, so that a moment of interference does not set the ceiling.
  const [batches, runs] = options.smoke ? [3, 2] : [7, 6];
  const measured: Array<{ cpu: number; wall: number }> = [];
  for (let batch = 0; batch < batches; batch++) {
    const cpuBefore = process.cpuUsage();
    const started = performance.now();
    for (let i = 0; i < runs; i++) {
      if (!(await argon2.verify(hash, password))) throw new Error('argon2 verify failed');
    }
    const cpu = process.cpuUsage(cpuBefore);
    measured.push({ cpu: (cpu.user + cpu.system) / 1e6 / runs, wall: (performance.now() - started) / 1000 / runs });
  }
  const median = measured.sort((a, b) => a.cpu - b.cpu)[Math.floor(batches / 2)]!;
  // Then every core at once, as under a login load: verifications share the
  // memory bus and the caches (19 MiB each), so this rate can fall short of cores ÷ CPU.
  const chains = os.availableParallelism();
  const perChain = options.smoke ? 2 : 8;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: chains }, async () => {
      for (let i = 0; i < perChain; i++) if (!(await argon2.verify(hash, password))) throw new Error('argon2 verify failed');
    }),
  );
  return { ...median, allCoresRate: (chains * perChain) / ((performance.now() - started) / 1000) };
}
