// A relying party built on openid-client v6, as a third-party app would use it.
import * as oidc from 'openid-client';
import { UserAgent, type Page } from './user-agent.js';

export const REDIRECT_URI = 'http://127.0.0.1:9999/callback';
export const POST_LOGOUT_URI = 'http://127.0.0.1:9999/signed-out';

/** An Authorization header with a client's id and secret (RFC 6749 §2.3.1: each form-encoded first). */
export function basicAuth(id: string, secret: string): string {
  return `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;
}

export async function discover(issuer: string, clientId: string, clientSecret?: string): Promise<oidc.Configuration> {
  return oidc.discovery(new URL(issuer), clientId, clientSecret, clientSecret ? undefined : oidc.None(), {
    execute: [oidc.allowInsecureRequests],
  });
}

export interface AuthorizationRequest {
  url: URL;
  verifier: string;
  state: string;
  nonce: string;
}

export async function authorizationRequest(
  config: oidc.Configuration,
  scope: string,
  extra: Record<string, string> = {},
): Promise<AuthorizationRequest> {
  const verifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const nonce = oidc.randomNonce();
  const url = oidc.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT_URI,
    scope,
    state,
    nonce,
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    ...extra,
  });
  return { url, verifier, state, nonce };
}

export type PageKind = 'login' | 'consent' | 'callback' | 'other';

export function pageKind(page: Page): PageKind {
  if (page.url.startsWith(REDIRECT_URI)) return 'callback';
  if (/action="\/interaction\/[^"]+\/login"/.test(page.html)) return 'login';
  if (/action="\/interaction\/[^"]+\/confirm"/.test(page.html)) return 'consent';
  return 'other';
}

export type SignInRefusal = 'incomplete' | 'wrong_credentials' | 'throttled' | 'disabled';

/**
 * Why the sign-in page says a sign-in was refused: the page a refused sign-in
 * form redirects to (Post/Redirect/Get) says so once. Undefined for any other
 * page, and for the sign-in page without a message.
 */
export function signInRefusal(page: Page): SignInRefusal | undefined {
  if (pageKind(page) !== 'login' || !page.html.includes('role="alert"')) return undefined;
  if (/>Enter your (email and )?password\.</.test(page.html)) return 'incomplete';
  if (page.html.includes('The email or password is not right.')) return 'wrong_credentials';
  if (page.html.includes('Too many failed sign-ins.')) return 'throttled';
  if (page.html.includes('This account is disabled.')) return 'disabled';
  throw new Error(`a sign-in page with an unknown message: ${page.html.slice(0, 2000)}`);
}

/** Opens the authorization URL in the user agent; stops at the first page or at the callback. */
export function visit(ua: UserAgent, url: URL | string): Promise<Page> {
  return ua.open(url.toString(), {}, REDIRECT_URI);
}

export function signIn(ua: UserAgent, page: Page, email: string, password: string): Promise<Page> {
  return ua.post(page, UserAgent.formAction(page, '/login'), { ...UserAgent.formFields(page, '/login'), email, password }, REDIRECT_URI);
}

export function allow(ua: UserAgent, page: Page): Promise<Page> {
  return ua.post(page, UserAgent.formAction(page, '/confirm'), UserAgent.formFields(page, '/confirm'), REDIRECT_URI);
}

export function deny(ua: UserAgent, page: Page): Promise<Page> {
  return ua.post(page, UserAgent.formAction(page, '/abort'), UserAgent.formFields(page, '/abort'), REDIRECT_URI);
}

/** "Use another account" on the consent or choice-of-account page: its form, with the request's parameters, posted (or its link followed). */
export function useAnotherAccount(ua: UserAgent, page: Page): Promise<Page> {
  const link = /<a href="([^"]+)">(?:Not you\? )?Use another account<\/a>/.exec(page.html);
  if (link) return ua.open(new URL(link[1]!.replace(/&amp;/g, '&'), page.url).href, {}, REDIRECT_URI);
  const form = /<form id="switch-account"[^>]*>[\s\S]*?<\/form>/.exec(page.html);
  if (!form) throw new Error(`no "Use another account" form or link on ${page.url}`);
  const inForm = { ...page, html: form[0] };
  return ua.post(page, UserAgent.formAction(inForm, ''), UserAgent.hiddenFields(inForm), REDIRECT_URI);
}

/** The whole journey for a fresh person: login (if asked), consent (if asked), callback. */
export async function logIn(
  ua: UserAgent,
  config: oidc.Configuration,
  scope: string,
  credentials: { email: string; password: string },
  extra: Record<string, string> = {},
  options: { DPoP?: oidc.DPoPHandle } = {},
) {
  const request = await authorizationRequest(config, scope, extra);
  let page = await visit(ua, request.url);
  const seen: PageKind[] = [];
  for (let step = 0; step < 4 && pageKind(page) !== 'callback'; step++) {
    const kind = pageKind(page);
    seen.push(kind);
    if (kind === 'login') page = await signIn(ua, page, credentials.email, credentials.password);
    else if (kind === 'consent') page = await allow(ua, page);
    else throw new Error(`unexpected page ${page.url} (${page.status}):\n${page.html.slice(0, 1500)}`);
  }
  const tokens = await oidc.authorizationCodeGrant(config, new URL(page.url), {
    pkceCodeVerifier: request.verifier,
    expectedState: request.state,
    expectedNonce: request.nonce,
  }, undefined, options);
  return { tokens, seen, callback: page.url };
}
