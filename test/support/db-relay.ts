// A TCP relay in front of the PostgreSQL server, for a test to take the
// database away from a server: cut (connections reset, new ones refused) or
// frozen (nothing passes, nothing is refused, as a hung server or a link that
// drops packets), then restored.
import net from 'node:net';

export interface DbRelay {
  port: number;
  cut(): void;
  freeze(): void;
  restore(): void;
  /** The link comes back without a reset: what was sent while frozen is lost, so connections made or frozen then stay unanswered; new ones pass. */
  heal(): void;
  /** How many connections were made while frozen (held, never answered). */
  readonly heldWhileFrozen: number;
  close(): Promise<void>;
}

export async function dbRelay(target: { host: string; port: number }): Promise<DbRelay> {
  const pairs = new Set<[net.Socket, net.Socket | undefined]>();
  let state: 'open' | 'cut' | 'frozen' = 'open';
  let held = 0;
  const server = net.createServer((client) => {
    client.on('error', () => undefined);
    if (state === 'cut') return void client.destroy();
    const pair: [net.Socket, net.Socket | undefined] = [client, undefined];
    pairs.add(pair);
    client.once('close', () => {
      pairs.delete(pair);
      pair[1]?.destroy();
    });
    if (state === 'frozen') {
      held++;
      return; // held, never answered
    }
    const upstream = net.connect(target.port, target.host);
    upstream.on('error', () => undefined);
    upstream.once('close', () => client.destroy());
    pair[1] = upstream;
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const dropAll = () => {
    for (const [client, upstream] of pairs) {
      client.destroy();
      upstream?.destroy();
    }
  };
  return {
    port: (server.address() as net.AddressInfo).port,
    cut() {
      state = 'cut';
      dropAll();
    },
    freeze() {
      state = 'frozen';
      for (const [client, upstream] of pairs) {
        client.unpipe();
        upstream?.unpipe();
        client.pause();
        upstream?.pause();
      }
    },
    restore() {
      // Frozen connections are dropped, as a hung server's are once it is restarted.
      if (state === 'frozen') dropAll();
      state = 'open';
    },
    heal() {
      state = 'open';
    },
    get heldWhileFrozen() {
      return held;
    },
    close() {
      dropAll();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
