/** The hosts of this machine, as URL writes them, where plain http is development (redirects, pages, the issuer). */
export function isLoopbackHost(hostname: string): boolean {
  return LOOPBACK_HOSTS.has(hostname);
}

const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);

/**
 * A client-supplied address we may put in a page: https, or http on a loopback
 * host (development). Anything else (javascript:, data:, plain http on the
 * internet) is not shown.
 */
export function safeUrl(value: unknown): string | undefined {
  const url = urlOf(value);
  if (!url) return undefined;
  if (url.protocol === 'https:') return url.href;
  if (url.protocol === 'http:' && isLoopbackHost(url.hostname)) return url.href;
  return undefined;
}

/** A client's logo as the pages' CSP lets a browser load it (security-headers.ts): as safeUrl, less http://[::1]. */
export function logoUrl(value: unknown): string | undefined {
  const url = safeUrl(value);
  return url?.startsWith('http://[') ? undefined : url;
}

/**
 * Where a redirect URI sends the person, as the consent page names it: its
 * host, with a port other than the scheme's (a client's name is whatever it
 * registered, but this is where the answer goes; an internationalised name
 * shows as its punycode, as browsers show a look-alike); for a native app's
 * private-use scheme (RFC 8252 §7.1), the scheme, which names the app.
 */
export function destinationOf(redirectUri: unknown): string | undefined {
  const url = urlOf(redirectUri);
  if (!url) return undefined;
  // Only a web address's authority is where it leads: a private-use
  // scheme's (`com.example.app://accounts.example.com/cb`) is the app's to
  // read, and would name a host the app need not be.
  if (url.protocol === 'https:' || url.protocol === 'http:') return url.host;
  return url.protocol.slice(0, -1);
}

/** `value` as a URL, if it is a string that parses as one. */
function urlOf(value: unknown): URL | undefined {
  return typeof value === 'string' && URL.canParse(value) ? new URL(value) : undefined;
}
