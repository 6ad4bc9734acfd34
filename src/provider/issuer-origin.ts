// What a request's origin is taken to be, and the cookies that origin allows.
import type Koa from 'koa';
import type Provider from 'oidc-provider';

/**
 * Every request is taken as addressed to the issuer, whatever its Host or
 * X-Forwarded-Host: the library builds its URLs (discovery's endpoints, form
 * actions, redirects to its own pages) from the request, and a forged host
 * would send clients' secrets and codes, or an API's key lookups, elsewhere
 * (OIDC Discovery §4.3; a cache in front keyed without the host would keep the
 * forgery). So is the scheme: Portcullis speaks plain HTTP, so an https issuer
 * means TLS ends in front of it, and its cookies must be Secure (Koa gives a
 * cookie Secure only on a request it takes as https). Set once on the Koa
 * app's request prototype, so no request pays for it.
 */
export function pinToIssuer(provider: Provider, issuer: string): void {
  const { protocol, host, origin } = new URL(issuer);
  const scheme = protocol.slice(0, -1);
  Object.defineProperties((provider as unknown as Koa).request, {
    protocol: { get: () => scheme, configurable: true },
    host: { get: () => host, configurable: true },
    // Koa takes a request target in absolute form (`GET http://elsewhere/...`,
    // which a server must accept, RFC 9112 §3.2.2) as the whole URL: only its
    // path and query count here.
    href: {
      get(this: { originalUrl: string }) {
        return origin + this.originalUrl.replace(ABSOLUTE_FORM, '');
      },
      configurable: true,
    },
    URL: {
      get(this: { href: string }) {
        return new URL(this.href);
      },
      configurable: true,
    },
  });
}

/** The scheme and authority of a request target in absolute form. */
const ABSOLUTE_FORM = /^[a-z][a-z\d+.-]*:\/\/[^/?#]*/i;

/**
 * An http issuer's cookies cannot be Secure (Koa refuses, and so do browsers
 * but on localhost), and browsers drop a SameSite=None cookie that is not:
 * the session cookie, SameSite=None for POSTed authorization requests (see
 * configuration.ts), would never be kept. Over http it is sent as Lax, as
 * before POST was supported. A development setup loses little: an app on
 * another port of the same host is the same site, so its POSTs and frames
 * still carry the cookie; from another site, a POSTed authorization request
 * asks the person to sign in again, and a `prompt=none` in a frame gets
 * login_required (Lax goes with top-level navigations only).
 * Set once on the Koa app's context prototype, like pinToIssuer.
 */
export function laxCookiesOverHttp(provider: Provider): void {
  const context = (provider as unknown as Koa).context;
  const cookies = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(context), 'cookies');
  if (!cookies?.get || !cookies.set) throw new Error("Koa's context has no cookies accessor to wrap");
  const adjusted = new WeakSet<object>();
  Object.defineProperty(context, 'cookies', {
    get(this: Koa.Context) {
      const jar = cookies.get!.call(this) as Koa.Context['cookies'];
      if (!adjusted.has(jar)) {
        adjusted.add(jar);
        const set = jar.set.bind(jar);
        jar.set = (name, value, options) => set(name, value, options?.sameSite === 'none' ? { ...options, sameSite: 'lax' } : options);
      }
      return jar;
    },
    set(this: Koa.Context, jar: unknown) {
      cookies.set!.call(this, jar);
    },
    configurable: true,
  });
}
