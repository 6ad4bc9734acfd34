// A browser reduced to what the login and consent pages need (cookie jar with
// Path, manual redirects, form posts), and the OAuth steps the harness takes
// to seed tokens. Setup only: the measured load comes from autocannon.
import { createHash, randomBytes } from 'node:crypto';

export interface Response {
  url: string;
  status: number;
  location?: string;
  body: string;
}

interface Cookie {
  value: string;
  path: string;
}

export class Browser {
  private readonly jar = new Map<string, Cookie>();

  constructor(private readonly origin: string) {}

  async request(target: string, init: { method?: string; form?: Record<string, string>; headers?: Record<string, string> } = {}): Promise<Response> {
    const url = new URL(target, this.origin);
    const headers: Record<string, string> = { ...init.headers };
    const cookie = this.cookieHeader(url.pathname);
    if (cookie) headers.cookie = cookie;
    let body: string | undefined;
    if (init.form) {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      body = new URLSearchParams(init.form).toString();
    }
    const response = await fetch(url, { method: init.method ?? (init.form ? 'POST' : 'GET'), headers, body, redirect: 'manual' });
    this.store(url.pathname, response.headers.getSetCookie());
    const location = response.headers.get('location') ?? undefined;
    return { url: url.href, status: response.status, location: location && new URL(location, url).href, body: await response.text() };
  }

  private cookieHeader(pathname: string): string {
    return [...this.jar.entries()]
      .filter(([, cookie]) => pathMatches(pathname, cookie.path))
      .map(([key, cookie]) => `${key.slice(0, key.indexOf(';'))}=${cookie.value}`)
      .join('; ');
  }

  private store(pathname: string, setCookies: string[]): void {
    for (const header of setCookies) {
      const [pair, ...attributes] = header.split(';').map((part) => part.trim());
      const index = pair!.indexOf('=');
      const name = pair!.slice(0, index);
      const value = pair!.slice(index + 1);
      let cookiePath = pathname.replace(/\/[^/]*$/, '') || '/';
      let expired = false;
      for (const attribute of attributes) {
        const [key = '', attributeValue = ''] = attribute.split('=');
        if (key.toLowerCase() === 'path') cookiePath = attributeValue;
        if (key.toLowerCase() === 'expires' && Date.parse(attributeValue) <= Date.now()) expired = true;
        if (key.toLowerCase() === 'max-age' && Number(attributeValue) <= 0) expired = true;
      }
      const key = `${name};${cookiePath}`;
      if (expired) this.jar.delete(key);
      else this.jar.set(key, { value, path: cookiePath });
    }
  }
}

export function pathMatches(requestPath: string, cookiePath: string): boolean {
  return requestPath === cookiePath || requestPath.startsWith(cookiePath.endsWith('/') ? cookiePath : `${cookiePath}/`);
}

export interface Client {
  client_id: string;
  client_secret: string;
}

export const basicAuth = (client: Client) =>
  `Basic ${Buffer.from(`${encodeURIComponent(client.client_id)}:${encodeURIComponent(client.client_secret)}`).toString('base64')}`;

export function pkce(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

export interface AuthorizationParams {
  client: Client;
  redirectUri: string;
  scope: string;
  prompt?: string;
}

/** The path and query of an authorization request (code flow, PKCE S256) and its verifier. */
export function authorizationRequest(params: AuthorizationParams): { path: string; verifier: string; state: string } {
  const { verifier, challenge } = pkce();
  const state = randomBytes(12).toString('base64url');
  const query = new URLSearchParams({
    client_id: params.client.client_id,
    response_type: 'code',
    redirect_uri: params.redirectUri,
    scope: params.scope,
    state,
    nonce: randomBytes(12).toString('base64url'),
    code_challenge: challenge,
    code_challenge_method: 'S256',
    ...(params.prompt ? { prompt: params.prompt } : {}),
  });
  return { path: `/auth?${query}`, verifier, state };
}

export class FlowError extends Error {}

function expectRedirect(response: Response, step: string): string {
  if (response.status < 300 || response.status >= 400 || !response.location) {
    throw new FlowError(`${step}: expected a redirect, got ${response.status} ${response.body.slice(0, 300)}`);
  }
  return response.location;
}

export interface Person {
  email: string;
  password: string;
}

/**
 * One authorization in this browser, through the login page (when there is no
 * session) and the consent page (when asked): ends with the code exchange.
 */
export async function authorize(
  browser: Browser,
  params: AuthorizationParams,
  person: Person,
): Promise<{ access_token: string; refresh_token?: string; id_token?: string }> {
  const request = authorizationRequest(params);
  let location = expectRedirect(await browser.request(request.path), 'authorization request');
  for (let step = 0; step < 6 && !location.startsWith(params.redirectUri); step++) {
    const uid = /\/interaction\/([^/?#]+)/.exec(location)?.[1];
    if (!uid) {
      // The provider resuming the authorization after an interaction.
      location = expectRedirect(await browser.request(location), 'resume');
      continue;
    }
    const page = await browser.request(location);
    if (page.status !== 200) throw new FlowError(`interaction page: ${page.status} ${page.body.slice(0, 300)}`);
    if (page.body.includes(`/interaction/${uid}/login`)) {
      const response = await browser.request(`/interaction/${uid}/login`, { form: { email: person.email, password: person.password } });
      location = expectRedirect(response, 'login');
    } else if (page.body.includes(`/interaction/${uid}/confirm`)) {
      location = expectRedirect(await browser.request(`/interaction/${uid}/confirm`, { form: {} }), 'consent');
    } else {
      throw new FlowError(`unexpected interaction page: ${page.body.slice(0, 300)}`);
    }
  }
  const callback = new URL(location);
  const code = callback.searchParams.get('code');
  if (!code) throw new FlowError(`no code in the callback: ${location}`);
  if (callback.searchParams.get('state') !== request.state) throw new FlowError('state mismatch');
  return tokenRequest(browser, params.client, {
    grant_type: 'authorization_code',
    code,
    redirect_uri: params.redirectUri,
    code_verifier: request.verifier,
  });
}

/** The consent-only loop used to fill the refresh-token pool: the browser is already signed in. */
export async function consentAgain(
  browser: Browser,
  params: AuthorizationParams,
): Promise<{ access_token: string; refresh_token?: string }> {
  const request = authorizationRequest({ ...params, prompt: 'consent' });
  const toInteraction = expectRedirect(await browser.request(request.path), 'authorization request');
  const uid = /\/interaction\/([^/?#]+)/.exec(toInteraction)?.[1];
  if (!uid) throw new FlowError(`expected the consent interaction, went to ${toInteraction}`);
  const resume = expectRedirect(await browser.request(`/interaction/${uid}/confirm`, { form: {} }), 'consent');
  const callback = new URL(expectRedirect(await browser.request(resume), 'resume'));
  const code = callback.searchParams.get('code');
  if (!code) throw new FlowError(`no code in the callback: ${callback.href}`);
  return tokenRequest(browser, params.client, {
    grant_type: 'authorization_code',
    code,
    redirect_uri: params.redirectUri,
    code_verifier: request.verifier,
  });
}

export async function tokenRequest<T = { access_token: string; refresh_token?: string; id_token?: string }>(
  browser: Browser,
  client: Client,
  form: Record<string, string>,
  path = '/token',
): Promise<T> {
  const response = await browser.request(path, { form, headers: { authorization: basicAuth(client) } });
  if (response.status !== 200) throw new FlowError(`${path} ${form.grant_type ?? ''}: ${response.status} ${response.body.slice(0, 300)}`);
  return JSON.parse(response.body) as T;
}

/** Runs `task` `count` times on `concurrency` workers; each worker gets its own state from `init`. */
export async function inParallel<S, T>(
  count: number,
  concurrency: number,
  init: (worker: number) => Promise<S>,
  task: (state: S) => Promise<T>,
): Promise<T[]> {
  const results: T[] = [];
  let next = 0;
  const workers = Array.from({ length: Math.max(1, Math.min(concurrency, count)) }, async (_, worker) => {
    const state = await init(worker);
    while (next < count) {
      next++;
      results.push(await task(state));
    }
  });
  await Promise.all(workers);
  return results;
}
