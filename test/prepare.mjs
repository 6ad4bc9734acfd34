#!/usr/bin/env node
// Runs before `npm test`: makes sure what the suite drives is there — Debian's
// Chromium for the browser journeys, strace, and a PostgreSQL server on 127.0.0.1:5432 —
// installing or starting them where this machine allows (root, Debian).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import net from 'node:net';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const isRoot = process.getuid?.() === 0;

function run(command, args) {
  const result = spawnSync(command, args, { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  return result.status === 0;
}

function fail(message) {
  process.stderr.write(`npm test: ${message}\n`);
  process.exit(1);
}

// Debian's strace injects a failed disk sync into a running server (embedded-durability.test.ts).
const missing = [
  ...(existsSync(CHROMIUM) ? [] : [['chromium', `no Chromium at ${CHROMIUM}: install Debian's chromium package (or set CHROMIUM_PATH)`]]),
  ...(existsSync('/usr/bin/strace') ? [] : [['strace', "no strace: install Debian's strace package"]]),
];
if (missing.length > 0) {
  if (!isRoot || !existsSync('/usr/bin/apt-get')) fail(missing.map(([, why]) => why).join('; '));
  const packages = missing.map(([name]) => name);
  process.stdout.write(`installing ${packages.join(' and ')} from Debian packages for the tests…\n`);
  if (!run('apt-get', ['update', '-qq']) || !run('apt-get', ['install', '-y', '-qq', ...packages])) fail(`could not install ${packages.join(' and ')}`);
}

function reachable(port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('error', () => resolve(false));
  });
}

if (!process.env.TEST_DATABASE_URL && !(await reachable(5432))) {
  const versions = existsSync('/etc/postgresql') ? readdirSync('/etc/postgresql') : [];
  if (!isRoot || versions.length === 0) fail('no PostgreSQL server on 127.0.0.1:5432 (or set TEST_DATABASE_URL)');
  execFileSync('pg_ctlcluster', ['--skip-systemctl-redirect', versions[0], 'main', 'start'], { stdio: 'inherit' });
  for (let i = 0; i < 30 && !(await reachable(5432)); i++) await new Promise((resolve) => setTimeout(resolve, 1000));
  if (!(await reachable(5432))) fail('PostgreSQL did not start');
}
