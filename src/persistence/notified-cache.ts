// Rows that change rarely but are read on every token request (registered
// clients; accounts, which every refresh, code exchange and userinfo reads),
// kept in memory between requests. An entry lives until a change to that row
// is announced (NOTIFY: clients/client-changes.ts, and a trigger on users),
// and at most MAX_AGE_MS in any case. While the LISTEN connection is down, or
// on the embedded database (which has no NOTIFY), nothing is cached.
import type { Database, Subscription } from './database.js';

const MAX_AGE_MS = 60_000;
const MAX_ENTRIES = 10_000;

interface Entry<T> {
  value: T;
  loadedAt: number;
}

export class NotifiedCache<T> {
  private readonly entries = new Map<string, Entry<T>>();
  private generation = 0;
  subscription?: Subscription;

  async get(id: string, load: () => Promise<T | undefined>): Promise<T | undefined> {
    if (!this.subscription?.live) return load();
    const cached = this.entries.get(id);
    if (cached && Date.now() - cached.loadedAt < MAX_AGE_MS) return cached.value;
    // A change announced while we load must win over what we loaded.
    const generation = this.generation;
    const value = await load();
    if (value !== undefined && generation === this.generation && this.subscription?.live) {
      // A Map iterates in insertion order: deleting before setting keeps the
      // first key the longest-loaded one, which is the one to let go when full
      // (emptying the whole cache would make every busy row load again at once).
      this.entries.delete(id);
      if (this.entries.size >= MAX_ENTRIES) this.entries.delete(this.entries.keys().next().value!);
      this.entries.set(id, { value, loadedAt: Date.now() });
    }
    return value;
  }

  /** What get(id) would answer without loading, if anything: the same object until the row changes. */
  peek(id: string): T | undefined {
    if (!this.subscription?.live) return undefined;
    const cached = this.entries.get(id);
    return cached && Date.now() - cached.loadedAt < MAX_AGE_MS ? cached.value : undefined;
  }

  /** Listens on `channel`, whose payloads are the ids of changed rows. */
  async listen(database: Database, channel: string): Promise<this> {
    this.subscription = await database.subscribe(channel, {
      onMessage: (id) => this.invalidate(id),
      onReset: () => this.clear(),
    });
    return this;
  }

  invalidate(id: string): void {
    this.generation++;
    this.entries.delete(id);
  }

  clear(): void {
    this.generation++;
    this.entries.clear();
  }
}
