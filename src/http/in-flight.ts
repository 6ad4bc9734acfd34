// Work whose handling has not finished: requests, and the server's own
// background tasks (sweep, key refresh). A client that hangs up does not stop
// its request's handler: the socket closes, but the handler may still be
// consuming a code or writing a session. Shutdown waits for these before it
// closes the database, or they would fail half done (seen in the benchmark:
// logins aborted at the end of a run met a closed pool and logged errors).
import type { ServerResponse } from 'node:http';
export class InFlightRequests {
  private count = 0;
  private waiting: Array<() => void> = [];
  /** The responses of the requests being handled, to close their connections when shutdown begins. */
  private readonly responses = new Set<ServerResponse>();
  /** Set when shutdown begins (drain()): responses from then on close their connection. */
  draining = false;
  /** When the latest response that left its connection open for another request was done (Date.now()). */
  private lastKeptAlive = 0;

  /** `res`: the request's response, when the work is a request's. */
  track(handling: Promise<unknown>, res?: ServerResponse): void {
    this.count++;
    if (!res) {
      handling.then(this.settled, this.settled);
      return;
    }
    this.responses.add(res);
    const done = () => {
      this.responses.delete(res);
      if (res.shouldKeepAlive) this.lastKeptAlive = Date.now();
      this.settled();
    };
    handling.then(done, done);
  }

  /**
   * Shutdown begins: every response not yet sent, and every one to come,
   * says `Connection: close` and ends its connection, where a response
   * already being handled would have said keep-alive and then been cut.
   */
  drain(): void {
    this.draining = true;
    for (const res of this.responses) if (!res.headersSent) res.shouldKeepAlive = false;
  }

  /**
   * Milliseconds until `quietMs` have passed since a response last left its
   * connection open for the client's next request (0 if they have). Shutdown
   * waits that long before it closes such connections (server.ts).
   */
  untilQuiet(quietMs: number): number {
    return Math.max(0, this.lastKeptAlive + quietMs - Date.now());
  }

  // One function for background work; a request's needs its response too
  // (track), which costs a closure per request (tsx names each one with a
  // defineProperty, so under the tests it costs more than here).
  private readonly settled = (): void => {
    if (--this.count === 0) for (const resolve of this.waiting.splice(0)) resolve();
  };

  get size(): number {
    return this.count;
  }

  /** Resolves true once none are in flight, or false after `timeoutMs`. */
  drained(timeoutMs: number): Promise<boolean> {
    if (this.count === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.waiting.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }
}
