import type { Pool, PoolClient } from 'pg';

type Queryable = Pool | PoolClient;

export interface ApiKeyRow {
  id: string;
  name: string;
  secretHash: Buffer;
  rateLimitPerMinute: number | null;
  createdAt: Date;
  revokedAt: Date | null;
}

export interface NewApiKey {
  id: string;
  name: string;
  secretHash: Buffer;
  rateLimitPerMinute: number | null;
}

interface RawApiKey {
  id: string;
  name: string;
  secret_hash: Buffer;
  rate_limit_per_minute: number | null;
  created_at: Date;
  revoked_at: Date | null;
}

const COLUMNS = 'id, name, secret_hash, rate_limit_per_minute, created_at, revoked_at';

function toApiKey(row: RawApiKey): ApiKeyRow {
  return {
    id: row.id,
    name: row.name,
    secretHash: row.secret_hash,
    rateLimitPerMinute: row.rate_limit_per_minute,
    createdAt: row.created_at,
    revokedAt: row.revoked_at,
  };
}

/** API keys on the shard that owns each key's id (migration 4). */
export class ApiKeyRepository {
  /** Null when the id is taken (ids are random: the caller draws another). */
  async insert(node: Queryable, key: NewApiKey): Promise<ApiKeyRow | null> {
    const { rows } = await node.query<RawApiKey>({
      name: 'api-keys-insert',
      text: `/* writer:api-keys.insert */ INSERT INTO api_keys (id, name, secret_hash, rate_limit_per_minute)
             VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING RETURNING ${COLUMNS}`,
      values: [key.id, key.name, key.secretHash, key.rateLimitPerMinute],
    });
    return rows.length ? toApiKey(rows[0]) : null;
  }

  /** Whether a key that was live is now revoked (false: no such key, or revoked before). */
  async revoke(node: Queryable, id: string): Promise<boolean> {
    const { rowCount } = await node.query({
      name: 'api-keys-revoke',
      text: `/* writer:api-keys.revoke */ UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL`,
      values: [id],
    });
    return rowCount === 1;
  }

  async find(node: Queryable, id: string): Promise<ApiKeyRow | null> {
    const { rows } = await node.query<RawApiKey>({
      name: 'api-keys-find',
      text: `/* api-keys.find */ SELECT ${COLUMNS} FROM api_keys WHERE id = $1`,
      values: [id],
    });
    return rows.length ? toApiKey(rows[0]) : null;
  }

  /** The live keys of one shard, oldest first. */
  async listLive(node: Queryable): Promise<ApiKeyRow[]> {
    const { rows } = await node.query<RawApiKey>({
      name: 'api-keys-list',
      text: `/* api-keys.list */ SELECT ${COLUMNS} FROM api_keys WHERE revoked_at IS NULL ORDER BY created_at, id`,
    });
    return rows.map(toApiKey);
  }
}
