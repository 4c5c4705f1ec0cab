import { Inject, Injectable } from '@nestjs/common';
import type { NodeHealth } from '@shortener/contracts';
import { probeNode, type NodeState } from '@shortener/db';
import type { ClusterView } from '@shortener/events';
import { counter, gauge } from '@shortener/observability';
import { PinoLogger } from 'nestjs-pino';
import { CLUSTER_VIEW } from './reader.constants';

export const PROBE_INTERVAL_MS = 1000;
/** Consecutive failed probes before a replica leaves the read pool (~2-3 s). */
export const FAILURES_TO_EXCLUDE = 2;
export const MAX_READ_LAG_BYTES = 64n * 1024n * 1024n;
export const MAX_READ_LAG_SECONDS = 10;

const probeFailures = counter('shortener_node_probe_failures_total', 'Failed health probes by node', ['node']);
const lagBytesGauge = gauge('shortener_replica_lag_bytes', 'Replica replay lag behind its primary', ['node']);
const readableGauge = gauge('shortener_node_readable', '1 when the node is in the read pool', ['node']);

interface Observation {
  state: NodeState | null;
  failures: number;
  checkedAt: Date;
}

/**
 * Probes every node once a second. A replica that stops answering, or falls too far
 * behind, leaves this reader's read pool; it comes back on its first good probe.
 */
@Injectable()
export class NodeHealthMonitor {
  private readonly observations = new Map<string, Observation>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    @Inject(CLUSTER_VIEW) private readonly cluster: ClusterView,
    private readonly logger: PinoLogger,
  ) {}

  start(): void {
    const tick = async () => {
      await this.probeAll();
      if (this.timer) this.timer = setTimeout(tick, PROBE_INTERVAL_MS);
    };
    this.timer = setTimeout(tick, 0);
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** True when at least one node of every shard answered its last probe. */
  everyShardReachable(): boolean {
    return this.cluster.topology.shards.every((shard) => [shard.primary, ...shard.replicas].some((name) => (this.observations.get(name)?.failures ?? 1) === 0));
  }

  report(): NodeHealth[] {
    const topology = this.cluster.topology;
    return topology.nodes.map((node) => {
      const seen = this.observations.get(node.name);
      const shard = topology.shards.find((candidate) => candidate.primary === node.name || candidate.replicas.includes(node.name));
      const primaryState = shard ? this.observations.get(shard.primary)?.state : null;
      const state = seen?.state ?? null;
      const healthy = !!seen && seen.failures === 0;
      let lagBytes: number | null = null;
      if (state?.inRecovery && primaryState && !primaryState.inRecovery) {
        const diff = primaryState.walLsn - state.walLsn;
        lagBytes = Number(diff > 0n ? diff : 0n);
      }
      return {
        name: node.name,
        healthy,
        inRecovery: state?.inRecovery ?? null,
        lagBytes: healthy ? lagBytes : null,
        lagSeconds: healthy && state?.inRecovery ? (state.replayDelaySeconds ?? 0) : null,
        checkedAt: (seen?.checkedAt ?? new Date(0)).toISOString(),
      };
    });
  }

  private async probeAll(): Promise<void> {
    const topology = this.cluster.topology;
    await Promise.all(
      topology.nodes.map(async (node) => {
        const previous = this.observations.get(node.name);
        try {
          const state = await probeNode(this.cluster.pools.pool(node.name));
          this.observations.set(node.name, { state, failures: 0, checkedAt: new Date() });
        } catch {
          probeFailures.inc({ node: node.name });
          this.observations.set(node.name, {
            state: previous?.state ?? null,
            failures: (previous?.failures ?? 0) + 1,
            checkedAt: new Date(),
          });
        }
      }),
    );
    for (const shard of topology.shards) {
      this.cluster.pools.setResponsive(shard.primary, (this.observations.get(shard.primary)?.failures ?? 0) === 0);
      const primary = this.observations.get(shard.primary)?.state;
      for (const replica of shard.replicas) {
        const seen = this.observations.get(replica);
        const lag = seen?.state && primary && !primary.inRecovery ? primary.walLsn - seen.state.walLsn : 0n;
        const readable =
          !!seen &&
          seen.failures < FAILURES_TO_EXCLUDE &&
          seen.state?.inRecovery !== false &&
          lag < MAX_READ_LAG_BYTES &&
          (seen.state?.replayDelaySeconds ?? 0) < MAX_READ_LAG_SECONDS;
        if (readable !== this.cluster.pools.isReadable(replica)) {
          this.logger.info({ node: replica, readable }, readable ? 'replica back in read pool' : 'replica left read pool');
        }
        this.cluster.pools.setReadable(replica, readable);
        this.cluster.pools.setStreaming(replica, seen?.state?.walReceiver === 'streaming');
        readableGauge.set({ node: replica }, readable ? 1 : 0);
        lagBytesGauge.set({ node: replica }, Number(lag > 0n ? lag : 0n));
      }
    }
  }
}
