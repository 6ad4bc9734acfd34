// Registered clients, kept in memory between token requests. Every token,
// introspection and revocation request looks its client up (often twice), and
// each lookup is a database round trip; clients change rarely. An entry lives
// until a change to that client is announced (NOTIFY, see
// clients/client-changes.ts), and at most MAX_AGE_MS in any case. While the
// LISTEN connection is down, or on the embedded database, nothing is cached.
import type { Subscription } from '../persistence/database.js';

const MAX_AGE_MS = 60_000;
const MAX_ENTRIES = 10_000;

interface Entry<T> {
  value: T;
  loadedAt: number;
}

export class ClientCache<T> {
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
      if (this.entries.size >= MAX_ENTRIES) this.entries.clear();
      this.entries.set(id, { value, loadedAt: Date.now() });
    }
    return value;
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
