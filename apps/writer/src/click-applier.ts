import { Inject, Injectable } from '@nestjs/common';
import { type ApplyClicksCommand } from '@shortener/contracts';
import { ClickRepository, inTransaction } from '@shortener/db';
import type { ClusterView } from '@shortener/events';
import { CLUSTER_VIEW } from './writer.constants';

/**
 * Clicks a gateway could not hand to Kafka, applied straight to the owning primaries, one
 * transaction per shard. Each code is claimed under the batch id in the statement that adds
 * its count (ClickRepository.applyFallbackBatch): a gateway that retries a batch whose
 * answer it lost, or whose part was refused by a slot's write fence and now belongs to
 * another shard, adds nothing twice and loses nothing.
 */
@Injectable()
export class ClickApplier {
  applied = 0;

  constructor(
    @Inject(CLUSTER_VIEW) private readonly cluster: ClusterView,
    private readonly clicks: ClickRepository,
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
      applied += await inTransaction(pools.primary(shard), (client) =>
        this.clicks.applyFallbackBatch(client, command.batchId, [...codes.keys()], [...codes.values()]),
      );
    }
    this.applied += applied;
    return { applied };
  }
}
