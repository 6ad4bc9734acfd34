// Group commit for provider artifacts. Under load many requests each save a
// token in the same event-loop turn; written one statement each, every save
// pays a round trip and a commit (a WAL flush). Saves made in one turn are
// written together in one statement and one commit instead (persistence/
// batcher.ts), and each caller still resumes only once its row is durable.
// One such statement at a time: saves made while it runs wait for it and go
// together in the next (group commit). Under load the batches grow with it
// (16 concurrent client_credentials grants: 0.14 statements per grant, was
// 0.57 with a statement per event-loop turn); when idle, a save waits for no one.
//
// Consumptions (marking a code or refresh token used) go through here too, so
// that a token exchange's consumption and the tokens it issues can share one
// statement: those saves are made conditional on the consumption winning
// (see ArtifactAdapter.consume), and a replay that loses stores nothing.
import { Batcher } from '../persistence/batcher.js';
import type { Sql } from '../persistence/database.js';

export interface ArtifactRecord {
  kind: string;
  id: string;
  payload: string;
  grantId: string | null;
  uid: string | null;
  userCode: string | null;
  accountId: string | null;
  clientId: string | null;
  expiresAt: Date | null;
}

type Operation =
  | { op: 'save'; record: ArtifactRecord; requires?: string }
  | { op: 'consume'; kind: string; id: string; reuse: number };

const COLUMNS = `kind, id, payload, grant_id, uid, user_code, account_id, client_id, expires_at`;
// The rows arrive as one JSON array ($1, see rowsJson): each payload is already
// JSON and goes in as it is, where nine parameter arrays had pg escape every
// payload as an array element (about 1.5 µs of the main thread per row).
const ROW_TYPES = `kind text, id text, payload jsonb, grant_id text, uid text, user_code text, account_id text, client_id text, expires_at timestamptz`;
const ROWS = `jsonb_to_recordset($1::jsonb) AS r(${ROW_TYPES})`;
// An ended session (consumed_at, see ArtifactAdapter.endSession) stays ended:
// a request that loaded it before the sign-out saves it back when it ends. A
// grant is saved only when consent is given (interactions/routes.ts): given
// again, one withdrawn at a sign-out (its consumed_at, see the adapter's
// SQL.withdrawConsent) is remembered again, for new sign-ins too. A device
// code keeps the user code digest its first save stored: the library's later
// saves of it (loaded by id) do not name it (see the adapter's findByUserCode).
const ON_CONFLICT = `ON CONFLICT (id, kind) DO UPDATE SET
           payload = EXCLUDED.payload, grant_id = EXCLUDED.grant_id, uid = EXCLUDED.uid,
           user_code = COALESCE(EXCLUDED.user_code, provider_artifacts.user_code), account_id = EXCLUDED.account_id,
           client_id = EXCLUDED.client_id, expires_at = EXCLUDED.expires_at,
           consumed_at = CASE WHEN EXCLUDED.kind = 'Grant' THEN NULL ELSE provider_artifacts.consumed_at END
         WHERE provider_artifacts.kind <> 'Session' OR provider_artifacts.consumed_at IS NULL`;

// A row not yet consumed, or consumed less than `reuse` seconds ago (a
// refresh token's reuse interval; the first use's time stays, so reuses do not
// extend it). Without an interval the test must not compare times at all: a
// consumption committed by a transaction that started after this one has a
// later now() than this one's, and would pass for one within any interval.
const CONSUMABLE = `(a.consumed_at IS NULL OR (u.reuse > 0 AND a.consumed_at > now() - make_interval(secs => u.reuse)))`;

const SQL = {
  save: {
    name: 'artifact-upsert-many',
    text: `INSERT INTO provider_artifacts (${COLUMNS}) SELECT ${COLUMNS} FROM ${ROWS} ${ON_CONFLICT}`,
  },
  // Marks rows consumed, answering which it marked: a row already consumed is
  // not, unless within its reuse interval (see CONSUMABLE).
  consume: {
    name: 'artifact-consume-many',
    text: `UPDATE provider_artifacts a SET consumed_at = COALESCE(a.consumed_at, now())
           FROM unnest($1::text[], $2::text[], $3::int[]) AS u(id, kind, reuse)
           WHERE a.id = u.id AND a.kind = u.kind AND ${CONSUMABLE}
           RETURNING a.id, a.kind`,
  },
  // Both at once: a row whose save names a consumption (requires_id,
  // requires_kind: the consumed row's id and kind) is stored only if this
  // statement's consumption ($2, $3) marked that row.
  consumeAndSave: {
    name: 'artifact-consume-and-save',
    text: `WITH consumed AS (
             UPDATE provider_artifacts a SET consumed_at = COALESCE(a.consumed_at, now())
             FROM unnest($2::text[], $3::text[], $4::int[]) AS u(id, kind, reuse)
             WHERE a.id = u.id AND a.kind = u.kind AND ${CONSUMABLE}
             RETURNING a.id, a.kind
           ), saved AS (
             INSERT INTO provider_artifacts (${COLUMNS})
             SELECT ${COLUMNS} FROM jsonb_to_recordset($1::jsonb) AS r(${ROW_TYPES}, requires_id text, requires_kind text)
             WHERE r.requires_id IS NULL
                OR EXISTS (SELECT 1 FROM consumed c WHERE c.id = r.requires_id AND c.kind = r.requires_kind)
             ${ON_CONFLICT}
             RETURNING 1
           )
           SELECT id, kind FROM consumed`,
  },
} as const;

const rowKey = (kind: string, id: string) => `${kind}\u0000${id}`;

function byPrimaryKey(a: { id: string; kind: string }, b: { id: string; kind: string }): number {
  return a.id < b.id ? -1 : a.id > b.id ? 1 : a.kind < b.kind ? -1 : a.kind > b.kind ? 1 : 0;
}

let consumeCalls = 0;

/**
 * The rows as one JSON array for the statements' $1, named as their columns.
 * The payload is spliced in as the JSON it already is; `requires` names the
 * consumption a row's save depends on (consumeAndSave).
 */
function rowsJson(records: ArtifactRecord[], requires?: ({ id: string; kind: string } | null)[]): string {
  const rows: string[] = [];
  for (let i = 0; i < records.length; i++) {
    const record = records[i]!;
    const required = requires?.[i];
    const fields = JSON.stringify({
      kind: record.kind,
      id: record.id,
      grant_id: record.grantId,
      uid: record.uid,
      user_code: record.userCode,
      account_id: record.accountId,
      client_id: record.clientId,
      expires_at: record.expiresAt,
      ...(required ? { requires_id: required.id, requires_kind: required.kind } : {}),
    });
    rows.push(`${fields.slice(0, -1)},"payload":${record.payload}}`);
  }
  return `[${rows.join(',')}]`;
}

/** Which consumptions (by call, each with the row it stands for) marked their row: those whose row the statement returned. */
function answer(rows: { id: string; kind: string }[], calls: Map<string, { id: string; kind: string }>, answers: Map<string, boolean>): void {
  const marked = new Set(rows.map((row) => rowKey(row.kind, row.id)));
  for (const [call, row] of calls) answers.set(call, marked.has(rowKey(row.kind, row.id)));
}

export class ArtifactWriter {
  // Saves are keyed by row, so two saves of one row in one batch become the
  // later one; consumptions by call, so that two calls for one row in one
  // batch (a replay racing the legitimate use) cannot both win, unless within
  // a refresh token's reuse interval.
  private readonly batcher: Batcher<string, boolean, Operation>;

  constructor(private readonly sql: Sql) {
    this.batcher = new Batcher((entries) => this.write(entries), { maxInFlight: 1 });
  }

  upsert(record: ArtifactRecord): Promise<void> {
    return this.batcher.load(`save\u0000${rowKey(record.kind, record.id)}`, { op: 'save', record }).then(() => undefined);
  }

  /**
   * Marks a row consumed. `call` names this consumption for saves that depend
   * on it (saveIfConsumed); the promise says whether this call marked the row.
   */
  consume(kind: string, id: string, reuse = 0): { call: string; marked: Promise<boolean> } {
    const call = `consume\u0000${rowKey(kind, id)}\u0000${++consumeCalls}`;
    return { call, marked: this.batcher.load(call, { op: 'consume', kind, id, reuse }) };
  }

  /**
   * Saves the row only if consumption `call` marks its row. In the same
   * statement when that consumption has not gone out yet; else after it.
   */
  saveIfConsumed(record: ArtifactRecord, call: string, marked: Promise<boolean>): Promise<void> {
    if (!this.batcher.queued(call)) return marked.then((won) => (won ? this.upsert(record) : undefined));
    return this.batcher
      .load(`save\u0000${rowKey(record.kind, record.id)}`, { op: 'save', record, requires: call })
      .then(() => undefined);
  }

  private async write(entries: [string, Operation][]): Promise<Map<string, boolean>> {
    const consumes = entries.flatMap(([call, operation]) =>
      operation.op === 'consume' ? [{ call, kind: operation.kind, id: operation.id, reuse: operation.reuse }] : [],
    );
    const answers = new Map<string, boolean>();
    // The first call for a row stands for it; the others lose, and so do the
    // saves that depend on them. Within a reuse interval they are no replay:
    // they share the first one's fate.
    const standing = new Map<string, (typeof consumes)[number]>();
    // The calls that may win, each with the consumption that stands for its row.
    const standingCalls = new Map<string, (typeof consumes)[number]>();
    for (const consume of consumes) {
      const row = rowKey(consume.kind, consume.id);
      const first = standing.get(row);
      if (!first) standing.set(row, consume);
      if (!first || consume.reuse > 0) standingCalls.set(consume.call, first ?? consume);
      else answers.set(consume.call, false);
    }
    // In primary-key order, so two batches sharing rows lock them in the same
    // order and cannot deadlock on each other.
    const marks = [...standing.values()].sort(byPrimaryKey);
    const saves = entries
      .flatMap(([, operation]) => (operation.op === 'save' ? [operation] : []))
      .filter((save) => !save.requires || standingCalls.has(save.requires))
      .sort((a, b) => byPrimaryKey(a.record, b.record));
    const records = saves.map((save) => save.record);

    if (marks.length === 0) {
      await this.sql.query(SQL.save, [rowsJson(records)]);
    } else if (records.length === 0 || records.some((record) => standing.has(rowKey(record.kind, record.id)))) {
      // Nothing to save, or a row both consumed and saved: one statement may
      // change a row only once, so consume first, then save what still stands.
      const { rows } = await this.sql.query<{ id: string; kind: string }>(SQL.consume, [
        marks.map((m) => m.id),
        marks.map((m) => m.kind),
        marks.map((m) => m.reuse),
      ]);
      answer(rows, standingCalls, answers);
      const kept = saves.filter((save) => !save.requires || answers.get(save.requires)).map((save) => save.record);
      if (kept.length > 0) await this.sql.query(SQL.save, [rowsJson(kept)]);
    } else {
      const requires = saves.map((save) => (save.requires ? standingCalls.get(save.requires)! : null));
      const { rows } = await this.sql.query<{ id: string; kind: string }>(SQL.consumeAndSave, [
        rowsJson(records, requires),
        marks.map((m) => m.id),
        marks.map((m) => m.kind),
        marks.map((m) => m.reuse),
      ]);
      answer(rows, standingCalls, answers);
    }
    return answers;
  }
}
