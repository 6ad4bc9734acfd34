// A person's browser, reduced to what the server-rendered pages need: a cookie
// jar that honours Path and expiry, manual redirects, and form posts. The
// Chromium suite drives the same pages in a real browser.
export interface Page {
  url: string;
  status: number;
  html: string;
  /** The served page's response headers (absent when the walk stopped at a redirect). */
  headers?: Headers;
}

interface StoredCookie {
  name: string;
  value: string;
  path: string;
  expires?: number;
}

export class UserAgent {
  private readonly jar = new Map<string, StoredCookie>();
  /** Every Set-Cookie header received, as sent, for checking a cookie's attributes. */
  readonly setCookieHeaders: string[] = [];

  /**
   * `headers`: sent with every request (e.g. X-Forwarded-For, to stand for a browser elsewhere).
   * `route`: where a request for a URL actually goes (a TLS proxy in front of an https issuer,
   * say); cookies and redirects follow the URL the browser sees.
   */
  constructor(
    private readonly headers: Record<string, string> = {},
    private readonly route: (url: URL) => URL = (url) => url,
  ) {}

  /** Follows redirects until a page is served, or a redirect leaves for `stopAt`'s origin+path. */
  async open(url: string, init: RequestInit = {}, stopAt?: string): Promise<Page> {
    let current = new URL(url);
    let response = await this.send(current, init);
    for (let hops = 0; hops < 20 && response.status >= 300 && response.status < 400; hops++) {
      const location = new URL(response.headers.get('location')!, current);
      if (stopAt && location.href.startsWith(stopAt)) return { url: location.href, status: response.status, html: '' };
      current = location;
      response = await this.send(current, { method: 'GET' });
    }
    return { url: current.href, status: response.status, html: await response.text(), headers: response.headers };
  }

  async post(page: Page, action: string, fields: Record<string, string>, stopAt?: string): Promise<Page> {
    return this.open(new URL(action, page.url).href, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(fields).toString(),
    }, stopAt);
  }

  /** The `action` of the form on the page whose action ends with `suffix`. */
  static formAction(page: Page, suffix: string): string {
    const actions = [...page.html.matchAll(/<form[^>]*action="([^"]+)"/g)].map((match) => decode(match[1]!));
    const action = actions.find((candidate) => candidate.endsWith(suffix));
    if (!action) throw new Error(`no form ending in ${suffix} on ${page.url}:\n${page.html.slice(0, 2000)}`);
    return action;
  }

  /** The hidden fields of the form on the page whose action ends with `suffix`, as a browser sends them with it. */
  static formFields(page: Page, suffix: string): Record<string, string> {
    const forms = [...page.html.matchAll(/<form[^>]*action="([^"]+)"[^>]*>[\s\S]*?<\/form>/g)];
    const form = forms.find((match) => decode(match[1]!).endsWith(suffix));
    if (!form) throw new Error(`no form ending in ${suffix} on ${page.url}:\n${page.html.slice(0, 2000)}`);
    return UserAgent.hiddenFields({ ...page, html: form[0] });
  }

  static hiddenFields(page: Page): Record<string, string> {
    const fields: Record<string, string> = {};
    for (const match of page.html.matchAll(/<input[^>]*type="hidden"[^>]*>/g)) {
      const name = /name="([^"]+)"/.exec(match[0])?.[1];
      const value = /value="([^"]*)"/.exec(match[0])?.[1];
      if (name) fields[decode(name)] = decode(value ?? '');
    }
    return fields;
  }

  forgetCookies(): void {
    this.jar.clear();
  }

  /** The value of the stored cookie `name` (any path), if there is one. */
  cookie(name: string): string | undefined {
    return [...this.jar.values()].find((cookie) => cookie.name === name)?.value;
  }

  /**
   * Copies this browser's cookies named `names` into `other`, with their
   * paths: what a page on a related domain can plant (Domain=, any Path) in
   * someone else's browser. The names of those copied.
   */
  plantCookies(other: UserAgent, names: string[]): string[] {
    const planted = [...this.jar.values()].filter((cookie) => names.includes(cookie.name));
    for (const cookie of planted) other.jar.set(`${cookie.name};${cookie.path}`, { ...cookie });
    return planted.map((cookie) => cookie.name).sort();
  }

  /** Changes the value of every stored cookie `name`, as a tampering browser would. */
  alterCookie(name: string, change: (value: string) => string): void {
    for (const cookie of this.jar.values()) if (cookie.name === name) cookie.value = change(cookie.value);
  }

  private async send(url: URL, init: RequestInit): Promise<Response> {
    const headers = new Headers({ ...this.headers, ...Object.fromEntries(new Headers(init.headers)) });
    const cookie = this.cookieHeader(url);
    if (cookie) headers.set('cookie', cookie);
    const response = await fetch(this.route(url), { ...init, headers, redirect: 'manual' });
    this.setCookieHeaders.push(...response.headers.getSetCookie());
    this.store(url, response.headers.getSetCookie());
    return response;
  }

  private cookieHeader(url: URL): string {
    const now = Date.now();
    return [...this.jar.values()]
      .filter((cookie) => (cookie.expires === undefined || cookie.expires > now) && pathMatches(url.pathname, cookie.path))
      .map((cookie) => `${cookie.name}=${cookie.value}`)
      .join('; ');
  }

  private store(url: URL, setCookies: string[]): void {
    for (const header of setCookies) {
      const [pair, ...attributes] = header.split(';').map((part) => part.trim());
      const index = pair!.indexOf('=');
      const cookie: StoredCookie = { name: pair!.slice(0, index), value: pair!.slice(index + 1), path: '/' };
      for (const attribute of attributes) {
        const [key, value = ''] = attribute.split('=');
        const name = key!.toLowerCase();
        if (name === 'path') cookie.path = value;
        if (name === 'expires') cookie.expires = Date.parse(value);
        if (name === 'max-age') cookie.expires = Date.now() + Number(value) * 1000;
      }
      if (!attributes.some((attribute) => attribute.toLowerCase().startsWith('path='))) {
        cookie.path = url.pathname.replace(/\/[^/]*$/, '') || '/';
      }
      const key = `${cookie.name};${cookie.path}`;
      if (cookie.expires !== undefined && cookie.expires <= Date.now()) this.jar.delete(key);
      else this.jar.set(key, cookie);
    }
  }
}

function pathMatches(requestPath: string, cookiePath: string): boolean {
  return requestPath === cookiePath || requestPath.startsWith(cookiePath.endsWith('/') ? cookiePath : `${cookiePath}/`);
}

function decode(value: string): string {
  return value.replace(/&amp;/g, '&').replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>');
}
