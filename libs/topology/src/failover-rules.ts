export interface PromotionCandidate {
  name: string;
  reachable: boolean;
  /** WAL received from the old primary: the most advanced replica loses least. */
  receivedLsn: bigint | null;
  /** Lower goes first when two replicas received the same WAL. */
  priority: number;
}

/** The reachable replica with the most WAL received; ties go to the configured priority. */
export function chooseReplicaToPromote(candidates: PromotionCandidate[]): string | null {
  const reachable = candidates.filter((candidate) => candidate.reachable && candidate.receivedLsn !== null);
  reachable.sort((a, b) => {
    if (a.receivedLsn! !== b.receivedLsn!) return a.receivedLsn! > b.receivedLsn! ? -1 : 1;
    return a.priority - b.priority;
  });
  return reachable[0]?.name ?? null;
}

/**
 * Counts consecutive failed health checks per node. A node is down after `threshold`
 * failures in a row; one good check clears it.
 */
export class FailureDetector {
  private readonly failures = new Map<string, number>();
  private readonly since = new Map<string, number>();

  constructor(readonly threshold: number) {}

  record(name: string, healthy: boolean, now = Date.now()): void {
    if (healthy) {
      this.failures.set(name, 0);
      this.since.delete(name);
      return;
    }
    if (!this.since.has(name)) this.since.set(name, now);
    this.failures.set(name, (this.failures.get(name) ?? 0) + 1);
  }

  consecutiveFailures(name: string): number {
    return this.failures.get(name) ?? 0;
  }

  isDown(name: string): boolean {
    return this.consecutiveFailures(name) >= this.threshold;
  }

  /** When the current run of failures began (the moment the outage was first seen). */
  failingSince(name: string): number | null {
    return this.since.get(name) ?? null;
  }

  forget(name: string): void {
    this.failures.delete(name);
    this.since.delete(name);
  }
}
