import type { Pool, PoolClient } from 'pg';

export interface OutboxRecord {
  id: string;
  topic: string;
  key: string;
  payload: string;
}

// One relay per shard at a time keeps each code's events in commit order.
const RELAY_LOCK = 7_311_002;

export class OutboxRepository {
  async enqueue(client: PoolClient, topic: string, key: string, payload: string): Promise<void> {
    await client.query({
      name: 'outbox-enqueue',
      text: '/* writer:outbox.enqueue */ INSERT INTO outbox (topic, key, payload) VALUES ($1, $2, $3)',
      values: [topic, key, payload],
    });
  }

  /** Inside a transaction: false when another relay holds this shard's outbox. */
  async tryLockRelay(client: PoolClient): Promise<boolean> {
    const { rows } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_xact_lock($1) AS locked', [RELAY_LOCK]);
    return rows[0].locked;
  }

  async oldest(client: PoolClient, limit: number): Promise<OutboxRecord[]> {
    const { rows } = await client.query<OutboxRecord>({
      name: 'outbox-oldest',
      text: '/* writer:outbox.oldest */ SELECT id::text, topic, key, payload FROM outbox ORDER BY id LIMIT $1',
      values: [limit],
    });
    return rows;
  }

  /**
   * Events not yet relayed (the backlog), counted up to `cap` so that a huge backlog costs a
   * bounded scan: the gauge then reads `cap`, which is alarming enough.
   */
  async pending(pool: Pool, cap = 1_000_000): Promise<number> {
    const { rows } = await pool.query<{ pending: string }>({
      name: 'outbox-pending',
      text: '/* writer:outbox.pending */ SELECT count(*) AS pending FROM (SELECT 1 FROM outbox LIMIT $1) AS backlog',
      values: [cap],
    });
    return Number(rows[0].pending);
  }

  async remove(client: PoolClient, ids: string[]): Promise<void> {
    await client.query({
      name: 'outbox-remove',
      text: '/* writer:outbox.remove */ DELETE FROM outbox WHERE id = ANY($1::bigint[])',
      values: [ids],
    });
  }
}
