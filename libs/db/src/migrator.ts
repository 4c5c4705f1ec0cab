import type { ClientBase } from 'pg';
import { migrations as allMigrations, type Migration } from './migrations';

// Any constant works; it only has to be the same for every migrator of the database.
const MIGRATION_LOCK = 7_311_001;

export interface MigrationReport {
  applied: number[];
  current: number;
}

/**
 * Applies pending migrations to one primary, each in its own transaction, under an
 * advisory lock so that two migrators of the same database wait for each other.
 * Replicas receive the result by streaming.
 */
export async function migrate(client: ClientBase, migrations: Migration[] = allMigrations): Promise<MigrationReport> {
  await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
  try {
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version    int PRIMARY KEY,
      name       text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`);
    const { rows } = await client.query<{ version: number }>('SELECT version FROM schema_migrations');
    const done = new Set(rows.map((row) => row.version));
    const applied: number[] = [];
    for (const migration of [...migrations].sort((a, b) => a.version - b.version)) {
      if (done.has(migration.version)) continue;
      await client.query('BEGIN');
      try {
        await client.query(migration.sql);
        await client.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [migration.version, migration.name]);
        await client.query('COMMIT');
      } catch (error) {
        await client.query('ROLLBACK');
        throw new Error(`migration ${migration.version} (${migration.name}) failed: ${(error as Error).message}`);
      }
      applied.push(migration.version);
    }
    const current = Math.max(0, ...migrations.map((migration) => migration.version));
    return { applied, current };
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]);
  }
}

export async function schemaVersion(client: ClientBase): Promise<number> {
  const { rows } = await client.query<{ version: number | null }>(
    `SELECT CASE WHEN to_regclass('schema_migrations') IS NULL THEN 0
            ELSE (SELECT coalesce(max(version), 0) FROM schema_migrations) END AS version`,
  );
  return rows[0].version ?? 0;
}

export const latestSchemaVersion = Math.max(...allMigrations.map((migration) => migration.version));
