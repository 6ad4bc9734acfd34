// One provider request's scratch space. A token's lookup also reads the grant
// it belongs to (one statement instead of two, see adapter.ts); the grant is
// kept here for the Grant lookup that follows in the same request, and for no
// other request, so it is never staler than the token read beside it.
//
// The request is the one oidc-provider is serving (`Provider.ctx`, its own
// AsyncLocalStorage): a second AsyncLocalStorage of ours would make every
// promise on the token path pay for another propagation. Outside a provider
// request (our interaction routes) nothing is kept and lookups just query.
import { Provider } from 'oidc-provider';

const scratch = new WeakMap<object, Map<string, unknown>>();

export function keep(key: string, value: unknown): void {
  const request = Provider.ctx;
  if (!request) return;
  let store = scratch.get(request);
  if (!store) scratch.set(request, (store = new Map()));
  store.set(key, value);
}

/** Takes what this request kept under `key`, once. */
export function take<T>(key: string): T | undefined {
  const request = Provider.ctx;
  const store = request && scratch.get(request);
  const value = store?.get(key) as T | undefined;
  if (value !== undefined) store!.delete(key);
  return value;
}

/** What this request kept under `key`, left in place. */
export function peek<T>(key: string): T | undefined {
  const request = Provider.ctx;
  return (request && scratch.get(request)?.get(key)) as T | undefined;
}

const deferred = new WeakMap<object, Promise<unknown>[]>();

/**
 * Lets a save finish while the provider goes on building its response, which
 * then waits for it (settleDeferredWrites, run by a provider middleware after
 * every route): nothing is acknowledged before it is durable, but saves made
 * one after another in a request (a refresh token, then its access token)
 * share one batch and one commit instead of waiting in turn. False outside a
 * provider request: the caller must wait itself.
 */
export function deferUntilResponse(write: Promise<unknown>): boolean {
  const request = Provider.ctx;
  if (!request) return false;
  // Settled by settleDeferredWrites; until then a failure must not count as unhandled.
  write.catch(() => undefined);
  let writes = deferred.get(request);
  if (!writes) deferred.set(request, (writes = []));
  writes.push(write);
  return true;
}

/** Waits for every save deferred by this request; rejects if any failed. */
export async function settleDeferredWrites(request: object): Promise<void> {
  for (let writes = deferred.get(request); writes; writes = deferred.get(request)) {
    deferred.delete(request);
    await Promise.all(writes);
  }
}
