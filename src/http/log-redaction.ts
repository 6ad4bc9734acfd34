// What a log line may say about a sign-in in progress. Its id (the interaction
// uid) is the value of a cookie that carries the sign-in forward, and where it
// is stored it is kept only as a digest: a log line holds neither.
import { sha256 } from '../persistence/hash.js';

/** A request's path with the id of a sign-in in progress (an interaction, or its resume) left out. */
export function loggedPath(path: string): string {
  // Whatever the case, as the routers match it (and with slashes doubled, which no router takes).
  // A device's sign-in resumes at /device/:uid (not /device/auth, the device authorization endpoint).
  return path.replace(/^\/+(interaction|auth)\/+[^/]+/i, '/$1/:uid').replace(/^\/+device\/+(?!auth(?:\/|$))[^/]+/i, '/device/:uid');
}

/** A reference to one sign-in, for telling its log lines apart: a digest prefix, not the id. */
export function interactionReference(uid: string): string {
  return sha256(uid).slice(0, 12);
}
