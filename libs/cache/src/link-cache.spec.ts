import { startRedisServer, type RunningRedis } from '@shortener/testing';
import { decodeCacheEntry } from '@shortener/links';
import { CacheKeys, createRedis, LinkCache, waitUntilReady } from './link-cache';

// Against a real redis-server: the version rule lives in a Lua script.
describe('LinkCache (real Redis)', () => {
  let server: RunningRedis;
  let cache: LinkCache;
  const link = { kind: 'link' as const, redirectType: 302 as const, expiresAt: null, url: 'https://a.example/x|y' };

  beforeAll(async () => {
    server = await startRedisServer();
    cache = new LinkCache(createRedis(server.url));
    expect(await waitUntilReady(cache.client, 5000)).toBe(true);
  }, 30_000);
  afterAll(async () => {
    await cache?.close();
    await server?.stop();
  });

  it('never moves a key back to an older version', async () => {
    expect(await cache.put('c1', { ...link, version: 10 })).toBe(true);
    expect(await cache.put('c1', { kind: 'gone', version: 20 })).toBe(true);
    expect(await cache.put('c1', { ...link, version: 15 })).toBe(false);
    expect(await cache.put('c1', { kind: 'unknown' })).toBe(false);
    expect(decodeCacheEntry((await cache.getRaw('c1'))!)).toEqual({ kind: 'gone', version: 20 });
  });

  it('lets a create replace a negative entry and an equal version rewrite', async () => {
    await cache.put('c2', { kind: 'unknown' });
    expect(await cache.put('c2', { ...link, version: 1 })).toBe(true);
    expect(await cache.put('c2', { ...link, url: 'https://b', version: 1 })).toBe(true);
    expect(decodeCacheEntry((await cache.getRaw('c2'))!)).toMatchObject({ url: 'https://b' });
  });

  it('caches unknown codes briefly and expiring links no longer than needed', async () => {
    await cache.put('c3', { kind: 'unknown' });
    const ttlUnknown = await cache.client.ttl(CacheKeys.link('c3'));
    expect(ttlUnknown).toBeGreaterThan(0);
    expect(ttlUnknown).toBeLessThanOrEqual(30);
    await cache.put('c4', { ...link, version: 1, expiresAt: Date.now() + 10_000 });
    const ttl = await cache.client.ttl(CacheKeys.link('c4'));
    expect(ttl).toBeGreaterThan(10);
    expect(ttl).toBeLessThan(86_400);
  });

  it('fails fast, not hangs, when Redis is gone', async () => {
    const dead = new LinkCache(createRedis(`redis://127.0.0.1:${server.port + 1}`, { retryStrategy: () => null }));
    const started = Date.now();
    await expect(dead.getRaw('x')).rejects.toThrow();
    expect(Date.now() - started).toBeLessThan(5000);
    await dead.close();
  });
});
