// The zero-setup database: PostgreSQL compiled to WebAssembly (PGlite), with its
// data under DATA_DIR. PGlite lives inside one process, so the process that opens
// it also serves it on a Unix socket in the data directory; any other process
// (the CLI while the server runs) connects through that socket instead of
// opening the files a second time, which would corrupt them.
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';

const SOCKET_PORT = 5432;
const OWNER_FILE = 'portcullis-owner.json';

export interface EmbeddedDatabase {
  connectionString: string;
  /** True when this process opened PGlite; false when it joined another process's. */
  owner: boolean;
  close(): Promise<void>;
}

function connectionStringFor(dir: string): string {
  // libpq convention: host is the directory, the socket is `.s.PGSQL.<port>` inside it.
  return `postgresql://postgres@localhost/postgres?host=${encodeURIComponent(dir)}&port=${SOCKET_PORT}`;
}

function socketAnswers(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(socketPath);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

async function runningOwner(dataDir: string): Promise<boolean> {
  let owner: { pid: number };
  try {
    owner = JSON.parse(await readFile(path.join(dataDir, OWNER_FILE), 'utf8'));
  } catch {
    return false; // no owner file: nobody holds the database
  }
  try {
    process.kill(owner.pid, 0);
  } catch {
    return false; // the owner died without cleaning up
  }
  return socketAnswers(path.join(dataDir, `.s.PGSQL.${SOCKET_PORT}`));
}

export async function openEmbedded(dataDir: string): Promise<EmbeddedDatabase> {
  await mkdir(dataDir, { recursive: true });
  if (await runningOwner(dataDir)) {
    return { connectionString: connectionStringFor(dataDir), owner: false, close: async () => undefined };
  }
  const socketPath = path.join(dataDir, `.s.PGSQL.${SOCKET_PORT}`);
  await rm(socketPath, { force: true });
  const db = await PGlite.create(path.join(dataDir, 'pgdata'));
  // The multiplexer keeps a transaction's statements together; a few
  // connections let the CLI work while the server runs.
  const server = new PGLiteSocketServer({ db, path: socketPath, maxConnections: 16 });
  await server.start();
  const ownerFile = path.join(dataDir, OWNER_FILE);
  await writeFile(ownerFile, JSON.stringify({ pid: process.pid, startedAt: new Date().toISOString() }));
  return {
    connectionString: connectionStringFor(dataDir),
    owner: true,
    async close() {
      await server.stop();
      await db.close();
      await rm(ownerFile, { force: true });
      await rm(socketPath, { force: true });
    },
  };
}
