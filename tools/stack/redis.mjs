// Redis of the local stack: a supervised child process, loopback only, append-only file.
import { mkdirSync } from 'node:fs';
import { Supervised } from './supervisor.mjs';
import { canConnect, waitFor } from './util.mjs';

export function redisProcess(inventory, baseEnv) {
  const { redis, stackDir } = inventory;
  mkdirSync(redis.dataDir, { recursive: true });
  return new Supervised({
    name: 'redis',
    command: 'redis-server',
    args: [
      '--bind',
      redis.host,
      '--port',
      String(redis.port),
      '--dir',
      redis.dataDir,
      // A cache, not a store: a Redis that comes back empty cannot serve an entry that a
      // write made stale while it was away (the databases and url.events refill it).
      '--appendonly',
      'no',
      '--save',
      '',
      '--daemonize',
      'no',
      '--protected-mode',
      'yes',
      '--maxmemory',
      '256mb',
      '--maxmemory-policy',
      'allkeys-lru',
      '--logfile',
      '',
    ],
    env: baseEnv,
    cwd: redis.dataDir,
    stackDir,
    stopTimeoutMs: 20_000,
  });
}

export async function waitForRedis(inventory, timeoutMs = 30_000) {
  const { Redis } = await import('ioredis');
  await waitFor('redis', () => canConnect(inventory.redis.host, inventory.redis.port), { timeoutMs });
  const client = new Redis({ host: inventory.redis.host, port: inventory.redis.port, lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await client.connect();
    // loading the append-only file answers LOADING until done
    await waitFor('redis PING', async () => (await client.ping()) === 'PONG', { timeoutMs });
  } finally {
    client.disconnect();
  }
}
