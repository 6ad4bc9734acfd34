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

export class Batcher<K, V, I = undefined> {
  private pending = new Map<K, Pending<V, I>>();
  private scheduled = false;

  /**
   * `run` receives each distinct key once, with the input of its latest
   * load() (for writes: what a sequence of them would leave), and answers
   * every key; all loads of a key get that answer.
   */
  constructor(private readonly run: (entries: [K, I][]) => Promise<Map<K, V>>) {}

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

  private flush(): void {
    this.scheduled = false;
    if (this.pending.size === 0) return;
    const batch = this.pending;
    this.pending = new Map();
    this.run([...batch].map(([key, { input }]) => [key, input])).then(
      (results) => {
        for (const [key, { waiters }] of batch) for (const waiter of waiters) waiter.resolve(results.get(key) as V);
      },
      (error) => {
        for (const { waiters } of batch.values()) for (const waiter of waiters) waiter.reject(error);
      },
    );
  }
}
