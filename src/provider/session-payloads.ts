// How the artifact adapter (adapter.ts) reads and keeps a Session row's
// payload: the grants a sign-out ends, and the form secrets of the sign-out
// and device pages, which the library keeps in the one `state` field.
import type { AdapterPayload } from 'oidc-provider';

/** The routes that write or clear a session's sign-out details (its `state`). */
const LOGOUT_ROUTES = new Set(['end_session', 'end_session_confirm']);
/**
 * The routes of the device verification page (RFC 8628, device-flow.ts),
 * whose form secret the library keeps in the session's `state` too: stored
 * apart, as `deviceState`, so that opening /device does not replace the
 * sign-out page's details (see ArtifactAdapter.upsert), nor the sign-out page the device
 * form's. (A device's sign-in that ends with someone else signing in writes
 * sign-out details there, as a resume does: those are `state`, see isDeviceForm.)
 */
export const DEVICE_ROUTES = new Set(['code_verification', 'device_resume']);
const SESSION_FORM_STATES = ['state', 'deviceState'];

/** What a Session row holds of interest to a sign-out: the grants given through it, per client. */
export interface SessionPayload {
  authorizations?: Record<string, { grantId?: string; persistsLogout?: boolean }>;
}

/** The uid of the session an interaction began in, if one had. */
export function sessionUidOf(payload: AdapterPayload): string | undefined {
  const { session } = payload as { session?: { uid?: unknown } };
  return typeof session?.uid === 'string' ? session.uid : undefined;
}

/** The grants a session names that end when it is signed out of: those without offline_access (the library's persistsLogout). */
export function grantsEndingWith(session: SessionPayload): string[] {
  return Object.values(session.authorizations ?? {}).flatMap(({ grantId, persistsLogout }) => (grantId && !persistsLogout ? [grantId] : []));
}

/**
 * The form states (SESSION_FORM_STATES) a session saved in `route` with
 * `state` keeps as stored: all but the one the route owns. The logout routes
 * own `state`; the device page's own `deviceState`, but for the sign-out
 * details a resume there writes when someone else signed in (isDeviceForm).
 */
export function sessionStatesKept(route: string, state: unknown): string[] {
  const owned = LOGOUT_ROUTES.has(route) || (DEVICE_ROUTES.has(route) && state !== undefined && !isDeviceForm(state))
    ? 'state'
    : DEVICE_ROUTES.has(route) ? 'deviceState' : undefined;
  return SESSION_FORM_STATES.filter((key) => key !== owned);
}

/** Whether a session's `state` is the device page's form secret, `{ secret }` alone (lib/shared/xsrf.js), rather than sign-out details. */
function isDeviceForm(state: unknown): boolean {
  return typeof state === 'object' && state !== null && Object.keys(state).join() === 'secret';
}

/** A session's payload as stored by a device page's route: its form state apart (see DEVICE_ROUTES). */
export function withDeviceForm(payload: AdapterPayload): AdapterPayload {
  const { state, ...others } = payload as AdapterPayload & { state?: unknown };
  if (state !== undefined && !isDeviceForm(state)) return payload;
  return state === undefined ? others : { ...others, deviceState: state };
}

/** A stored session as the library is to see it in `route`: the device page's routes see their form state as `state`. */
export function sessionForRoute(payload: AdapterPayload, route: string | undefined): AdapterPayload {
  const { state, deviceState, ...others } = payload as AdapterPayload & { state?: unknown; deviceState?: unknown };
  const seen = DEVICE_ROUTES.has(String(route)) ? deviceState : state;
  return seen === undefined ? others : { ...others, state: seen as AdapterPayload['state'] };
}
