/**
 * The SQL of API keys and of GET /api/urls against a real PostgreSQL 15 with every
 * migration applied: what the statements answer, how they are planned (an index range
 * read backwards, never a scan, whatever the page), and what each service role may do.
 */
import { createHash } from 'node:crypto';
import type { Pool } from 'pg';
import { startPostgresServer, type RunningPostgres } from '@shortener/testing';
import { ApiKeyRepository } from './api-key.repository';
import { LISTING_STATEMENTS, LinkRepository, type ListedLink, type NewLink } from './link.repository';
import { asRole as asRoleIn, migratedDatabase } from './migrated-database.spec-helper';

jest.setTimeout(60_000);

let server: RunningPostgres;
let pool: Pool;
const links = new LinkRepository();
const keys = new ApiKeyRepository();
const OWNER = 'OwnerKey01';
const OTHER = 'OtherKey02';
const RARE = 'RareKey003';
const LINKS_PER_OWNER = 3000;

function newLink(code: string, owner: string | null): NewLink {
  return { code, url: `https://example.com/${code}`, redirectType: 302, expiresAt: null, manageTokenHash: createHash('sha256').update(code).digest(), owner };
}

async function insert(batch: NewLink[]): Promise<void> {
  await links.insertManyWithEvents(
    pool,
    batch,
    batch.map((link) => ({ topic: 'url-events', payload: { type: 'url.created', code: link.code, link: {} } })),
  );
}

/** Every page of a listing, following its positions, as the gateway's cursors do. */
async function listAll(owner: string | null, limit: number): Promise<ListedLink[]> {
  const seen: ListedLink[] = [];
  let after: { createdMicros: string; code: string } | null = null;
  for (;;) {
    const page = await links.listPage(pool, owner, after, limit);
    seen.push(...page);
    if (page.length < limit) return seen;
    const last = page[page.length - 1];
    after = { createdMicros: last.createdMicros, code: last.code };
  }
}

beforeAll(async () => {
  server = await startPostgresServer();
  pool = await migratedDatabase(server);
  await insert(Array.from({ length: 40 }, (_, i) => newLink(`rare${String(i).padStart(3, '0')}`, RARE)));
  // Batches of 500 share one statement, hence one created_at: ties broken by the code.
  for (let batch = 0; batch < LINKS_PER_OWNER / 500; batch++) {
    const codes = Array.from({ length: 500 }, (_, i) => `c${String(batch * 500 + i).padStart(5, '0')}`);
    await insert(codes.flatMap((code) => [newLink(`${code}a`, OWNER), newLink(`${code}b`, OTHER), newLink(`${code}n`, null)]));
  }
  await pool.query('ANALYZE urls');
});

afterAll(async () => {
  await pool?.end();
  await server?.stop();
});

describe('LinkRepository.listPage', () => {
  it("pages through one owner's links newest first, in (created_at, code) order, each once", async () => {
    const listed = await listAll(OWNER, 100);
    expect(listed).toHaveLength(LINKS_PER_OWNER);
    expect(new Set(listed.map((link) => link.code)).size).toBe(LINKS_PER_OWNER);
    expect(listed.every((link) => link.code.endsWith('a'))).toBe(true);
    for (let i = 1; i < listed.length; i++) {
      const [newer, older] = [listed[i - 1], listed[i]];
      const ordered = BigInt(newer.createdMicros) > BigInt(older.createdMicros) || (newer.createdMicros === older.createdMicros && newer.code > older.code);
      if (!ordered) throw new Error(`${newer.code} before ${older.code} is out of order`);
    }
  });

  it("leaves deleted links out, and lists everyone's for the admin", async () => {
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      await links.markDeleted(client, 'c00000a');
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    const mine = await listAll(OWNER, 100);
    expect(mine.map((link) => link.code)).not.toContain('c00000a');
    expect(mine).toHaveLength(LINKS_PER_OWNER - 1);
    const everyone = await links.listPage(pool, null, null, 5);
    expect(everyone.map((link) => link.code)).toEqual(['c02999n', 'c02999b', 'c02999a', 'c02998n', 'c02998b']);
  });
});

describe('the listing statements as planned', () => {
  async function planOf(statement: { text: string }, values: unknown[]): Promise<{ plan: string; rowsRead: number }> {
    const { rows } = await pool.query(`EXPLAIN (ANALYZE, FORMAT JSON) ${statement.text}`, values);
    type PlanNode = {
      'Node Type': string;
      'Index Name'?: string;
      'Actual Rows': number;
      'Rows Removed by Filter'?: number;
      'Scan Direction'?: string;
      Plans?: PlanNode[];
    };
    const nodes: PlanNode[] = [];
    const walk = (node: PlanNode) => {
      nodes.push(node);
      (node.Plans ?? []).forEach(walk);
    };
    walk(rows[0]['QUERY PLAN'][0].Plan);
    const scan = nodes.find((node) => node['Node Type'].includes('Scan'))!;
    return {
      plan: nodes.map((node) => [node['Node Type'], node['Index Name'], node['Scan Direction']].filter(Boolean).join(' ')).join(' > '),
      rowsRead: scan['Actual Rows'] + (scan['Rows Removed by Filter'] ?? 0),
    };
  }

  /** The position of the tenth link of the listing: a later page starts after it. */
  const middle = async (owner: string | null) => {
    const page = await links.listPage(pool, owner, null, 10);
    const tenth = page[page.length - 1];
    return { createdMicros: tenth.createdMicros, code: tenth.code };
  };

  // A rare key's links are the oldest of the table: a plan that filtered the everyone
  // index would read nearly every row to find them. Whichever index PostgreSQL takes, a
  // page reads about (limit + 1) / (the key's share of the links) index entries: never
  // more as the table grows, never a scan or a sort.
  it.each([
    ['a rare key, first page', RARE, 'first', 1],
    ['a rare key, a later page', RARE, 'next', 1],
    ['a key with a third of the links, first page', OWNER, 'first', 3],
    ['a key with a third of the links, a later page', OWNER, 'next', 3],
    ['the admin, first page', null, 'first', 1],
    ['the admin, a later page', null, 'next', 1],
  ] as const)('%s: an index range read backwards, about the page', async (_, owner, page, inverseShare) => {
    const statement = LISTING_STATEMENTS[owner === null ? 'all' : 'owner'][page];
    const values: unknown[] = owner === null ? [] : [owner];
    if (page === 'next') {
      const after = await middle(owner);
      values.push(after.createdMicros, after.code);
    }
    values.push(21);
    const { plan, rowsRead } = await planOf(statement, values);
    expect(plan).toMatch(/Index Scan urls_listing_(by_owner|all) Backward/);
    expect(plan).not.toMatch(/Seq Scan|Sort|Bitmap/);
    expect(rowsRead).toBeLessThanOrEqual(21 * inverseShare + 3);
  });
});

describe('ApiKeyRepository and the roles', () => {
  it('stores a key once, revokes it once, and lists only live keys', async () => {
    const key = { id: 'KeyOne0001', name: 'one', secretHash: Buffer.alloc(32, 1), rateLimitPerMinute: 60 };
    expect(await keys.insert(pool, key)).toMatchObject({ id: 'KeyOne0001', name: 'one', rateLimitPerMinute: 60, revokedAt: null });
    expect(await keys.insert(pool, { ...key, name: 'again' })).toBeNull();
    expect((await keys.listLive(pool)).map((row) => row.id)).toContain('KeyOne0001');
    expect(await keys.revoke(pool, 'KeyOne0001')).toBe(true);
    expect(await keys.revoke(pool, 'KeyOne0001')).toBe(false);
    expect(await keys.revoke(pool, 'NoSuchKey1')).toBe(false);
    expect((await keys.find(pool, 'KeyOne0001'))?.revokedAt).toBeInstanceOf(Date);
    expect((await keys.listLive(pool)).map((row) => row.id)).not.toContain('KeyOne0001');
  });

  it('refuses a rate limit out of range and an empty name in the table itself', async () => {
    await expect(keys.insert(pool, { id: 'KeyBad0001', name: 'x', secretHash: Buffer.alloc(32), rateLimitPerMinute: 0 })).rejects.toThrow(/check constraint/);
    await expect(keys.insert(pool, { id: 'KeyBad0002', name: '', secretHash: Buffer.alloc(32), rateLimitPerMinute: null })).rejects.toThrow(/check constraint/);
  });

  it('lets the writer create and revoke keys but never delete one, and the reader only read them', async () => {
    const asRole = (role: string, sql: string) => asRoleIn(pool, role, sql);
    expect(await asRole('shortener_writer', "INSERT INTO api_keys (id, name, secret_hash) VALUES ('RoleKey001', 'w', '\\x00')")).toBe('allowed');
    expect(await asRole('shortener_writer', "UPDATE api_keys SET revoked_at = now() WHERE id = 'KeyOne0001'")).toBe('allowed');
    expect(await asRole('shortener_writer', 'DELETE FROM api_keys')).toMatch(/permission denied/);
    expect(await asRole('shortener_reader', 'SELECT * FROM api_keys')).toBe('allowed');
    expect(await asRole('shortener_reader', "INSERT INTO api_keys (id, name, secret_hash) VALUES ('RoleKey002', 'r', '\\x00')")).toMatch(/permission denied/);
  });
});
