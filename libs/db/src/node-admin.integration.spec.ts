/**
 * NodeAdmin's long statements against a real PostgreSQL 15 with every migration, as the
 * monitor's own role runs them: its pools cut statements at 500 ms, these get a client of
 * their own that goes back to no pool.
 */
import { Pool } from 'pg';
import { startPostgresServer, type RunningPostgres } from '@shortener/testing';
import { migratedDatabase } from './migrated-database.spec-helper';
import { NodeAdmin } from './node-admin';

jest.setTimeout(60_000);

let server: RunningPostgres;
let admin: Pool;
let monitor: Pool;

beforeAll(async () => {
  server = await startPostgresServer();
  admin = await migratedDatabase(server, 2);
  // The monitor's role (trust authentication here), with the statement limit of its pools.
  monitor = new Pool({ ...server.connection, database: 'shortener', user: 'shortener_monitor', max: 1, options: '-c statement_timeout=500' });
});

afterAll(async () => {
  await monitor?.end();
  await admin?.end();
  await server?.stop();
});

it('checkpoints as the monitor role (migration 8: pg_checkpoint), and its longer limit never reaches the pool', async () => {
  const checkpoints = async () => Number((await admin.query<{ n: string }>('SELECT checkpoints_req::text AS n FROM pg_stat_bgwriter')).rows[0].n);
  const before = await checkpoints();
  await NodeAdmin.checkpoint(monitor);
  expect(await checkpoints()).toBe(before + 1);
  expect((await monitor.query<{ statement_timeout: string }>('SHOW statement_timeout')).rows[0].statement_timeout).toBe('500ms');
});
