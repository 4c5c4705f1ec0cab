import { startRedisCluster, type RunningRedisCluster } from '@shortener/testing';
import { RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import { createRedis, redisTargetOf, waitUntilReady, type RedisClient } from './link-cache';

// rate-limiter-flexible over the cluster client, as the gateway's create quota builds it (apps/gateway/src/gateway.module.ts).
describe('rate-limiter-flexible on a Redis Cluster', () => {
  let cluster: RunningRedisCluster;
  let store: RedisClient;

  beforeAll(async () => {
    cluster = await startRedisCluster(3);
    store = createRedis(redisTargetOf({ REDIS_CLUSTER_NODES: cluster.nodes }), { enableAutoPipelining: false });
    // A slot refresh that fails as the cluster stops is heard here, not logged after the run.
    store.on('error', () => undefined);
    expect(await waitUntilReady(store, 5000)).toBe(true);
  }, 60_000);
  afterAll(async () => {
    store?.disconnect();
    await cluster?.stop();
  }, 30_000);

  it('counts each client under its own key, on several masters, and refuses past the limit', async () => {
    const limiter = new RateLimiterRedis({ storeClient: store, points: 2, duration: 60, keyPrefix: 'q:anonymous:2' });
    const clients = Array.from({ length: 12 }, (_, i) => `198.51.100.${i}`);
    for (const client of clients) {
      expect((await limiter.consume(client)).remainingPoints).toBe(1);
      expect((await limiter.consume(client)).remainingPoints).toBe(0);
      const refused = await limiter.consume(client).then(
        () => null,
        (rejection: unknown) => rejection,
      );
      expect(refused).toBeInstanceOf(RateLimiterRes);
      expect((refused as RateLimiterRes).msBeforeNext).toBeGreaterThan(0);
    }
    const keysPerMaster = await Promise.all(
      cluster.masters.map(async (master) => {
        const node = createRedis(master.url);
        try {
          await waitUntilReady(node, 5000);
          return (await node.keys('q:anonymous:2*')).length;
        } finally {
          node.disconnect();
        }
      }),
    );
    expect(keysPerMaster.reduce((sum, count) => sum + count, 0)).toBe(clients.length);
    expect(keysPerMaster.filter((count) => count > 0).length).toBeGreaterThanOrEqual(2);
  });
});
