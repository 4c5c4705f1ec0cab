import type { SwitchoverCommand } from '@shortener/contracts';
import { NodeAdmin, probeNode, SlotMoveRepository, type NodeState, type ShardPools } from '@shortener/db';
import {
  FailureDetector,
  initialTopology,
  nodeAddress,
  primaryServes,
  runFailover,
  runSwitchover,
  synchronousStandbyNames,
  withTerm,
  type FailoverOutcome,
  type NodeView,
  type ShardMembers,
  type SwitchoverPorts,
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
const nodeUp = gauge('shortener_node_up', '1 when the node answers its health check (leading monitor only)', ['shard', 'node', 'role']);
const epochGauge = gauge('shortener_topology_epoch', 'Epoch of the topology this monitor holds');
const fenceFailures = counter('shortener_fence_failures_total', 'Fences of an old primary that failed', ['node']);
const heldReadOnly = counter('shortener_failover_held_total', 'Failover rounds that left a shard without a writable primary rather than risk two', ['shard']);
const failoverDuration = histogram('shortener_failover_duration_seconds', 'From first failed check to new topology', [], [1, 2, 3, 4, 5, 6, 8, 10, 15, 30]);

export interface CoordinatorDependencies {
  pools: ShardPools;
  control: NodeControl;
  publish: (topology: Topology) => Promise<void>;
  isLeader: () => boolean;
  /** The leader term of this monitor's publisher (its fencing token); null while it holds none. */
  term: () => number | null;
  log: (level: 'info' | 'warn' | 'error', message: string, extra?: object) => void;
}

/**
 * The monitor's effects around the decisions of libs/topology (`runFailover`,
 * `runSwitchover`, `decideFailover`): only the leader acts. It checks every node each
 * second; a shard whose primary is down is failed over within the round (awaited, never
 * fire-and-forget, so a round never starts a second attempt beside a running one); the
 * other replicas are re-pointed, the new topology is published under this leader's term,
 * and the old primary is brought back as a replica. It also runs planned switchovers.
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
  private readonly ports: SwitchoverPorts;
  private publishing: Promise<unknown> = Promise.resolve();

  constructor(private readonly deps: CoordinatorDependencies) {
    this.ports = this.makePorts();
  }

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

  /**
   * Topology changes of this leader (failovers, switchovers, slot moves) are published one
   * at a time, each a compare-and-set on the epoch it was derived from: a document that is
   * no longer the next epoch is refused (the failover round that made it resumes on the
   * next round), so two changes can never both claim one epoch and one of them vanish.
   */
  private publishInTurn(topology: Topology, send: (topology: Topology) => Promise<void> = (doc) => this.deps.publish(doc)): Promise<void> {
    const turn = this.publishing.then(async () => {
      const current = this.topology;
      if (topology.epoch !== current.epoch + 1) throw new Error(`stale topology change: epoch ${topology.epoch} offered after ${current.epoch}`);
      await send(topology);
      this.adopt(topology);
    });
    this.publishing = turn.catch(() => undefined);
    return turn;
  }

  /**
   * A change derived from the newest topology at its turn (the resharding operation's
   * steps), published under this leader's term; `send` may publish more with it in the
   * same Kafka transaction (the operation's record at a slot switch).
   */
  async publishChange(change: (current: Topology) => Topology, send?: (topology: Topology) => Promise<void>): Promise<Topology> {
    let published: Topology | null = null;
    const turn = this.publishing.then(async () => {
      const term = this.deps.term();
      if (term === null || !this.deps.isLeader()) throw new Error('not leading: topology change not published');
      const current = this.topology;
      const next = withTerm({ ...change(current), epoch: current.epoch + 1 }, term);
      await (send ?? ((doc: Topology) => this.deps.publish(doc)))(next);
      this.adopt(next);
      published = next;
    });
    this.publishing = turn.catch(() => undefined);
    await turn;
    return published!;
  }

  /** The newest slot map the primaries recorded at a resharding switch (migration 6), if any. */
  private async savedSlotMap(primaries: string[]): Promise<{ epoch: number; slots: number[] } | null> {
    const repository = new SlotMoveRepository();
    const maps = await Promise.all(primaries.map((name) => repository.savedSlotMap(this.deps.pools.pool(name))));
    return maps.reduce<{ epoch: number; slots: number[] } | null>((newest, map) => (map && (!newest || map.epoch > newest.epoch) ? map : newest), null);
  }

  /** A new leader with no topology on Kafka publishes the first one, from what the nodes say. */
  async publishInitialTopology(shards: { id: number; nodes: { name: string; host: string; port: number }[] }[]): Promise<Topology> {
    const term = this.deps.term();
    if (term === null || !this.deps.isLeader()) throw new Error('not leading: no first topology published');
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
    let topology = withTerm(initialTopology(shards, this.deps.pools.topology.replicationMode, primaries), term);
    // A stack restored from backups after slots moved: its databases say which map they were written under.
    const saved = await this.savedSlotMap([...primaries.values()]);
    const ids = new Set(shards.map((shard) => shard.id));
    if (saved && saved.slots.every((owner) => ids.has(owner))) {
      topology = { ...topology, ring: { ...topology.ring, slots: saved.slots } };
      this.deps.log('info', 'first topology takes the slot map recorded in the databases', { recordedAtEpoch: saved.epoch });
    }
    await this.deps.publish(topology);
    this.adopt(topology);
    return topology;
  }

  async checkOnce(): Promise<void> {
    const leader = this.deps.isLeader();
    leaderGauge.set(leader ? 1 : 0);
    const topology = this.topology;
    epochGauge.set(topology.epoch);
    const primaries = new Set(topology.shards.map((shard) => shard.primary));
    await Promise.all(
      topology.nodes.map(async (node) => {
        const state = await this.probe(node.name);
        // A named primary that answers read-only or in recovery serves no write: a failed check too.
        this.detector.record(node.name, primaries.has(node.name) ? primaryServes(this.view(state)) : state !== null);
        if (state) this.states.set(node.name, state);
        else checkFailures.inc({ node: node.name });
      }),
    );
    // Node health is the leader's to tell: a follower's gauges would double every alert.
    nodeUp.reset();
    for (const shard of topology.shards) {
      const primary = this.states.get(shard.primary);
      for (const [node, role] of [[shard.primary, 'primary'], ...shard.replicas.map((replica) => [replica, 'replica'])]) {
        if (leader) nodeUp.set({ shard: String(shard.id), node, role }, this.detector.consecutiveFailures(node) === 0 ? 1 : 0);
      }
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
    const failing: ShardMembers[] = [];
    for (const shard of topology.shards) {
      // Decisions are taken on the topology the round probed under: a switchover, failover or
      // slot switch published meanwhile (the probes take up to a second) made the roles it
      // saw stale, e.g. a just-promoted primary would look like a replica that accepts writes.
      if (!this.roundStillCurrent(topology, shard.id)) continue;
      if (this.detector.isDown(shard.primary)) {
        failing.push(shard);
        continue;
      }
      await this.trackStreaming(shard);
      if (!this.roundStillCurrent(topology, shard.id)) continue;
      // Beside a failing primary, a replica out of recovery is the promotion the failover resumes: left alone.
      if (this.detector.consecutiveFailures(shard.primary) > 0) continue;
      for (const replica of shard.replicas) this.reconcileReplica(shard, replica);
    }
    await Promise.all(
      failing.map((shard) => this.failover(shard, `primary ${shard.primary} failed ${this.detector.consecutiveFailures(shard.primary)} health checks`)),
    );
  }

  /** The round's topology is still the newest and no switchover or failover of the shard runs. */
  private roundStillCurrent(topology: Topology, shardId: number): boolean {
    return this.topology.epoch === topology.epoch && !this.busyShards.has(shardId);
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
  async handleCommand(command: SwitchoverCommand): Promise<void> {
    const topology = this.topology;
    const shard = topology.shards.find((candidate) => candidate.id === command.shard);
    if (!shard || command.epoch !== topology.epoch || this.busyShards.has(shard.id)) {
      this.deps.log('warn', 'switchover ignored', { shard: command.shard, epoch: command.epoch, current: topology.epoch });
      return;
    }
    this.busyShards.add(shard.id);
    try {
      const outcome = await runSwitchover(this.ports, shard.id, { replayTimeoutMs: 5000 });
      this.afterPromotion(outcome, 'switchover');
    } catch (error) {
      this.deps.log('error', 'switchover failed', { shard: shard.id, err: (error as Error).message });
    } finally {
      this.busyShards.delete(shard.id);
    }
  }

  private async failover(shard: ShardMembers, reason: string): Promise<void> {
    // runFailover works on the newest topology: it must still name the primary found dead.
    const current = this.topology.shards.find((candidate) => candidate.id === shard.id);
    if (!current || current.primary !== shard.primary || this.busyShards.has(shard.id)) return;
    this.busyShards.add(shard.id);
    const failingSince = this.detector.failingSince(shard.primary) ?? Date.now();
    try {
      const outcome = await runFailover(this.ports, shard.id, reason, failingSince);
      if (outcome.outcome === 'held-read-only') heldReadOnly.inc({ shard: String(shard.id) });
      this.afterPromotion(outcome, 'failover');
    } catch (error) {
      // Resumable: the next round finds whatever this one left (a promoted replica is published, not promoted again).
      this.deps.log('error', 'failover failed; the next round resumes it', { shard: shard.id, err: (error as Error).message });
    } finally {
      this.busyShards.delete(shard.id);
    }
  }

  private afterPromotion(outcome: FailoverOutcome, kind: 'failover' | 'switchover'): void {
    if (outcome.outcome !== 'published') {
      if (outcome.outcome !== 'no-candidate') this.deps.log('warn', `${kind} not finished this round`, { ...outcome });
      return;
    }
    const record = outcome.topology.failovers.at(-1)!;
    this.detector.forget(outcome.from);
    failovers.inc({ kind, shard: String(record.shard) });
    failoverDuration.observe(record.durationMs / 1000);
    this.deps.log('info', `${kind} done`, {
      shard: record.shard,
      from: outcome.from,
      to: outcome.to,
      resumed: outcome.resumed,
      epoch: outcome.topology.epoch,
      term: outcome.topology.term,
      durationMs: record.durationMs,
    });
    void this.rejoin(outcome.from, outcome.to);
  }

  /** The effects the decisions of libs/topology run; each is idempotent. */
  private makePorts(): SwitchoverPorts {
    const pools = this.deps.pools;
    const control = this.deps.control;
    return {
      stillLeading: () => this.deps.isLeader() && this.deps.term() !== null,
      term: () => this.deps.term() ?? -1,
      topology: () => this.topology,
      get mode() {
        return pools.topology.replicationMode;
      },
      observe: async (nodes) => new Map(await Promise.all(nodes.map(async (node) => [node, this.view(await this.probe(node))] as [string, NodeView | null]))),
      fence: (node) => control.fence(node),
      fenceFailed: (node, error) => {
        fenceFailures.inc({ node });
        this.deps.log('error', 'fence failed', { node, fenceMethod: control.fenceMethod, err: error.message });
      },
      promote: async (node) => {
        const state = await this.probe(node);
        if (state && !state.inRecovery) return true;
        return NodeAdmin.promote(pools.pool(node), 10);
      },
      configurePrimary: async (node, followers) => {
        const pool = pools.pool(node);
        for (const follower of followers) await NodeAdmin.ensureReplicationSlot(pool, follower);
        await NodeAdmin.setSynchronousStandbyNames(pool, synchronousStandbyNames(this.topology.replicationMode, followers));
      },
      repoint: (replica, upstream) => NodeAdmin.followPrimary(pools.pool(replica), nodeAddress(this.topology, upstream), replica),
      publish: (topology) => this.publishInTurn(topology),
      adopt: (topology) => this.adopt(topology),
      now: () => Date.now(),
      log: this.deps.log,
      setReadOnly: (node, readOnly) => NodeAdmin.setReadOnly(pools.pool(node), readOnly),
      currentWalLsn: (node) => NodeAdmin.currentWalLsn(pools.pool(node)),
      stop: (node) => control.stop(node),
      start: (node) => control.start(node),
      isRunning: (node) => control.isRunning(node),
      waitForReceived: (node, lsn, timeoutMs) => this.waitForReplay(node, lsn, timeoutMs),
    };
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
      await NodeAdmin.checkpoint(this.deps.pools.pool(primary)).catch((error: Error) =>
        this.deps.log('warn', 'checkpoint before rewind failed; rewinding anyway', { node, primary, err: error.message }),
      );
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

  private adopt(topology: Topology): void {
    this.local = topology;
    epochGauge.set(topology.epoch);
    this.deps.pools.apply(topology);
  }

  /** A probe as the decisions see it: the WAL receiver's upstream named by the topology's node at that address. */
  private view(state: NodeState | null): NodeView | null {
    if (!state) return null;
    const sender = state.walSender;
    const upstream = sender ? this.topology.nodes.find((node) => `${node.host}:${node.port}` === sender) : undefined;
    return { ...state, receivingFrom: upstream?.name ?? null };
  }

  private async probe(name: string): Promise<NodeState | null> {
    try {
      return await probeNode(this.deps.pools.pool(name));
    } catch {
      return null;
    }
  }
}
