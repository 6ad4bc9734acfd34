// A tiny relying party: a web app built on openid-client that a real browser
// visits. /login sends the browser to Portcullis, /callback finishes the code
// flow and shows the person's name, /logout starts RP-initiated logout.
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as oidc from 'openid-client';

interface Pending {
  verifier: string;
  state: string;
  nonce: string;
}

interface SignedIn {
  name: string;
  idToken: string;
}

export interface RpApp {
  url: string;
  redirectUri: string;
  postLogoutRedirectUri: string;
  close(): Promise<void>;
}

const escape = (text: string) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(title: string, body: string): string {
  return `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>${escape(title)}</title></head><body>${body}</body></html>`;
}

/** Starts the app on a free port; `configure` gets its redirect URIs and returns the client to use. */
export async function startRpApp(
  issuer: string,
  configure: (uris: { redirectUri: string; postLogoutRedirectUri: string }) => Promise<{ client_id: string; client_secret?: string }>,
  scope = 'openid profile email',
): Promise<RpApp> {
  const pending = new Map<string, Pending>();
  const sessions = new Map<string, SignedIn>();
  let config!: oidc.Configuration;
  let base = '';

  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url!, base);
    const sid = /(?:^|;\s*)rp_sid=([\w-]+)/.exec(req.headers.cookie ?? '')?.[1];
    const send = (status: number, html: string, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', ...headers });
      res.end(html);
    };
    try {
      if (url.pathname === '/') {
        const session = sid ? sessions.get(sid) : undefined;
        return send(200, page('RP', session
          ? `<h1>Signed in as <span id="user">${escape(session.name)}</span></h1><a href="/logout">Sign out</a>`
          : `<h1 id="signed-out">Not signed in</h1><a href="/login">Sign in</a>`));
      }
      if (url.pathname === '/login') {
        const id = randomBytes(16).toString('base64url');
        const request = { verifier: oidc.randomPKCECodeVerifier(), state: oidc.randomState(), nonce: oidc.randomNonce() };
        pending.set(id, request);
        const target = oidc.buildAuthorizationUrl(config, {
          redirect_uri: `${base}/callback`,
          scope,
          state: request.state,
          nonce: request.nonce,
          code_challenge: await oidc.calculatePKCECodeChallenge(request.verifier),
          code_challenge_method: 'S256',
          // /login?prompt=…: the app asks for a prompt (select_account, login, consent).
          ...(url.searchParams.get('prompt') ? { prompt: url.searchParams.get('prompt')! } : {}),
        });
        return send(302, '', { location: target.href, 'set-cookie': `rp_sid=${id}; Path=/; HttpOnly; SameSite=Lax` });
      }
      if (url.pathname === '/callback') {
        const request = sid ? pending.get(sid) : undefined;
        if (!request) return send(400, page('RP error', '<h1>No login in progress</h1>'));
        pending.delete(sid!);
        if (url.searchParams.get('error')) {
          return send(200, page('RP', `<h1 id="error">${escape(url.searchParams.get('error')!)}</h1>`));
        }
        const tokens = await oidc.authorizationCodeGrant(config, url, {
          pkceCodeVerifier: request.verifier,
          expectedState: request.state,
          expectedNonce: request.nonce,
        });
        const claims = tokens.claims()!;
        const info = await oidc.fetchUserInfo(config, tokens.access_token, claims.sub);
        sessions.set(sid!, { name: String(info.name ?? info.email ?? claims.sub), idToken: tokens.id_token! });
        return send(302, '', { location: '/' });
      }
      if (url.pathname === '/logout') {
        const session = sid ? sessions.get(sid) : undefined;
        if (sid) sessions.delete(sid);
        if (!session) return send(302, '', { location: '/' });
        const target = oidc.buildEndSessionUrl(config, { id_token_hint: session.idToken, post_logout_redirect_uri: `${base}/` });
        return send(302, '', { location: target.href });
      }
      send(404, page('RP', 'not found'));
    } catch (error) {
      send(500, page('RP error', `<h1 id="rp-error">${escape((error as Error).message)}</h1>`));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const client = await configure({ redirectUri: `${base}/callback`, postLogoutRedirectUri: `${base}/` });
  config = await oidc.discovery(new URL(issuer), client.client_id, client.client_secret, client.client_secret ? undefined : oidc.None(), {
    execute: [oidc.allowInsecureRequests],
  });
  return {
    url: base,
    redirectUri: `${base}/callback`,
    postLogoutRedirectUri: `${base}/`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
