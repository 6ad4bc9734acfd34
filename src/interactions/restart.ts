// A sign-in that expired (INTERACTION_TTL) while its page stayed open: its
// interaction, and with it the authorization request, is gone by the time the
// form comes back. So the pages' forms carry the request (a hidden `restart`
// field), and the page that says the sign-in expired offers to start it
// again, as the application would, rather than leaving the person at a dead
// end. Starting again is an ordinary request to /auth, checked there as any
// other: the field gives no one more than a link to /auth would.
import type Provider from 'oidc-provider';
import { displayName } from '../provider/client-model.js';

/** Past this, the request is left out of the forms: none of ours needs to carry more. */
const MAX_LENGTH = 2048;

/** A form to the authorization endpoint (see authorizationForm). */
export interface AuthorizationForm {
  action: string;
  fields: [string, string][];
  /** Set where a value cannot travel in a form: the request as a link instead. */
  href?: string;
}

/** An authorization request's parameters as form fields (`resource` may repeat, RFC 8707), but those named in `leftOut`. */
export function requestFields(params: Record<string, unknown>, leftOut: string[] = []): [string, string][] {
  const fields: [string, string][] = [];
  for (const [name, value] of Object.entries(params)) {
    if (leftOut.includes(name)) continue;
    for (const one of Array.isArray(value) ? value : [value]) if (typeof one === 'string') fields.push([name, one]);
  }
  return fields;
}

/**
 * A form posted to the authorization endpoint (OIDC Core §3.1.2.1 allows
 * POST), not a link: the request's parameters, an ID token among them, stay
 * out of the address bar, history and server logs, and a request too long
 * for a URL still fits. Only where a value holds a line break or NUL is it a
 * link (`href`): a browser submits a form's line breaks as CRLF, and reads NUL
 * in an attribute as U+FFFD, so a state or nonce would come back changed.
 */
export function authorizationForm(provider: Provider, fields: [string, string][]): AuthorizationForm {
  const action = provider.pathFor('authorization');
  if (fields.some(([, value]) => /[\r\n\0]/.test(value))) return { action, fields, href: `${action}?${new URLSearchParams(fields)}` };
  return { action, fields };
}

/**
 * The authorization request of an interaction, for its forms' `restart`
 * field (a query string); undefined for a pushed request (RFC 9126: its
 * parameters are kept off the browser, and its request_uri is used once;
 * the library remembers it as the interaction's parJti), for a request
 * object's (RFC 9101: sent again, its parameters would pass through the
 * browser unsigned, which a client requiring them signed is refused; the
 * library keeps their names as `trusted`), for a device's
 * sign-in (RFC 8628: begun at /device, its device code used once), and for
 * one too long.
 */
export function restartOf(interaction: { params: Record<string, unknown>; parJti?: string; deviceCode?: string; trusted?: string[] }): string | undefined {
  const { params } = interaction;
  if (interaction.parJti !== undefined || interaction.deviceCode !== undefined || params.request_uri !== undefined || params.request !== undefined) return undefined;
  if (interaction.trusted?.length) return undefined;
  const query = new URLSearchParams(requestFields(params)).toString();
  return query.length <= MAX_LENGTH ? query : undefined;
}

/** The form that starts again the request a `restart` field carried back, and the app it is for; undefined unless it names a known client. */
export async function restartForm(provider: Provider, restart: unknown): Promise<{ form: AuthorizationForm; clientName: string } | undefined> {
  if (typeof restart !== 'string' || restart === '' || restart.length > MAX_LENGTH) return undefined;
  const params = new URLSearchParams(restart);
  const clientId = params.get('client_id');
  if (!clientId || params.has('request_uri') || params.has('request')) return undefined;
  const client = await provider.Client.find(clientId).catch(() => undefined);
  if (!client) return undefined;
  return { form: authorizationForm(provider, [...params]), clientName: displayName(client) };
}
