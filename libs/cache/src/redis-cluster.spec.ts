import { startRedisCluster, type RunningRedisCluster } from '@shortener/testing';
import { decodeCacheEntry } from '@shortener/links';
import { Cluster } from 'ioredis';
import { CacheKeys, createRedis, LinkCache, redisTargetOf, waitUntilReady } from './link-cache';

// Against a real 3-master Redis Cluster (redis-cli --cluster create), as docker/compose.yaml runs it.
describe('LinkCache on a Redis Cluster', () => {
  let cluster: RunningRedisCluster;
  let cache: LinkCache;
  const link = { kind: 'link' as const, redirectType: 302 as const, expiresAt: null, url: 'https://a.example/x' };
  const codes = Array.from({ length: 60 }, (_, i) => `cl${i}x`);

  beforeAll(async () => {
    cluster = await startRedisCluster(3);
    const client = createRedis(redisTargetOf({ REDIS_CLUSTER_NODES: cluster.nodes.slice(0, 1) }));
    // The dead master's slots keep the client refreshing its slot map until it is closed,
    // and a refresh may fail after the last test: heard here, not logged after the run
    // (Jest fails a run that logs once its tests are done).
    client.on('error', () => undefined);
    cache = new LinkCache(client);
    expect(await waitUntilReady(cache.client, 5000)).toBe(true);
  }, 60_000);
  afterAll(async () => {
    await cache?.close();
    await cluster?.stop();
  }, 30_000);

  it('speaks the cluster protocol from one seed node', () => {
    expect(cache.client).toBeInstanceOf(Cluster);
  });

  it('keeps the version rule on keys of every master', async () => {
    const owners = new Set<number>();
    for (const code of codes) {
      expect(await cache.put(code, { ...link, version: 10 })).toBe(true);
      expect(await cache.put(code, { kind: 'gone', version: 20 })).toBe(true);
      expect(await cache.put(code, { ...link, version: 15 })).toBe(false);
      expect(decodeCacheEntry((await cache.getRaw(code))!)).toEqual({ kind: 'gone', version: 20 });
      owners.add(await ownerPort(code));
    }
    // The codes really spread over the three masters: a single-node client would have failed with MOVED.
    expect(owners.size).toBe(3);
  });

  it('answers concurrent writes to many slots (auto-pipelined per node)', async () => {
    const results = await Promise.all(codes.map((code, i) => cache.put(`${code}p`, { ...link, version: i + 1 })));
    expect(results.every(Boolean)).toBe(true);
    const raws = await Promise.all(codes.map((code) => cache.getRaw(`${code}p`)));
    expect(raws.map((raw) => decodeCacheEntry(raw!))).toEqual(codes.map((_, i) => ({ ...link, version: i + 1 })));
  });

  it('fails fast on the slots of a dead master and keeps serving the others', async () => {
    const victim = cluster.masters[2];
    const onVictim: string[] = [];
    const elsewhere: string[] = [];
    for (const code of codes) (((await ownerPort(code)) === victim.port ? onVictim : elsewhere) as string[]).push(code);
    await victim.stop();
    const started = Date.now();
    await expect(cache.getRaw(onVictim[0])).rejects.toThrow();
    // Fail fast: the redirect path falls back to the readers instead of waiting for Redis.
    expect(Date.now() - started).toBeLessThan(5000);
    for (const code of elsewhere.slice(0, 10)) expect(decodeCacheEntry((await cache.getRaw(code))!)).toMatchObject({ kind: 'gone' });
  });

  async function ownerPort(code: string): Promise<number> {
    const client = cache.client as Cluster;
    const slot = Number(await client.cluster('KEYSLOT', CacheKeys.link(code)));
    const owner = (await client.cluster('SLOTS')).find(([from, to]) => slot >= from && slot <= to)!;
    return owner[2][1];
  }
});
