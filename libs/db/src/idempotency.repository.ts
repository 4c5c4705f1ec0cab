import type { Pool, PoolClient } from 'pg';

export interface StoredResponse<T> {
  requestHash: Buffer;
  response: T;
}

export const IDEMPOTENCY_WINDOW_HOURS = 24;

export class IdempotencyRepository {
  /**
   * Claims the key. Waits for a concurrent holder of the same key to finish (unique
   * index), then returns false if the key is taken and still within its 24 hours; an
   * older claim, or an unfinished one abandoned for 30 s, is taken over.
   */
  async claim(client: Pool | PoolClient, key: string, requestHash: Buffer): Promise<boolean> {
    const { rowCount } = await client.query({
      name: 'idempotency-claim',
      text: `/* writer:idempotency.claim */ INSERT INTO idempotency_keys (key, request_hash, response)
             VALUES ($1, $2, 'null'::jsonb)
             ON CONFLICT (key) DO UPDATE SET request_hash = excluded.request_hash, response = excluded.response,
               created_at = now()
             WHERE idempotency_keys.created_at < now() - make_interval(hours => ${IDEMPOTENCY_WINDOW_HOURS})
                OR (idempotency_keys.response = 'null'::jsonb AND idempotency_keys.created_at < now() - interval '30 seconds')`,
      values: [key, requestHash],
    });
    return rowCount === 1;
  }

  /** Gives up an unfinished claim (the create it guarded failed). */
  async release(node: Pool | PoolClient, key: string): Promise<void> {
    await node.query({
      name: 'idempotency-release',
      text: `/* writer:idempotency.release */ DELETE FROM idempotency_keys WHERE key = $1 AND response = 'null'::jsonb`,
      values: [key],
    });
  }

  async complete(client: Pool | PoolClient, key: string, response: unknown): Promise<void> {
    await client.query({
      name: 'idempotency-complete',
      text: '/* writer:idempotency.complete */ UPDATE idempotency_keys SET response = $2 WHERE key = $1',
      values: [key, JSON.stringify(response)],
    });
  }

  async find<T>(node: Pool | PoolClient, key: string): Promise<StoredResponse<T> | null> {
    const { rows } = await node.query<{ request_hash: Buffer; response: T }>({
      name: 'idempotency-find',
      text: `/* writer:idempotency.find */ SELECT request_hash, response FROM idempotency_keys
             WHERE key = $1 AND created_at >= now() - make_interval(hours => ${IDEMPOTENCY_WINDOW_HOURS})`,
      values: [key],
    });
    return rows.length ? { requestHash: rows[0].request_hash, response: rows[0].response } : null;
  }

  async purgeExpired(node: Pool): Promise<number> {
    const { rowCount } = await node.query(`DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(hours => ${IDEMPOTENCY_WINDOW_HOURS})`);
    return rowCount ?? 0;
  }
}
