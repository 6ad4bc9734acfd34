// GET /metrics in Prometheus's text format, on METRICS_HOST:METRICS_PORT: a
// listener of its own, so that what the counters reveal (how many sign-ins
// fail, how busy the pool is) is never served on the public issuer, and a
// scrape never queues behind protocol traffic's middleware.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { ConfigError, NOT_AN_ADDRESS_HERE } from '../config.js';
import type { Logger } from '../logger.js';
import type { Metrics } from './metrics.js';

export interface MetricsServer {
  url: string;
  close(): Promise<void>;
}

export async function startMetricsServer(metrics: Metrics, where: { host: string; port: number }, logger: Logger): Promise<MetricsServer> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/metrics') return answer(res, 404, 'not found: metrics are at /metrics\n');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      return answer(res, 405, 'method not allowed\n');
    }
    metrics.exposition().then(
      (text) => {
        res.setHeader('Cache-Control', 'no-store');
        answer(res, 200, text, metrics.registry.contentType);
      },
      (error: Error) => {
        logger.error('metrics collection failed', { error: `${error.name}: ${error.message}` });
        answer(res, 500, 'metrics collection failed\n');
      },
    );
  });
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      const message = `cannot listen on METRICS_HOST=${where.host} METRICS_PORT=${where.port}: ${error.message}`;
      // As for HOST (server.ts): an address that is not this machine's is configuration (exit 2).
      reject(NOT_AN_ADDRESS_HERE.has(error.code ?? '') ? new ConfigError(message) : new Error(message, { cause: error }));
    });
    server.listen(where.port, where.host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const host = where.host.includes(':') ? `[${where.host}]` : where.host;
  return {
    url: `http://${host === '0.0.0.0' || host === '[::]' ? 'localhost' : host}:${port}/metrics`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function answer(res: http.ServerResponse, status: number, body: string, type = 'text/plain; charset=utf-8'): void {
  res.statusCode = status;
  res.setHeader('Content-Type', type);
  // Text, to be read as text: as every answer of the issuer's says (security-headers.ts).
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.end(res.req.method === 'HEAD' ? undefined : body);
}
