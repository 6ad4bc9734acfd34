// Counts database round trips: a TCP relay between a (second, unmeasured)
// Portcullis process and PostgreSQL that reads the frontend side of the wire
// protocol. Each Sync (extended protocol) or Query (simple protocol) message is
// one round trip; the statement it ran is labelled by verb and table, and for
// provider_artifacts by the artifact kind among its bound parameters.
import net from 'node:net';

const ARTIFACT_KINDS = new Set([
  'AccessToken',
  'AuthorizationCode',
  'ClientCredentials',
  'DeviceCode',
  'BackchannelAuthenticationRequest',
  'Grant',
  'Interaction',
  'InteractionBrowser',
  'PushedAuthorizationRequest',
  'RefreshToken',
  'ReplayDetection',
  'Session',
]);

export interface TripCount {
  total: number;
  byStatement: Record<string, number>;
}

/** The values a parameter binds: itself, an array's elements, or the `kind` of each row of a JSON array of rows. */
function boundKinds(param: string): string[] {
  if (param.startsWith('{') && param.endsWith('}')) return param.slice(1, -1).split(',').map((value) => value.replace(/^"|"$/g, ''));
  if (param.startsWith('[') && param.endsWith(']')) {
    try {
      const rows: unknown = JSON.parse(param);
      if (Array.isArray(rows)) return rows.map((row) => (row && typeof row === 'object' ? String((row as { kind?: unknown }).kind) : ''));
    } catch {
      // Not JSON: a value like any other.
    }
  }
  return [param];
}

function label(sql: string, params: string[]): string {
  const text = sql.replace(/\s+/g, ' ').trim();
  let verb = (/^\w+/.exec(text)?.[0] ?? '?').toUpperCase();
  if (['BEGIN', 'COMMIT', 'ROLLBACK', 'SET', 'SHOW'].includes(verb)) return verb;
  // A WITH statement by what it does: e.g. UPDATE+INSERT (a consumption and the tokens it issues).
  if (verb === 'WITH') verb = [...new Set(text.toUpperCase().match(/\b(?:UPDATE|INSERT|DELETE)\b/g) ?? ['SELECT'])].join('+');
  // EXTRACT(EPOCH FROM now() - …) names a field, not the table.
  const table = /\b(?:FROM|INTO|UPDATE)\s+(?:"?\w+"?\.)?"?(\w+)"?/i.exec(text.replace(/\bEXTRACT\s*\(\s*\w+\s+FROM\b/gi, 'EXTRACT('))?.[1] ?? '?';
  // A kind bound as a value, or as an array of values (statements that write several rows).
  const kinds = new Set<string>();
  if (table === 'provider_artifacts') {
    for (const param of params) {
      for (const value of boundKinds(param)) if (ARTIFACT_KINDS.has(value)) kinds.add(value);
    }
  }
  return kinds.size ? `${verb} ${table} (${[...kinds].sort().join(', ')})` : `${verb} ${table}`;
}

/** Reads the frontend messages of one connection. */
class FrontendParser {
  private buffer: Buffer = Buffer.alloc(0);
  private startup = true;
  /** A change feed's connection (LISTEN, then a heartbeat, see persistence/database.ts): no request's trips. */
  private feed = false;
  private readonly statements = new Map<string, string>();
  private pending?: { sql: string; params: string[] };

  constructor(private readonly record: (statement: string) => void) {}

  push(chunk: Buffer): void {
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk;
    for (;;) {
      if (this.startup) {
        if (this.buffer.length < 8) return;
        const length = this.buffer.readInt32BE(0);
        if (this.buffer.length < length) return;
        const code = this.buffer.readInt32BE(4);
        // SSLRequest and GSSENCRequest are followed by another untyped message.
        if (code !== 80877103 && code !== 80877104) {
          this.startup = false;
          this.feed = startupParameter(this.buffer.subarray(8, length), 'application_name')?.startsWith('portcullis listen ') ?? false;
        }
        this.buffer = this.buffer.subarray(length);
        continue;
      }
      if (this.buffer.length < 5) return;
      const length = this.buffer.readInt32BE(1);
      if (this.buffer.length < 1 + length) return;
      this.message(String.fromCharCode(this.buffer[0]!), this.buffer.subarray(5, 1 + length));
      this.buffer = this.buffer.subarray(1 + length);
    }
  }

  private message(type: string, body: Buffer): void {
    if (this.feed) return;
    if (type === 'Q') {
      this.record(label(cstring(body, 0).value, []));
    } else if (type === 'P') {
      const name = cstring(body, 0);
      this.statements.set(name.value, cstring(body, name.end).value);
    } else if (type === 'B') {
      const portal = cstring(body, 0);
      const statement = cstring(body, portal.end);
      this.pending = { sql: this.statements.get(statement.value) ?? '?', params: bindParams(body, statement.end) };
    } else if (type === 'S') {
      this.record(this.pending ? label(this.pending.sql, this.pending.params) : 'SYNC');
      this.pending = undefined;
    }
  }
}

/** A parameter of a StartupMessage's body (name, value, …, then an empty name). */
function startupParameter(body: Buffer, name: string): string | undefined {
  for (let offset = 0; offset < body.length && body[offset] !== 0; ) {
    const key = cstring(body, offset);
    const value = cstring(body, key.end);
    if (key.end === 0 || value.end === 0) return undefined; // unterminated: not a startup message we can read
    if (key.value === name) return value.value;
    offset = value.end;
  }
  return undefined;
}

function cstring(buffer: Buffer, start: number): { value: string; end: number } {
  const end = buffer.indexOf(0, start);
  return { value: buffer.toString('utf8', start, end), end: end + 1 };
}

function bindParams(body: Buffer, offset: number): string[] {
  const params: string[] = [];
  try {
    const formats = body.readInt16BE(offset);
    offset += 2 + formats * 2;
    const count = body.readInt16BE(offset);
    offset += 2;
    for (let i = 0; i < count; i++) {
      const length = body.readInt32BE(offset);
      offset += 4;
      if (length > 0) {
        // Only short values can be an artifact kind (or an array of a few), or the
        // writer's JSON rows (opening with '['); skip decoding the rest.
        if (length <= 400 || body[offset] === 0x5b) params.push(body.toString('utf8', offset, offset + length));
        offset += length;
      }
    }
  } catch {
    // a malformed Bind would be the server's problem; count the trip anyway
  }
  return params;
}

/** Listens on a free local port and relays to the PostgreSQL server at `target`. */
export async function startTripCounter(target: { host: string; port: number }) {
  const counts = new Map<string, number>();
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(target.port, target.host);
    sockets.add(client).add(upstream);
    const parser = new FrontendParser((statement) => counts.set(statement, (counts.get(statement) ?? 0) + 1));
    client.on('data', (chunk: Buffer) => {
      parser.push(chunk);
      upstream.write(chunk);
    });
    upstream.pipe(client);
    const close = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    port,
    snapshot(): Map<string, number> {
      return new Map(counts);
    },
    /** Round trips since `before`, per operation when `operations` is given. */
    since(before: Map<string, number>, operations = 1): TripCount {
      const byStatement: Record<string, number> = {};
      let total = 0;
      for (const [statement, count] of counts) {
        const delta = count - (before.get(statement) ?? 0);
        if (delta <= 0) continue;
        byStatement[statement] = Math.round((delta / operations) * 100) / 100;
        total += delta;
      }
      const sorted = Object.fromEntries(Object.entries(byStatement).sort(([, a], [, b]) => b - a));
      return { total: Math.round((total / operations) * 100) / 100, byStatement: sorted };
    },
    async close(): Promise<void> {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
