// The claims parameter (OpenID Connect Core §5.5): single claims asked for by
// name, for the ID token or UserInfo, with consent for each, within what the
// client's registered scopes release.
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPortcullis, type TestPortcullis } from '../support/portcullis.js';
import { allow, authorizationRequest, discover, logIn, pageKind, REDIRECT_URI, signIn, visit } from '../support/relying-party.js';
import { UserAgent, type Page } from '../support/user-agent.js';

const ida = { email: 'ida@example.com', password: 'idas long password' };
const joe = { email: 'joe@example.com', password: 'joes long password' };

let pc: TestPortcullis;
let app: oidc.Configuration;
/** Registered for `openid profile` only. */
let profileOnly: oidc.Configuration;

beforeAll(async () => {
  pc = await startPortcullis();
  await pc.createUser(ida.email, ida.password, 'Ida');
  await pc.createUser(joe.email, joe.password, 'Joe');
  const a = await pc.createClient({ name: 'Ledger', redirectUris: [REDIRECT_URI] });
  const b = await pc.createClient({ name: 'Nameplate', redirectUris: [REDIRECT_URI], scope: 'openid profile' });
  app = await discover(pc.issuer, a.client_id, a.client_secret);
  profileOnly = await discover(pc.issuer, b.client_id, b.client_secret);
});

afterAll(async () => {
  expect(pc?.errors ?? []).toEqual([]);
  await pc?.close();
});

const OPENID = 'Confirm that it is you when you sign in';
const claims = (request: object) => ({ claims: JSON.stringify(request) });

/** The permissions a consent page lists, as the person reads them. */
function permissionsOn(page: Page): string[] {
  const list = /<ul class="scopes" aria-labelledby="permissions-intro">([\s\S]*?)<\/ul>/.exec(page.html)?.[1] ?? '';
  return [...list.matchAll(/<li[^>]*>([\s\S]*?)<\/li>/g)].map((item) => item[1].replace(/<[^>]+>/g, '').trim());
}

/** Where an authorization request that never reaches a page sends the browser: the error at the redirect URI. */
async function errorFor(config: oidc.Configuration, scope: string, extra: Record<string, string>) {
  const request = await authorizationRequest(config, scope, extra);
  const page = await visit(new UserAgent(), request.url);
  const answer = new URL(page.url);
  expect(answer.origin + answer.pathname).toBe(REDIRECT_URI);
  expect(answer.searchParams.get('state')).toBe(request.state);
  return Object.fromEntries(answer.searchParams);
}

describe('the claims parameter', () => {
  it('is announced in discovery', async () => {
    const metadata = await (await fetch(`${pc.issuer}/.well-known/openid-configuration`)).json();
    expect(metadata.claims_parameter_supported).toBe(true);
  });

  it('asks consent for each claim, and puts each where it was asked for: the ID token or UserInfo', async () => {
    const ua = new UserAgent();
    const request = await authorizationRequest(app, 'openid', claims({ id_token: { email: { essential: true } }, userinfo: { name: null } }));
    const login = await visit(ua, request.url);
    expect(pageKind(login)).toBe('login');
    const consent = await signIn(ua, login, ida.email, ida.password);
    expect(pageKind(consent)).toBe('consent');
    expect(permissionsOn(consent)).toEqual([OPENID, 'See your name', 'See your email address']);
    const callback = await allow(ua, consent);
    const tokens = await oidc.authorizationCodeGrant(app, new URL(callback.url), {
      pkceCodeVerifier: request.verifier,
      expectedState: request.state,
      expectedNonce: request.nonce,
    });
    const idToken = tokens.claims()!;
    expect(idToken.email).toBe(ida.email);
    expect(idToken).not.toHaveProperty('name');
    const userinfo = await oidc.fetchUserInfo(app, tokens.access_token, idToken.sub);
    expect(userinfo.name).toBe('Ida');
    expect(userinfo).not.toHaveProperty('email');

    // Remembered: asked again for the same claims, the app gets them without a page.
    const again = await logIn(ua, app, 'openid', ida, claims({ id_token: { email: { essential: true } }, userinfo: { name: null } }));
    expect(again.seen).toEqual([]);
    expect(again.tokens.claims()!.email).toBe(ida.email);
    // Asked for one more, the page asks for that one, and shows what was given before.
    const more = await authorizationRequest(app, 'openid', claims({ id_token: { email: null, email_verified: null } }));
    const page = await visit(ua, more.url);
    expect(pageKind(page)).toBe('consent');
    expect(permissionsOn(page)).toEqual(['See whether your email address is verified']);
    const alreadyGiven = /<ul class="scopes" aria-labelledby="already-given-intro">([\s\S]*?)<\/ul>/.exec(page.html)?.[1] ?? '';
    expect(alreadyGiven).toContain('See your email address');
  });

  it('gives a client no claim beyond what its registered scopes release', async () => {
    const ua = new UserAgent();
    const request = await authorizationRequest(profileOnly, 'openid', claims({ id_token: { email: { essential: true }, name: null }, userinfo: { email_verified: null } }));
    const consent = await signIn(ua, await visit(ua, request.url), joe.email, joe.password);
    expect(permissionsOn(consent)).toEqual([OPENID, 'See your name']);
    const callback = await allow(ua, consent);
    const tokens = await oidc.authorizationCodeGrant(profileOnly, new URL(callback.url), {
      pkceCodeVerifier: request.verifier,
      expectedState: request.state,
      expectedNonce: request.nonce,
    });
    expect(tokens.claims()).toMatchObject({ name: 'Joe' });
    expect(tokens.claims()).not.toHaveProperty('email');
    const userinfo = await oidc.fetchUserInfo(profileOnly, tokens.access_token, tokens.claims()!.sub);
    expect(Object.keys(userinfo).sort()).toEqual(['sub']);
  });

  it('is refused in a request without the openid scope: there is no ID token nor UserInfo to put claims in', async () => {
    const answer = await errorFor(app, 'profile', claims({ userinfo: { email: null } }));
    expect(answer.error).toBe('invalid_request');
  });

  it('refuses an essential acr with values at once: there are no authentication context classes to meet it (§5.5.1.1)', async () => {
    for (const acr of [{ essential: true, values: ['urn:example:mfa'] }, { essential: true, value: 'urn:example:mfa' }]) {
      const answer = await errorFor(app, 'openid', claims({ id_token: { acr } }));
      expect(answer.error).toBe('unmet_authentication_requirements');
    }
    // A voluntary one is a wish, met or not: the sign-in goes on.
    const page = await visit(new UserAgent(), (await authorizationRequest(app, 'openid', claims({ id_token: { acr: { values: ['urn:example:mfa'] } } }))).url);
    expect(pageKind(page)).toBe('login');
  });

  it('refuses malformed requests with invalid_request, sent back to the app', async () => {
    for (const claimsParam of [
      '{"id_token":',
      '["id_token"]',
      '{"id_token":{"email":true}}',
      '{"id_token":{"email":{"essential":"yes"}}}',
      '{"userinfo":{"name":{"values":"Ida"}}}',
      '{"id_token":{"sub":{"value":42}}}',
    ]) {
      const answer = await errorFor(app, 'openid', { claims: claimsParam });
      expect(answer.error, claimsParam).toBe('invalid_request');
    }
  });

  it('lets only the person a sub value names sign in (§3.1.2.1): anyone else is login_required, not a code', async () => {
    const idas = await logIn(new UserAgent(), app, 'openid', ida);
    const sub = idas.tokens.claims()!.sub;
    const wantsIda = claims({ id_token: { sub: { value: sub } } });
    // Joe signs in where the app asked for Ida.
    const ua = new UserAgent();
    const request = await authorizationRequest(app, 'openid', wantsIda);
    const back = new URL((await signIn(ua, await visit(ua, request.url), joe.email, joe.password)).url);
    expect(back.origin + back.pathname).toBe(REDIRECT_URI);
    expect(Object.fromEntries(back.searchParams)).toMatchObject({ error: 'login_required', state: request.state });
    // Joe signed in on this browser, asked silently for Ida: login_required too.
    const joesBrowser = new UserAgent();
    await logIn(joesBrowser, app, 'openid', joe);
    const silent = await authorizationRequest(app, 'openid', { ...wantsIda, prompt: 'none' });
    const answer = new URL((await visit(joesBrowser, silent.url)).url);
    expect(answer.searchParams.get('error')).toBe('login_required');
    // Nor does Joe's session stand in for Ida when the app asks to choose an account: Ida must sign in.
    const choose = await visit(joesBrowser, (await authorizationRequest(app, 'openid', { ...wantsIda, prompt: 'select_account' })).url);
    expect(pageKind(choose)).toBe('login');
    // Ida herself gets her code.
    const asIda = await logIn(new UserAgent(), app, 'openid', ida, wantsIda);
    expect(asIda.tokens.claims()!.sub).toBe(sub);
  });

  it('is carried by a pushed request, narrowed to the client as at /auth', async () => {
    const verifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const url = await oidc.buildAuthorizationUrlWithPAR(profileOnly, {
      redirect_uri: REDIRECT_URI,
      scope: 'openid',
      state,
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      ...claims({ userinfo: { email: null, updated_at: null } }),
    });
    const kim = { email: 'kim@example.com', password: 'kims long password' };
    await pc.createUser(kim.email, kim.password, 'Kim');
    const ua = new UserAgent();
    const consent = await signIn(ua, await visit(ua, url), kim.email, kim.password);
    expect(permissionsOn(consent)).toEqual([OPENID, 'See when your profile last changed']);
  });
});

describe('the claims parameter and what the person and the operator decided', () => {
  let people = 0;
  /** Someone who has consented to nothing yet. */
  async function newPerson() {
    const person = { email: `person${++people}@example.com`, password: 'a long enough password' };
    await pc.createUser(person.email, person.password, `Person ${people}`);
    return person;
  }

  it('a scope taken from the client (client update --scope) takes its claims out of consents given by the claims parameter: UserInfo and the next refresh no longer give them', async () => {
    const made = await pc.createClient({ name: 'Mailer', redirectUris: [REDIRECT_URI], scope: 'openid email offline_access' });
    const mailer = await discover(pc.issuer, made.client_id, made.client_secret);
    const { tokens } = await logIn(new UserAgent(), mailer, 'openid offline_access', await newPerson(), {
      prompt: 'consent',
      ...claims({ id_token: { email: null }, userinfo: { email: null } }),
    });
    const sub = tokens.claims()!.sub;
    expect((await oidc.fetchUserInfo(mailer, tokens.access_token, sub)).email).toBeDefined();
    // README: "OpenID Connect scopes taken from a client leave its consents at
    // once, so UserInfo and the next refresh no longer give their claims".
    expect((await pc.cli(['client', 'update', made.client_id, '--scope', 'openid offline_access'])).code).toBe(0);
    expect(await oidc.fetchUserInfo(mailer, tokens.access_token, sub)).not.toHaveProperty('email');
    const refreshed = await oidc.refreshTokenGrant(mailer, tokens.refresh_token!);
    expect(refreshed.claims()).not.toHaveProperty('email');
  });

  it('a sign-in in progress is held to the registration as it is now: a claim whose scope was taken from the client while the consent page was open is not given', async () => {
    const made = await pc.createClient({ name: 'Courier', redirectUris: [REDIRECT_URI], scope: 'openid email' });
    const courier = await discover(pc.issuer, made.client_id, made.client_secret);
    const person = await newPerson();
    const ua = new UserAgent();
    const request = await authorizationRequest(courier, 'openid', claims({ id_token: { email: null } }));
    const consent = await signIn(ua, await visit(ua, request.url), person.email, person.password);
    expect(permissionsOn(consent)).toEqual([OPENID, 'See your email address']);
    expect((await pc.cli(['client', 'update', made.client_id, '--scope', 'openid'])).code).toBe(0);
    const callback = new URL((await allow(ua, consent)).url);
    expect(callback.origin + callback.pathname).toBe(REDIRECT_URI);
    // Refused (as a scope taken away is), or given without the claim: not the email address.
    let released: unknown;
    if (callback.searchParams.has('code')) {
      const tokens = await oidc.authorizationCodeGrant(courier, callback, {
        pkceCodeVerifier: request.verifier,
        expectedState: request.state,
        expectedNonce: request.nonce,
      });
      released = tokens.claims()!.email;
    }
    expect(released).toBeUndefined();
  });

  it('a claim that a consent to its scope already holds is not asked for again: a silent request gets its code', async () => {
    const person = await newPerson();
    const ua = new UserAgent();
    await logIn(ua, app, 'openid email', person);
    // The email scope was consented to: the email address is given already.
    const request = await authorizationRequest(app, 'openid email', { prompt: 'none', ...claims({ id_token: { email: { essential: true } } }) });
    const answer = new URL((await visit(ua, request.url)).url);
    expect(answer.searchParams.get('error')).toBeNull();
    const tokens = await oidc.authorizationCodeGrant(app, answer, {
      pkceCodeVerifier: request.verifier,
      expectedState: request.state,
      expectedNonce: request.nonce,
    });
    expect(tokens.claims()!.email).toBe(person.email);
  });

  it('a claim whose scope was consented to before, but is not asked for now, is asked for by name: given once allowed, consent_required silently', async () => {
    const person = await newPerson();
    const ua = new UserAgent();
    await logIn(ua, app, 'openid email', person);
    const asked = claims({ id_token: { email: { essential: true } }, userinfo: { email: null } });
    // Silently: the claim is not given yet (a scope releases its claims only where it is asked for).
    const silent = await authorizationRequest(app, 'openid', { prompt: 'none', ...asked });
    const answer = new URL((await visit(ua, silent.url)).url);
    expect([answer.searchParams.get('error'), answer.searchParams.get('state')]).toEqual(['consent_required', silent.state]);
    // With the page: asked for, then in the ID token and UserInfo.
    const { tokens, seen } = await logIn(ua, app, 'openid', person, asked);
    expect(seen).toEqual(['consent']);
    expect(tokens.claims()!.email).toBe(person.email);
    expect((await oidc.fetchUserInfo(app, tokens.access_token, tokens.claims()!.sub)).email).toBe(person.email);
  });

  it('lists a claim once on the consent page, not again beside the scope asked for that gives it', async () => {
    const person = await newPerson();
    const ua = new UserAgent();
    const request = await authorizationRequest(app, 'openid email', claims({ id_token: { email: null, email_verified: null } }));
    const consent = await signIn(ua, await visit(ua, request.url), person.email, person.password);
    expect(permissionsOn(consent)).toEqual([OPENID, 'See your email address and whether it is verified']);
  });

  it('a claims value nested deeper than the server can store is refused (invalid_request at the redirect URI), not a 500', async () => {
    const deep = `${'['.repeat(8000)}${']'.repeat(8000)}`;
    for (const claimsParam of [
      // With a claim the client may not have, which is left out (the parameter written anew).
      `{"id_token":{"email":{"values":${deep}},"phone_number":null}}`,
      // Kept as sent: stored with the code once the person has consented.
      `{"id_token":{"email":{"values":${deep}}}}`,
    ]) {
      const ua = new UserAgent();
      const request = await authorizationRequest(app, 'openid');
      const body = new URLSearchParams({ ...Object.fromEntries(request.url.searchParams), claims: claimsParam });
      let page = await ua.open(`${pc.issuer}/auth`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body }, REDIRECT_URI);
      const person = await newPerson();
      for (let step = 0; step < 3 && (pageKind(page) === 'login' || pageKind(page) === 'consent'); step++) {
        page = pageKind(page) === 'login' ? await signIn(ua, page, person.email, person.password) : await allow(ua, page);
      }
      expect(page.status, claimsParam.slice(0, 60)).not.toBe(500);
      expect(pageKind(page)).toBe('callback');
      expect(new URL(page.url).searchParams.get('error')).toBe('invalid_request');
    }
  });
});
