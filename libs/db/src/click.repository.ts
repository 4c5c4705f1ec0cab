import type { PoolClient } from 'pg';

export class ClickRepository {
  async lastAppliedOffset(client: PoolClient, partition: number): Promise<bigint> {
    const { rows } = await client.query<{ last_offset: string }>({
      name: 'clicks-offset',
      text: '/* writer:clicks.offset */ SELECT last_offset FROM click_offsets WHERE kafka_partition = $1 FOR UPDATE',
      values: [partition],
    });
    return rows.length ? BigInt(rows[0].last_offset) : -1n;
  }

  /**
   * The highest offset of `partition` applied on this shard, per slot asked for: a slot
   * that moved here carries the offset its old owner had applied (click_slot_offsets,
   * written by the slot mover); any other slot has applied up to the shard's own
   * click_offsets row. Locks that row, so the batches of a partition apply one at a time.
   */
  async appliedOffsets(client: PoolClient, partition: number, slots: number[]): Promise<Map<number, bigint>> {
    const base = await this.lastAppliedOffset(client, partition);
    const { rows } = await client.query<{ slot: number; last_offset: string }>({
      name: 'clicks-slot-offsets',
      text: '/* writer:clicks.offset */ SELECT slot, last_offset FROM click_slot_offsets WHERE kafka_partition = $1 AND slot = ANY($2::smallint[])',
      values: [partition, slots],
    });
    const applied = new Map(slots.map((slot) => [slot, base]));
    for (const row of rows) applied.set(row.slot, BigInt(row.last_offset));
    return applied;
  }

  /**
   * A click batch of the gateway's Kafka-down fallback, on this shard: each code is claimed
   * under the batch id (click_fallback_claims, migration 7) and counted only if it was not
   * claimed here before, in one statement, so a batch retried with its id adds nothing
   * twice, also when codes changed shard between the attempts. A code in a slot under a
   * write fence fails the statement, claims included. Claims older than a day go: a
   * gateway settles its batch long before. Returns the clicks added (codes without a row add none).
   */
  async applyFallbackBatch(client: PoolClient, batchId: string, codes: string[], counts: number[]): Promise<number> {
    if (codes.length === 0) return 0;
    await client.query({
      name: 'clicks-fallback-expire',
      text: "/* writer:clicks.fallback */ DELETE FROM click_fallback_claims WHERE claimed_at < now() - interval '24 hours'",
    });
    const { rows } = await client.query<{ n: string }>({
      name: 'clicks-fallback-apply',
      text: `/* writer:clicks.fallback */ WITH batch AS (SELECT unnest($2::text[]) AS code, unnest($3::bigint[]) AS n),
             claimed AS (INSERT INTO click_fallback_claims (batch_id, code) SELECT $1, code FROM batch ON CONFLICT DO NOTHING RETURNING code)
             UPDATE urls SET clicks = urls.clicks + batch.n FROM batch JOIN claimed USING (code) WHERE urls.code = batch.code RETURNING batch.n`,
      values: [batchId, codes, counts],
    });
    return rows.reduce((sum, row) => sum + Number(row.n), 0);
  }

  /** Adds counts to links (codes distinct); a code without a row is skipped. */
  async add(client: PoolClient, codes: string[], counts: number[]): Promise<void> {
    if (codes.length === 0) return;
    await client.query({
      name: 'clicks-apply',
      text: `/* writer:clicks.apply */ UPDATE urls SET clicks = urls.clicks + c.n
             FROM (SELECT unnest($1::text[]) AS code, unnest($2::bigint[]) AS n) c WHERE urls.code = c.code`,
      values: [codes, counts],
    });
  }

  /** Adds counts and records the offset in one transaction: a redelivery finds it applied. */
  async apply(client: PoolClient, partition: number, lastOffset: bigint, codes: string[], counts: number[], slots: number[] = []): Promise<void> {
    await this.add(client, codes, counts);
    if (slots.length > 0) {
      await client.query({
        name: 'clicks-slot-offsets-save',
        text: `/* writer:clicks.offset */ UPDATE click_slot_offsets SET last_offset = greatest(last_offset, $3)
               WHERE kafka_partition = $1 AND slot = ANY($2::smallint[])`,
        values: [partition, slots, lastOffset.toString()],
      });
    }
    await client.query({
      name: 'clicks-offset-save',
      text: `/* writer:clicks.offset */ INSERT INTO click_offsets (kafka_partition, last_offset) VALUES ($1, $2)
             ON CONFLICT (kafka_partition) DO UPDATE SET last_offset = greatest(click_offsets.last_offset, excluded.last_offset)`,
      values: [partition, lastOffset.toString()],
    });
  }
}
