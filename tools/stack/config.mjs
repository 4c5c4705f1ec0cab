// Configuration of the local stack: environment (docs/reference.md section 1 and docs/runtime.md),
// validated once, and the inventory (stack.json) derived from it. Node built-ins only.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const HOST = '127.0.0.1';
export const PG_VERSION = 15;

/**
 * The PostgreSQL login role of each service (libs/db migration 3), whose password the stack
 * generates into `$STACK_DIR/pg-<service>-password`; the migrate CLI sets it at every start.
 * The superuser `postgres` stays for the stack's own tools (initdb, replicas, migrations, backups).
 */
export const SERVICE_ROLES = { writer: 'shortener_writer', reader: 'shortener_reader', monitor: 'shortener_monitor' };

export function rolePasswordFile(stackDir, service) {
  return join(stackDir, `pg-${service}-password`);
}
export const DEFAULT_PG_BIN = `/usr/lib/postgresql/${PG_VERSION}/bin`;

export class ConfigError extends Error {}

function integer(env, name, fallback, min, max) {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw.trim())) throw new ConfigError(`${name} must be an integer between ${min} and ${max}; got "${raw}"`);
  const value = Number(raw.trim());
  if (value < min || value > max) throw new ConfigError(`${name} must be an integer between ${min} and ${max}; got ${value}`);
  return value;
}

function flag(env, name) {
  const raw = (env[name] ?? '').trim().toLowerCase();
  if (raw === '' || raw === '0' || raw === 'false' || raw === 'no') return false;
  if (raw === '1' || raw === 'true' || raw === 'yes') return true;
  throw new ConfigError(`${name} must be 1/true/yes or 0/false/no; got "${env[name]}"`);
}

/** Reads and validates the launcher's environment. Throws ConfigError naming the variable. */
export function readEnvironment(env = process.env) {
  const stackDir = resolve(REPO_ROOT, env.STACK_DIR && env.STACK_DIR.trim() !== '' ? env.STACK_DIR : '.stack');
  const port = integer(env, 'PORT', 3000, 1, 65535);
  let publicBaseUrl = env.PUBLIC_BASE_URL && env.PUBLIC_BASE_URL !== '' ? env.PUBLIC_BASE_URL : `http://localhost:${port}`;
  try {
    const url = new URL(publicBaseUrl);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('protocol');
    if (url.search || url.hash) throw new Error('query');
  } catch {
    throw new ConfigError(`PUBLIC_BASE_URL must be an absolute http(s) URL without query or fragment; got "${publicBaseUrl}"`);
  }
  publicBaseUrl = publicBaseUrl.replace(/\/+$/, '');
  const replicationMode = env.REPLICATION_MODE && env.REPLICATION_MODE !== '' ? env.REPLICATION_MODE : 'quorum';
  if (replicationMode !== 'quorum' && replicationMode !== 'async') {
    throw new ConfigError(`REPLICATION_MODE must be "quorum" or "async"; got "${replicationMode}"`);
  }
  const adminToken = env.ADMIN_TOKEN && env.ADMIN_TOKEN !== '' ? env.ADMIN_TOKEN : undefined;
  if (adminToken !== undefined && (adminToken.length < 16 || /\s/.test(adminToken))) {
    throw new ConfigError('ADMIN_TOKEN must be at least 16 characters without whitespace');
  }
  const servicesBasePort = integer(env, 'SERVICES_BASE_PORT', 4100, 1024, 65000);
  const pgBasePort = integer(env, 'PG_BASE_PORT', 16400, 1024, 65000);
  const redisPort = integer(env, 'REDIS_PORT', 16379, 1024, 65535);
  const kafkaPort = integer(env, 'KAFKA_PORT', 19092, 1024, 65534);
  const config = {
    stackDir,
    port,
    publicBaseUrl,
    shards: integer(env, 'SHARDS', 4, 1, 64),
    replicas: integer(env, 'REPLICAS', 2, 0, 7),
    readers: integer(env, 'READERS', 2, 1, 32),
    replicationMode,
    adminToken,
    pgBasePort,
    redisPort,
    kafkaPort,
    servicesBasePort,
    pgBin: env.PG_BIN && env.PG_BIN !== '' ? env.PG_BIN : DEFAULT_PG_BIN,
    skipServices: flag(env, 'STACK_SKIP_SERVICES'),
    skipBuild: flag(env, 'STACK_SKIP_BUILD'),
    logLevel: env.LOG_LEVEL && env.LOG_LEVEL !== '' ? env.LOG_LEVEL : 'info',
    // Which infrastructure ports this start was given (a restored stack takes them at its first start).
    portsGiven: { pg: Boolean(env.PG_BASE_PORT), redis: Boolean(env.REDIS_PORT), kafka: Boolean(env.KAFKA_PORT) },
  };
  if (config.pgBasePort + (config.shards - 1) * 8 + config.replicas > 65535) {
    throw new ConfigError('PG_BASE_PORT is too high for SHARDS x (1 + REPLICAS) nodes');
  }
  return config;
}

export function paths(stackDir) {
  return {
    stackDir,
    pg: join(stackDir, 'pg'),
    logs: join(stackDir, 'logs'),
    run: join(stackDir, 'run'),
    redis: join(stackDir, 'redis'),
    kafka: join(stackDir, 'kafka'),
    pgSockets: join(stackDir, 'run', 'pg'),
    pgPassword: join(stackDir, 'pg-password'),
    pgPassfile: join(stackDir, 'pg', '.pgpass'),
    adminToken: join(stackDir, 'admin-token'),
    // The gateway's credential on the writer's and readers' RPC ports (RPC_SECRET); generated, never printed.
    rpcSecret: join(stackDir, 'rpc-secret'),
    stackJson: join(stackDir, 'stack.json'),
    launcherLock: join(stackDir, 'run', 'launcher.pid'),
    launcherLog: join(stackDir, 'logs', 'launcher.log'),
  };
}

export function readStackJson(stackDir) {
  const file = paths(stackDir).stackJson;
  if (!existsSync(file)) return undefined;
  return JSON.parse(readFileSync(file, 'utf8'));
}

/** Reads a one-line secret file, or creates it with `length` random bytes (base64url). */
export function secretFile(file, length, given) {
  if (given !== undefined) {
    writeFileSync(file, `${given}\n`, { mode: 0o600 });
    return { value: given, created: false };
  }
  if (existsSync(file)) {
    const value = readFileSync(file, 'utf8').trim();
    if (value !== '') return { value, created: false };
  }
  const value = randomBytes(length).toString('base64url');
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, `${value}\n`, { mode: 0o600 });
  return { value, created: true };
}

/**
 * The inventory: which nodes exist and where. For an existing stack the shards, nodes and
 * infrastructure ports come from its stack.json (a second start reuses the data); the
 * service ports and gateway settings come from the environment of this start. A new stack
 * has shards 0..SHARDS-1, or `shardIds` (a restore of a stack whose shards were added and
 * drained keeps their ids: the slot map recorded in its databases names them).
 */
export function buildInventory(config, previous, { shardIds } = {}) {
  const p = paths(config.stackDir);
  let shards;
  let redisPort = config.redisPort;
  let kafkaPort = config.kafkaPort;
  let replicationMode = config.replicationMode;
  // A stack that `npm run stack -- restore` wrote and that never ran: it has no replica yet,
  // so its nodes may still move to the ports this first start is given.
  const firstStartOfRestore = Boolean(previous?.restoredFrom && !previous.restoredFrom.startedAt);
  if (firstStartOfRestore) {
    const given = config.portsGiven ?? {};
    shards = previous.shards.map((shard) => ({
      id: shard.id,
      nodes: shard.nodes.map((node, index) => ({
        ...node,
        port: given.pg ? config.pgBasePort + shard.id * 8 + index : node.port,
        dataDir: join(p.pg, node.name),
      })),
    }));
    redisPort = given.redis ? config.redisPort : (previous.redis?.port ?? redisPort);
    const broker = previous.kafka?.brokers?.[0];
    kafkaPort = given.kafka || !broker ? config.kafkaPort : Number(broker.split(':').pop());
    replicationMode = previous.replicationMode ?? replicationMode;
  } else if (previous) {
    shards = previous.shards.map((shard) => ({
      id: shard.id,
      // a shard that `npm run stack -- provision-shard` has not finished stays marked so (tools/stack/provision.mjs)
      ...(shard.provisioning ? { provisioning: true } : {}),
      nodes: shard.nodes.map((node) => ({ ...node, dataDir: join(p.pg, node.name) })),
    }));
    redisPort = previous.redis?.port ?? redisPort;
    const broker = previous.kafka?.brokers?.[0];
    if (broker) kafkaPort = Number(broker.split(':').pop());
    replicationMode = previous.replicationMode ?? replicationMode;
  } else {
    shards = (shardIds ?? Array.from({ length: config.shards }, (_, shard) => shard)).map((shard) => ({
      id: shard,
      nodes: Array.from({ length: 1 + config.replicas }, (_, index) => {
        const name = `s${shard}n${index}`;
        return { name, host: HOST, port: config.pgBasePort + shard * 8 + index, dataDir: join(p.pg, name) };
      }),
    }));
  }
  const base = config.servicesBasePort;
  const services = {
    gateway: { port: config.port },
    writer: { rpcPort: base, httpPort: base + 1 },
    readers: Array.from({ length: config.readers }, (_, i) => ({
      name: `reader-${i}`,
      rpcPort: base + 100 + 2 * i,
      httpPort: base + 101 + 2 * i,
    })),
    monitors: Array.from({ length: 2 }, (_, i) => ({ name: `monitor-${i}`, httpPort: base + 200 + i })),
  };
  return {
    version: 1,
    stackDir: config.stackDir,
    createdAt: previous?.createdAt ?? new Date().toISOString(),
    startedAt: new Date().toISOString(),
    replicationMode,
    publicBaseUrl: config.publicBaseUrl,
    postgres: {
      version: PG_VERSION,
      binDir: config.pgBin,
      user: 'postgres',
      database: 'shortener',
      // the services' own roles; the failover monitor's also runs pg_rewind and pg_basebackup (passfile)
      roles: SERVICE_ROLES,
      passwordFile: p.pgPassword,
      passfile: p.pgPassfile,
      socketDir: p.pgSockets,
      // The operating-system user that owns the data directories and runs postgres/pg_ctl/
      // pg_rewind (PostgreSQL refuses to run as root).
      osUser: undefined,
    },
    shards,
    // stopped by `npm run stack -- retire-shard`, data kept; never started again, not in SHARD_NODES
    ...(previous?.retiredShards?.length ? { retiredShards: previous.retiredShards } : {}),
    redis: { host: HOST, port: redisPort, url: `redis://${HOST}:${redisPort}`, dataDir: p.redis },
    kafka: {
      brokers: [`${HOST}:${kafkaPort}`],
      controller: `${HOST}:${kafkaPort + 1}`,
      dataDir: join(p.kafka, 'data'),
      topics: KAFKA_TOPICS,
    },
    services,
    logs: p.logs,
    ...(previous?.restoredFrom ? { restoredFrom: { ...previous.restoredFrom, startedAt: previous.restoredFrom.startedAt ?? new Date().toISOString() } } : {}),
  };
}

export const KAFKA_TOPICS = [
  { topic: 'url.events', numPartitions: 6, configEntries: [] },
  { topic: 'url.clicks', numPartitions: 6, configEntries: [] },
  { topic: 'cluster.topology', numPartitions: 1, configEntries: [{ name: 'cleanup.policy', value: 'compact' }] },
  // one partition: whoever holds it in the monitors' consumer group leads (libs/events leader-election)
  { topic: 'cluster.commands', numPartitions: 1, configEntries: [] },
  // resharding operations, one record per operation id (the newest is its state)
  { topic: 'cluster.operations', numPartitions: 1, configEntries: [{ name: 'cleanup.policy', value: 'compact' }] },
];

/** SHARD_NODES as docs/runtime.md defines it. */
export function shardNodesEnv(inventory) {
  return JSON.stringify(
    inventory.shards.map((shard) => ({
      id: shard.id,
      nodes: shard.nodes.map((node) => ({ name: node.name, host: node.host, port: node.port })),
    })),
  );
}
