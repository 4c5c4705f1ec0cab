/**
 * The slot mover's SQL (migration 6 + SlotMoveRepository) on two real PostgreSQL 15
 * servers: a source and a target shard, with writes going on while slots move.
 */
import { createHash } from 'node:crypto';
import type { Pool } from 'pg';
import { slotOf } from '@shortener/shard-router';
import { startPostgresServer, type RunningPostgres } from '@shortener/testing';
import { LinkRepository, type NewLink } from './link.repository';
import { IdempotencyRepository } from './idempotency.repository';
import { ClickRepository } from './click.repository';
import { inTransaction } from './node-pools';
import { migratedDatabase } from './migrated-database.spec-helper';
import { SlotMoveRepository } from './slot-move.repository';

jest.setTimeout(120_000);

let servers: RunningPostgres[] = [];
let source: Pool;
let target: Pool;
const links = new LinkRepository();
const idempotency = new IdempotencyRepository();
const clicks = new ClickRepository();
const mover = new SlotMoveRepository();

function newLink(code: string): NewLink {
  return {
    code,
    url: `https://example.com/${code}`,
    redirectType: 302,
    expiresAt: null,
    manageTokenHash: createHash('sha256').update(code).digest(),
    owner: null,
  };
}

async function insert(pool: Pool, codes: string[]): Promise<void> {
  await links.insertManyWithEvents(
    pool,
    codes.map(newLink),
    codes.map((code) => ({ topic: 'url.events', payload: { type: 'url.created', code, link: {} } })),
  );
}

/** Codes in the moved slots and codes outside them. */
const codes = Array.from({ length: 3000 }, (_, i) => `c${i.toString(36)}x`);
const movedSlots = [...new Set(codes.map(slotOf))].slice(0, 12);
const moved = codes.filter((code) => movedSlots.includes(slotOf(code)));
const kept = codes.filter((code) => !movedSlots.includes(slotOf(code)));

beforeAll(async () => {
  servers = await Promise.all([startPostgresServer(), startPostgresServer()]);
  [source, target] = await Promise.all(servers.map((server) => migratedDatabase(server)));
  await insert(source, codes);
});

afterAll(async () => {
  await Promise.all([source?.end(), target?.end()]);
  await Promise.all(servers.map((server) => server.stop()));
});

describe('slot mover', () => {
  it('computes the router slot inside PostgreSQL, for generated codes, aliases, non-ASCII and the empty string (PostgreSQL 15 has no crc32)', async () => {
    const aliases = ['', 'é', 'ü-ß_日本', '😀', "it's", 'a\\b', '123456789', ...Array.from({ length: 300 }, (_, i) => `promo${i}`)];
    const { rows } = await source.query<{ code: string; slot: number }>(
      'SELECT c AS code, shortener_slot(c) AS slot FROM (SELECT code AS c FROM urls UNION ALL SELECT unnest($1::text[])) codes',
      [aliases],
    );
    expect(rows).toHaveLength(codes.length + aliases.length);
    expect(rows.filter((row) => row.slot !== slotOf(row.code))).toEqual([]);
    await expect(source.query("SELECT crc32('a'::bytea)")).rejects.toThrow(/does not exist/);
  });

  it('copies the slots while writes go on, catches up on what changed, and ends with equal checksums', async () => {
    await mover.setGuard(target, movedSlots, 'incoming', 'op-1');
    await mover.setGuard(source, movedSlots, 'capture', 'op-1');
    expect(await mover.waitForOlderTransactions(source, 5000)).toBe(true);
    let position = await mover.changePosition(source);
    await inTransaction(source, (client) => idempotency.claim(client, moved[0], Buffer.from('aa', 'hex')));

    let cursor: string | null = null;
    let copied = 0;
    for (let page = 0; ; page++) {
      const result = await mover.copyPage(source, target, movedSlots, cursor, 100);
      copied += result.rows;
      cursor = result.cursor;
      if (page === 1) {
        // Writes during the copy: an update, a click, a tombstone, a new code in a moved slot.
        await source.query("UPDATE urls SET url = 'https://example.org/changed' WHERE code = $1", [moved[0]]);
        await inTransaction(source, (client) => clicks.add(client, [moved[1]], [7]));
        await source.query('UPDATE urls SET deleted_at = now() WHERE code = $1', [moved[2]]);
      }
      if (result.done) break;
    }
    expect(copied).toBeGreaterThanOrEqual(moved.length);
    // The target refuses every writer but the mover for its incoming slots.
    await expect(insert(target, [moved[3] + 'new'].filter((code) => movedSlots.includes(slotOf(code))).concat(moved[5]))).rejects.toMatchObject({
      code: 'SR001',
    });

    const caughtUp = await mover.applyChanges(source, target, movedSlots, position, 1000);
    expect(caughtUp.applied).toBeGreaterThanOrEqual(4);
    expect(caughtUp.pending).toBe(0);
    position = caughtUp.position;

    // Fence: writes of the moved slots are refused, others go on.
    expect(await mover.changeGuard(source, movedSlots, 'capture', 'fenced')).toBe(movedSlots.length);
    await expect(source.query("UPDATE urls SET url = 'https://x.example' WHERE code = $1", [moved[4]])).rejects.toMatchObject({ code: 'SR001' });
    await source.query("UPDATE urls SET url = 'https://kept.example' WHERE code = $1", [kept[0]]);
    const final = await mover.applyChanges(source, target, movedSlots, position, 1000);
    expect(final.pending).toBe(0);

    const [left, right] = await Promise.all([mover.checksums(source, movedSlots), mover.checksums(target, movedSlots)]);
    expect(right).toEqual(left);
    expect(left.reduce((sum, slot) => sum + slot.count, 0)).toBe(moved.length + 1);

    // A difference is seen: one changed column on the target.
    await target.query("SELECT set_config('shortener.mover', 'on', false)");
    const client = await target.connect();
    try {
      await client.query("SELECT set_config('shortener.mover', 'on', false)");
      await client.query('UPDATE urls SET clicks = clicks + 1 WHERE code = $1', [moved[6]]);
      expect(await mover.checksums(target, movedSlots)).not.toEqual(left);
      await client.query('UPDATE urls SET clicks = clicks - 1 WHERE code = $1', [moved[6]]);
      await client.query("SELECT set_config('shortener.mover', 'off', false)");
    } finally {
      client.release();
    }

    // Switch: the source refuses the moved slots for good, the target takes them, clicks' offsets follow.
    await source.query('INSERT INTO click_offsets (kafka_partition, last_offset) VALUES (0, 41), (1, 7)');
    expect(await mover.changeGuard(source, movedSlots, 'fenced', 'moved')).toBe(movedSlots.length);
    await mover.copyClickOffsets(source, target, movedSlots);
    // A Kafka-down click batch counted on the source before the fence: its claims follow the moved codes only.
    await source.query("INSERT INTO click_fallback_claims (batch_id, code) VALUES ('batch-9', $1), ('batch-9', $2)", [moved[7], kept[0]]);
    expect(await mover.copyFallbackClaims(source, target, movedSlots)).toBe(1);
    expect(await mover.copyFallbackClaims(source, target, movedSlots)).toBe(1); // idempotent
    const { rows: claims } = await target.query<{ batch_id: string; code: string }>('SELECT batch_id, code FROM click_fallback_claims');
    expect(claims).toEqual([{ batch_id: 'batch-9', code: moved[7] }]);
    await mover.clearGuard(target, movedSlots, ['incoming']);
    await expect(source.query("UPDATE urls SET url = 'https://stale.example' WHERE code = $1", [moved[4]])).rejects.toMatchObject({ code: 'SR002' });
    await target.query("UPDATE urls SET url = 'https://new-owner.example' WHERE code = $1", [moved[4]]);
    const offsets = await inTransaction(target, (c) => clicks.appliedOffsets(c, 0, [movedSlots[0], 1023]));
    expect(offsets.get(movedSlots[0])).toBe(41n);

    // Clean-up: the old copies go, in pages; rows of other slots stay.
    let deleted = 0;
    for (;;) {
      const page = await mover.deletePage(source, movedSlots, 500);
      deleted += page;
      if (page < 500) break;
    }
    expect(deleted).toBe(moved.length + 1);
    const { rows } = await source.query<{ n: number }>('SELECT count(*)::int AS n FROM urls');
    expect(rows[0].n).toBe(kept.length);
    const { rows: onTarget } = await target.query<{ url: string; clicks: string; deleted: boolean }>(
      'SELECT url, clicks, deleted_at IS NOT NULL AS deleted FROM urls WHERE code = ANY($1) ORDER BY code',
      [[moved[0], moved[1], moved[2]]],
    );
    expect(onTarget.map((row) => [row.url, Number(row.clicks), row.deleted])).toEqual(
      [
        [moved[0], 'https://example.org/changed', 0, false],
        [moved[1], `https://example.com/${moved[1]}`, 7, false],
        [moved[2], `https://example.com/${moved[2]}`, 0, true],
      ]
        .sort((a, b) => ((a[0] as string) < (b[0] as string) ? -1 : 1))
        .map(([, url, n, d]) => [url, n, d]),
    );
  });

  it('keeps the newest slot map a primary was written under (for a stack restored from backups)', async () => {
    expect(await mover.savedSlotMap(target)).toBeNull();
    const map = Array.from({ length: 1024 }, (_, slot) => slot % 3);
    await mover.saveSlotMap(target, 7, map);
    await mover.saveSlotMap(
      target,
      5,
      map.map(() => 0),
    ); // an older switch arriving late changes nothing
    expect(await mover.savedSlotMap(target)).toEqual({ epoch: 7, slots: map });
  });

  it('lets the writer, but not the reader, write through the guard, and gives the monitor no more than the mover needs', async () => {
    const { rows } = await source.query<{ g: boolean }>("SELECT has_table_privilege('shortener_reader', 'slot_guard', 'SELECT') AS g");
    expect(rows[0].g).toBe(false);
    const { rows: monitor } = await source.query<{ d: boolean; o: boolean }>(
      "SELECT has_table_privilege('shortener_monitor', 'urls', 'DELETE') AS d, has_table_privilege('shortener_monitor', 'outbox', 'INSERT') AS o",
    );
    expect(monitor[0]).toEqual({ d: true, o: false });
  });
});
