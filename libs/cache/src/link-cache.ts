import Redis, { Cluster, type RedisOptions } from 'ioredis';
import { cacheEntryVersion, encodeCacheEntry, type CacheEntry } from '@shortener/links';

/** Typed key builders: the only place that knows how keys are spelled. */
export const CacheKeys = {
  link: (code: string) => `u:${code}`,
};

export interface CacheTtls {
  linkSeconds: number;
  goneSeconds: number;
  unknownSeconds: number;
  /** How long an expired link stays cached, answering 410 without a database read. */
  expiredGraceSeconds: number;
}

export const DEFAULT_CACHE_TTLS: CacheTtls = { linkSeconds: 86_400, goneSeconds: 86_400, unknownSeconds: 30, expiredGraceSeconds: 3600 };

// Writes only if the stored entry's version is not newer, so that a late event or a fill
// from a lagging replica can never put an older state back.
const SET_IF_NOT_OLDER = `
local current = redis.call('GET', KEYS[1])
if current then
  local version = tonumber(string.match(current, '^%a|(%d+)'))
  if version and version > tonumber(ARGV[2]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
return 1`;

type LinkCacheRedis = RedisClient & {
  setIfNotOlder(key: string, value: string, version: string, ttlSeconds: string): Promise<number>;
};

/** One Redis server (`redis://host:port`), or the seed nodes of a Redis Cluster. */
export type RedisTarget = string | { url?: string; clusterNodes?: { host: string; port: number }[] };

/** A single-server client or a cluster client: the cache uses only what both speak. */
export type RedisClient = Redis | Cluster;

/** The target a service's configuration names: REDIS_CLUSTER_NODES wins over REDIS_URL. */
export function redisTargetOf(config: { REDIS_URL?: string; REDIS_CLUSTER_NODES?: { host: string; port: number }[] }): RedisTarget {
  if (config.REDIS_CLUSTER_NODES && config.REDIS_CLUSTER_NODES.length > 0) return { url: config.REDIS_URL, clusterNodes: config.REDIS_CLUSTER_NODES };
  if (!config.REDIS_URL) throw new Error('REDIS_URL or REDIS_CLUSTER_NODES is required');
  return config.REDIS_URL;
}

// Fail fast instead of queueing while Redis is down: callers fall back to the databases.
const FAIL_FAST: RedisOptions = {
  enableOfflineQueue: false,
  maxRetriesPerRequest: 1,
  commandTimeout: 250,
  connectTimeout: 1000,
  retryStrategy: (attempt) => Math.min(attempt * 200, 2000),
  lazyConnect: false,
};

/**
 * A cluster client that has not been ready for `stuckAfterMs` is told to reconnect. ioredis
 * retries a cluster that refuses or fails (clusterRetryStrategy), but one of three writers
 * in a compose run sat for five minutes in a not-ready state with no error event at all,
 * every cache write after commit refused; a forced disconnect and connect gets it out.
 */
export function reconnectWhenStuck(
  cluster: Pick<Cluster, 'status' | 'on' | 'disconnect' | 'connect'>,
  onStuck: (status: string) => void = () => undefined,
  { stuckAfterMs = 15_000, checkEveryMs = 5000 } = {},
): NodeJS.Timeout {
  let notReadySince: number | null = cluster.status === 'ready' ? null : Date.now();
  cluster.on('ready', () => (notReadySince = null));
  const timer = setInterval(() => {
    const status = cluster.status;
    if (status === 'end') {
      // Closed on purpose (LinkCache.close): nothing to heal.
      clearInterval(timer);
      return;
    }
    if (status === 'ready') {
      notReadySince = null;
      return;
    }
    notReadySince ??= Date.now();
    if (Date.now() - notReadySince < stuckAfterMs) return;
    notReadySince = Date.now();
    onStuck(status);
    cluster.disconnect(true);
    const restart = setTimeout(() => {
      // disconnect(true) reconnects through the retry strategy once every node is gone; an
      // empty connection pool never reports that, so connect is called here too.
      if (cluster.status === 'disconnecting' || cluster.status === 'close') cluster.connect().catch(() => undefined);
    }, 1000);
    restart.unref();
  }, checkEveryMs);
  timer.unref();
  return timer;
}

export function createRedis(target: RedisTarget, options: RedisOptions = {}, onStuck?: (status: string) => void): RedisClient {
  const url = typeof target === 'string' ? target : target.url;
  const clusterNodes = typeof target === 'string' ? undefined : target.clusterNodes;
  if (!clusterNodes || clusterNodes.length === 0) {
    if (!url) throw new Error('a Redis URL or cluster nodes are required');
    return new Redis(url, { ...FAIL_FAST, enableAutoPipelining: true, ...options });
  }
  const { enableAutoPipelining = true, enableOfflineQueue = false, retryStrategy: _single, lazyConnect: _lazy, ...perNode } = { ...FAIL_FAST, ...options };
  const password = url ? decodeURIComponent(new URL(url).password) || undefined : undefined;
  // ioredis's cluster client: it follows MOVED/ASK redirects, refreshes the slot table when a
  // master fails or slots move, and pipelines per node, so a Lua script or a rate-limit key
  // (each a single key) runs on whichever master owns its slot.
  const cluster = new Cluster(clusterNodes, {
    enableOfflineQueue,
    enableAutoPipelining,
    scaleReads: 'master',
    slotsRefreshTimeout: 1000,
    retryDelayOnFailover: 100,
    retryDelayOnClusterDown: 100,
    maxRedirections: 8,
    clusterRetryStrategy: (attempt) => Math.min(attempt * 200, 2000),
    redisOptions: { ...perNode, password },
  });
  reconnectWhenStuck(cluster, onStuck);
  return cluster;
}

/** Resolves once the client can take commands, or false after the timeout (Redis down). */
export function waitUntilReady(redis: RedisClient, timeoutMs: number): Promise<boolean> {
  if (redis.status === 'ready') return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      redis.off('ready', onReady);
      resolve(false);
    }, timeoutMs);
    const onReady = () => {
      clearTimeout(timer);
      resolve(true);
    };
    redis.once('ready', onReady);
  });
}

/** The link cache: read on the redirect path, written after every write and by fills. */
export class LinkCache {
  private readonly redis: LinkCacheRedis;

  constructor(
    redis: RedisClient,
    private readonly ttls: CacheTtls = DEFAULT_CACHE_TTLS,
  ) {
    redis.defineCommand('setIfNotOlder', { numberOfKeys: 1, lua: SET_IF_NOT_OLDER });
    this.redis = redis as LinkCacheRedis;
  }

  get client(): RedisClient {
    return this.redis;
  }

  /** The raw stored string, or null on a miss. Throws when Redis is unreachable. */
  async getRaw(code: string): Promise<string | null> {
    return this.redis.get(CacheKeys.link(code));
  }

  /** Stores the entry unless a newer version is already cached; true if written. */
  async put(code: string, entry: CacheEntry): Promise<boolean> {
    const ttl = entry.kind === 'link' ? this.linkTtl(entry.expiresAt) : entry.kind === 'gone' ? this.ttls.goneSeconds : this.ttls.unknownSeconds;
    const written = await this.redis.setIfNotOlder(CacheKeys.link(code), encodeCacheEntry(entry), String(cacheEntryVersion(entry)), String(ttl));
    return written === 1;
  }

  async ping(): Promise<boolean> {
    return (await this.redis.ping()) === 'PONG';
  }

  async close(): Promise<void> {
    this.redis.disconnect();
  }

  private linkTtl(expiresAt: number | null): number {
    if (expiresAt === null) return this.ttls.linkSeconds;
    const untilExpiry = Math.ceil((expiresAt - Date.now()) / 1000) + this.ttls.expiredGraceSeconds;
    return Math.max(1, Math.min(this.ttls.linkSeconds, untilExpiry));
  }
}
