// The example resource server (examples/resource-server) on a free port, as an API author runs it.
import type { Server } from 'node:http';
import { createResourceServer } from '../../examples/resource-server/app.js';
import { freePort } from './portcullis.js';

/** Starts the example API; its server joins `servers` (for the caller to close). Its base URL. */
export async function serveExampleApi(options: Parameters<typeof createResourceServer>[0], servers: Server[]): Promise<string> {
  const port = await freePort();
  const server = createResourceServer(options).listen(port, '127.0.0.1');
  servers.push(server);
  await new Promise((resolve) => server.once('listening', resolve));
  return `http://127.0.0.1:${port}`;
}
