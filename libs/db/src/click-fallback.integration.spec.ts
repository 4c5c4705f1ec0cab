/**
 * The Kafka-down click fallback's SQL (ClickRepository.applyFallbackBatch, migration 7)
 * against a real PostgreSQL 15 with every migration applied: a batch counts each code once
 * however often it is retried, also when a retry brings codes that changed shard, and a
 * slot's write fence or a slot that moved away refuses the whole part, claims included.
 */
import { createHash } from 'node:crypto';
import type { Pool } from 'pg';
import { slotOf } from '@shortener/shard-router';
import { startPostgresServer, type RunningPostgres } from '@shortener/testing';
import { ClickRepository } from './click.repository';
import { LinkRepository } from './link.repository';
import { asRole, migratedDatabase } from './migrated-database.spec-helper';
import { inTransaction } from './node-pools';
import { SlotMoveRepository } from './slot-move.repository';

jest.setTimeout(60_000);

let server: RunningPostgres;
let pool: Pool;
const clicks = new ClickRepository();
const codes = Array.from({ length: 40 }, (_, i) => `fb${i.toString(36)}x`);

beforeAll(async () => {
  server = await startPostgresServer();
  pool = await migratedDatabase(server);
  const links = codes.map((code) => ({
    code,
    url: `https://example.com/${code}`,
    redirectType: 302 as const,
    expiresAt: null,
    manageTokenHash: createHash('sha256').update(code).digest(),
    owner: null,
  }));
  await new LinkRepository().insertManyWithEvents(
    pool,
    links,
    links.map((link) => ({ topic: 'url-events', payload: { type: 'url.created', code: link.code, link: {} } })),
  );
});

afterAll(async () => {
  await pool?.end();
  await server?.stop();
});

async function clicksOf(subset: string[]): Promise<Map<string, number>> {
  const { rows } = await pool.query<{ code: string; clicks: string }>('SELECT code, clicks FROM urls WHERE code = ANY($1)', [subset]);
  return new Map(rows.map((row) => [row.code, Number(row.clicks)]));
}

const apply = (batchId: string, subset: string[], count = 1) =>
  inTransaction(pool, (client) =>
    clicks.applyFallbackBatch(
      client,
      batchId,
      subset,
      subset.map(() => count),
    ),
  );

it('counts a batch once per code however often it is retried, and a retry that brings more codes counts only those', async () => {
  const [a, b, c] = [codes.slice(0, 5), codes.slice(5, 10), codes.slice(10, 12)];
  expect(await apply('batch-1', [...a, ...b], 3)).toBe(30);
  expect(await apply('batch-1', [...a, ...b], 3)).toBe(0);
  // The retry of a part refused elsewhere: b was counted here, c arrives from another shard.
  expect(await apply('batch-1', [...b, ...c], 3)).toBe(6);
  expect([...(await clicksOf([...a, ...b, ...c])).values()]).toEqual(Array(12).fill(3));
  // Another batch counts again; a code with no row adds nothing.
  expect(await apply('batch-2', [...a, 'nosuchcode'], 2)).toBe(10);
  expect((await clicksOf(a)).get(a[0])).toBe(5);
});

it('refuses a part with a code in a fenced or moved slot as a whole, claims included, so its retry elsewhere is counted', async () => {
  const mover = new SlotMoveRepository();
  const fencedCode = codes[20];
  const others = codes.slice(21, 25).filter((code) => slotOf(code) !== slotOf(fencedCode));
  await mover.setGuard(pool, [slotOf(fencedCode)], 'fenced', 'op-1');
  await expect(apply('batch-3', [...others, fencedCode])).rejects.toMatchObject({ code: 'SR001' });
  expect([...(await clicksOf(others)).values()]).toEqual(Array(others.length).fill(0));
  await mover.changeGuard(pool, [slotOf(fencedCode)], 'fenced', 'moved');
  await expect(apply('batch-3', [...others, fencedCode])).rejects.toMatchObject({ code: 'SR002' });
  // After the switch the writer sends the moved code to its new owner and the rest here.
  expect(await apply('batch-3', others)).toBe(others.length);
  expect([...(await clicksOf(others)).values()]).toEqual(Array(others.length).fill(1));
  await mover.clearGuard(pool, [slotOf(fencedCode)], ['moved']);
});

it("is the writer role's table; the monitor reads and copies it, the reader has no access", async () => {
  expect(await asRole(pool, 'shortener_writer', "INSERT INTO click_fallback_claims (batch_id, code) VALUES ('b', 'c')")).toBe('allowed');
  expect(await asRole(pool, 'shortener_reader', 'SELECT * FROM click_fallback_claims')).toMatch(/permission denied/);
  // The monitor copies a moved slot's claims; it deletes none.
  expect(await asRole(pool, 'shortener_monitor', 'SELECT * FROM click_fallback_claims')).toBe('allowed');
  expect(await asRole(pool, 'shortener_monitor', 'DELETE FROM click_fallback_claims')).toMatch(/permission denied/);
});
