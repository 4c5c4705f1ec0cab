import { decideFailover, mayRestoreOldPrimary, promotionGate, type Observations } from './failover-plan';
import { chooseReplicaToPromote } from './failover-rules';
import { withPromotedReplica, withTerm, type ShardMembers, type Topology } from './topology';

/**
 * The effects a failover needs, each one idempotent (the app implements them with SQL,
 * the node control and the topology publisher; the simulation with a model). The
 * procedures below only sequence them and decide: they hold no I/O of their own.
 */
export interface FailoverPorts {
  /** True while this monitor holds the lease of the term it publishes under; asked before every irreversible step. */
  stillLeading(): boolean;
  /** This monitor's leader term, the fencing token its documents carry. */
  term(): number;
  /** The newest topology this monitor knows (published by it or followed). */
  topology(): Topology;
  readonly mode: Topology['replicationMode'];
  observe(nodes: string[]): Promise<Observations>;
  /** Resolves only once the node can acknowledge no write; rejects otherwise. */
  fence(node: string): Promise<void>;
  /** pg_promote, waiting until the node accepts writes; true when it did. A node already promoted answers true. */
  promote(node: string): Promise<boolean>;
  /** Replication slots and synchronous_standby_names of a new primary for its followers. */
  configurePrimary(node: string, followers: string[]): Promise<void>;
  /** Points a standby at another upstream (a primary, or a standby about to be promoted). */
  repoint(replica: string, upstream: string): Promise<void>;
  /** Through the term's transactional producer; rejects when fenced by a newer leader. */
  publish(topology: Topology): Promise<void>;
  /** Takes a published document as this monitor's own view. */
  adopt(topology: Topology): void;
  now(): number;
  log(level: 'info' | 'warn' | 'error', message: string, extra?: object): void;
  /** A fence that failed: logged and counted, never swallowed. */
  fenceFailed(node: string, error: Error): void;
}

export interface SwitchoverPorts extends FailoverPorts {
  setReadOnly(node: string, readOnly: boolean): Promise<void>;
  currentWalLsn(node: string): Promise<bigint>;
  /** Clean stop: a primary first sends its WAL to its standbys. */
  stop(node: string): Promise<void>;
  start(node: string): Promise<void>;
  isRunning(node: string): Promise<boolean>;
  waitForReceived(node: string, lsn: bigint, timeoutMs: number): Promise<void>;
}

export type FailoverOutcome =
  | { outcome: 'published'; topology: Topology; from: string; to: string; resumed: boolean }
  | { outcome: 'not-leader' }
  | { outcome: 'no-candidate' }
  | { outcome: 'held-read-only'; reason: string }
  /** Someone published a newer topology meanwhile: the next round decides again from it. */
  | { outcome: 'stale-topology'; promoted: string };

const DETACH_LOOKS = 8;
const DETACH_LOOK_INTERVAL_MS = 250;

/**
 * Replaces a dead primary. Every step may be cut short (the monitor dies, loses the lead,
 * Kafka refuses the publish) and the next round, of this leader or the next, finishes it:
 * a replica already out of recovery is published rather than a second one promoted, the
 * fence is repeated (it is idempotent), and the document is published under the epoch
 * after the one the decision was taken on, with this leader's term.
 */
export async function runFailover(ports: FailoverPorts, shardId: number, reason: string, failingSince: number): Promise<FailoverOutcome> {
  const base = ports.topology();
  const shard = base.shards.find((candidate) => candidate.id === shardId);
  if (!shard) throw new RangeError(`no shard ${shardId}`);
  if (!ports.stillLeading()) return { outcome: 'not-leader' };
  const oldPrimary = shard.primary;
  const observed = await ports.observe(shard.replicas);
  const decision = decideFailover(shard, observed);
  if (decision.action === 'none') return { outcome: 'no-candidate' };
  if (decision.action === 'no-candidate') {
    ports.log('error', 'primary down and no replica can be promoted', { shard: shardId });
    return { outcome: 'no-candidate' };
  }
  const target = decision.action === 'resume' ? decision.node : decision.candidate;
  if (decision.action === 'resume') ports.log('warn', 'a replica was already promoted by an earlier attempt: publishing it', { shard: shardId, node: target });

  if (!ports.stillLeading()) return { outcome: 'not-leader' };
  let fenced = false;
  try {
    await ports.fence(oldPrimary);
    fenced = true;
  } catch (error) {
    ports.fenceFailed(oldPrimary, error as Error);
  }
  let gate = promotionGate({ mode: ports.mode, fenced, shard, observed, candidate: target });
  if (!gate.allowed && gate.detach && decision.action === 'promote') {
    // Cut the old primary's synchronous standbys off it: each is re-pointed at the candidate
    // (its slot made there first), so the old primary, frozen or cut off from us, can get no
    // acknowledgement from anyone but the candidate. Then look again.
    ports.log('warn', 'detaching standbys from the unfenced old primary', { shard: shardId, oldPrimary, standbys: gate.detach, candidate: target });
    if (!ports.stillLeading()) return { outcome: 'not-leader' };
    await ports.configurePrimary(
      target,
      shard.replicas.filter((name) => name !== target),
    );
    for (const replica of gate.detach) await ports.repoint(replica, target);
    // PostgreSQL restarts a re-pointed receiver within about a second: look a few times
    // rather than wait for the next round.
    for (let look = 0; ; look++) {
      gate = promotionGate({ mode: ports.mode, fenced, shard, observed: await ports.observe(shard.replicas), candidate: target });
      if (gate.allowed || !gate.detach || look >= DETACH_LOOKS) break;
      await new Promise((resolve) => setTimeout(resolve, DETACH_LOOK_INTERVAL_MS));
    }
  }
  if (!gate.allowed) {
    ports.log('error', 'not promoting', { shard: shardId, oldPrimary, reason: gate.reason });
    return { outcome: 'held-read-only', reason: gate.reason };
  }
  const others = shard.replicas.filter((name) => name !== target);
  if (gate.via === 'no-synchronous-standby') {
    // Before the promotion, so that no standby can go back to feeding the unfenced old primary.
    for (const replica of others) await ports.repoint(replica, target);
  }

  if (decision.action === 'promote') {
    if (!ports.stillLeading()) return { outcome: 'not-leader' };
    if (!(await ports.promote(target))) throw new Error(`${target} did not finish promotion in time`);
  }
  await ports.configurePrimary(target, [...others, oldPrimary]);
  if (gate.via === 'fenced') {
    await Promise.all(
      others.map((replica) =>
        ports
          .repoint(replica, target)
          .catch((error: Error) => ports.log('warn', 'could not re-point replica; it will be rejoined', { node: replica, err: error.message })),
      ),
    );
  }
  return publishPromotion(ports, base, shard, target, { reason, startedAt: failingSince, resumed: decision.action === 'resume' });
}

async function publishPromotion(
  ports: FailoverPorts,
  base: Topology,
  shard: ShardMembers,
  target: string,
  info: { reason: string; startedAt: number; resumed: boolean },
): Promise<FailoverOutcome> {
  // Compare-and-set: the document is epoch base + 1 only if base is still the newest.
  if (ports.topology().epoch !== base.epoch) return { outcome: 'stale-topology', promoted: target };
  if (!ports.stillLeading()) return { outcome: 'not-leader' };
  const next = withTerm(
    withPromotedReplica(base, shard.id, target, { at: new Date(ports.now()).toISOString(), reason: info.reason, durationMs: ports.now() - info.startedAt }),
    ports.term(),
  );
  await ports.publish(next);
  ports.adopt(next);
  return { outcome: 'published', topology: next, from: shard.primary, to: target, resumed: info.resumed };
}

/**
 * Planned hand-over: the primary is made read-only, its last WAL position read, it is
 * stopped cleanly (every record reaches the standbys), and the best replica is promoted
 * once it has received all of it. If anything fails after the candidate may have been
 * promoted, the old primary is never made writable again: it stays stopped and
 * read-only, and the failover rounds resume the promoted candidate and rejoin the old
 * primary as its replica.
 */
export async function runSwitchover(ports: SwitchoverPorts, shardId: number, options: { replayTimeoutMs: number }): Promise<FailoverOutcome> {
  const base = ports.topology();
  const shard = base.shards.find((candidate) => candidate.id === shardId);
  if (!shard) throw new RangeError(`no shard ${shardId}`);
  if (!ports.stillLeading()) return { outcome: 'not-leader' };
  const started = ports.now();
  const oldPrimary = shard.primary;
  const observed = await ports.observe(shard.replicas);
  const candidate = chooseReplicaToPromote(
    shard.replicas.map((name, priority) => {
      const view = observed.get(name);
      return { name, priority, reachable: !!view && view.inRecovery, receivedLsn: view ? (view.receivedLsn ?? view.walLsn) : null };
    }),
  );
  if (!candidate) throw new Error('no healthy replica to hand over to');
  let promoting = false;
  try {
    await ports.setReadOnly(oldPrimary, true);
    const target = await ports.currentWalLsn(oldPrimary);
    if (!ports.stillLeading()) throw new Error('lost the lead before stopping the primary');
    await ports.stop(oldPrimary);
    await ports.waitForReceived(candidate, target, options.replayTimeoutMs);
    if (!ports.stillLeading()) throw new Error('lost the lead before the promotion');
    promoting = true;
    if (!(await ports.promote(candidate))) throw new Error(`${candidate} did not finish promotion in time`);
    const others = shard.replicas.filter((name) => name !== candidate);
    await ports.configurePrimary(candidate, [...others, oldPrimary]);
    await Promise.all(
      others.map((replica) =>
        ports
          .repoint(replica, candidate)
          .catch((error: Error) => ports.log('warn', 'could not re-point replica; it will be rejoined', { node: replica, err: error.message })),
      ),
    );
    const outcome = await publishPromotion(ports, base, shard, candidate, { reason: 'planned switchover', startedAt: started, resumed: false });
    if (outcome.outcome !== 'published') throw new Error(`switchover not published: ${outcome.outcome}`);
    return outcome;
  } catch (error) {
    const seen = promoting ? (await ports.observe([candidate]).catch(() => null))?.get(candidate) : null;
    if (promoting && !mayRestoreOldPrimary(seen)) {
      ports.log('error', 'switchover failed after the candidate may have been promoted: the old primary stays down; the failover rounds finish the hand-over', {
        shard: shardId,
        candidate,
        err: (error as Error).message,
      });
    } else {
      ports.log('error', 'switchover failed before any promotion: the old primary takes writes again', { shard: shardId, err: (error as Error).message });
      if (!(await ports.isRunning(oldPrimary).catch(() => true))) await ports.start(oldPrimary).catch(() => undefined);
      await ports.setReadOnly(oldPrimary, false).catch(() => undefined);
    }
    throw error;
  }
}
