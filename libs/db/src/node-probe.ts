import type { Pool } from 'pg';

export interface NodeState {
  inRecovery: boolean;
  /** Primary: current WAL position. Replica: last replayed position. */
  walLsn: bigint;
  /** Replica: last received position (null on a primary). */
  receivedLsn: bigint | null;
  /** Replica: seconds since the last replayed transaction, 0 when nothing is pending. */
  replayDelaySeconds: number | null;
  /**
   * Replica: whether its WAL receiver runs ('none': no receiver process, so it feeds no
   * primary's synchronous commits; 'streaming', 'starting', ...: it may; null: the role
   * may not see the receiver's status (it needs pg_monitor) or the node is a primary).
   */
  walReceiver: string | null;
  /** Replica: `host:port` its WAL receiver streams from, null when none or not visible to the role. */
  walSender: string | null;
  /** default_transaction_read_only is on (a fenced old primary, or a switchover in progress). */
  readOnly: boolean;
}

/** "16/B374D848" -> byte position. */
export function parseLsn(lsn: string | null): bigint | null {
  if (!lsn) return null;
  const [high, low] = lsn.split('/');
  return (BigInt(`0x${high}`) << 32n) + BigInt(`0x${low}`);
}

/**
 * One round trip that tells a node's role and WAL position. A query, not a TCP connect:
 * a frozen server still accepts connections but never answers this.
 */
export async function probeNode(pool: Pool): Promise<NodeState> {
  const { rows } = await pool.query<{
    in_recovery: boolean;
    wal_lsn: string;
    received_lsn: string | null;
    replay_delay: number | null;
    wal_receiver: string | null;
    read_only: boolean;
    wal_sender: string | null;
  }>({
    name: 'node-probe',
    text: `/* probe */ SELECT pg_is_in_recovery() AS in_recovery,
      CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END::text AS wal_lsn,
      pg_last_wal_receive_lsn()::text AS received_lsn,
      CASE WHEN NOT pg_is_in_recovery() THEN NULL
           WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
           ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 END AS replay_delay,
      CASE WHEN NOT pg_is_in_recovery() THEN NULL
           WHEN NOT EXISTS (SELECT 1 FROM pg_stat_wal_receiver) THEN 'none'
           ELSE (SELECT status FROM pg_stat_wal_receiver) END AS wal_receiver,
      current_setting('default_transaction_read_only')::bool AS read_only,
      (SELECT sender_host || ':' || sender_port FROM pg_stat_wal_receiver) AS wal_sender`,
  });
  const row = rows[0];
  return {
    inRecovery: row.in_recovery,
    walLsn: parseLsn(row.wal_lsn) ?? 0n,
    receivedLsn: parseLsn(row.received_lsn),
    replayDelaySeconds: row.replay_delay,
    walReceiver: row.wal_receiver,
    readOnly: row.read_only,
    walSender: row.wal_sender,
  };
}
