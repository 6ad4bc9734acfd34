// Requests Node's HTTP parser refuses before any handler sees them: headers
// too large, bytes that are not HTTP, a request that took too long to arrive.
// Node's own answer is a bare status with an empty body; ours says what was
// wrong, as the OAuth error JSON every other refusal here uses (RFC 6749
// §5.2), so a client's developer is not left guessing.
import { maxHeaderSize, STATUS_CODES, type Server } from 'node:http';
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
 * `answered` hears of each refusal sent (for the metrics: no Koa middleware
 * sees these requests).
 */
export function answerClientErrors(server: Server, answered: () => void = () => undefined): void {
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex & { _httpMessage?: { headersSent?: boolean } }) => {
    const responding = socket._httpMessage?.headersSent === true;
    if (error.code === 'ECONNRESET' || !socket.writable || responding) {
      socket.destroy();
      return;
    }
    socket.end(refusalResponse(error.code), () => socket.destroy());
    answered();
  });
}
