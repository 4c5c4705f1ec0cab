import Redis, { type RedisOptions } from 'ioredis';
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

interface LinkCacheRedis extends Redis {
  setIfNotOlder(key: string, value: string, version: string, ttlSeconds: string): Promise<number>;
}

export function createRedis(url: string, options: RedisOptions = {}): Redis {
  return new Redis(url, {
    // Fail fast instead of queueing while Redis is down: callers fall back to the databases.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: 250,
    connectTimeout: 1000,
    retryStrategy: (attempt) => Math.min(attempt * 200, 2000),
    lazyConnect: false,
    enableAutoPipelining: true,
    ...options,
  });
}

/** Resolves once the client can take commands, or false after the timeout (Redis down). */
export function waitUntilReady(redis: Redis, timeoutMs: number): Promise<boolean> {
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
    redis: Redis,
    private readonly ttls: CacheTtls = DEFAULT_CACHE_TTLS,
  ) {
    redis.defineCommand('setIfNotOlder', { numberOfKeys: 1, lua: SET_IF_NOT_OLDER });
    this.redis = redis as LinkCacheRedis;
  }

  get client(): Redis {
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
