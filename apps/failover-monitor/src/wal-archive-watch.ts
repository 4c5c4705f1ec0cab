import { WalArchive, type ShardPools } from '@shortener/db';
import { counter, gauge } from '@shortener/observability';
import type { Topology } from '@shortener/topology';

/** A beat every 5 s: with archive_timeout 10 s, any moment 15 s old is restorable. */
export const HEARTBEAT_INTERVAL_MS = 5000;

const archiveFailures = counter('shortener_wal_archive_failures_total', 'WAL segments the primary failed to archive (pg_stat_archiver.failed_count)', [
  'shard',
]);
const lastArchivedAge = gauge('shortener_wal_archive_last_success_age_seconds', 'Seconds since the primary last archived a WAL segment', ['shard']);
const heartbeatFailures = counter('shortener_wal_heartbeat_failures_total', 'Heartbeat commits the leading monitor could not write on a primary', ['shard']);

interface WatchDependencies {
  pools: ShardPools;
  topology: () => Topology;
  isLeader: () => boolean;
  log: (level: 'info' | 'warn' | 'error', message: string, extra?: Record<string, unknown>) => void;
}

/**
 * The leading monitor's eye on backups: a heartbeat commit on every primary (point-in-time
 * recovery needs a commit after its target to stop there) and the archiver's counters
 * of the same primaries as metrics, so that archiving broken after a failover alerts
 * instead of being found at the first restore.
 */
export class WalArchiveWatch {
  private timer: NodeJS.Timeout | null = null;
  /** failed_count last seen, by node: the counter grows by what each node adds. */
  private readonly failedSeen = new Map<string, number>();

  constructor(private readonly deps: WatchDependencies) {}

  start(): void {
    const tick = async () => {
      await this.roundOnce().catch((error: Error) => this.deps.log('error', 'wal archive round failed', { err: error.message }));
      if (this.timer) this.timer = setTimeout(tick, HEARTBEAT_INTERVAL_MS);
    };
    this.timer = setTimeout(tick, HEARTBEAT_INTERVAL_MS);
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  async roundOnce(now = Date.now()): Promise<void> {
    if (!this.deps.isLeader()) return;
    await Promise.all(
      this.deps.topology().shards.map(async (shard) => {
        const labels = { shard: String(shard.id) };
        const pool = this.deps.pools.pool(shard.primary);
        try {
          await WalArchive.beat(pool);
        } catch (error) {
          heartbeatFailures.inc(labels);
          this.deps.log('warn', 'heartbeat commit failed', { shard: shard.id, node: shard.primary, err: (error as Error).message });
        }
        try {
          const stats = await WalArchive.stats(pool);
          const seen = this.failedSeen.get(shard.primary);
          // A restarted node counts from 0 again: then all it counts is new.
          const added = seen === undefined ? 0 : stats.failedCount >= seen ? stats.failedCount - seen : stats.failedCount;
          if (added > 0) {
            archiveFailures.inc(labels, added);
            this.deps.log('warn', 'WAL archiving failed on a primary', {
              shard: shard.id,
              node: shard.primary,
              failures: added,
              lastFailedAt: stats.lastFailedAt,
            });
          }
          this.failedSeen.set(shard.primary, stats.failedCount);
          if (stats.lastArchivedAt) lastArchivedAge.set(labels, Math.max(0, (now - stats.lastArchivedAt.getTime()) / 1000));
        } catch (error) {
          this.deps.log('warn', 'archiver statistics unavailable', { shard: shard.id, node: shard.primary, err: (error as Error).message });
        }
      }),
    );
  }
}
