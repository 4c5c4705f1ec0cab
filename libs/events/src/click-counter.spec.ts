import { ClickRepository, type ShardPools } from '@shortener/db';
import type { Kafka } from 'kafkajs';
import type { Pool, PoolClient } from 'pg';
import { slotOf } from '@shortener/shard-router';
import { ClickCounter, type ClickMessage } from './click-counter';

/** One shard: click counts and per-partition offsets, changed only when a transaction commits. */
class InMemoryShard {
  clicks = new Map<string, number>();
  offsets = new Map<number, bigint>();
  /** click_slot_offsets: `${partition}:${slot}` -> offset, for slots that moved here. */
  slotOffsets = new Map<string, bigint>();
  /** Slots the guard refuses (fenced for a switch, or moved away). */
  refusedSlots = new Set<number>();
  failNextCommit = false;

  readonly pool = { connect: async () => new ShardTransaction(this) as unknown as PoolClient } as unknown as Pool;
}

class ShardTransaction {
  clicks = new Map<string, number>();
  offsets = new Map<number, bigint>();
  slotOffsets = new Map<string, bigint>();

  constructor(readonly shard: InMemoryShard) {}

  async query(text: string): Promise<void> {
    if (text !== 'COMMIT') return;
    if (this.shard.failNextCommit) {
      this.shard.failNextCommit = false;
      throw Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' });
    }
    for (const [code, n] of this.clicks) this.shard.clicks.set(code, (this.shard.clicks.get(code) ?? 0) + n);
    for (const [partition, offset] of this.offsets) this.shard.offsets.set(partition, offset);
    for (const [key, offset] of this.slotOffsets) this.shard.slotOffsets.set(key, offset);
  }

  on = (): void => undefined;
  off = (): void => undefined;
  release = (): void => undefined;
}

class InMemoryClicks extends ClickRepository {
  override async lastAppliedOffset(client: PoolClient, partition: number): Promise<bigint> {
    const transaction = client as unknown as ShardTransaction;
    return transaction.offsets.get(partition) ?? transaction.shard.offsets.get(partition) ?? -1n;
  }

  override async appliedOffsets(client: PoolClient, partition: number, slots: number[]): Promise<Map<number, bigint>> {
    const transaction = client as unknown as ShardTransaction;
    const base = await this.lastAppliedOffset(client, partition);
    return new Map(slots.map((slot) => [slot, transaction.shard.slotOffsets.get(`${partition}:${slot}`) ?? base]));
  }

  override async add(client: PoolClient, codes: string[], counts: number[]): Promise<void> {
    const transaction = client as unknown as ShardTransaction;
    const refused = codes.find((code) => transaction.shard.refusedSlots.has(slotOf(code)));
    if (refused) throw Object.assign(new Error(`slot ${slotOf(refused)} is being switched to another shard`), { code: 'SR001' });
    codes.forEach((code, i) => transaction.clicks.set(code, (transaction.clicks.get(code) ?? 0) + counts[i]));
  }

  override async apply(client: PoolClient, partition: number, lastOffset: bigint, codes: string[], counts: number[], slots: number[] = []): Promise<void> {
    await this.add(client, codes, counts);
    const transaction = client as unknown as ShardTransaction;
    transaction.offsets.set(partition, lastOffset);
    for (const slot of slots) {
      const key = `${partition}:${slot}`;
      if (transaction.shard.slotOffsets.has(key)) transaction.slotOffsets.set(key, lastOffset);
    }
  }
}

/** Codes starting with 'a' live on shard 0, the others on shard 1. */
function counterOver(shards: InMemoryShard[]): ClickCounter {
  const pools = {
    shardOf: (code: string) => (code.startsWith('a') ? 0 : 1),
    primary: (shard: number) => shards[shard].pool,
  } as unknown as ShardPools;
  return new ClickCounter({} as Kafka, pools, new InMemoryClicks());
}

function click(offset: number, code: string, count = 1): ClickMessage {
  return { offset: String(offset), value: Buffer.from(JSON.stringify({ type: 'url.clicked', version: 1, code, count, at: '2030-01-01T00:00:00Z' })) };
}

/**
 * Two in-memory shards: 'a' codes on shard 0, the others on shard 1, until `move()` switches
 * slot(amoved) to shard 1 (the topology the counter asks changes under it, as at a switch).
 */
function twoShardsWithAMovingSlot() {
  const shards = [new InMemoryShard(), new InMemoryShard()];
  const movedSlot = slotOf('amoved');
  let moved = false;
  const pools = {
    shardOf: (code: string) => (moved && slotOf(code) === movedSlot ? 1 : code.startsWith('a') ? 0 : 1),
    primary: (shard: number) => shards[shard].pool,
  } as unknown as ShardPools;
  const counter = new ClickCounter({} as Kafka, pools, new InMemoryClicks());
  return { shards, movedSlot, counter, move: () => void (moved = true), isMoved: () => moved };
}

describe('ClickCounter', () => {
  it('adds the clicks of a batch to the shard that owns each code, summed per code', async () => {
    const shards = [new InMemoryShard(), new InMemoryShard()];
    await counterOver(shards).applyBatch(0, [click(0, 'abc', 2), click(1, 'bcd'), click(2, 'abc', 3)]);

    expect(shards[0].clicks).toEqual(new Map([['abc', 5]]));
    expect(shards[1].clicks).toEqual(new Map([['bcd', 1]]));
    expect(shards[0].offsets.get(0)).toBe(2n);
    expect(shards[1].offsets.get(0)).toBe(1n);
  });

  it('counts a batch that Kafka delivers again only once', async () => {
    const shards = [new InMemoryShard(), new InMemoryShard()];
    const counter = counterOver(shards);
    const batch = [click(10, 'abc'), click(11, 'bcd', 4)];
    await counter.applyBatch(3, batch);
    await counter.applyBatch(3, batch);

    expect(shards[0].clicks.get('abc')).toBe(1);
    expect(shards[1].clicks.get('bcd')).toBe(4);
  });

  it('counts only the new part of a batch that overlaps one already applied', async () => {
    const shards = [new InMemoryShard(), new InMemoryShard()];
    const counter = counterOver(shards);
    await counter.applyBatch(0, [click(0, 'abc'), click(1, 'abc')]);
    // After a rebalance the broker hands out offsets 1..3: offset 1 was counted already.
    await counter.applyBatch(0, [click(1, 'abc'), click(2, 'abc'), click(3, 'abd', 2)]);

    expect(shards[0].clicks).toEqual(
      new Map([
        ['abc', 3],
        ['abd', 2],
      ]),
    );
  });

  it('keeps the offsets of each partition apart', async () => {
    const shards = [new InMemoryShard(), new InMemoryShard()];
    const counter = counterOver(shards);
    await counter.applyBatch(0, [click(5, 'abc')]);
    await counter.applyBatch(1, [click(5, 'abc')]);

    expect(shards[0].clicks.get('abc')).toBe(2);
  });

  it('applies nothing of a shard whose commit failed, and counts it exactly once when Kafka redelivers', async () => {
    const shards = [new InMemoryShard(), new InMemoryShard()];
    const counter = counterOver(shards);
    const batch = [click(0, 'abc'), click(1, 'bcd'), click(2, 'bcd')];
    shards[1].failNextCommit = true;

    await expect(counter.applyBatch(0, batch)).rejects.toThrow('administrator command');
    expect(shards[0].clicks.get('abc')).toBe(1);
    expect(shards[1].clicks.size).toBe(0);

    await counter.applyBatch(0, batch);
    expect(shards[0].clicks.get('abc')).toBe(1);
    expect(shards[1].clicks.get('bcd')).toBe(2);
  });

  it('skips records that are not click events, and still moves the offset past them', async () => {
    const shards = [new InMemoryShard(), new InMemoryShard()];
    const garbage: ClickMessage[] = [
      { offset: '1', value: Buffer.from('not json') },
      { offset: '2', value: null },
      { offset: '3', value: Buffer.from(JSON.stringify({ type: 'url.clicked', version: 1, code: 'abc', count: 0, at: 'x' })) },
    ];
    await counterOver(shards).applyBatch(0, [click(0, 'abc'), ...garbage, click(4, 'abc')]);

    expect(shards[0].clicks.get('abc')).toBe(2);
    expect(shards[0].offsets.get(0)).toBe(4n);
  });

  it('keeps counts exact when a slot moves to another shard while one of its batches is refused by the fence', async () => {
    const { shards, movedSlot, counter, move } = twoShardsWithAMovingSlot();

    await counter.applyBatch(0, [click(0, 'amoved'), click(1, 'bcd')]);
    // The batch 2..3 reaches shard 0 while the slot is fenced there: shard 1's part commits, shard 0's is refused.
    shards[0].refusedSlots.add(movedSlot);
    const fenced = [click(2, 'bcd'), click(3, 'amoved', 5)];
    await expect(counter.applyBatch(0, fenced)).rejects.toMatchObject({ code: 'SR001' });
    // The switch: the row (with its clicks) and the slot's applied offset (1, what shard 0 had applied) move to shard 1.
    shards[1].clicks.set('amoved', shards[0].clicks.get('amoved')!);
    shards[1].slotOffsets.set(`0:${movedSlot}`, 1n);
    move();

    // Kafka delivers the refused batch again: shard 1 had applied 2..3 for its own codes, but not for the moved slot.
    await counter.applyBatch(0, fenced);
    await counter.applyBatch(0, fenced);
    expect(shards[1].clicks.get('amoved')).toBe(6);
    expect(shards[1].clicks.get('bcd')).toBe(2);
    expect(shards[1].slotOffsets.get(`0:${movedSlot}`)).toBe(3n);
  });

  it("counts a moved code once when the switch is published while a batch is being applied, between two shards' parts", async () => {
    const { shards, movedSlot, counter, move, isMoved } = twoShardsWithAMovingSlot();
    // Shard 0 has applied up to offset 1; shard 1 up to 3 (an earlier delivery cut the batch elsewhere).
    shards[0].offsets.set(0, 1n);
    shards[1].offsets.set(0, 3n);
    shards[1].clicks.set('bcd', 1);
    // Shard 0's part commits (the slot was still capturing there), then the switch moves the
    // row with its clicks and the slot's applied offset to shard 1 before shard 1's part runs.
    const commit = shards[0].pool.connect;
    (shards[0].pool as unknown as { connect: () => Promise<PoolClient> }).connect = async () => {
      const client = await commit();
      const query = client.query.bind(client) as (text: string) => Promise<void>;
      return Object.assign(client, {
        query: async (text: string) => {
          await query(text);
          if (text !== 'COMMIT') return;
          shards[1].clicks.set('amoved', shards[0].clicks.get('amoved')!);
          shards[1].slotOffsets.set(`0:${movedSlot}`, shards[0].offsets.get(0)!);
          move();
        },
      }) as unknown as PoolClient;
    };

    await counter.applyBatch(0, [click(2, 'amoved', 5), click(3, 'bcd'), click(4, 'bcd')]);
    expect(isMoved()).toBe(true);
    expect(shards[1].clicks.get('amoved')).toBe(5);
    expect(shards[1].clicks.get('bcd')).toBe(2);
  });
});
