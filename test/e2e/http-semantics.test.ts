// HTTP semantics as caches, browsers and proxies see them (probe BD): what
// every answer says about caching, content negotiation, CORS and methods.
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPortcullis, type TestPortcullis } from '../support/portcullis.js';

let pc: TestPortcullis;

beforeAll(async () => {
  pc = await startPortcullis();
});

afterAll(async () => {
  expect(pc?.errors ?? []).toEqual([]);
  await pc?.close();
});

/** Sends `bytes` as they are and returns what came back until the server closed the connection. */
function rawExchange(issuer: string, bytes: string): Promise<string> {
  const { hostname, port } = new URL(issuer);
  return new Promise<string>((resolve, reject) => {
    const socket = net.connect(Number(port), hostname === 'localhost' ? '127.0.0.1' : hostname);
    let received = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (received += chunk));
    socket.on('error', reject);
    socket.on('close', () => resolve(received));
    socket.setTimeout(5000, () => socket.destroy());
    socket.write(bytes);
  });
}

const BROWSER_ACCEPT = 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8';

describe('caching', () => {
  it('the device page a verification_uri_complete opens (a form with the session-bound xsrf secret) is no-store, as /device itself', async () => {
    // RFC 8628 §3.3.1: the person opens verification_uri_complete; the page
    // holds a form carrying the session's secret and sets the session cookie.
    const plain = await fetch(`${pc.issuer}/device`);
    expect(plain.headers.get('cache-control')).toBe('no-store');
    const complete = await fetch(`${pc.issuer}/device?user_code=ABCD-EFGH`);
    const html = await complete.text();
    expect(complete.status).toBe(200);
    expect(html).toContain('name="xsrf"');
    expect(complete.headers.getSetCookie().length).toBeGreaterThan(0);
    expect(complete.headers.get('cache-control')).toBe('no-store');
  });

  it('an error whose representation follows Accept says so in Vary (RFC 9110 §12.5.5), so a cache does not hand a browser the JSON', async () => {
    for (const [method, path] of [['GET', '/nothing-here'], ['POST', '/'], ['GET', '/session/end/confirm']] as const) {
      const asJson = await fetch(`${pc.issuer}${path}`, { method, headers: { accept: 'application/json' } });
      const asPage = await fetch(`${pc.issuer}${path}`, { method, headers: { accept: BROWSER_ACCEPT } });
      // The two answers differ by Accept alone...
      expect([asJson.headers.get('content-type'), asPage.headers.get('content-type')]).toEqual(['application/json; charset=utf-8', 'text/html; charset=utf-8']);
      // ...which both must name.
      for (const answer of [asJson, asPage]) expect(answer.headers.get('vary') ?? '', `${method} ${path}`).toMatch(/\baccept\b/i);
    }
  });
});

describe('CORS', () => {
  it('a wrong method at an API address answers the calling origin, as the 415, 413 and the provider errors there do', async () => {
    const origin = 'http://localhost:5299';
    // The 415 at the same address is readable by the page...
    const compressed = await fetch(`${pc.issuer}/token`, {
      method: 'POST',
      headers: { origin, 'content-type': 'application/x-www-form-urlencoded', 'content-encoding': 'gzip' },
      body: 'x=1',
    });
    expect(compressed.headers.get('access-control-allow-origin')).toBe(origin);
    // ...the 405 is not: the single-page app sees only a failed fetch.
    for (const [method, path] of [['GET', '/token'], ['PUT', '/me'], ['GET', '/token/revocation']] as const) {
      const wrong = await fetch(`${pc.issuer}${path}`, { method, headers: { origin } });
      expect(wrong.status).toBe(405);
      expect(wrong.headers.get('access-control-allow-origin'), `${method} ${path}`).toBe(origin);
    }
  });
});

describe('methods', () => {
  it('a method the server does not recognise is 501 (RFC 9110 §9.1), not 400 "not valid HTTP/1.1"', async () => {
    for (const method of ['BREW', 'get']) {
      const answer = await rawExchange(pc.issuer, `${method} /jwks HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
      expect(answer.split('\r\n')[0], method).toBe('HTTP/1.1 501 Not Implemented');
    }
    // Also after the empty line a server ignores before a request line (RFC 9112 §2.2).
    const afterEmptyLine = await rawExchange(pc.issuer, '\r\nBREW / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
    expect(afterEmptyLine.split('\r\n')[0]).toBe('HTTP/1.1 501 Not Implemented');
  });

  it('bytes that are no request line, after a whole request in the same packet, are not taken for that request\'s method', async () => {
    const answer = await rawExchange(pc.issuer, 'POST /token HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nabc\u0001\u0002 not http at all\r\n\r\n');
    const answers = [...answer.matchAll(/HTTP\/1\.1 (\d{3})[^\r]*\r\n[\s\S]*?(\{"error"[^}]*\})/g)].map((match) => ({ status: Number(match[1]), body: match[2] }));
    expect(answers[0]?.status).toBe(401); // the POST, answered
    // What followed: 400, or dropped; never a 501 naming POST.
    expect(answers.slice(1).map((each) => each.status)).not.toContain(501);
    expect(answer).not.toContain('the method POST');
  });

  it('a 405 is not stored, at a health probe too', async () => {
    const response = await fetch(`${pc.issuer}/healthz`, { method: 'POST' });
    expect([response.status, response.headers.get('cache-control')]).toEqual([405, 'no-store']);
    // Nor does a refusal there answer another origin: the probes take no CORS (as their 200).
    const crowded = await fetch(`${pc.issuer}/healthz?${'a=1&'.repeat(120)}`, { headers: { origin: 'http://localhost:5299' } });
    expect([crowded.status, crowded.headers.get('access-control-allow-origin')]).toEqual([400, null]);
  });
});

describe('security headers', () => {
  it('with an https issuer every response carries HSTS, the parser-level refusals included (README: "every response also carries")', async () => {
    const secure = await startPortcullis({ ISSUER: 'https://id.example.test', TRUST_PROXY: 'true' });
    try {
      const origin = `http://127.0.0.1:${secure.env.PORT}`;
      for (const request of [
        'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n',
        'GET / HTTP/1.1\r\n\r\n',
        'POST /token HTTP/1.1\r\nHost: a\r\nExpect: something\r\nContent-Length: 1\r\n\r\nx',
        `GET / HTTP/1.1\r\nHost: a\r\nX-Long: ${'a'.repeat(17_000)}\r\n\r\n`,
      ]) {
        const answer = await rawExchange(origin, request);
        expect(answer, request.slice(0, 40)).toMatch(/\r\nStrict-Transport-Security: max-age=31536000\r\n/i);
      }
    } finally {
      await secure.close();
    }
  });
});
