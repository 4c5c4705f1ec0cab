// Data and cluster helpers of the scenarios: the topology from the admin API, links
// seeded straight into the shards' primaries, cache keys.
import { randomBytes } from 'node:crypto';
import crc32 from 'crc-32';
import Redis from 'ioredis';
import pg from 'pg';

const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

export function randomCode(length = 7) {
  let code = '';
  while (code.length < length) {
    const byte = randomBytes(1)[0];
    if (byte < 248) code += ALPHABET[byte % 62];
  }
  return code;
}

/** A code's slot: the top 10 bits of its CRC-32 (docs/reference.md section 3). */
export function slotOf(code) {
  return (crc32.str(code) >>> 0) >>> 22;
}

export function shardRing(slots) {
  return (code) => slots[slotOf(code)];
}

/** GET /api/cluster: ring, primaries and replicas as the stack sees them now. */
export async function clusterOf(stack) {
  const response = await fetch(`${stack.baseUrl}/api/cluster`, {
    headers: { authorization: `Bearer ${stack.adminToken}` },
    signal: AbortSignal.timeout(5000),
  });
  if (response.status !== 200) throw new Error(`GET /api/cluster answered ${response.status}`);
  return response.json();
}

export function pgClient(stack, node) {
  return new pg.Client({
    host: node.host,
    port: node.port,
    user: 'postgres',
    password: stack.pgPassword,
    database: 'shortener',
  });
}

/**
 * Inserts `count` links with random codes straight into their owning primaries (not
 * through the API, so that no event warms the cache and the seeding takes a second, not
 * a minute). Returns the codes, shuffled; waits until every replica has them. The ring
 * names shards by id (ids may have gaps after a resharding), not by position.
 */
export async function seedLinks(stack, cluster, count, { prefix = 'b' } = {}) {
  const shardOf = shardRing(cluster.ring.slots);
  const byShard = new Map(cluster.shards.map((shard) => [shard.id, []]));
  const codes = new Set();
  // one random buffer, not a randomBytes call per character (200,000 codes in a fraction of a second)
  while (codes.size < count) {
    const bytes = randomBytes((count - codes.size) * 8 + 64);
    let code = prefix;
    for (const byte of bytes) {
      if (byte >= 248) continue;
      code += ALPHABET[byte % 62];
      if (code.length === prefix.length + 6) {
        codes.add(code);
        if (codes.size === count) break;
        code = prefix;
      }
    }
  }
  for (const code of codes) byShard.get(shardOf(code)).push(code);
  const inserted = [];
  await Promise.all(
    cluster.shards.map(async (shard) => {
      const client = pgClient(stack, shard.primary);
      await client.connect();
      try {
        const mine = byShard.get(shard.id);
        for (let at = 0; at < mine.length; at += 5000) {
          const chunk = mine.slice(at, at + 5000);
          const { rows } = await client.query(
            `INSERT INTO urls (code, url, manage_token_hash)
             SELECT c, 'https://example.com/bench/' || c, '\\x00'::bytea FROM unnest($1::text[]) AS c
             ON CONFLICT (code) DO NOTHING RETURNING code`,
            [chunk],
          );
          for (const row of rows) inserted.push(row.code);
        }
        // every replica has replayed what the primary wrote
        const { rows } = await client.query('SELECT pg_current_wal_lsn() AS lsn');
        for (let i = 0; i < 100; i++) {
          const { rows: behind } = await client.query(
            'SELECT count(*)::int AS n FROM pg_stat_replication WHERE replay_lsn IS NULL OR replay_lsn < $1::pg_lsn',
            [rows[0].lsn],
          );
          if (behind[0].n === 0) break;
          await new Promise((r) => setTimeout(r, 100));
        }
      } finally {
        await client.end();
      }
    }),
  );
  for (let i = inserted.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [inserted[i], inserted[j]] = [inserted[j], inserted[i]];
  }
  return inserted;
}

/**
 * Rows of `urls` per slot on every shard's primary: `{ [shardId]: Map(slot -> {rows, before}) }`,
 * `before` counting only rows created before `before` (a timestamptz as text, the
 * databases' own clock), e.g. to leave out the rows a concurrent create load added.
 */
export async function rowsBySlot(stack, cluster, before = 'infinity') {
  const out = {};
  await Promise.all(
    cluster.shards.map(async (shard) => {
      const client = pgClient(stack, shard.primary);
      await client.connect();
      try {
        const { rows } = await client.query(
          `SELECT shortener_slot(code)::int AS slot, count(*)::int AS rows,
                  count(*) FILTER (WHERE created_at < $1::timestamptz)::int AS before
             FROM urls GROUP BY 1`,
          [before],
        );
        out[shard.id] = new Map(rows.map((row) => [row.slot, { rows: row.rows, before: row.before }]));
      } finally {
        await client.end();
      }
    }),
  );
  return out;
}

/** The databases' clock now, as text (microseconds kept). */
export async function databaseNow(stack, node) {
  const client = pgClient(stack, node);
  await client.connect();
  try {
    const { rows } = await client.query('SELECT clock_timestamp()::text AS now');
    return rows[0].now;
  } finally {
    await client.end();
  }
}

/** How many of `codes` have a row on the shard's primary. */
export async function presentCount(stack, node, codes) {
  if (codes.length === 0) return 0;
  const client = pgClient(stack, node);
  await client.connect();
  try {
    const { rows } = await client.query('SELECT count(*)::int AS n FROM urls WHERE code = ANY($1::text[])', [codes]);
    return rows[0].n;
  } finally {
    await client.end();
  }
}

export function redisOf(stack) {
  return new Redis({ host: stack.redis.host, port: stack.redis.port, lazyConnect: false });
}

/** Removes the codes' cache entries (so that the next request is a miss). */
export async function evict(redis, codes) {
  for (let at = 0; at < codes.length; at += 1000) {
    await redis.del(...codes.slice(at, at + 1000).map((code) => `u:${code}`));
  }
}

/** How many of the codes have a cache entry. */
export async function cachedCount(redis, codes) {
  let cached = 0;
  for (let at = 0; at < codes.length; at += 1000) {
    const values = await redis.mget(...codes.slice(at, at + 1000).map((code) => `u:${code}`));
    cached += values.filter((value) => value !== null).length;
  }
  return cached;
}
