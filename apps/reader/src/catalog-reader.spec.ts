import type { ApiKeyRepository, ApiKeyRow, LinkRepository, ListedLink, Pool } from '@shortener/db';
import type { ClusterView } from '@shortener/events';
import { CatalogReader } from './catalog-reader';

/** A node of the fake cluster: its rows, and whether it answers. */
interface FakeNode {
  name: string;
  links: ListedLink[];
  keys: ApiKeyRow[];
  down?: boolean;
}

function listed(code: string, createdMicros: number, owner = 'k'): ListedLink & { owner: string } {
  const createdAt = new Date(Math.floor(createdMicros / 1000));
  return {
    code,
    url: `https://example.com/${code}`,
    redirectType: 302,
    createdAt,
    updatedAt: createdAt,
    expiresAt: null,
    deletedAt: null,
    clicks: 0,
    version: createdAt.getTime(),
    createdMicros: String(createdMicros),
    owner,
  };
}

/** Shards of one replica and one primary each; the repositories answer from the node they are given, as the SQL would. */
function catalogOver(shards: { primary: FakeNode; replica: FakeNode }[]) {
  const nodes = new Map(shards.flatMap(({ primary, replica }) => [primary, replica]).map((node) => [node.name, node]));
  const asked: { node: string; limit: number }[] = [];
  const nodeOf = (pool: Pool): FakeNode => {
    const node = pool as unknown as FakeNode;
    if (node.down) throw new Error(`${node.name} is down`);
    return node;
  };
  const cluster = {
    pools: {
      topology: { shards: shards.map((_, id) => ({ id })) },
      // The shard whose primary holds the key (the ring's choice when it was made); shard 0 for an id none holds.
      shardOf: (id: string) =>
        Math.max(
          0,
          shards.findIndex(({ primary }) => primary.keys.some((key) => key.id === id)),
        ),
      readCandidates: (shard: number) => [shards[shard].replica.name],
      pool: (name: string) => nodes.get(name) as unknown as Pool,
      primary: (shard: number) => shards[shard].primary as unknown as Pool,
    },
  } as unknown as ClusterView;
  const links = {
    listPage: async (pool: Pool, owner: string | null, after: { createdMicros: string; code: string } | null, limit: number) => {
      const node = nodeOf(pool);
      asked.push({ node: node.name, limit });
      const before = (link: ListedLink) =>
        !after || BigInt(link.createdMicros) < BigInt(after.createdMicros) || (link.createdMicros === after.createdMicros && link.code < after.code);
      return node.links
        .filter((link) => (owner === null || (link as ListedLink & { owner: string }).owner === owner) && before(link))
        .sort((a, b) =>
          BigInt(b.createdMicros) > BigInt(a.createdMicros) ? 1 : BigInt(b.createdMicros) < BigInt(a.createdMicros) ? -1 : b.code > a.code ? 1 : -1,
        )
        .slice(0, limit);
    },
  } as unknown as LinkRepository;
  const keys = {
    find: async (pool: Pool, id: string) => nodeOf(pool).keys.find((key) => key.id === id) ?? null,
    listLive: async (pool: Pool) => nodeOf(pool).keys.filter((key) => !key.revokedAt),
  } as unknown as ApiKeyRepository;
  return { reader: new CatalogReader(cluster, links, keys), asked };
}

function shardWith(
  id: number,
  links: ListedLink[],
  keys: ApiKeyRow[] = [],
  replicaLinks = links,
  replicaKeys = keys,
): { primary: FakeNode; replica: FakeNode } {
  return { primary: { name: `s${id}-primary`, links, keys }, replica: { name: `s${id}-replica`, links: replicaLinks, keys: replicaKeys } };
}

describe('CatalogReader.listLinks (the scatter-gather of GET /api/urls)', () => {
  it('pages through every shard newest first, asking each for limit + 1, with no link twice and none skipped', async () => {
    // Equal creation times across shards, so that the code breaks the tie.
    const all = [
      listed('aaa', 100),
      listed('bbb', 100),
      listed('ccc', 300),
      listed('ddd', 200),
      listed('eee', 500),
      listed('fff', 400),
      listed('ggg', 500),
      listed('hhh', 50),
    ];
    const shards = [0, 1, 2].map((id) =>
      shardWith(
        id,
        all.filter((_, index) => index % 3 === id),
      ),
    );
    const { reader, asked } = catalogOver(shards);
    const seen: string[] = [];
    let after: { createdMicros: string; code: string } | null = null;
    for (let pages = 0; pages < 10; pages++) {
      const page = await reader.listLinks({ owner: null, limit: 3, after });
      seen.push(...page.items.map((item) => item.code));
      if (!page.next) break;
      after = page.next;
    }
    expect(seen).toEqual(['ggg', 'eee', 'fff', 'ccc', 'ddd', 'bbb', 'aaa', 'hhh']);
    expect(new Set(asked.map((call) => call.limit))).toEqual(new Set([4]));
    // Replicas answer; the primaries are left alone.
    expect(asked.every((call) => call.node.endsWith('replica'))).toBe(true);
  });

  it("keeps to the owner's links", async () => {
    const { reader } = catalogOver([shardWith(0, [listed('mine1', 10, 'me'), listed('their', 20, 'other')]), shardWith(1, [listed('mine2', 30, 'me')])]);
    const page = await reader.listLinks({ owner: 'me', limit: 10, after: null });
    expect(page.items.map((item) => item.code)).toEqual(['mine2', 'mine1']);
    expect(page.next).toBeNull();
  });

  it('reads a shard whose replica fails on its primary, and answers 503 when a shard cannot be read at all', async () => {
    const shards = [shardWith(0, [listed('one', 10)]), shardWith(1, [listed('two', 20)])];
    shards[1].replica.down = true;
    const { reader, asked } = catalogOver(shards);
    expect((await reader.listLinks({ owner: null, limit: 10, after: null })).items.map((item) => item.code)).toEqual(['two', 'one']);
    expect(asked.map((call) => call.node)).toContain('s1-primary');
    shards[1].primary.down = true;
    await expect(reader.listLinks({ owner: null, limit: 10, after: null })).rejects.toEqual(expect.objectContaining({ kind: 'dependency-unavailable' }));
  });
});

describe('CatalogReader keys', () => {
  const key = (id: string, createdAt: string, revoked = false): ApiKeyRow => ({
    id,
    name: `key ${id}`,
    secretHash: Buffer.alloc(32, 7),
    rateLimitPerMinute: null,
    createdAt: new Date(createdAt),
    revokedAt: revoked ? new Date(createdAt) : null,
  });

  it('finds a key the replica has not received yet on the primary, and says not-found only when neither has it', async () => {
    const fresh = key('Fresh00000', '2030-01-01T00:00:00Z');
    const { reader } = catalogOver([shardWith(0, [], [fresh], [], [])]);
    expect(await reader.credential('Fresh00000')).toEqual({
      id: 'Fresh00000',
      secretHash: fresh.secretHash.toString('base64'),
      rateLimitPerMinute: null,
      revoked: false,
    });
    await expect(reader.credential('Absent0000')).rejects.toEqual(expect.objectContaining({ kind: 'not-found' }));
  });

  it('lists the live keys of every shard, oldest first, without their hashes', async () => {
    const { reader } = catalogOver([
      shardWith(0, [], [key('B000000000', '2030-01-02T00:00:00Z'), key('Gone000000', '2030-01-01T00:00:00Z', true)]),
      shardWith(1, [], [key('A000000000', '2030-01-01T00:00:00Z')]),
    ]);
    const keys = await reader.listKeys();
    expect(keys.map((listedKey) => listedKey.id)).toEqual(['A000000000', 'B000000000']);
    expect(JSON.stringify(keys)).not.toContain('secretHash');
  });
});
