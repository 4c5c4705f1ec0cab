import type { Pool } from 'pg';
import { ringOf, type Topology } from '@shortener/topology';
import type { ShardRing } from '@shortener/shard-router';
import { NodePools } from './node-pools';

/**
 * Pools by shard and role, switched by the topology's epoch. A primary that loses its
 * role has its connections dropped at once, so nothing keeps writing to it.
 */
export class ShardPools {
  private current: Topology;
  private ring: ShardRing;
  private readonly excluded = new Set<string>();
  private readonly notStreaming = new Set<string>();
  private readonly unresponsive = new Set<string>();

  constructor(
    readonly nodes: NodePools,
    topology: Topology,
  ) {
    this.current = topology;
    this.ring = ringOf(topology);
  }

  get topology(): Topology {
    return this.current;
  }

  get epoch(): number {
    return this.current.epoch;
  }

  shardOf(code: string): number {
    return this.ring.shardOf(code);
  }

  /** Applies a newer topology; returns the nodes that stopped being primaries. */
  apply(next: Topology): string[] {
    if (next.epoch <= this.current.epoch) return [];
    const demoted = this.current.shards
      .filter((shard) => next.shards.find((candidate) => candidate.id === shard.id)?.primary !== shard.primary)
      .map((shard) => shard.primary);
    this.current = next;
    this.ring = ringOf(next);
    this.nodes.learn(next.nodes);
    for (const name of demoted) void this.nodes.reset(name);
    return demoted;
  }

  /** Shards by id: after a drain the ids have gaps, so a shard is never found by its position. */
  private members(shard: number) {
    return this.current.shards.find((members) => members.id === shard);
  }

  primaryName(shard: number): string {
    const members = this.members(shard);
    if (!members) throw new RangeError(`no shard ${shard}`);
    return members.primary;
  }

  primary(shard: number): Pool {
    return this.nodes.pool(this.primaryName(shard));
  }

  /** Leaves a node out of the read pool (failed health checks or too much lag) or takes it back. */
  setReadable(name: string, readable: boolean): void {
    if (readable) this.excluded.delete(name);
    else this.excluded.add(name);
  }

  isReadable(name: string): boolean {
    return !this.excluded.has(name);
  }

  /**
   * Whether a readable replica streams from its primary now. One that does not (its primary
   * is gone, or it was just rewound and restarted after a failover) may be far behind: it is
   * read only when neither a streaming replica nor the primary answers.
   */
  setStreaming(name: string, streaming: boolean): void {
    if (streaming) this.notStreaming.delete(name);
    else this.notStreaming.add(name);
  }

  isStreaming(name: string): boolean {
    return !this.notStreaming.has(name);
  }

  /**
   * Whether the node answered its last health probe. A primary that did not (frozen, cut
   * off, failing over) would hold a read for the whole statement timeout, so readers ask
   * it after the replicas that do answer, not before.
   */
  setResponsive(name: string, responsive: boolean): void {
    if (responsive) this.unresponsive.delete(name);
    else this.unresponsive.add(name);
  }

  isResponsive(name: string): boolean {
    return !this.unresponsive.has(name);
  }

  /** Healthy replicas of the shard, in a random order: the order to try them in. */
  readCandidates(shard: number): string[] {
    const members = this.members(shard);
    if (!members) throw new RangeError(`no shard ${shard}`);
    const replicas = members.replicas.filter((name) => !this.excluded.has(name));
    for (let i = replicas.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [replicas[i], replicas[j]] = [replicas[j], replicas[i]];
    }
    return replicas;
  }

  pool(name: string): Pool {
    return this.nodes.pool(name);
  }

  async close(): Promise<void> {
    await this.nodes.close();
  }
}
