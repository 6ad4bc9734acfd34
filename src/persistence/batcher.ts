// Batches the requests for one kind of statement made in one event-loop turn
// into a single statement, the way a DataLoader does. On these machines a
// statement's round trip (a writev and a read on the socket, a commit for
// writes) costs more than the work it carries; under load, requests made by
// concurrent HTTP requests in the same turn share one.

const MAX_BATCH = 256;

interface Waiter<V> {
  resolve(value: V): void;
  reject(error: unknown): void;
}

interface Pending<V, I> {
  input: I;
  waiters: Waiter<V>[];
}

export interface BatcherOptions {
  /**
   * Statements of this batcher running at once. While that many are out, new
   * loads wait and join the next statement when one returns (group commit):
   * the busier the server, the larger the batches, instead of many small
   * statements each paying a round trip. Unbounded by default.
   */
  maxInFlight?: number;
}

export class Batcher<K, V, I = undefined> {
  private pending = new Map<K, Pending<V, I>>();
  private scheduled = false;
  private inFlight = 0;
  private readonly maxInFlight: number;

  /**
   * `run` receives each distinct key once, with the input of its latest
   * load() (for writes: what a sequence of them would leave), and answers
   * every key; all loads of a key get that answer.
   */
  constructor(
    private readonly run: (entries: [K, I][]) => Promise<Map<K, V>>,
    options: BatcherOptions = {},
  ) {
    this.maxInFlight = options.maxInFlight ?? Infinity;
  }

  load(key: K, input?: I): Promise<V> {
    return new Promise<V>((resolve, reject) => {
      const pending = this.pending.get(key);
      if (pending) {
        pending.input = input as I;
        pending.waiters.push({ resolve, reject });
      } else {
        this.pending.set(key, { input: input as I, waiters: [{ resolve, reject }] });
      }
      if (this.pending.size >= MAX_BATCH) this.flush();
      else if (!this.scheduled) {
        this.scheduled = true;
        // One turn of the event loop: long enough for concurrent requests to join.
        setImmediate(() => this.flush());
      }
    });
  }

  /** Whether `key` waits for the next statement (not yet sent). */
  queued(key: K): boolean {
    return this.pending.has(key);
  }

  private flush(): void {
    this.scheduled = false;
    // Full: the statement that returns first takes what gathered meanwhile.
    if (this.pending.size === 0 || this.inFlight >= this.maxInFlight) return;
    const batch = this.pending;
    this.pending = new Map();
    this.inFlight++;
    this.run([...batch].map(([key, { input }]) => [key, input])).then(
      (results) => {
        this.returned();
        for (const [key, { waiters }] of batch) for (const waiter of waiters) waiter.resolve(results.get(key) as V);
      },
      (error) => {
        this.returned();
        for (const { waiters } of batch.values()) for (const waiter of waiters) waiter.reject(error);
      },
    );
  }

  private returned(): void {
    this.inFlight--;
    if (this.pending.size > 0 && !this.scheduled) this.flush();
  }
}
