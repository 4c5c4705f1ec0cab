import type { Pool, PoolClient } from 'pg';
import { parseLsn } from './node-probe';

/**
 * One statement that may run longer than the monitor's pools allow (they cut statements short
 * for health checks), on a client of its own that is discarded afterwards, so that neither its
 * statement_timeout nor a connection broken mid-call goes back to the pool.
 */
async function withLongStatement<T>(pool: Pool, timeoutSeconds: number, statement: (client: PoolClient, timeoutMs: number) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  const onError = () => undefined; // the server may go away mid-call; the query rejects anyway
  client.on('error', onError);
  try {
    await client.query("SELECT set_config('statement_timeout', $1, false)", [`${timeoutSeconds * 1000}`]);
    return await statement(client, timeoutSeconds * 1000);
  } finally {
    client.off('error', onError);
    client.release(true);
  }
}

/**
 * The SQL a failover monitor needs on a node. Settings go through ALTER SYSTEM and a
 * reload, so they survive restarts and need no file access: the same calls work on a
 * local process and on a pod.
 */
export const NodeAdmin = {
  /** Promotes a standby and waits (up to waitSeconds) until it accepts writes. */
  async promote(pool: Pool, waitSeconds = 10): Promise<boolean> {
    const { rows } = await withLongStatement(pool, waitSeconds + 5, (client, timeoutMs) =>
      client.query<{ promoted: boolean }>({ text: 'SELECT pg_promote(true, $1) AS promoted', values: [waitSeconds], query_timeout: timeoutMs } as never),
    );
    return rows[0].promoted;
  },

  /**
   * A checkpoint on a just-promoted primary, before pg_rewind reads it: PostgreSQL 15's
   * pg_rewind takes the source's timeline from its control file, which shows the new timeline
   * only after the end-of-recovery checkpoint. Without it pg_rewind reports "same timeline, no
   * rewind required" for the old primary, which then never streams and is copied anew.
   */
  async checkpoint(pool: Pool, timeoutSeconds = 10): Promise<void> {
    await withLongStatement(pool, timeoutSeconds, (client, timeoutMs) => client.query({ text: 'CHECKPOINT', query_timeout: timeoutMs } as never));
  },

  async setSynchronousStandbyNames(pool: Pool, value: string): Promise<void> {
    // ALTER SYSTEM takes no parameters: format() quotes the value as a literal.
    const { rows } = await pool.query<{ sql: string }>("SELECT format('ALTER SYSTEM SET synchronous_standby_names = %L', $1::text) AS sql", [value]);
    await pool.query(rows[0].sql);
    await pool.query('SELECT pg_reload_conf()');
  },

  /** Refuses new write transactions on the node (planned switchover: writes pause here). */
  async setReadOnly(pool: Pool, readOnly: boolean): Promise<void> {
    await pool.query(readOnly ? 'ALTER SYSTEM SET default_transaction_read_only = on' : 'ALTER SYSTEM RESET default_transaction_read_only');
    await pool.query('SELECT pg_reload_conf()');
  },

  /** Re-points a standby at a new primary; PostgreSQL 13+ applies it with a reload. */
  async followPrimary(pool: Pool, primary: { host: string; port: number }, slotName: string): Promise<void> {
    const current = await pool.query<{ primary_conninfo: string }>('SHOW primary_conninfo');
    const conninfo = withHostAndPort(current.rows[0].primary_conninfo, primary.host, primary.port);
    const { rows } = await pool.query<{ conninfo_sql: string; slot_sql: string }>(
      `SELECT format('ALTER SYSTEM SET primary_conninfo = %L', $1::text) AS conninfo_sql,
              format('ALTER SYSTEM SET primary_slot_name = %L', $2::text) AS slot_sql`,
      [conninfo, slotName],
    );
    await pool.query(rows[0].conninfo_sql);
    await pool.query(rows[0].slot_sql);
    await pool.query('SELECT pg_reload_conf()');
  },

  async ensureReplicationSlot(pool: Pool, name: string): Promise<void> {
    await pool.query(
      `SELECT pg_create_physical_replication_slot($1, true)
       WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)`,
      [name],
    );
  },

  async currentWalLsn(pool: Pool): Promise<bigint> {
    const { rows } = await pool.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
    return parseLsn(rows[0].lsn) ?? 0n;
  },

  /** The standbys streaming from this primary, by application_name. */
  async streamingStandbys(pool: Pool): Promise<{ name: string; state: string; replayLsn: bigint | null; syncState: string }[]> {
    const { rows } = await pool.query<{ application_name: string; state: string; replay_lsn: string | null; sync_state: string }>(
      'SELECT application_name, state, replay_lsn::text, sync_state FROM pg_stat_replication',
    );
    return rows.map((row) => ({
      name: row.application_name,
      state: row.state,
      replayLsn: parseLsn(row.replay_lsn),
      syncState: row.sync_state,
    }));
  },
};

/** Replaces host and port in a libpq key=value connection string, keeping everything else. */
export function withHostAndPort(conninfo: string, host: string, port: number): string {
  const kept = conninfo.split(/\s+(?=[a-z_]+=)/).filter((part) => part && !/^(host|hostaddr|port)=/.test(part));
  return [`host=${host}`, `port=${port}`, ...kept].join(' ');
}
