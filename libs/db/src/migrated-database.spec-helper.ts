import { Client, Pool } from 'pg';
import type { RunningPostgres } from '@shortener/testing';
import { migrate } from './migrator';

/** The integration specs' database: `shortener` on a throwaway server, every migration applied. */
export async function migratedDatabase(server: RunningPostgres, max = 4): Promise<Pool> {
  const admin = new Client(server.connection);
  await admin.connect();
  await admin.query('CREATE DATABASE shortener');
  await admin.end();
  const pool = new Pool({ ...server.connection, database: 'shortener', max });
  // An idle client told of the server's shutdown must not become an unhandled error; a
  // query in flight still fails its test.
  pool.on('error', () => undefined);
  const client = await pool.connect();
  try {
    await migrate(client);
  } finally {
    client.release();
  }
  return pool;
}

/** Runs `sql` as a service role in a transaction rolled back afterwards: 'allowed' or the error message. */
export async function asRole(pool: Pool, role: string, sql: string): Promise<string> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query(`SET LOCAL ROLE ${role}`);
    await client.query(sql);
    return 'allowed';
  } catch (error) {
    return (error as Error).message;
  } finally {
    await client.query('ROLLBACK').catch(() => undefined);
    client.release();
  }
}
