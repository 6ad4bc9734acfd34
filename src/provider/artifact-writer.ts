// Group commit for provider artifacts. Under load many requests each save a
// token in the same event-loop turn; written one statement each, every save
// pays a round trip and a commit (a WAL flush). Saves made in one turn are
// written together in one statement and one commit instead, and each caller
// still resumes only once its row is durable.
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

const MAX_BATCH = 256;

const UPSERT_MANY = {
  name: 'artifact-upsert-many',
  text: `INSERT INTO provider_artifacts (kind, id, payload, grant_id, uid, user_code, account_id, client_id, expires_at)
         SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::timestamptz[])
         ON CONFLICT (id, kind) DO UPDATE SET
           payload = EXCLUDED.payload, grant_id = EXCLUDED.grant_id, uid = EXCLUDED.uid,
           user_code = EXCLUDED.user_code, account_id = EXCLUDED.account_id,
           client_id = EXCLUDED.client_id, expires_at = EXCLUDED.expires_at`,
} as const;

interface Pending {
  record: ArtifactRecord;
  waiters: { resolve(): void; reject(error: unknown): void }[];
}

export class ArtifactWriter {
  private batch = new Map<string, Pending>();
  private scheduled = false;

  constructor(private readonly sql: Sql) {}

  upsert(record: ArtifactRecord): Promise<void> {
    return new Promise((resolve, reject) => {
      const key = `${record.kind}\u0000${record.id}`;
      const pending = this.batch.get(key);
      // Two saves of one row in one turn: the later one is what a sequence of writes would leave.
      if (pending) {
        pending.record = record;
        pending.waiters.push({ resolve, reject });
      } else {
        this.batch.set(key, { record, waiters: [{ resolve, reject }] });
      }
      if (this.batch.size >= MAX_BATCH) this.flush();
      else if (!this.scheduled) {
        this.scheduled = true;
        // One turn of the event loop: long enough for concurrent requests to join.
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    if (this.batch.size === 0) return;
    const entries = [...this.batch.values()];
    this.batch = new Map();
    const column = <K extends keyof ArtifactRecord>(name: K) => entries.map((entry) => entry.record[name]);
    this.sql
      .query(UPSERT_MANY, [
        column('kind'),
        column('id'),
        column('payload'),
        column('grantId'),
        column('uid'),
        column('userCode'),
        column('accountId'),
        column('clientId'),
        column('expiresAt'),
      ])
      .then(
        () => entries.forEach((entry) => entry.waiters.forEach((waiter) => waiter.resolve())),
        (error) => entries.forEach((entry) => entry.waiters.forEach((waiter) => waiter.reject(error))),
      );
  }
}
