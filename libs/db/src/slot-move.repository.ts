import type { Pool, PoolClient } from 'pg';
import { inTransaction } from './node-pools';

/**
 * The slot mover's SQL (docs/reference.md section 7), run by the leading failover monitor
 * on the primaries of a move's source and target shard. Every statement is constant text
 * with parameters; every write runs with `shortener.mover = on`, the one session setting
 * the slot guard of migration 6 lets through. Each function is idempotent: a step that is
 * run again after a crash (or by the next leader) gives the same result.
 */

export type GuardState = 'capture' | 'fenced' | 'moved' | 'incoming';

/** The tables whose rows belong to the slot of their key, and move with it. */
const TABLES = {
  urls: {
    key: 'code',
    select: `/* monitor:reshard.read */
SELECT code AS key, url, redirect_type,
       (extract(epoch FROM created_at) * 1000000)::bigint AS created_us,
       (extract(epoch FROM updated_at) * 1000000)::bigint AS updated_us,
       (extract(epoch FROM expires_at) * 1000000)::bigint AS expires_us,
       (extract(epoch FROM deleted_at) * 1000000)::bigint AS deleted_us,
       encode(manage_token_hash, 'hex') AS manage_token_hash, clicks, owner
  FROM urls`,
    upsert: `/* monitor:reshard.upsert */
INSERT INTO urls (code, url, redirect_type, created_at, updated_at, expires_at, deleted_at, manage_token_hash, clicks, owner)
SELECT r.key, r.url, r.redirect_type,
       timestamptz 'epoch' + r.created_us * interval '1 microsecond', timestamptz 'epoch' + r.updated_us * interval '1 microsecond',
       timestamptz 'epoch' + r.expires_us * interval '1 microsecond', timestamptz 'epoch' + r.deleted_us * interval '1 microsecond',
       decode(r.manage_token_hash, 'hex'), r.clicks, r.owner
  FROM jsonb_to_recordset($1::jsonb) AS r(key text, url text, redirect_type smallint, created_us bigint, updated_us bigint,
       expires_us bigint, deleted_us bigint, manage_token_hash text, clicks bigint, owner text)
ON CONFLICT (code) DO UPDATE SET
  url = excluded.url, redirect_type = excluded.redirect_type, created_at = excluded.created_at, updated_at = excluded.updated_at,
  expires_at = excluded.expires_at, deleted_at = excluded.deleted_at, manage_token_hash = excluded.manage_token_hash,
  clicks = excluded.clicks, owner = excluded.owner`,
    checksumRow: `ROW(code, url, redirect_type, (extract(epoch FROM created_at) * 1000000)::bigint,
       (extract(epoch FROM updated_at) * 1000000)::bigint, (extract(epoch FROM expires_at) * 1000000)::bigint,
       (extract(epoch FROM deleted_at) * 1000000)::bigint, encode(manage_token_hash, 'hex'), clicks, owner)::text`,
  },
  idempotency_keys: {
    key: 'key',
    select: `/* monitor:reshard.read */
SELECT key, encode(request_hash, 'hex') AS request_hash, response::text AS response,
       (extract(epoch FROM created_at) * 1000000)::bigint AS created_us
  FROM idempotency_keys`,
    upsert: `/* monitor:reshard.upsert */
INSERT INTO idempotency_keys (key, request_hash, response, created_at)
SELECT r.key, decode(r.request_hash, 'hex'), r.response::jsonb, timestamptz 'epoch' + r.created_us * interval '1 microsecond'
  FROM jsonb_to_recordset($1::jsonb) AS r(key text, request_hash text, response text, created_us bigint)
ON CONFLICT (key) DO UPDATE SET request_hash = excluded.request_hash, response = excluded.response, created_at = excluded.created_at`,
    checksumRow: `ROW(key, encode(request_hash, 'hex'), response::text, (extract(epoch FROM created_at) * 1000000)::bigint)::text`,
  },
  api_keys: {
    key: 'id',
    select: `/* monitor:reshard.read */
SELECT id AS key, name, encode(secret_hash, 'hex') AS secret_hash, rate_limit_per_minute,
       (extract(epoch FROM created_at) * 1000000)::bigint AS created_us,
       (extract(epoch FROM revoked_at) * 1000000)::bigint AS revoked_us
  FROM api_keys`,
    upsert: `/* monitor:reshard.upsert */
INSERT INTO api_keys (id, name, secret_hash, rate_limit_per_minute, created_at, revoked_at)
SELECT r.key, r.name, decode(r.secret_hash, 'hex'), r.rate_limit_per_minute,
       timestamptz 'epoch' + r.created_us * interval '1 microsecond', timestamptz 'epoch' + r.revoked_us * interval '1 microsecond'
  FROM jsonb_to_recordset($1::jsonb) AS r(key text, name text, secret_hash text, rate_limit_per_minute int, created_us bigint, revoked_us bigint)
ON CONFLICT (id) DO UPDATE SET name = excluded.name, secret_hash = excluded.secret_hash,
  rate_limit_per_minute = excluded.rate_limit_per_minute, created_at = excluded.created_at, revoked_at = excluded.revoked_at`,
    checksumRow: `ROW(id, name, encode(secret_hash, 'hex'), rate_limit_per_minute, (extract(epoch FROM created_at) * 1000000)::bigint,
       (extract(epoch FROM revoked_at) * 1000000)::bigint)::text`,
  },
} as const;

export type MovedTable = keyof typeof TABLES;
export const MOVED_TABLES = Object.keys(TABLES) as MovedTable[];

/** A row as read from one table; `key` is its primary key, the rest its columns as text-safe JSON values. */
type MovedRow = { key: string } & Record<string, unknown>;

// Statement texts are built once, here, from the constants above (never from input).
const SQL = Object.fromEntries(
  MOVED_TABLES.map((table) => {
    const { key, select, upsert, checksumRow } = TABLES[table];
    return [
      table,
      {
        page: `${select} WHERE shortener_slot(${key}) = ANY($1::smallint[]) AND (shortener_slot(${key}), ${key}) > ($2::smallint, $3::text)
 ORDER BY shortener_slot(${key}), ${key} LIMIT $4`,
        byKeys: `${select} WHERE ${key} = ANY($1::text[])`,
        upsert,
        deleteKeys: `/* monitor:reshard.delete */ DELETE FROM ${table} WHERE ${key} = ANY($1::text[])`,
        deletePage: `/* monitor:reshard.cleanup */ DELETE FROM ${table} WHERE ${key} IN (
  SELECT ${key} FROM ${table} WHERE shortener_slot(${key}) = ANY($1::smallint[]) LIMIT $2)`,
        checksum: `/* monitor:reshard.verify */
SELECT shortener_slot(${key}) AS slot, count(*)::int AS count, md5(string_agg(md5(${checksumRow}), '' ORDER BY ${key})) AS checksum
  FROM ${table} WHERE shortener_slot(${key}) = ANY($1::smallint[]) GROUP BY 1`,
      },
    ];
  }),
) as Record<MovedTable, { page: string; byKeys: string; upsert: string; deleteKeys: string; deletePage: string; checksum: string }>;

/** The mover's statements run longer than the monitor's 500 ms health-check budget (a batch's checksum, a page of deletes). */
const MOVER_STATEMENT_TIMEOUT = '15s';

async function asMover<T>(pool: Pool, work: (client: PoolClient) => Promise<T>): Promise<T> {
  return inTransaction(pool, async (client) => {
    await client.query("SELECT set_config('shortener.mover', 'on', true), set_config('statement_timeout', $1, true)", [MOVER_STATEMENT_TIMEOUT]);
    return work(client);
  });
}

/** A read of the mover (same settings, so the slot guard and the timeout treat it alike). */
function read<R extends object>(pool: Pool, text: string, values: unknown[]): Promise<R[]> {
  return asMover(pool, async (client) => (await client.query<R & Record<string, unknown>>(text, values)).rows as R[]);
}

/** Copy position: the table being copied and the last (slot, key) copied of it. */
export interface CopyCursor {
  table: MovedTable;
  slot: number;
  key: string;
}

export function encodeCursor(cursor: CopyCursor): string {
  return JSON.stringify(cursor);
}

export function decodeCursor(text: string | null): CopyCursor {
  if (text === null) return { table: MOVED_TABLES[0], slot: -1, key: '' };
  const parsed = JSON.parse(text) as CopyCursor;
  if (!MOVED_TABLES.includes(parsed.table)) throw new TypeError(`bad copy cursor ${text}`);
  return parsed;
}

export interface SlotSum {
  slot: number;
  count: number;
  checksum: string;
}

export class SlotMoveRepository {
  /** Sets the guard of `slots` to `state` for `operation` (any earlier state of those slots is replaced). */
  async setGuard(pool: Pool, slots: number[], state: GuardState, operation: string): Promise<void> {
    await asMover(pool, (client) =>
      client.query(
        `/* monitor:reshard.guard */ INSERT INTO slot_guard (slot, state, operation) SELECT unnest($1::smallint[]), $2, $3
         ON CONFLICT (slot) DO UPDATE SET state = excluded.state, operation = excluded.operation, since = now()`,
        [slots, state, operation],
      ),
    );
  }

  /** Moves the guard of `slots` from one state to another; returns how many slots were in `from` (or already in `to`). */
  async changeGuard(pool: Pool, slots: number[], from: GuardState, to: GuardState): Promise<number> {
    return asMover(pool, async (client) => {
      await client.query(`/* monitor:reshard.guard */ UPDATE slot_guard SET state = $3, since = now() WHERE slot = ANY($1::smallint[]) AND state = $2`, [
        slots,
        from,
        to,
      ]);
      const { rows } = await client.query<{ n: number }>(
        `/* monitor:reshard.guard */ SELECT count(*)::int AS n FROM slot_guard WHERE slot = ANY($1::smallint[]) AND state = $2`,
        [slots, to],
      );
      return rows[0].n;
    });
  }

  /** Removes the guard of `slots` where it is in one of `states` (the slot is then this shard's to write, or nobody's business). */
  async clearGuard(pool: Pool, slots: number[], states: GuardState[]): Promise<void> {
    await asMover(pool, (client) =>
      client.query(`/* monitor:reshard.guard */ DELETE FROM slot_guard WHERE slot = ANY($1::smallint[]) AND state = ANY($2::text[])`, [slots, states]),
    );
  }

  /**
   * Waits until every transaction that began before now and has written anything has
   * ended, so that none that passed an older guard state can still commit (the way CREATE
   * INDEX CONCURRENTLY waits out older transactions). One that has not written yet holds
   * no transaction id, and its next statement sees the new guard. Needs pg_monitor to see
   * other roles' sessions.
   */
  async waitForOlderTransactions(pool: Pool, timeoutMs: number): Promise<boolean> {
    const { rows } = await pool.query<{ now: Date }>('/* monitor:reshard.wait */ SELECT clock_timestamp() AS now');
    const since = rows[0].now;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { rows: open } = await pool.query<{ n: number }>(
        `/* monitor:reshard.wait */ SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND xact_start < $1 AND datname = current_database()
            AND backend_xid IS NOT NULL`,
        [since],
      );
      if (open[0].n === 0) return true;
      if (Date.now() >= deadline) return false;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  /** Where change capture stands: the newest change id (0 for none). */
  async changePosition(pool: Pool): Promise<string> {
    const { rows } = await pool.query<{ id: string }>('/* monitor:reshard.changes */ SELECT coalesce(max(id), 0)::text AS id FROM slot_changes');
    return rows[0].id;
  }

  /**
   * Copies the next page of the slots' rows from source to target, table after table, in
   * (slot, key) order after `cursor`. Returns the rows copied and the next cursor, or
   * done once every table is through.
   */
  async copyPage(
    source: Pool,
    target: Pool,
    slots: number[],
    cursorText: string | null,
    pageSize: number,
  ): Promise<{ rows: number; cursor: string; done: boolean }> {
    const cursor = decodeCursor(cursorText);
    const sql = SQL[cursor.table];
    const rows = await read<MovedRow>(source, sql.page, [slots, cursor.slot, cursor.key, pageSize]);
    if (rows.length > 0) await asMover(target, (client) => client.query(sql.upsert, [JSON.stringify(rows)]));
    if (rows.length === pageSize) {
      const last = rows[rows.length - 1];
      const slotRows = await read<{ slot: number }>(source, 'SELECT shortener_slot($1) AS slot', [last.key]);
      return { rows: rows.length, cursor: encodeCursor({ table: cursor.table, slot: slotRows[0].slot, key: last.key }), done: false };
    }
    const nextTable = MOVED_TABLES[MOVED_TABLES.indexOf(cursor.table) + 1];
    if (!nextTable) return { rows: rows.length, cursor: encodeCursor(cursor), done: true };
    return { rows: rows.length, cursor: encodeCursor({ table: nextTable, slot: -1, key: '' }), done: false };
  }

  /**
   * Applies the changes logged for the slots after position `from`: each changed key's
   * current row is read on the source and written on the target (or deleted there when
   * the source has none). Returns the new position and how many changes remain after it.
   */
  async applyChanges(
    source: Pool,
    target: Pool,
    slots: number[],
    from: string,
    limit: number,
  ): Promise<{ applied: number; pending: number; position: string }> {
    const changes = await read<{ id: string; table_name: MovedTable; key: string }>(
      source,
      `/* monitor:reshard.changes */ SELECT id::text, table_name, key FROM slot_changes
        WHERE id > $1::bigint AND slot = ANY($2::smallint[]) ORDER BY id LIMIT $3`,
      [from, slots, limit],
    );
    let position = from;
    if (changes.length > 0) {
      position = changes[changes.length - 1].id;
      const byTable = new Map<MovedTable, Set<string>>();
      for (const change of changes) {
        if (!MOVED_TABLES.includes(change.table_name)) continue;
        const keys = byTable.get(change.table_name) ?? new Set<string>();
        keys.add(change.key);
        byTable.set(change.table_name, keys);
      }
      const current = new Map<MovedTable, MovedRow[]>();
      for (const [table, keys] of byTable) current.set(table, await read<MovedRow>(source, SQL[table].byKeys, [[...keys]]));
      await asMover(target, async (client) => {
        for (const [table, keys] of byTable) {
          const rows = current.get(table) ?? [];
          const present = new Set(rows.map((row) => row.key));
          const gone = [...keys].filter((key) => !present.has(key));
          if (rows.length > 0) await client.query(SQL[table].upsert, [JSON.stringify(rows)]);
          if (gone.length > 0) await client.query(SQL[table].deleteKeys, [gone]);
        }
      });
    }
    const left = await read<{ n: number }>(
      source,
      '/* monitor:reshard.changes */ SELECT count(*)::int AS n FROM slot_changes WHERE id > $1::bigint AND slot = ANY($2::smallint[])',
      [position, slots],
    );
    return { applied: changes.length, pending: left[0].n, position };
  }

  /** Count and checksum per slot over every moved table (VDiff); slots without rows are absent. */
  async checksums(pool: Pool, slots: number[]): Promise<SlotSum[]> {
    const perSlot = new Map<number, { count: number; parts: string[] }>();
    for (const table of MOVED_TABLES) {
      const rows = await read<SlotSum>(pool, SQL[table].checksum, [slots]);
      for (const row of rows) {
        const entry = perSlot.get(row.slot) ?? { count: 0, parts: [] };
        entry.count += row.count;
        entry.parts.push(`${table}:${row.count}:${row.checksum}`);
        perSlot.set(row.slot, entry);
      }
    }
    return [...perSlot].map(([slot, entry]) => ({ slot, count: entry.count, checksum: entry.parts.join('|') }));
  }

  /**
   * The click-counting record of the slots (the offset each partition has applied, per
   * slot) copied from source to target, so a redelivered click batch counts once on the
   * new owner too. Run while the slots are fenced, when no click can be applied to them.
   */
  async copyClickOffsets(source: Pool, target: Pool, slots: number[]): Promise<void> {
    const rows = await read<{ kafka_partition: number; slot: number; last_offset: string }>(
      source,
      `/* monitor:reshard.clicks */
       SELECT o.kafka_partition, s.slot, coalesce(so.last_offset, o.last_offset)::text AS last_offset
         FROM click_offsets o CROSS JOIN unnest($1::smallint[]) AS s(slot)
         LEFT JOIN click_slot_offsets so ON so.kafka_partition = o.kafka_partition AND so.slot = s.slot`,
      [slots],
    );
    if (rows.length === 0) return;
    await asMover(target, (client) =>
      client.query(
        `/* monitor:reshard.clicks */ INSERT INTO click_slot_offsets (kafka_partition, slot, last_offset)
         SELECT * FROM unnest($1::int[], $2::smallint[], $3::bigint[])
         ON CONFLICT (kafka_partition, slot) DO UPDATE SET last_offset = excluded.last_offset`,
        [rows.map((row) => row.kafka_partition), rows.map((row) => row.slot), rows.map((row) => row.last_offset)],
      ),
    );
  }

  /**
   * The Kafka-down click claims of the slots' codes (migration 7), copied to the new owner
   * at the switch: a gateway's batch counted on the old owner and retried after the switch
   * finds its codes claimed there too. Under the fence, so no claim of these codes is made meanwhile.
   */
  async copyFallbackClaims(source: Pool, target: Pool, slots: number[]): Promise<number> {
    const rows = await read<{ batch_id: string; code: string; claimed_at: Date }>(
      source,
      '/* monitor:reshard.clicks */ SELECT batch_id, code, claimed_at FROM click_fallback_claims WHERE shortener_slot(code) = ANY($1::smallint[])',
      [slots],
    );
    if (rows.length === 0) return 0;
    await asMover(target, (client) =>
      client.query(
        `/* monitor:reshard.clicks */ INSERT INTO click_fallback_claims (batch_id, code, claimed_at)
         SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[]) ON CONFLICT DO NOTHING`,
        [rows.map((row) => row.batch_id), rows.map((row) => row.code), rows.map((row) => row.claimed_at)],
      ),
    );
    return rows.length;
  }

  /** Deletes up to `limit` rows of the slots from every moved table; returns how many went. */
  async deletePage(pool: Pool, slots: number[], limit: number): Promise<number> {
    return asMover(pool, async (client) => {
      let deleted = 0;
      for (const table of MOVED_TABLES) {
        const result = await client.query(SQL[table].deletePage, [slots, limit - deleted]);
        deleted += result.rowCount ?? 0;
        if (deleted >= limit) break;
      }
      if (deleted < limit) await client.query('/* monitor:reshard.changes */ DELETE FROM slot_changes WHERE slot = ANY($1::smallint[])', [slots]);
      return deleted;
    });
  }

  /** The WAL position of a primary now. */
  async currentLsn(pool: Pool): Promise<string> {
    const { rows } = await pool.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
    return rows[0].lsn;
  }

  /** Whether a standby has replayed the primary's WAL up to `lsn` (asked of the standby: the primary hears of replay only now and then). */
  async replayedUpTo(standby: Pool, lsn: string): Promise<boolean> {
    const { rows } = await standby.query<{ done: boolean }>('/* monitor:reshard.replay */ SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS done', [lsn]);
    return rows[0].done === true;
  }

  /**
   * The planner's estimate of a shard's links (for batch sizes): the statistics' row count,
   * which costs nothing, where a count would read every row. Codes hash evenly over slots.
   */
  async estimatedLinks(pool: Pool): Promise<number> {
    const rows = await read<{ n: number }>(
      pool,
      "/* monitor:reshard.plan */ SELECT greatest(reltuples, 0)::bigint::int AS n FROM pg_class WHERE oid = 'urls'::regclass",
      [],
    );
    return rows[0]?.n ?? 0;
  }

  /** Records the slot map of `epoch` on a primary, unless it holds a newer one. */
  async saveSlotMap(pool: Pool, epoch: number, slots: readonly number[]): Promise<void> {
    await asMover(pool, (client) =>
      client.query(
        `/* monitor:reshard.map */ INSERT INTO cluster_slot_map (id, epoch, slots) VALUES (1, $1, $2::smallint[])
         ON CONFLICT (id) DO UPDATE SET epoch = excluded.epoch, slots = excluded.slots, at = now() WHERE cluster_slot_map.epoch < excluded.epoch`,
        [epoch, slots],
      ),
    );
  }

  /** The slot map a primary recorded at the last switch it saw; null when it never took part in one. */
  async savedSlotMap(pool: Pool): Promise<{ epoch: number; slots: number[] } | null> {
    const rows = await read<{ epoch: string; slots: number[] }>(
      pool,
      '/* monitor:reshard.map */ SELECT epoch::text, slots FROM cluster_slot_map WHERE id = 1',
      [],
    ).catch(() => []); // a primary without migration 6 has no map
    return rows.length ? { epoch: Number(rows[0].epoch), slots: rows[0].slots } : null;
  }

  /** Events written on a shard that its writer's outbox relay has not sent yet. */
  async outboxPending(pool: Pool): Promise<number> {
    const rows = await read<{ n: number }>(pool, '/* monitor:reshard.retire */ SELECT count(*)::int AS n FROM outbox', []);
    return rows[0].n;
  }

  async schemaVersion(pool: Pool): Promise<number> {
    const { rows } = await pool.query<{ version: number }>('SELECT coalesce(max(version), 0)::int AS version FROM schema_migrations');
    return rows[0].version;
  }
}
