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

export class Batcher<K, V> {
  private pending = new Map<K, Waiter<V>[]>();
  private scheduled = false;

  /** `run` receives distinct keys and answers every one of them. */
  constructor(private readonly run: (keys: K[]) => Promise<Map<K, V>>) {}

  load(key: K): Promise<V> {
    return new Promise<V>((resolve, reject) => {
      const waiters = this.pending.get(key);
      if (waiters) waiters.push({ resolve, reject });
      else this.pending.set(key, [{ resolve, reject }]);
      if (this.pending.size >= MAX_BATCH) this.flush();
      else if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    if (this.pending.size === 0) return;
    const batch = this.pending;
    this.pending = new Map();
    this.run([...batch.keys()]).then(
      (results) => {
        for (const [key, waiters] of batch) for (const waiter of waiters) waiter.resolve(results.get(key) as V);
      },
      (error) => {
        for (const waiters of batch.values()) for (const waiter of waiters) waiter.reject(error);
      },
    );
  }
}
