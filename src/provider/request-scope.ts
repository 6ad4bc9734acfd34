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

/** Takes what this request (the provider's current one, unless named) kept under `key`, once. */
export function take<T>(key: string, request: object | undefined = Provider.ctx): T | undefined {
  const store = request && scratch.get(request);
  const value = store?.get(key) as T | undefined;
  if (value !== undefined) store!.delete(key);
  return value;
}

/** What this request (the provider's current one, unless named) kept under `key`, left in place. */
export function peek<T>(key: string, request: object | undefined = Provider.ctx): T | undefined {
  return (request && scratch.get(request)?.get(key)) as T | undefined;
}

const deferred = new WeakMap<object, Array<() => Promise<unknown>>>();

/**
 * Holds a save until the route has built its response (settleDeferredWrites,
 * run by a provider middleware after every route), and makes it then only if
 * that response is a success: a token request that fails (an unknown
 * `resource`, say, checked after the code or refresh token was consumed)
 * changes nothing, and the client may try again. A successful response still
 * waits for its saves, so nothing is acknowledged before it is committed
 * (durable on PostgreSQL; the embedded database does not flush, README), and
 * a request's saves go out together, in the order they were made: one batch
 * and one commit (persistence/batcher.ts). False outside a provider request:
 * the caller must save and wait itself.
 */
export function deferUntilResponse(save: () => Promise<unknown>): boolean {
  const request = Provider.ctx;
  if (!request) return false;
  let saves = deferred.get(request);
  if (!saves) deferred.set(request, (saves = []));
  saves.push(save);
  return true;
}

/**
 * Makes the saves this request deferred if its response `succeeded`, and
 * waits for them (rejects if any failed); drops them otherwise.
 */
export async function settleDeferredWrites(request: object, succeeded: boolean): Promise<void> {
  for (let saves = deferred.get(request); saves; saves = deferred.get(request)) {
    deferred.delete(request);
    if (!succeeded) return;
    // Started together, in order: a consumption before the saves that depend on it (adapter.ts).
    await Promise.all(saves.map((save) => save()));
  }
}
