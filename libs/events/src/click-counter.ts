import type { Consumer, Kafka } from 'kafkajs';
import { clickEventSchema, Topics } from '@shortener/contracts';
import { inTransaction, type ClickRepository, type ShardPools } from '@shortener/db';
import { slotOf } from '@shortener/shard-router';
import { SupervisedConsumer } from './supervised-consumer';

export interface ClickMessage {
  offset: string;
  value: Buffer | null;
}

/**
 * Applies url.clicks to the owning primaries. Per shard and partition the highest
 * applied offset is stored in the same transaction as the counts, so a batch that
 * Kafka redelivers (after a crash or a rebalance) is skipped: counts are exact.
 */
export class ClickCounter {
  private supervisor: SupervisedConsumer | null = null;
  applied = 0;

  constructor(
    private readonly kafka: Kafka,
    private readonly pools: ShardPools,
    private readonly clicks: ClickRepository,
    private readonly onError: (error: Error) => void = () => undefined,
  ) {}

  async start(): Promise<void> {
    this.supervisor ??= new SupervisedConsumer(
      this.kafka,
      () => ({
        groupId: 'click-counter',
        sessionTimeout: 10_000,
        heartbeatInterval: 1000,
        // Batches of up to a second: one transaction per shard applies them, and
        // counts may lag by seconds anyway.
        minBytes: 256 * 1024,
        maxWaitTimeInMs: 1000,
        retry: { retries: 5, initialRetryTime: 300, maxRetryTime: 3000 },
      }),
      (consumer) => this.consume(consumer),
      this.onError,
    );
    await this.supervisor.run();
  }

  async stop(): Promise<void> {
    await this.supervisor?.stop();
  }

  private async consume(consumer: Consumer): Promise<void> {
    await consumer.subscribe({ topic: Topics.urlClicks, fromBeginning: true });
    await consumer.run({
      autoCommit: true,
      eachBatchAutoResolve: false,
      eachBatch: async ({ batch, resolveOffset, heartbeat }) => {
        await this.applyBatch(batch.partition, batch.messages, heartbeat);
        const last = batch.messages.at(-1);
        if (last) resolveOffset(last.offset);
      },
    });
  }

  /**
   * Applies one batch of a partition: per shard, one transaction adds the counts and
   * stores the batch's last offset, skipping what an earlier delivery already applied.
   */
  async applyBatch(partition: number, messages: ClickMessage[], heartbeat: () => Promise<void> = async () => undefined): Promise<void> {
    const perShard = new Map<number, { codes: Map<string, number>; lastOffset: bigint; firstOffset: bigint }>();
    for (const message of messages) {
      const offset = BigInt(message.offset);
      const parsed = clickEventSchema.safeParse(safeJson(message.value?.toString()));
      if (!parsed.success) continue;
      const shard = this.pools.shardOf(parsed.data.code);
      const entry = perShard.get(shard) ?? { codes: new Map(), lastOffset: offset, firstOffset: offset };
      entry.codes.set(parsed.data.code, (entry.codes.get(parsed.data.code) ?? 0) + parsed.data.count);
      entry.lastOffset = offset;
      perShard.set(shard, entry);
    }
    for (const [shard, entry] of perShard) {
      await inTransaction(this.pools.primary(shard), async (client) => {
        const slots = [...new Set([...entry.codes.keys()].map(slotOf))];
        const applied = await this.clicks.appliedOffsets(client, partition, slots);
        if ([...applied.values()].every((offset) => offset >= entry.lastOffset)) return;
        if ([...applied.values()].some((offset) => offset >= entry.firstOffset)) {
          // Part of this batch was applied before (here, or on the shard a slot moved from): count only what came after it.
          entry.codes = this.recount(messages, new Set(entry.codes.keys()), applied);
        }
        await this.clicks.apply(client, partition, entry.lastOffset, [...entry.codes.keys()], [...entry.codes.values()], slots);
        this.applied += [...entry.codes.values()].reduce((a, b) => a + b, 0);
      });
      await heartbeat();
    }
  }

  /**
   * The part's own codes only, as routed when the batch was split: asking the topology again
   * here would, after a switch published meanwhile, take in a moved slot's codes that another
   * shard's part has already counted (and whose applied offset `applied` does not hold).
   */
  private recount(messages: ClickMessage[], partCodes: ReadonlySet<string>, applied: Map<number, bigint>) {
    const codes = new Map<string, number>();
    for (const message of messages) {
      const parsed = clickEventSchema.safeParse(safeJson(message.value?.toString()));
      if (!parsed.success || !partCodes.has(parsed.data.code)) continue;
      if (BigInt(message.offset) <= (applied.get(slotOf(parsed.data.code)) ?? -1n)) continue;
      codes.set(parsed.data.code, (codes.get(parsed.data.code) ?? 0) + parsed.data.count);
    }
    return codes;
  }
}

function safeJson(text: string | undefined): unknown {
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
