// A sign-in that expired (INTERACTION_TTL) while its page stayed open: its
// interaction, and with it the authorization request, is gone by the time the
// form comes back. So the pages' forms carry the request (a hidden `restart`
// field), and the page that says the sign-in expired offers to start it again,
// as the application would, rather than leaving the person at a dead end.
// Starting again is an ordinary request to /auth, checked there as any other:
// the field gives no one more than a link to /auth would.
import type Provider from 'oidc-provider';
import { displayName } from '../provider/client-model.js';

/**
 * Past this, the request is left out: it travels in a redirect's Location and
 * back in a request line (percent-encoded once more), which servers and
 * proxies in front cut at about 8 KB.
 */
const MAX_LENGTH = 2048;

/**
 * The authorization request of `params` (an interaction's), as a query
 * string; undefined for a pushed or request-object one (its `request_uri` is
 * used once, and a pushed request's parameters are kept off the browser) and
 * for one too long to carry.
 */
export function restartOf(params: Record<string, unknown>): string | undefined {
  if (params.request_uri !== undefined || params.request !== undefined) return undefined;
  const fields: [string, string][] = [];
  for (const [name, value] of Object.entries(params)) {
    // resource may be repeated (RFC 8707).
    for (const one of Array.isArray(value) ? value : [value]) if (typeof one === 'string') fields.push([name, one]);
  }
  const query = new URLSearchParams(fields).toString();
  return query.length <= MAX_LENGTH ? query : undefined;
}

/** The `restart` a form sent back, to pass on to the page that says the sign-in is gone; undefined if it could not be one of ours. */
export function carriedRestart(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' && value.length <= MAX_LENGTH ? value : undefined;
}

/** Where a `restart` that came back from a page (a form field, then a query parameter) starts again, and for which app. */
export async function restartLink(provider: Provider, restart: unknown): Promise<{ url: string; clientName: string } | undefined> {
  const carried = carriedRestart(restart);
  if (!carried) return undefined;
  const params = new URLSearchParams(carried);
  const clientId = params.get('client_id');
  if (!clientId || params.has('request_uri') || params.has('request')) return undefined;
  const client = await provider.Client.find(clientId).catch(() => undefined);
  if (!client) return undefined;
  return { url: `${provider.pathFor('authorization')}?${params}`, clientName: displayName(client) };
}
