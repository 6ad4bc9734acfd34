// Requests refused before any handler sees them: those Node's HTTP parser
// refuses (headers too large, bytes that are not HTTP, a request that took
// too long to arrive), and those HTTP/1.1 says a server must (a bad Host, an
// expectation it cannot meet).
// Node's own answer is a bare status with an empty body; ours says what was
// wrong, as the OAuth error JSON every other refusal here uses (RFC 6749
// §5.2), so a client's developer is not left guessing.
import { maxHeaderSize, STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { BODY_LIMIT, BODY_TOO_LARGE } from '../provider/body-limit.js';

/** What Node adds to a parser's error (the `clientError` event). */
interface ParserError {
  rawPacket?: Buffer;
  bytesParsed?: number;
}

interface Refusal {
  status: number;
  description: string;
}

/**
 * A request line whose method is a token (RFC 9110 §9.1) followed by a
 * target and the protocol: a request, only with a method Node's parser does
 * not know (`BREW`, or `get`, methods being case-sensitive).
 */
const UNKNOWN_METHOD_LINE = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+) \S+ HTTP\/1\.[01]\r?\n/;

/**
 * The method of the request line the parser stopped in, where that line is a
 * request's but for its method. `packet` is the whole read the parser was
 * given, which may begin with requests before it (pipelined, or a body
 * followed by garbage): the line is the one holding `stoppedAt`, the offset
 * where parsing stopped, and the method must reach to there (an empty line
 * before a request line is skipped, as RFC 9112 §2.2 allows).
 */
function unknownMethod(packet: Buffer, stoppedAt: number): string | undefined {
  const text = packet.toString('latin1', 0, Math.min(packet.length, stoppedAt + 1024));
  const lineStart = text.lastIndexOf('\n', Math.max(0, stoppedAt - 1)) + 1;
  const method = UNKNOWN_METHOD_LINE.exec(text.slice(lineStart))?.[1];
  return method !== undefined && stoppedAt <= lineStart + method.length ? method : undefined;
}

/**
 * `inBody`: the error came while the body of a request whose headers were
 * taken was arriving (its trailer fields, say). `error`: Node's, with the
 * bytes the parser was reading and how far it got, as far as Node keeps them.
 */
function refusalFor(error: NodeJS.ErrnoException & ParserError, inBody: boolean): Refusal {
  switch (error.code) {
    case 'HPE_INVALID_METHOD': {
      // 501 for a method the server does not recognise (RFC 9110 §9.1, §15.6.2); 400 for bytes that are no request line.
      const { rawPacket: packet, bytesParsed } = error;
      const method = packet && typeof bytesParsed === 'number' && !inBody ? unknownMethod(packet, bytesParsed) : undefined;
      if (method) return { status: 501, description: `the method ${method.slice(0, 40)} is not one this server implements` };
      return { status: 400, description: 'the request is not valid HTTP/1.1' };
    }
    case 'HPE_HEADER_OVERFLOW':
      if (inBody) return { status: 431, description: `the trailer fields after the request body are larger than the server accepts (${Math.floor(maxHeaderSize / 1024)} KiB)` };
      return { status: 431, description: `the request line and headers are larger than the server accepts (${Math.floor(maxHeaderSize / 1024)} KiB); send long authorization requests by POST or as a pushed authorization request` };
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return { status: 413, description: 'the chunk extensions of the request body are too large' };
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return { status: 408, description: 'the request did not arrive in time' };
    default:
      return { status: 400, description: 'the request is not valid HTTP/1.1' };
  }
}

function refusalBody(description: string): string {
  return JSON.stringify({ error: 'invalid_request', error_description: description });
}

/** With the security headers every answer carries (security-headers.ts: HSTS for an https issuer). */
const REFUSAL_HEADERS = {
  'Content-Type': 'application/json; charset=utf-8',
  'Cache-Control': 'no-store',
  'X-Content-Type-Options': 'nosniff',
  // The rest of what the client sent cannot be read as requests.
  Connection: 'close',
};

type Headers = Record<string, string>;

/** The bytes of a whole response refusing a request, for a socket no ServerResponse writes to. */
function refusalResponse({ status, description }: Refusal, headers: Headers): string {
  const body = refusalBody(description);
  return [
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}`,
    ...Object.entries({ ...headers, 'Content-Length': Buffer.byteLength(body) }).map(([name, value]) => `${name}: ${value}`),
    '',
    body,
  ].join('\r\n');
}

// A Host value: a registered name, IPv4 address or bracketed IP literal, and
// an optional port (RFC 9110 §7.2, RFC 3986 §3.2.2); empty where the target
// has no authority (RFC 9112 §3.2).
const HOST_VALUE = /^(?:[A-Za-z0-9\-._~!$&'()*+,;=%]*|\[[0-9A-Fa-f:.]+\]|\[v[0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+\])(?::[0-9]*)?$/;

// Fields a request carries at most once (RFC 9110 §5.3: only a list-based
// field may be sent as several lines). Node keeps the first of each and drops
// the rest, so a second one would be read by nobody here but perhaps by a
// proxy in front, which could then act on another credential or body type
// than this server did.
const SINGLETON_FIELDS = new Map([
  ['authorization', 'the request has more than one Authorization header: it may carry one credential (RFC 9110 section 11.6.2)'],
  ['content-type', 'the request has more than one Content-Type header (RFC 9110 section 8.3)'],
]);

/**
 * Why a request's headers make it one a server must refuse with 400, or
 * undefined: a Host missing from an HTTP/1.1 request, sent more than once,
 * or not a host (RFC 9112 §3.2), or a singleton field above sent twice.
 * Node's own check (`requireHostHeader`) covers only the first, with an
 * empty body; no URL here is built from Host (the issuer is configured), so
 * this is about speaking HTTP exactly.
 */
function headerProblem(request: IncomingMessage): string | undefined {
  let host: string | undefined;
  const seen = new Set<string>();
  for (let i = 0; i < request.rawHeaders.length; i += 2) {
    const name = request.rawHeaders[i]!.toLowerCase();
    if (name === 'host') {
      if (host !== undefined) return 'the request has more than one Host header (RFC 9112 section 3.2)';
      host = request.rawHeaders[i + 1]!;
    } else if (SINGLETON_FIELDS.has(name)) {
      if (seen.has(name)) return SINGLETON_FIELDS.get(name);
      seen.add(name);
    }
  }
  if (host === undefined) return request.httpVersion === '1.1' ? 'an HTTP/1.1 request needs a Host header (RFC 9112 section 3.2)' : undefined;
  return HOST_VALUE.test(host) ? undefined : 'the Host header is not a host name or address (RFC 9112 section 3.2)';
}

/**
 * Requests a connection may have in hand at once. No browser pipelines, and a
 * client that does so deeply does so to flood: each 64 KiB read can hold a
 * thousand small requests, all handled at once, their answers held in memory
 * while the client reads none of them (probe AM: twenty such connections took
 * the server to 1 GB and its health check to 14 s). Past this many, the
 * connection is closed.
 */
const MAX_PIPELINED = 32;

/** Requests each connection has in hand. */
const PENDING = Symbol('requests in hand');
type Counted = IncomingMessage['socket'] & { [PENDING]?: number };

function refuse(response: ServerResponse, headers: Headers, status: number, description: string): void {
  const body = refusalBody(description);
  response.writeHead(status, { ...headers, 'Content-Length': Buffer.byteLength(body) });
  response.end(body);
}

/**
 * Serves `handler` on `server` (created with `requireHostHeader: false`, so
 * that a missing Host reaches the check here), behind every refusal made
 * before a route sees a request, each with a body saying why:
 *
 * - what HTTP/1.1 asks a server to refuse: a missing, repeated or malformed
 *   Host, a repeated Authorization or Content-Type (400), an expectation other than 100-continue (417, RFC 9110
 *   §10.1.1), which Node would answer with an empty body; and CONNECT (501),
 *   which it would not answer at all;
 * - what Node's parser refuses (the `clientError` event). As Node's default
 *   does, nothing is written where a response has already begun on the
 *   connection (it would corrupt it) or the client is gone; the connection is
 *   closed either way. Nor is anything written where the refusal is about the
 *   rest of a request already answered: a handler may answer (405, 404,
 *   415…) without reading a body, and Node then reads on to discard it. If
 *   that body never finishes arriving (a Content-Length larger than what was
 *   sent) or its chunks are malformed, the parser's error belongs to the
 *   request the client already has its answer to; a second response would be
 *   unsolicited, and the client would take it for the answer to its next
 *   request. Nor where the refusal is about what followed a whole request
 *   whose answer is still being made: that answer is sent, then the
 *   connection closed;
 * - a connection with more than MAX_PIPELINED requests in hand is closed.
 *
 * `answered` hears of each refusal sent (for the metrics: no Koa middleware
 * sees these requests). `securityHeaders`: those every response carries.
 */
export function serveWithRefusals(
  server: Server,
  handler: (request: IncomingMessage, response: ServerResponse) => void,
  answered: () => void = () => undefined,
  securityHeaders: Headers = {},
): void {
  const headers = { ...securityHeaders, ...REFUSAL_HEADERS };
  // The last request each connection carried, and its response.
  const lastExchange = new WeakMap<object, { request: IncomingMessage; response: ServerResponse }>();

  server.on('request', (request: IncomingMessage, response: ServerResponse) => {
    const socket = request.socket as Counted;
    // Closed below while requests from the same read were still being parsed.
    if (socket.destroyed) return;
    const pending = (socket[PENDING] ?? 0) + 1;
    if (pending > MAX_PIPELINED) return void socket.destroy();
    socket[PENDING] = pending;
    response.once('close', () => void (socket[PENDING]! -= 1));
    lastExchange.set(socket, { request, response });
    const problem = headerProblem(request);
    if (problem === undefined) return handler(request, response);
    refuse(response, headers, 400, problem);
    answered();
  });

  // A client that waits to be asked for its body (RFC 9110 §10.1.1) is not
  // asked for one longer than any address here reads: answered 413 at once,
  // as Node's default would have it send the body only to refuse it.
  server.on('checkContinue', (request: IncomingMessage, response: ServerResponse) => {
    if (Number(request.headers['content-length']) > BODY_LIMIT) {
      refuse(response, headers, 413, BODY_TOO_LARGE);
      answered();
      return;
    }
    response.writeContinue();
    server.emit('request', request, response);
  });

  server.on('checkExpectation', (request: IncomingMessage, response: ServerResponse) => {
    // (The header's value is not repeated: error_description holds printable ASCII without quotes, RFC 6749 §5.2.)
    refuse(response, headers, 417, 'the server meets no expectation but 100-continue (Expect header)');
    answered();
  });

  server.on('clientError', (error: NodeJS.ErrnoException & ParserError, socket: Duplex & { _httpMessage?: { headersSent?: boolean } }) => {
    const responding = socket._httpMessage?.headersSent === true;
    const last = lastExchange.get(socket);
    const aboutAnsweredRequest = last !== undefined && !last.request.complete && last.response.headersSent;
    if (error.code === 'ECONNRESET' || !socket.writable || responding || aboutAnsweredRequest) {
      socket.destroy();
      return;
    }
    // What follows a whole request still being answered (bytes that are not
    // HTTP, or anything after a request that said Connection: close): that
    // answer goes out first, as answers go in the order of the requests
    // (RFC 9112 §9.3.2), and what followed is dropped unanswered (§9.6). A
    // refusal written now would take its place: a refresh would have been
    // made and its new token never received.
    if (last !== undefined && last.request.complete && !last.response.writableFinished) {
      last.response.once('close', () => socket.destroy());
      return;
    }
    socket.end(refusalResponse(refusalFor(error, last !== undefined && !last.request.complete), headers), () => socket.destroy());
    answered();
  });

  // CONNECT asks a proxy for a tunnel, and there is none here: Node, with no
  // listener, closes the connection without a word.
  server.on('connect', (_request: IncomingMessage, socket: Duplex) => {
    socket.end(refusalResponse({ status: 501, description: 'CONNECT is not served: this server is not a proxy' }, headers), () => socket.destroy());
    answered();
  });
}
