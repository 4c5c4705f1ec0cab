import { slotOf } from '@shortener/shard-router';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import {
  CHECKSUM_IDEMPOTENCY_SQL,
  CHECKSUM_URLS_SQL,
  COPY_URLS_PAGE_SQL,
  DELETE_URLS_PAGE_SQL,
  SLOT_FUNCTION_SQL,
  SLOT_INDEX_SQL,
  UPSERT_URLS_SQL,
} from './slot-sql';

const BIN = '/usr/lib/postgresql/15/bin';
jest.setTimeout(60_000);

/** A throwaway PostgreSQL 15 in a temporary directory (as the `postgres` OS user when run as root: initdb refuses root). */
async function startPostgres(): Promise<{ host: string; port: number; stop(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'resharding-pg-'));
  const asRoot = process.geteuid?.() === 0;
  const ids = asRoot ? { uid: Number(execFileSync('id', ['-u', 'postgres']).toString()), gid: Number(execFileSync('id', ['-g', 'postgres']).toString()) } : {};
  if (asRoot) chownSync(dir, ids.uid!, ids.gid!);
  const data = join(dir, 'data');
  execFileSync(join(BIN, 'initdb'), ['-D', data, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--no-sync', '--locale=C'], { ...ids, stdio: 'ignore' });
  // A Unix socket in its own directory only: a server of another Jest worker is never reached.
  const port = 5432;
  const settings = ['-c', 'listen_addresses=', '-c', `unix_socket_directories=${dir}`, '-c', 'fsync=off', '-c', 'shared_buffers=32MB'];
  const child: ChildProcess = spawn(join(BIN, 'postgres'), ['-D', data, '-p', String(port), ...settings], { ...ids, stdio: 'ignore' });
  const deadline = Date.now() + 20_000;
  for (;;) {
    const client = new Client({ host: dir, port, user: 'postgres', database: 'postgres' });
    try {
      await client.connect();
      await client.end();
      break;
    } catch (error) {
      await client.end().catch(() => undefined);
      if (Date.now() > deadline || child.exitCode !== null) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  return {
    host: dir,
    port,
    stop: async () => {
      if (child.exitCode === null) {
        await new Promise<void>((resolve) => {
          child.once('exit', () => resolve());
          child.kill('SIGINT'); // fast shutdown
        });
      }
      if (existsSync(dir)) rmSync(dir, { recursive: true, force: true });
    },
  };
}

// The columns of libs/db's migration 1 (urls with code COLLATE "C", idempotency_keys).
const SCHEMA = `
CREATE TABLE urls (
  code text COLLATE "C" PRIMARY KEY, url text NOT NULL, redirect_type smallint NOT NULL DEFAULT 302,
  created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz, deleted_at timestamptz, manage_token_hash bytea NOT NULL, clicks bigint NOT NULL DEFAULT 0);
CREATE TABLE idempotency_keys (key text COLLATE "C" PRIMARY KEY, request_hash bytea NOT NULL, response jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now());`;

const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
function randomCodes(count: number): string[] {
  const bytes = randomBytes(count * 7);
  return Array.from({ length: count }, (_, i) => Array.from(bytes.subarray(i * 7, i * 7 + 7), (b) => ALPHABET[b % 62]).join(''));
}

interface Sum {
  slot: number;
  count: number;
  checksum: string;
}

describe('slot SQL on a real PostgreSQL 15', () => {
  let server: Awaited<ReturnType<typeof startPostgres>>;
  let source: Client;
  let target: Client;

  beforeAll(async () => {
    server = await startPostgres();
    const admin = new Client({ host: server.host, port: server.port, user: 'postgres', database: 'postgres' });
    await admin.connect();
    await admin.query('CREATE DATABASE source');
    await admin.query('CREATE DATABASE target');
    await admin.end();
    source = new Client({ host: server.host, port: server.port, user: 'postgres', database: 'source' });
    target = new Client({ host: server.host, port: server.port, user: 'postgres', database: 'target' });
    await Promise.all([source.connect(), target.connect()]);
    for (const db of [source, target]) {
      await db.query(SCHEMA);
      await db.query(SLOT_FUNCTION_SQL);
      await db.query(SLOT_INDEX_SQL.urls);
      await db.query(SLOT_INDEX_SQL.idempotencyKeys);
    }
  });

  afterAll(async () => {
    await Promise.all([source?.end(), target?.end()].map((end) => end?.catch(() => undefined)));
    await server?.stop();
  });

  it('has no built-in crc32 in version 15 (it came with 18), hence shortener_slot()', async () => {
    const { rows } = await source.query<{ server_version_num: string }>('SHOW server_version_num');
    expect(Number(rows[0].server_version_num)).toBeGreaterThanOrEqual(150000);
    expect(Number(rows[0].server_version_num)).toBeLessThan(160000);
    await expect(source.query("SELECT crc32('a'::bytea)")).rejects.toThrow(/function crc32\(bytea\) does not exist/);
  });

  it('computes the same slot as slotOf() for random codes, aliases, non-ASCII and the empty string', async () => {
    const codes = [...randomCodes(5000), ...Array.from({ length: 500 }, (_, i) => `promo${i}`), '', 'é', 'ü-ß_日本', '😀', "it's", 'a\\b', '123456789'];
    const { rows } = await source.query<{ code: string; slot: number }>('SELECT c AS code, shortener_slot(c) AS slot FROM unnest($1::text[]) c', [codes]);
    const wrong = rows.filter((row) => row.slot !== slotOf(row.code));
    expect(wrong).toEqual([]);
    expect(rows).toHaveLength(codes.length);
  });

  it('copies a batch by keyset pages, and source and target then checksum equal per slot', async () => {
    const codes = randomCodes(3000);
    const batch = [...new Set(codes.map(slotOf))].slice(0, 8);
    await source.query(
      `INSERT INTO urls (code, url, redirect_type, expires_at, deleted_at, manage_token_hash, clicks)
       SELECT c, 'https://example.com/' || c, CASE WHEN i % 3 = 0 THEN 301 ELSE 302 END,
              CASE WHEN i % 5 = 0 THEN now() + interval '1 day' END, CASE WHEN i % 7 = 0 THEN now() END,
              sha256(convert_to(c, 'UTF8')), i
         FROM unnest($1::text[]) WITH ORDINALITY AS t(c, i)`,
      [codes],
    );
    const inBatch = codes.filter((code) => batch.includes(slotOf(code)));

    let cursor: [number, string] = [-1, ''];
    let pages = 0;
    for (;;) {
      const { rows } = await source.query({ text: COPY_URLS_PAGE_SQL, values: [batch, cursor[0], cursor[1], 7], rowMode: 'array' });
      if (rows.length === 0) break;
      pages += 1;
      const columns = Array.from({ length: 9 }, (_, i) => rows.map((row) => row[i + 1]));
      await target.query(UPSERT_URLS_SQL, columns);
      if (pages === 1) await target.query(UPSERT_URLS_SQL, columns); // a page applied twice is harmless
      const last = rows[rows.length - 1];
      cursor = [last[0], last[1]];
    }
    expect(pages).toBe(Math.ceil(inBatch.length / 7));
    const copied = await target.query<{ code: string }>('SELECT code FROM urls ORDER BY code');
    expect(copied.rows.map((row) => row.code)).toEqual([...inBatch].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));

    const [a, b] = await Promise.all([source.query<Sum>(CHECKSUM_URLS_SQL, [batch]), target.query<Sum>(CHECKSUM_URLS_SQL, [batch])]);
    expect(a.rows.map((row) => row.slot).sort((x, y) => x - y)).toEqual([...batch].sort((x, y) => x - y));
    expect(b.rows).toEqual(a.rows);
    expect(a.rows.reduce((sum, row) => sum + row.count, 0)).toBe(inBatch.length);
  });

  it('tells a changed click count, a lost row, a NULL turned empty and a moved tombstone apart', async () => {
    const batch = (await target.query<{ slot: number }>('SELECT DISTINCT shortener_slot(code) AS slot FROM urls')).rows.map((row) => row.slot);
    const before = (await target.query<Sum>(CHECKSUM_URLS_SQL, [batch])).rows;
    const pick = async (n: number) =>
      (await target.query<{ code: string; slot: number }>('SELECT code, shortener_slot(code) AS slot FROM urls ORDER BY code OFFSET $1 LIMIT 1', [n])).rows[0];
    const differing = async () => {
      const now = (await target.query<Sum>(CHECKSUM_URLS_SQL, [batch])).rows;
      const bySlot = new Map(now.map((row) => [row.slot, row]));
      return before.filter((row) => bySlot.get(row.slot)?.checksum !== row.checksum || bySlot.get(row.slot)?.count !== row.count).map((row) => row.slot);
    };

    const clicked = await pick(0);
    await target.query('UPDATE urls SET clicks = clicks + 1 WHERE code = $1', [clicked.code]);
    expect(await differing()).toEqual([clicked.slot]);
    await target.query('UPDATE urls SET clicks = clicks - 1 WHERE code = $1', [clicked.code]);
    expect(await differing()).toEqual([]);

    const tombstone = await pick(1);
    await target.query('UPDATE urls SET deleted_at = CASE WHEN deleted_at IS NULL THEN now() ELSE NULL END WHERE code = $1', [tombstone.code]);
    expect(await differing()).toEqual([tombstone.slot]);

    const lost = await pick(2);
    const saved = await target.query('DELETE FROM urls WHERE code = $1 RETURNING *', [lost.code]);
    const changed = await differing();
    expect(changed).toContain(lost.slot);
    expect(saved.rowCount).toBe(1);
  });

  it('checksums idempotency records by their key’s slot', async () => {
    const keys = randomCodes(200).map((code) => `key-${code}`);
    for (const db of [source, target]) {
      await db.query(
        `INSERT INTO idempotency_keys (key, request_hash, response, created_at)
         SELECT k, sha256(convert_to(k, 'UTF8')), jsonb_build_object('code', k), timestamptz '2026-12-02 08:00:00+00' FROM unnest($1::text[]) k`,
        [keys],
      );
    }
    const slots = [...new Set(keys.map(slotOf))];
    const [a, b] = await Promise.all([source.query<Sum>(CHECKSUM_IDEMPOTENCY_SQL, [slots]), target.query<Sum>(CHECKSUM_IDEMPOTENCY_SQL, [slots])]);
    expect(b.rows).toEqual(a.rows);
    expect(a.rows.reduce((sum, row) => sum + row.count, 0)).toBe(keys.length);
    await target.query(`UPDATE idempotency_keys SET response = 'null'::jsonb WHERE key = $1`, [keys[0]]);
    const c = await target.query<Sum>(CHECKSUM_IDEMPOTENCY_SQL, [slots]);
    expect(c.rows.filter((row, i) => row.checksum !== a.rows[i].checksum).map((row) => row.slot)).toEqual([slotOf(keys[0])]);
  });

  it('reads and deletes a slot through the (shortener_slot(code), code) index', async () => {
    await source.query('ANALYZE urls');
    await source.query('SET enable_seqscan = off');
    const plan = await source.query({ text: `EXPLAIN ${COPY_URLS_PAGE_SQL}`, values: [[1, 2], -1, '', 100] });
    await source.query('RESET enable_seqscan');
    expect(plan.rows.map((row) => row['QUERY PLAN']).join('\n')).toMatch(/urls_slot_code/);

    const { rows } = await source.query<{ slot: number; n: number }>(
      'SELECT shortener_slot(code) AS slot, count(*)::int AS n FROM urls GROUP BY 1 ORDER BY 2 DESC LIMIT 1',
    );
    const { slot, n } = rows[0];
    let deleted = 0;
    for (;;) {
      const result = await source.query(DELETE_URLS_PAGE_SQL, [[slot], 2]);
      if (!result.rowCount) break;
      deleted += result.rowCount;
    }
    expect(deleted).toBe(n);
    expect((await source.query('SELECT 1 FROM urls WHERE shortener_slot(code) = $1', [slot])).rowCount).toBe(0);
  });

  it('measures the slot function and a 20,000-row checksum (figures for docs/resharding.md)', async () => {
    const codes = randomCodes(20_000);
    await source.query('CREATE TEMP TABLE codes AS SELECT c FROM unnest($1::text[]) c', [codes]);
    let started = process.hrtime.bigint();
    await source.query('SELECT sum(shortener_slot(c)) FROM codes');
    const perCallUs = Number(process.hrtime.bigint() - started) / 1000 / codes.length;

    await source.query(
      `INSERT INTO urls (code, url, manage_token_hash) SELECT c, 'https://example.com/' || c, sha256(convert_to(c, 'UTF8')) FROM codes ON CONFLICT DO NOTHING`,
    );
    const all = Array.from({ length: 1024 }, (_, slot) => slot);
    started = process.hrtime.bigint();
    const { rows } = await source.query<Sum>(CHECKSUM_URLS_SQL, [all]);
    const checksumMs = Number(process.hrtime.bigint() - started) / 1e6;
    const total = rows.reduce((sum, row) => sum + row.count, 0);
    console.log(`shortener_slot: ${perCallUs.toFixed(1)} µs per code; checksum of ${total} rows: ${checksumMs.toFixed(0)} ms`);
    expect(total).toBeGreaterThanOrEqual(20_000);
  });
});
