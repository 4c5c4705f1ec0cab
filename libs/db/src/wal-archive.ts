import type { Pool } from 'pg';
import { inTransaction } from './node-pools';

export interface ArchiverStats {
  archivedCount: number;
  failedCount: number;
  lastArchivedAt: Date | null;
  lastFailedAt: Date | null;
}

/** The leading monitor's statements for WAL archiving health (migration 5, pg_stat_archiver). */
export const WalArchive = {
  /**
   * One commit on a primary. synchronous_commit = local: a shard whose replicas are all
   * down must not hold the monitor's round until one comes back.
   */
  async beat(pool: Pool): Promise<void> {
    // inTransaction listens for the client's 'error': a primary killed mid-beat resets the
    // socket, and an unheard 'error' on a checked-out client ends the monitor's process.
    await inTransaction(pool, async (client) => {
      await client.query("SET LOCAL synchronous_commit = 'local'");
      await client.query({
        name: 'wal-heartbeat',
        text: 'INSERT INTO wal_heartbeat (id, beat_at) VALUES (1, now()) ON CONFLICT (id) DO UPDATE SET beat_at = excluded.beat_at',
      });
    });
  },

  async stats(pool: Pool): Promise<ArchiverStats> {
    const { rows } = await pool.query<{ archived_count: string; failed_count: string; last_archived_time: Date | null; last_failed_time: Date | null }>({
      name: 'wal-archiver-stats',
      text: 'SELECT archived_count, failed_count, last_archived_time, last_failed_time FROM pg_stat_archiver',
    });
    const row = rows[0];
    return {
      archivedCount: Number(row.archived_count),
      failedCount: Number(row.failed_count),
      lastArchivedAt: row.last_archived_time,
      lastFailedAt: row.last_failed_time,
    };
  },
};
