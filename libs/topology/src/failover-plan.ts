import { chooseReplicaToPromote } from './failover-rules';
import type { ReplicationMode, ShardMembers } from './topology';

/** What one probe of a node said (null in the map: the node did not answer). */
export interface NodeView {
  inRecovery: boolean;
  walLsn: bigint;
  receivedLsn: bigint | null;
  /** Replica: 'none' when no WAL receiver runs; null when unknown (see NodeState.walReceiver). */
  walReceiver: string | null;
  /** Replica: the node its WAL receiver streams from, when known. */
  receivingFrom: string | null;
  /** Refuses write transactions (default_transaction_read_only): fenced by SQL, or mid-switchover. */
  readOnly: boolean;
}

/**
 * Whether the primary a topology names can take writes. A reachable primary that is
 * read-only (fenced by an attempt that did not finish) or in recovery is as good as dead
 * to clients: the failure detector counts it as a failed check, so that the failover
 * rounds resume the hand-over instead of leaving the shard without a writable primary.
 */
export function primaryServes(view: NodeView | null | undefined): boolean {
  return !!view && !view.inRecovery && !view.readOnly;
}

export type Observations = ReadonlyMap<string, NodeView | null>;

export type FailoverDecision =
  | { action: 'none' }
  /** A replica of the shard is already out of recovery: a previous attempt promoted it but did not publish. */
  | { action: 'resume'; node: string }
  | { action: 'promote'; candidate: string }
  | { action: 'no-candidate' };

/**
 * The first decision of a failover round for one shard whose primary the detector
 * declared down. Resumable: if an earlier attempt (this monitor's or a dead leader's)
 * already promoted a replica, that replica is published instead of promoting a second.
 */
export function decideFailover(shard: ShardMembers, observed: Observations): FailoverDecision {
  const promoted = shard.replicas
    .map((name) => ({ name, view: observed.get(name) }))
    .filter((entry): entry is { name: string; view: NodeView } => !!entry.view && !entry.view.inRecovery)
    // Two promoted (should never happen): the one with most WAL keeps the role, the other is rejoined.
    .sort((a, b) => (a.view.walLsn === b.view.walLsn ? 0 : a.view.walLsn > b.view.walLsn ? -1 : 1));
  if (promoted.length > 0) return { action: 'resume', node: promoted[0].name };
  const candidate = chooseReplicaToPromote(
    shard.replicas.map((name, priority) => {
      const view = observed.get(name);
      return { name, priority, reachable: !!view && view.inRecovery, receivedLsn: view ? (view.receivedLsn ?? view.walLsn) : null };
    }),
  );
  return candidate ? { action: 'promote', candidate } : { action: 'no-candidate' };
}

export type PromotionGate =
  | { allowed: true; via: 'fenced' | 'no-synchronous-standby' }
  /** `detach`: replicas that answer but still stream from the old primary; re-pointed at the candidate, they stop feeding it. */
  | { allowed: false; reason: string; readOnly: boolean; detach?: string[] };

/**
 * May a replica be promoted (or a promoted one published) over an old primary that is
 * no longer answering? Only when the old primary can acknowledge nothing more:
 * - it was fenced (the fence call returned); or
 * - in `quorum` mode, without a fence: a commit on the old primary returns only once a
 *   standby of its `synchronous_standby_names` (ANY 1 of the shard's replicas) has
 *   flushed it. If every replica answers and runs no WAL receiver from it, none of them
 *   feeds it, so it cannot acknowledge a write; the procedure re-points the other
 *   replicas at the candidate before promoting it, so none of them can start feeding it
 *   again. A replica that answers but still streams from it (its receiver has not yet
 *   noticed a frozen or cut-off primary: that takes wal_receiver_timeout) is listed in
 *   `detach`: re-pointed at the candidate, it stops feeding the old primary, and a later
 *   look decides. A replica that does not answer may still be streaming from it (both on
 *   the far side of a partition): then it is not safe.
 * In `async` mode an unfenced old primary acknowledges writes on its own: the shard stays
 * without a writable primary (creates get 503) rather than risk two writers.
 */
export function promotionGate(input: {
  mode: ReplicationMode;
  fenced: boolean;
  shard: ShardMembers;
  observed: Observations;
  /** The replica to be promoted: its own receiver stops when it is promoted. */
  candidate: string;
}): PromotionGate {
  if (input.fenced) return { allowed: true, via: 'fenced' };
  if (input.mode === 'async') {
    return {
      allowed: false,
      readOnly: true,
      reason: 'the old primary could not be fenced and async mode lets it acknowledge writes alone: the shard stays read-only',
    };
  }
  const detach: string[] = [];
  const reasons: string[] = [];
  for (const replica of input.shard.replicas) {
    const view = input.observed.get(replica);
    if (!view) return { allowed: false, readOnly: true, reason: `replica ${replica} does not answer and may still feed the unfenced old primary` };
    // The candidate may still stream from the old primary: whatever that acknowledges is
    // then on the candidate, and stays on it through the promotion.
    if (replica === input.candidate) continue;
    // Streaming from the candidate (re-pointed by an earlier attempt) feeds nobody else.
    if (!view.inRecovery) {
      return { allowed: false, readOnly: true, reason: `replica ${replica} is out of recovery: it may take writes itself` };
    }
    if (view.walReceiver !== 'none' && view.receivingFrom !== input.candidate) {
      detach.push(replica);
      reasons.push(`replica ${replica} may still replicate synchronously from the unfenced old primary (${view.walReceiver ?? 'status unknown'})`);
    }
  }
  if (detach.length > 0) return { allowed: false, readOnly: true, reason: reasons.join('; '), detach };
  return { allowed: true, via: 'no-synchronous-standby' };
}

/**
 * After a switchover failed: may the old primary be made writable again? Only if the
 * candidate is seen, now, still in recovery. If it was promoted (or cannot be asked), the
 * old primary stays down and read-only; the next round finds the shard's primary dead
 * and resumes the promoted candidate, and the old primary rejoins as a replica.
 */
export function mayRestoreOldPrimary(candidate: NodeView | null | undefined): boolean {
  return !!candidate && candidate.inRecovery;
}
