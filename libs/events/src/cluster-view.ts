import type { Kafka } from 'kafkajs';
import { NodePools, ShardPools, type DatabaseCredentials, type PoolSizing } from '@shortener/db';
import { initialTopology, type NodeAddress, type ReplicationMode, type Topology } from '@shortener/topology';
import { TopologyFollower } from './topology-channel';

export interface ClusterViewOptions {
  service: string;
  shards: { id: number; nodes: NodeAddress[] }[];
  replicationMode: ReplicationMode;
  credentials: DatabaseCredentials;
  sizing: PoolSizing;
  onTopology?: (topology: Topology, demoted: string[]) => void;
  onError?: (error: Error) => void;
}

/**
 * A service's view of the cluster: the pools of every node, switched to each newer
 * topology published on Kafka. Until the first document arrives it assumes the
 * configured first node of each shard is its primary, under epoch 0, so that any
 * published document (epoch >= 1) replaces the guess.
 */
export class ClusterView {
  readonly pools: ShardPools;
  private readonly follower: TopologyFollower;
  private followed = false;

  constructor(
    kafka: Kafka,
    private readonly options: ClusterViewOptions,
  ) {
    const provisional = { ...initialTopology(options.shards, options.replicationMode), epoch: 0 };
    const nodes = new NodePools(
      options.shards.flatMap((shard) => shard.nodes),
      options.credentials,
      options.sizing,
      (node, error) => options.onError?.(Object.assign(error, { node })),
    );
    this.pools = new ShardPools(nodes, provisional);
    this.follower = new TopologyFollower(
      kafka,
      options.service,
      (topology) => {
        this.followed = true;
        const demoted = this.pools.apply(topology);
        options.onTopology?.(topology, demoted);
      },
      options.onError,
    );
  }

  /** True once a published topology has been applied (not just the configured guess). */
  get hasPublishedTopology(): boolean {
    return this.followed;
  }

  get topology(): Topology {
    return this.pools.topology;
  }

  /** Starts following in the background: Kafka being down must not stop the service. */
  start(): void {
    void this.follower.start();
  }

  async stop(): Promise<void> {
    await this.follower.stop();
    await this.pools.close();
  }
}
