import { createHash } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { type ApplyClicksCommand } from '@shortener/contracts';
import { ClickRepository, IdempotencyRepository, inTransaction } from '@shortener/db';
import type { ClusterView } from '@shortener/events';
import { CLUSTER_VIEW } from './writer.constants';

/**
 * Clicks a gateway could not hand to Kafka, applied straight to the owning primaries.
 * Each shard's part of a batch is claimed under the batch id in the same transaction as
 * the counts (the idempotency table, so it expires with the other keys after 24 h): a
 * gateway that retries a batch whose answer it lost adds nothing twice.
 */
@Injectable()
export class ClickApplier {
  applied = 0;

  constructor(
    @Inject(CLUSTER_VIEW) private readonly cluster: ClusterView,
    private readonly clicks: ClickRepository,
    private readonly idempotency: IdempotencyRepository,
  ) {}

  async apply(command: ApplyClicksCommand): Promise<{ applied: number }> {
    const pools = this.cluster.pools;
    const perShard = new Map<number, Map<string, number>>();
    for (const [code, count] of command.counts) {
      const shard = pools.shardOf(code);
      let codes = perShard.get(shard);
      if (!codes) perShard.set(shard, (codes = new Map()));
      codes.set(code, (codes.get(code) ?? 0) + count);
    }
    let applied = 0;
    // One shard after the other: a failure leaves the shards done so far claimed, and the retry skips them.
    for (const [shard, codes] of perShard) {
      const key = `clicks:${command.batchId}:${shard}`;
      const total = [...codes.values()].reduce((sum, n) => sum + n, 0);
      const done = await inTransaction(pools.primary(shard), async (client) => {
        if (!(await this.idempotency.claim(client, key, createHash('sha256').update(key).digest()))) return false;
        await this.clicks.add(client, [...codes.keys()], [...codes.values()]);
        await this.idempotency.complete(client, key, { clicks: total });
        return true;
      });
      if (done) applied += total;
    }
    this.applied += applied;
    return { applied };
  }
}
