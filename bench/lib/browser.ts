// A browser reduced to what the login and consent pages need (cookie jar with
// Path, manual redirects, form posts), and the OAuth steps the harness takes
// to seed tokens. Setup only: the measured load comes from autocannon.
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';

// node:http with kept-alive sockets rather than fetch: filling the refresh-token
// pool takes tens of thousands of these requests, and fetch cost the harness as
// much CPU per request as the server spent answering it.
const agents = { 'http:': new http.Agent({ keepAlive: true }), 'https:': new https.Agent({ keepAlive: true }) };

export interface Response {
  url: string;
  status: number;
  location?: string;
  body: string;
}

export class Browser {
  // By path, then name. Every interaction leaves cookies scoped to its own
  // path (/interaction/<uid>, /auth/<uid>) that live for minutes; a browser
  // filling the refresh-token pool collects thousands, so a request looks up
  // the paths that can match it instead of scanning them all.
  private readonly jar = new Map<string, Map<string, string>>();

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
    if (body !== undefined) headers['content-length'] = String(Buffer.byteLength(body));
    const method = init.method ?? (init.form ? 'POST' : 'GET');
    const response = await send(url, method, headers, body);
    this.store(url.pathname, response.headers['set-cookie'] ?? []);
    const location = response.headers.location;
    return { url: url.href, status: response.status, location: location && new URL(location, url).href, body: response.body };
  }

  private cookieHeader(pathname: string): string {
    const pairs: string[] = [];
    for (const cookiePath of matchingPaths(pathname)) {
      for (const [name, value] of this.jar.get(cookiePath) ?? []) pairs.push(`${name}=${value}`);
    }
    return pairs.join('; ');
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
      let cookies = this.jar.get(cookiePath);
      if (!cookies) this.jar.set(cookiePath, (cookies = new Map()));
      if (expired) cookies.delete(name);
      else cookies.set(name, value);
    }
  }
}

function send(url: URL, method: string, headers: Record<string, string>, body?: string): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  const protocol = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const request = protocol.request(url, { method, headers, agent: agents[url.protocol as keyof typeof agents] }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('error', reject);
      response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    request.on('error', reject);
    request.end(body);
  });
}

/**
 * The cookie paths that match a request path (RFC 6265 §5.1.4): its prefixes
 * at each slash, with and without it; longest first, the order cookies are sent in (§5.4).
 */
export function matchingPaths(requestPath: string): string[] {
  const paths = new Set(['/']);
  for (let slash = requestPath.indexOf('/', 1); slash !== -1; slash = requestPath.indexOf('/', slash + 1)) {
    paths.add(requestPath.slice(0, slash)).add(requestPath.slice(0, slash + 1));
  }
  paths.add(requestPath);
  return [...paths].reverse();
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
