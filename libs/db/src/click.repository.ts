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
  async apply(client: PoolClient, partition: number, lastOffset: bigint, codes: string[], counts: number[]): Promise<void> {
    await this.add(client, codes, counts);
    await client.query({
      name: 'clicks-offset-save',
      text: `/* writer:clicks.offset */ INSERT INTO click_offsets (kafka_partition, last_offset) VALUES ($1, $2)
             ON CONFLICT (kafka_partition) DO UPDATE SET last_offset = greatest(click_offsets.last_offset, excluded.last_offset)`,
      values: [partition, lastOffset.toString()],
    });
  }
}
