/**
 * The monitor's WAL statements against a real PostgreSQL 15 with every migration: the
 * heartbeat is a commit (it moves the WAL and the commit timestamp) that only the
 * monitor's role may write, and pg_stat_archiver counts failed archive attempts.
 */
import { Pool } from 'pg';
import { startPostgresServer, type RunningPostgres } from '@shortener/testing';
import { asRole as asRoleIn, migratedDatabase } from './migrated-database.spec-helper';
import { WalArchive } from './wal-archive';

jest.setTimeout(60_000);

let server: RunningPostgres;
let pool: Pool;
const asRole = (role: string, sql: string) => asRoleIn(pool, role, sql);

beforeAll(async () => {
  server = await startPostgresServer();
  pool = await migratedDatabase(server, 2);
});

afterAll(async () => {
  await pool?.end();
  await server?.stop();
});

it('writes one heartbeat row, a commit each time, moving the WAL forward', async () => {
  const lsn = async () => (await pool.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn')).rows[0].lsn;
  const before = await lsn();
  await WalArchive.beat(pool);
  const first = (await pool.query<{ beat_at: Date }>('SELECT beat_at FROM wal_heartbeat')).rows;
  await new Promise((resolve) => setTimeout(resolve, 20));
  await WalArchive.beat(pool);
  const second = (await pool.query<{ beat_at: Date }>('SELECT beat_at FROM wal_heartbeat')).rows;
  expect(first).toHaveLength(1);
  expect(second).toHaveLength(1);
  expect(second[0].beat_at.getTime()).toBeGreaterThan(first[0].beat_at.getTime());
  const [{ moved }] = (await pool.query<{ moved: string }>('SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), $1)::text AS moved', [before])).rows;
  expect(Number(moved)).toBeGreaterThan(0);
});

it('rejects, and does not end the process, when the server drops the beat mid-transaction (a primary killed under it)', async () => {
  // A second session holds the heartbeat row, so the beat waits inside its transaction.
  await WalArchive.beat(pool);
  const holder = await pool.connect();
  await holder.query('BEGIN');
  await holder.query('UPDATE wal_heartbeat SET beat_at = now() WHERE id = 1');
  try {
    const beating = WalArchive.beat(pool);
    beating.catch(() => undefined);
    let beatPid: number | undefined;
    for (let attempt = 0; attempt < 100 && beatPid === undefined; attempt++) {
      // Inside the holder's transaction pg_stat_activity is a snapshot unless cleared.
      await holder.query('SELECT pg_stat_clear_snapshot()');
      const { rows } = await holder.query<{ pid: number }>(
        "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'INSERT INTO wal_heartbeat%'",
      );
      beatPid = rows[0]?.pid;
      if (beatPid === undefined) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(beatPid).toBeDefined();
    await holder.query('SELECT pg_terminate_backend($1)', [beatPid]);
    // Without a listener on the checked-out client the socket's end is an uncaught 'error'.
    await expect(beating).rejects.toThrow(/terminat/i);
  } finally {
    await holder.query('ROLLBACK');
    holder.release();
  }
  await WalArchive.beat(pool);
});

it('lets only the monitor write the heartbeat', async () => {
  const upsert = 'INSERT INTO wal_heartbeat (id, beat_at) VALUES (1, now()) ON CONFLICT (id) DO UPDATE SET beat_at = excluded.beat_at';
  expect(await asRole('shortener_monitor', upsert)).toBe('allowed');
  expect(await asRole('shortener_writer', upsert)).toMatch(/permission denied/);
  expect(await asRole('shortener_reader', 'SELECT * FROM wal_heartbeat')).toMatch(/permission denied/);
  expect(await asRole('shortener_monitor', 'INSERT INTO wal_heartbeat (id, beat_at) VALUES (2, now())')).toMatch(/check constraint/);
});

it('reads the archiver counters: none on a server that does not archive, failures where archive_command fails', async () => {
  expect(await WalArchive.stats(pool)).toEqual({ archivedCount: 0, failedCount: 0, lastArchivedAt: null, lastFailedAt: null });
  const broken = await startPostgresServer({ settings: { archive_mode: 'on', archive_command: 'false' } });
  const brokenPool = new Pool({ ...broken.connection, max: 1 });
  brokenPool.on('error', () => undefined);
  try {
    await brokenPool.query('CREATE TABLE t AS SELECT 1 AS x');
    await brokenPool.query('SELECT pg_switch_wal()');
    const deadline = Date.now() + 20_000;
    let stats = await WalArchive.stats(brokenPool);
    while (stats.failedCount === 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      stats = await WalArchive.stats(brokenPool);
    }
    expect(stats.failedCount).toBeGreaterThan(0);
    expect(stats.archivedCount).toBe(0);
    expect(stats.lastFailedAt).toBeInstanceOf(Date);
  } finally {
    await brokenPool.end();
    await broken.stop();
  }
});
