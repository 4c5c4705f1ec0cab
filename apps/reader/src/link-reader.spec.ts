import type { LinkCache } from '@shortener/cache';
import { cacheEntryOf, LinkRepository, NodePools, ShardPools, targetOf, type LinkRow, type LinkTarget } from '@shortener/db';
import type { ClusterView } from '@shortener/events';
import { initialTopology } from '@shortener/topology';
import { LinkReader, resolutionOf } from './link-reader';

const live: LinkRow = {
  code: 'abc1234',
  url: 'https://example.com',
  redirectType: 307,
  createdAt: new Date(0),
  updatedAt: new Date(5),
  expiresAt: null,
  deletedAt: null,
  clicks: 0,
  version: 5,
};

describe('resolutionOf / cacheEntryOf', () => {
  it('follows a live link with its redirect type', () => {
    expect(resolutionOf(targetOf(live))).toEqual({ status: 'found', url: 'https://example.com', redirectType: 307, expiresAt: null });
    expect(cacheEntryOf(targetOf(live))).toEqual({ kind: 'link', version: 5, redirectType: 307, expiresAt: null, url: 'https://example.com' });
  });

  it('answers gone for deleted and expired links, unknown for none', () => {
    expect(resolutionOf(targetOf({ ...live, deletedAt: new Date() }))).toEqual({ status: 'gone' });
    expect(resolutionOf(targetOf({ ...live, expiresAt: new Date(1000) }), 2000)).toEqual({ status: 'gone' });
    expect(resolutionOf(targetOf({ ...live, expiresAt: new Date(3000) }), 2000)).toMatchObject({ status: 'found', expiresAt: 3000 });
    expect(resolutionOf(null)).toEqual({ status: 'unknown' });
    expect(cacheEntryOf(targetOf({ ...live, deletedAt: new Date() }))).toEqual({ kind: 'gone', version: 5 });
    expect(cacheEntryOf(null)).toEqual({ kind: 'unknown' });
  });
});

describe('LinkReader.resolve: which node is asked', () => {
  const target = targetOf(live);
  const nodes = ['p', 'r1', 'r2'].map((name, index) => ({ name, host: '127.0.0.1', port: 1 + index }));

  /** A reader over one shard (primary p, replicas r1 and r2) whose nodes answer from `rows` or throw when listed in `down`. */
  function readerOver(rows: Record<string, LinkTarget | null>, down: string[]) {
    const pools = new ShardPools(
      new NodePools(nodes, { user: 'u', password: 'p', database: 'd' }, { max: 1, connectTimeoutMs: 100, statementTimeoutMs: 100, applicationName: 't' }),
      initialTopology([{ id: 0, nodes }], 'quorum'),
    );
    const asked: string[] = [];
    const links = {
      findTargets: async (pool: unknown, codes: string[]) => {
        const node = nodes.map((candidate) => candidate.name).find((name) => pools.pool(name) === pool)!;
        asked.push(node);
        if (down.includes(node)) throw new Error(`${node} does not answer`);
        return codes.map(() => rows[node] ?? null);
      },
    } as unknown as LinkRepository;
    const cache = { put: async () => true } as unknown as LinkCache;
    const reader = new LinkReader({ pools } as unknown as ClusterView, cache, links);
    return { reader, pools, asked };
  }

  it('asks the primary after a replica missed, while the primary answers its probes', async () => {
    const { reader, asked } = readerOver({ p: target }, []);
    await expect(reader.resolve(live.code)).resolves.toMatchObject({ status: 'found' });
    expect(asked).toHaveLength(2);
    expect(asked[1]).toBe('p');
  });

  it('asks the replicas that stopped streaming before a primary that failed its last probe (a frozen primary would hold the read)', async () => {
    const { reader, pools, asked } = readerOver({ r1: target, r2: target }, ['p']);
    pools.setStreaming('r1', false);
    pools.setStreaming('r2', false);
    pools.setResponsive('p', false);
    await expect(reader.resolve(live.code)).resolves.toMatchObject({ status: 'found', url: 'https://example.com' });
    expect(asked).toHaveLength(1);
    expect(asked[0]).not.toBe('p');
  });

  it('still asks an unresponsive primary when no replica has the row', async () => {
    const { reader, pools, asked } = readerOver({ p: target }, []);
    pools.setStreaming('r1', false);
    pools.setStreaming('r2', false);
    pools.setResponsive('p', false);
    await expect(reader.resolve(live.code)).resolves.toMatchObject({ status: 'found' });
    expect(asked.at(-1)).toBe('p');
    expect(asked).toHaveLength(3);
  });
});
