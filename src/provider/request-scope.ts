// One provider request's scratch space. A token's lookup also reads the grant
// it belongs to (one statement instead of two, see adapter.ts); the grant is
// kept here for the Grant lookup that follows in the same request, and for no
// other request, so it is never staler than the token read beside it.
import { AsyncLocalStorage } from 'node:async_hooks';

const scope = new AsyncLocalStorage<Map<string, unknown>>();

export function inRequestScope<T>(fn: () => T): T {
  return scope.run(new Map(), fn);
}

export function keep(key: string, value: unknown): void {
  scope.getStore()?.set(key, value);
}

/** Takes what this request kept under `key`, once. */
export function take<T>(key: string): T | undefined {
  const store = scope.getStore();
  const value = store?.get(key) as T | undefined;
  if (value !== undefined) store!.delete(key);
  return value;
}
