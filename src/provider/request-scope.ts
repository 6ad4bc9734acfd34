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
