// Shared by the reference servers (each runs as its own child process, like a service).
import { createServer } from 'node:http';
import crc32 from 'crc-32';

/** The contract's ring (section 3): crc32 of the code, top 10 bits = slot, slot -> shard. */
export function shardRing(slots) {
  return (code) => slots[(crc32.str(code) >>> 0) >>> 22];
}

/** The topology the bench read from GET /api/cluster, passed in BENCH_TOPOLOGY. */
export function topologyFromEnv() {
  return JSON.parse(process.env.BENCH_TOPOLOGY);
}

/** Listens on an ephemeral port and tells the parent which one on stdout. */
export function listen(handler) {
  const server = createServer(handler);
  server.keepAliveTimeout = 65_000;
  server.listen(0, '127.0.0.1', () => process.stdout.write(`listening ${server.address().port}\n`));
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  return server;
}
