// Requests Node's HTTP parser refuses before any handler sees them: headers
// too large, bytes that are not HTTP, a request that took too long to arrive.
// Node's own answer is a bare status with an empty body; ours says what was
// wrong, as the OAuth error JSON every other refusal here uses (RFC 6749
// §5.2), so a client's developer is not left guessing.
import { maxHeaderSize, STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';

interface Refusal {
  status: number;
  description: string;
}

function refusalFor(code: string | undefined): Refusal {
  switch (code) {
    case 'HPE_HEADER_OVERFLOW':
      return { status: 431, description: `the request line and headers are larger than the server accepts (${Math.floor(maxHeaderSize / 1024)} KiB); send long authorization requests by POST or as a pushed authorization request` };
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return { status: 413, description: 'the chunk extensions of the request body are too large' };
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return { status: 408, description: 'the request did not arrive in time' };
    default:
      return { status: 400, description: 'the request is not valid HTTP/1.1' };
  }
}

/** The bytes of a whole response refusing a request the parser could not take. */
export function refusalResponse(code: string | undefined): string {
  const { status, description } = refusalFor(code);
  const body = JSON.stringify({ error: 'invalid_request', error_description: description });
  return [
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}`,
    'Content-Type: application/json; charset=utf-8',
    `Content-Length: ${Buffer.byteLength(body)}`,
    'Cache-Control: no-store',
    'X-Content-Type-Options: nosniff',
    // The rest of what the client sent cannot be read as requests.
    'Connection: close',
    '',
    body,
  ].join('\r\n');
}

/**
 * Answers the parser's refusals with a body. As Node's default does, nothing
 * is written where a response has already begun on the connection (it would
 * corrupt it) or the client is gone; the connection is closed either way.
 *
 * Nor is anything written where the refusal is about the rest of a request
 * already answered: a handler may answer (405, 404, 415…) without reading a
 * body, and Node then reads on to discard it. If that body never finishes
 * arriving (a Content-Length larger than what was sent) or its chunks are
 * malformed, the parser's error belongs to the request the client already has
 * its answer to; a second response would be unsolicited, and the client would
 * take it for the answer to its next request.
 *
 * `answered` hears of each refusal sent (for the metrics: no Koa middleware
 * sees these requests).
 */
export function answerClientErrors(server: Server, answered: () => void = () => undefined): void {
  // The last request each connection carried, and its response.
  const lastExchange = new WeakMap<object, { request: IncomingMessage; response: ServerResponse }>();
  server.on('request', (request: IncomingMessage, response: ServerResponse) => lastExchange.set(request.socket, { request, response }));

  server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex & { _httpMessage?: { headersSent?: boolean } }) => {
    const responding = socket._httpMessage?.headersSent === true;
    const last = lastExchange.get(socket);
    const aboutAnsweredRequest = last !== undefined && !last.request.complete && last.response.headersSent;
    if (error.code === 'ECONNRESET' || !socket.writable || responding || aboutAnsweredRequest) {
      socket.destroy();
      return;
    }
    socket.end(refusalResponse(error.code), () => socket.destroy());
    answered();
  });
}
