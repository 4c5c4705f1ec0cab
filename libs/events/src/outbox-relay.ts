import { inTransaction, type OutboxRepository, type ShardPools } from '@shortener/db';
import type { EventProducer } from './event-producer';

export interface OutboxRelayOptions {
  intervalMs: number;
  batchSize: number;
  /**
   * A nudged shard is relayed this long after its first nudge, so that the writes of a
   * busy moment leave in one transaction and one produce request rather than one each.
   */
  nudgeDelayMs: number;
}

/**
 * Moves outbox rows of every shard's primary to Kafka, oldest first, deleting them only
 * after Kafka acknowledged them: at least once, in commit order per shard (so per code).
 * While Kafka or a primary is away the rows simply wait.
 */
export class OutboxRelay {
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  private readonly busy = new Set<number>();
  private readonly nudged = new Map<number, NodeJS.Timeout>();
  /** Shards nudged while their relay was running: relayed again when it finishes. */
  private readonly nudgedWhileBusy = new Set<number>();
  relayed = 0;

  constructor(
    private readonly pools: ShardPools,
    private readonly producer: EventProducer,
    private readonly outbox: OutboxRepository,
    private readonly options: OutboxRelayOptions = { intervalMs: 1000, batchSize: 500, nudgeDelayMs: 100 },
    private readonly onError: (shard: number, error: Error) => void = () => undefined,
  ) {}

  start(): void {
    this.running = true;
    this.schedule();
  }

  async stop(): Promise<void> {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    for (const timer of this.nudged.values()) clearTimeout(timer);
    this.nudged.clear();
  }

  /** A shard was written: relay it shortly rather than at the next tick. */
  nudge(shard: number): void {
    if (!this.running || this.nudged.has(shard)) return;
    const timer = setTimeout(() => {
      this.nudged.delete(shard);
      this.relayShard(shard).catch((error: Error) => this.onError(shard, error));
    }, this.options.nudgeDelayMs);
    timer.unref();
    this.nudged.set(shard, timer);
  }

  async relayShard(shard: number): Promise<number> {
    if (this.busy.has(shard)) {
      this.nudgedWhileBusy.add(shard);
      return 0;
    }
    this.busy.add(shard);
    try {
      let total = 0;
      for (;;) {
        const sent = await inTransaction(this.pools.primary(shard), async (client) => {
          if (!(await this.outbox.tryLockRelay(client))) return 0;
          const records = await this.outbox.oldest(client, this.options.batchSize);
          if (records.length === 0) return 0;
          await this.producer.send(records.map(({ topic, key, payload }) => ({ topic, key, value: payload })));
          await this.outbox.remove(
            client,
            records.map((record) => record.id),
          );
          return records.length;
        });
        total += sent;
        this.relayed += sent;
        if (sent < this.options.batchSize) return total;
      }
    } finally {
      this.busy.delete(shard);
      if (this.nudgedWhileBusy.delete(shard)) this.nudge(shard);
    }
  }

  private schedule(): void {
    if (!this.running) return;
    this.timer = setTimeout(async () => {
      const shards = this.pools.topology.shards.map((shard) => shard.id);
      await Promise.all(shards.map((shard) => this.relayShard(shard).catch((error: Error) => this.onError(shard, error))));
      this.schedule();
    }, this.options.intervalMs);
    this.timer.unref();
  }
}
