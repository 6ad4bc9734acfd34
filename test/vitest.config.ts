import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// The same suite runs twice: on the embedded PGlite and on a PostgreSQL server
// (TEST_DATABASE_URL, default the local one). Each test file gets its own database.
export default defineConfig({
  root: fileURLToPath(new URL('..', import.meta.url)),
  test: {
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    maxWorkers: 2,
    projects: [
      { extends: true, test: { name: 'pglite', include: ['test/**/*.test.ts'], env: { TEST_DATABASE: 'pglite' } } },
      { extends: true, test: { name: 'postgres', include: ['test/**/*.test.ts'], env: { TEST_DATABASE: 'postgres' } } },
    ],
  },
});
