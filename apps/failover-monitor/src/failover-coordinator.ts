import type { ClusterCommand } from '@shortener/contracts';
import { NodeAdmin, probeNode, type NodeState, type ShardPools } from '@shortener/db';
import {
  chooseReplicaToPromote,
  FailureDetector,
  initialTopology,
  nodeAddress,
  synchronousStandbyNames,
  withPromotedReplica,
  type ShardMembers,
  type Topology,
} from '@shortener/topology';
import { counter, gauge, histogram } from '@shortener/observability';
import type { NodeControl } from './node-control';

export const CHECK_INTERVAL_MS = 1000;
/** Failed checks in a row before a primary is declared dead (about 3-4 s). */
export const PRIMARY_FAILURES_TO_FAILOVER = 3;
/** A standby that is down this many checks and has no process is started again. */
export const REPLICA_FAILURES_TO_RESTART = 3;
/** A reachable standby that has not streamed for this long is rejoined. */
export const STANDBY_STUCK_AFTER_MS = 15_000;
/** How long a rejoined node may take to start streaming before it is rebuilt. */
export const REJOIN_STREAMING_TIMEOUT_MS = 8000;

const failovers = counter('shortener_failovers_total', 'Promotions by kind', ['kind', 'shard']);
const checkFailures = counter('shortener_health_check_failures_total', 'Failed node health checks', ['node']);
const lagGauge = gauge('shortener_monitor_replica_lag_bytes', 'Replica lag seen by the monitor', ['node']);
const leaderGauge = gauge('shortener_monitor_leader', '1 while this monitor leads');
const failoverDuration = histogram('shortener_failover_duration_seconds', 'From first failed check to new topology', [], [1, 2, 3, 4, 5, 6, 8, 10, 15, 30]);

export interface CoordinatorDependencies {
  pools: ShardPools;
  control: NodeControl;
  publish: (topology: Topology) => Promise<void>;
  isLeader: () => boolean;
  log: (level: 'info' | 'warn' | 'error', message: string, extra?: object) => void;
}

/**
 * The sentinel's decisions. Only the leader acts: it checks every node each second,
 * promotes the most advanced replica of a shard whose primary is dead (fencing the old
 * one first), re-points the other replicas, publishes the new topology, and brings the
 * old primary back as a replica. It also handles planned switchovers.
 */
export class FailoverCoordinator {
  private readonly detector = new FailureDetector(PRIMARY_FAILURES_TO_FAILOVER);
  private readonly states = new Map<string, NodeState>();
  private readonly busyShards = new Set<number>();
  private readonly busyNodes = new Set<string>();
  private timer: NodeJS.Timeout | null = null;
  private local: Topology | null = null;
  /** Since when a reachable standby has not been streaming from its shard's primary. */
  private readonly notStreamingSince = new Map<string, number>();
  /** The epoch whose roles the platform shows (pod labels in Kubernetes); -1: none yet. */
  private markedEpoch = -1;

  constructor(private readonly deps: CoordinatorDependencies) {}

  /** The newest topology: what this monitor published, or what it followed. */
  get topology(): Topology {
    const followed = this.deps.pools.topology;
    return this.local && this.local.epoch > followed.epoch ? this.local : followed;
  }

  start(): void {
    const tick = async () => {
      const started = Date.now();
      try {
        await this.checkOnce();
      } catch (error) {
        this.deps.log('error', 'health round failed', { err: (error as Error).message });
      }
      // One round a second, whatever a slow probe cost this round.
      if (this.timer) this.timer = setTimeout(tick, Math.max(0, CHECK_INTERVAL_MS - (Date.now() - started)));
    };
    this.timer = setTimeout(tick, CHECK_INTERVAL_MS);
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** A new leader with no topology on Kafka publishes the first one, from what the nodes say. */
  async publishInitialTopology(shards: { id: number; nodes: { name: string; host: string; port: number }[] }[]): Promise<Topology> {
    const primaries = new Map<number, string>();
    for (const shard of shards) {
      for (const node of shard.nodes) {
        const state = await this.probe(node.name);
        if (state && !state.inRecovery) {
          primaries.set(shard.id, node.name);
          break;
        }
      }
    }
    const topology = initialTopology(shards, this.deps.pools.topology.replicationMode, primaries);
    await this.deps.publish(topology);
    this.adopt(topology);
    return topology;
  }

  async checkOnce(): Promise<void> {
    const leader = this.deps.isLeader();
    leaderGauge.set(leader ? 1 : 0);
    const topology = this.topology;
    await Promise.all(
      topology.nodes.map(async (node) => {
        const state = await this.probe(node.name);
        this.detector.record(node.name, state !== null);
        if (state) this.states.set(node.name, state);
        else checkFailures.inc({ node: node.name });
      }),
    );
    for (const shard of topology.shards) {
      const primary = this.states.get(shard.primary);
      for (const replica of shard.replicas) {
        const state = this.states.get(replica);
        if (state && primary && !primary.inRecovery && state.inRecovery) {
          const lag = primary.walLsn - state.walLsn;
          lagGauge.set({ node: replica }, Number(lag > 0n ? lag : 0n));
        }
      }
    }
    if (!leader) return;
    if (topology.epoch !== this.markedEpoch) void this.markRoles(topology);
    for (const shard of topology.shards) {
      if (this.busyShards.has(shard.id)) continue;
      if (this.detector.isDown(shard.primary)) {
        void this.failover(shard, `primary ${shard.primary} failed ${this.detector.consecutiveFailures(shard.primary)} health checks`);
        continue;
      }
      await this.trackStreaming(shard);
      for (const replica of shard.replicas) this.reconcileReplica(shard, replica);
    }
  }

  private async trackStreaming(shard: ShardMembers): Promise<void> {
    if (this.detector.consecutiveFailures(shard.primary) > 0) return;
    const standbys = await NodeAdmin.streamingStandbys(this.deps.pools.pool(shard.primary)).catch(() => null);
    if (!standbys) return;
    const now = Date.now();
    for (const replica of shard.replicas) {
      const state = standbys.find((standby) => standby.name === replica)?.state;
      if (state === 'streaming' || state === 'catchup' || this.detector.consecutiveFailures(replica) > 0) {
        this.notStreamingSince.delete(replica);
      } else if (!this.notStreamingSince.has(replica)) {
        this.notStreamingSince.set(replica, now);
      }
    }
  }

  /** Planned switchover: writes pause while the primary hands over, nothing acknowledged is lost. */
  async handleCommand(command: ClusterCommand): Promise<void> {
    const topology = this.topology;
    const shard = topology.shards.find((candidate) => candidate.id === command.shard);
    if (!shard || command.epoch !== topology.epoch || this.busyShards.has(shard.id)) {
      this.deps.log('warn', 'switchover ignored', { shard: command.shard, epoch: command.epoch, current: topology.epoch });
      return;
    }
    this.busyShards.add(shard.id);
    const started = Date.now();
    const oldPrimary = shard.primary;
    const pools = this.deps.pools;
    try {
      const candidate = await this.bestReplica(shard);
      if (!candidate) throw new Error('no healthy replica to hand over to');
      await NodeAdmin.setReadOnly(pools.pool(oldPrimary), true);
      const target = await NodeAdmin.currentWalLsn(pools.pool(oldPrimary));
      // A clean stop sends every remaining WAL record to the standbys before it exits.
      await this.deps.control.stop(oldPrimary);
      await this.waitForReplay(candidate, target, 5000);
      await this.promote(shard, candidate, oldPrimary, 'planned switchover', started, 'switchover');
      void this.rejoin(oldPrimary, candidate);
    } catch (error) {
      this.deps.log('error', 'switchover failed', { shard: shard.id, err: (error as Error).message });
      await NodeAdmin.setReadOnly(pools.pool(oldPrimary), false).catch(() => undefined);
      if (!(await this.deps.control.isRunning(oldPrimary))) await this.deps.control.start(oldPrimary).catch(() => undefined);
    } finally {
      this.busyShards.delete(shard.id);
    }
  }

  private async failover(shard: ShardMembers, reason: string): Promise<void> {
    this.busyShards.add(shard.id);
    const failingSince = this.detector.failingSince(shard.primary) ?? Date.now();
    const oldPrimary = shard.primary;
    try {
      const candidate = await this.bestReplica(shard);
      if (!candidate) {
        this.deps.log('error', 'primary down and no replica can be promoted', { shard: shard.id });
        return;
      }
      // Fence first: from here on the old primary can acknowledge nothing.
      await this.deps.control.fence(oldPrimary);
      await this.promote(shard, candidate, oldPrimary, reason, failingSince, 'failover');
      void this.rejoin(oldPrimary, candidate);
    } catch (error) {
      this.deps.log('error', 'failover failed; will retry', { shard: shard.id, err: (error as Error).message });
    } finally {
      this.busyShards.delete(shard.id);
    }
  }

  private async promote(
    shard: ShardMembers,
    candidate: string,
    oldPrimary: string,
    reason: string,
    startedAt: number,
    kind: 'failover' | 'switchover',
  ): Promise<void> {
    const pools = this.deps.pools;
    const topology = this.topology;
    const newPool = pools.pool(candidate);
    if (!(await NodeAdmin.promote(newPool, 10))) throw new Error(`${candidate} did not finish promotion in time`);
    const followers = [...shard.replicas.filter((name) => name !== candidate), oldPrimary];
    for (const follower of followers) await NodeAdmin.ensureReplicationSlot(newPool, follower);
    await NodeAdmin.setSynchronousStandbyNames(newPool, synchronousStandbyNames(topology.replicationMode, followers));
    const address = nodeAddress(topology, candidate);
    await Promise.all(
      shard.replicas
        .filter((name) => name !== candidate)
        .map((replica) =>
          NodeAdmin.followPrimary(pools.pool(replica), address, replica).catch((error: Error) =>
            this.deps.log('warn', 'could not re-point replica; it will be rejoined', { node: replica, err: error.message }),
          ),
        ),
    );
    const next = withPromotedReplica(topology, shard.id, candidate, {
      at: new Date().toISOString(),
      reason,
      durationMs: Date.now() - startedAt,
    });
    await this.publishWithRetry(next);
    this.adopt(next);
    this.detector.forget(oldPrimary);
    failovers.inc({ kind, shard: String(shard.id) });
    failoverDuration.observe((Date.now() - startedAt) / 1000);
    this.deps.log('info', `${kind} done`, { shard: shard.id, from: oldPrimary, to: candidate, epoch: next.epoch, durationMs: Date.now() - startedAt });
  }

  /** Standbys that died are started again; a node that claims to be a primary but is not one is fenced and rejoined. */
  private reconcileReplica(shard: ShardMembers, replica: string): void {
    if (this.busyNodes.has(replica)) return;
    const state = this.states.get(replica);
    const reachable = !this.detector.isDown(replica) && this.detector.consecutiveFailures(replica) === 0;
    if (reachable && state && !state.inRecovery) {
      this.deps.log('warn', 'a replica accepts writes: fencing and rejoining it', { node: replica, shard: shard.id });
      void this.rejoin(replica, shard.primary);
      return;
    }
    const since = this.notStreamingSince.get(replica);
    if (reachable && since !== undefined && Date.now() - since > STANDBY_STUCK_AFTER_MS) {
      this.deps.log('warn', 'a standby does not stream from its primary: rejoining it', { node: replica, shard: shard.id });
      this.notStreamingSince.delete(replica);
      void this.rejoin(replica, shard.primary);
      return;
    }
    if (this.detector.consecutiveFailures(replica) >= REPLICA_FAILURES_TO_RESTART) {
      this.busyNodes.add(replica);
      void this.deps.control
        .isRunning(replica)
        .then(async (running) => {
          if (running) return;
          this.deps.log('info', 'starting a stopped replica', { node: replica });
          await this.deps.control.start(replica).catch(async (error: Error) => {
            this.deps.log('warn', 'replica does not start: rejoining it', { node: replica, err: error.message });
            this.busyNodes.delete(replica);
            await this.rejoin(replica, shard.primary);
          });
        })
        .catch((error: Error) => this.deps.log('warn', 'could not start replica', { node: replica, err: error.message }))
        .finally(() => this.busyNodes.delete(replica));
    }
  }

  private async rejoin(node: string, primary: string): Promise<void> {
    if (this.busyNodes.has(node)) return;
    this.busyNodes.add(node);
    try {
      const address = nodeAddress(this.topology, primary);
      await this.deps.control.rejoin(node, address);
      await this.deps.pools.nodes.reset(node);
      // pg_rewind can report "no rewind required" for a node whose crash recovery wrote
      // past the fork point; such a node never streams, so it is copied anew.
      if (!(await this.streamsWithin(node, primary, REJOIN_STREAMING_TIMEOUT_MS))) {
        this.deps.log('warn', 'rejoined node does not stream; taking a new base backup', { node });
        await this.deps.control.rejoin(node, address, { fromScratch: true });
        await this.deps.pools.nodes.reset(node);
      }
    } catch (error) {
      this.deps.log('error', 'rejoin failed; will retry', { node, err: (error as Error).message });
    } finally {
      this.busyNodes.delete(node);
    }
  }

  /** The primary's own view: a standby stuck on a dead timeline shows as 'startup', never 'streaming'. */
  private async streamsWithin(node: string, primary: string, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const standbys = await NodeAdmin.streamingStandbys(this.deps.pools.pool(primary)).catch(() => []);
      if (standbys.some((standby) => standby.name === node && standby.state === 'streaming')) return true;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    return false;
  }

  private async bestReplica(shard: ShardMembers): Promise<string | null> {
    const probes = await Promise.all(shard.replicas.map((name) => this.probe(name)));
    return chooseReplicaToPromote(
      shard.replicas.map((name, priority) => ({
        name,
        priority,
        reachable: probes[priority] !== null && probes[priority]!.inRecovery,
        receivedLsn: probes[priority]?.receivedLsn ?? probes[priority]?.walLsn ?? null,
      })),
    );
  }

  private async waitForReplay(node: string, target: bigint, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const state = await this.probe(node);
      if (state && (state.receivedLsn ?? state.walLsn) >= target) return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`${node} did not receive the primary's last WAL in time`);
  }

  /** Once per epoch, by the leader; a failure is tried again at the next round. */
  private async markRoles(topology: Topology): Promise<void> {
    this.markedEpoch = topology.epoch;
    try {
      await this.deps.control.markRoles(topology.shards);
    } catch (error) {
      if (this.markedEpoch === topology.epoch) this.markedEpoch = -1;
      this.deps.log('warn', 'could not mark node roles', { epoch: topology.epoch, err: (error as Error).message });
    }
  }

  private async publishWithRetry(topology: Topology): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.deps.publish(topology);
        return;
      } catch (error) {
        if (attempt >= 5 || !this.deps.isLeader()) throw error;
        await new Promise((resolve) => setTimeout(resolve, 500 * attempt));
      }
    }
  }

  private adopt(topology: Topology): void {
    this.local = topology;
    this.deps.pools.apply(topology);
  }

  private async probe(name: string): Promise<NodeState | null> {
    try {
      return await probeNode(this.deps.pools.pool(name));
    } catch {
      return null;
    }
  }
}
