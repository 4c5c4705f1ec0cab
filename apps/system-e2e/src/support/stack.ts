/**
 * Where the stack under test is, and clients for its parts. Shared by every e2e spec:
 *
 *   const stack = stackFromEnv();
 *   await withNode(stack, stack.inventory.shards[0].nodes[0], (db) => db.query('SELECT 1'));
 *
 * Environment (set by tools/test.mjs): E2E_STACK_DIR (required), E2E_BASE_URL (default:
 * the stack's publicBaseUrl), E2E_ADMIN_TOKEN (default: $E2E_STACK_DIR/admin-token).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from 'pg';
import Redis, { Cluster } from 'ioredis';
import { Kafka, logLevel } from 'kafkajs';
import { connect as netConnect } from 'node:net';
import { composeAddress, type ComposeTarget } from './docker';

export interface StackNode {
  name: string;
  host: string;
  port: number;
  dataDir: string;
}

export interface StackShard {
  id: number;
  nodes: StackNode[];
}

/** The parts of $STACK_DIR/stack.json that tests use (tools/stack/config.mjs writes it). */
export interface StackInventory {
  /** Set by tools/docker/test.mjs: the parts are compose services, reached through their container addresses (support/docker.ts). */
  target?: 'local' | 'compose';
  compose?: ComposeTarget;
  /** Under compose: container address of each service at start (clients that connect synchronously use it). */
  addresses?: Record<string, string>;
  stackDir: string;
  replicationMode: 'quorum' | 'async';
  publicBaseUrl: string;
  postgres: { version: number; binDir: string; user: string; database: string; passwordFile: string; socketDir: string; osUser?: string };
  shards: StackShard[];
  /** Set by the launcher once `migrate.cli.js` ran against every primary. */
  migrations?: { applied: boolean; at?: string };
  /** `cluster`: a Redis Cluster (compose), named by its masters' host:port as the services see them. */
  redis: { host: string; port: number; url: string; cluster?: { nodes: string[] } };
  kafka: { brokers: string[]; controller: string; topics: { topic: string; numPartitions: number }[] };
  services: {
    gateway: { port: number };
    writer: { rpcPort: number; httpPort: number };
    readers: { name: string; rpcPort: number; httpPort: number }[];
    monitors: { name: string; httpPort: number }[];
  };
}

export interface StackHandle {
  /** The gateway, e.g. http://127.0.0.1:3100 (no trailing slash). */
  baseUrl: string;
  adminToken: string;
  stackDir: string;
  pgPassword: string;
  inventory: StackInventory;
}

function readLine(file: string): string {
  return readFileSync(file, 'utf8').trim();
}

export function stackFromEnv(env: NodeJS.ProcessEnv = process.env): StackHandle {
  const stackDir = env.E2E_STACK_DIR;
  if (!stackDir) throw new Error('E2E_STACK_DIR is not set: run the e2e suite through `npm test` (tools/test.mjs) or point it at a running stack');
  const inventoryFile = join(stackDir, 'stack.json');
  if (!existsSync(inventoryFile)) throw new Error(`${inventoryFile} does not exist: is the stack running?`);
  const inventory = JSON.parse(readFileSync(inventoryFile, 'utf8')) as StackInventory;
  const baseUrl = (env.E2E_BASE_URL || `http://127.0.0.1:${inventory.services.gateway.port}`).replace(/\/+$/, '');
  const adminToken = env.E2E_ADMIN_TOKEN || readLine(join(stackDir, 'admin-token'));
  return { baseUrl, adminToken, stackDir, pgPassword: readLine(join(stackDir, 'pg-password')), inventory };
}

export function allNodes(stack: StackHandle): StackNode[] {
  return stack.inventory.shards.flatMap((shard) => shard.nodes);
}

/** A connected client on one node (superuser); the caller ends it, or use withNode. */
export async function connectNode(stack: StackHandle, node: StackNode, database = 'shortener'): Promise<Client> {
  const client = new Client({
    host: await reachableHost(stack, node.host),
    port: node.port,
    user: 'postgres',
    password: stack.pgPassword,
    database,
    connectionTimeoutMillis: 5000,
    application_name: 'system-e2e',
  });
  await client.connect();
  return client;
}

export async function withNode<T>(stack: StackHandle, node: StackNode, fn: (client: Client) => Promise<T>, database = 'shortener'): Promise<T> {
  const client = await connectNode(stack, node, database);
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** The shard's node that is not in recovery right now (a failover may have moved it). */
export async function currentPrimary(stack: StackHandle, shardId: number): Promise<StackNode> {
  const shard = stack.inventory.shards[shardId];
  for (const node of shard.nodes) {
    try {
      const inRecovery = await withNode(stack, node, async (db) => (await db.query('SELECT pg_is_in_recovery() AS r')).rows[0].r as boolean);
      if (!inRecovery) return node;
    } catch {
      /* down: try the next */
    }
  }
  throw new Error(`shard ${shardId} has no reachable primary`);
}

/**
 * The host to connect to for a part named `host` in the inventory: itself locally; under
 * compose, the address of the container of the service of that name.
 */
export async function reachableHost(stack: StackHandle, host: string): Promise<string> {
  const { target, compose } = stack.inventory;
  return target === 'compose' && compose ? composeAddress(compose, host) : host;
}

export function redisClient(stack: StackHandle): Redis | Cluster {
  const { host, port, cluster } = stack.inventory.redis;
  if (cluster) {
    // The masters tell clients their compose names (redis-0:6379): map each to its container.
    const natMap = Object.fromEntries(
      cluster.nodes.map((node) => {
        const [name, nodePort] = node.split(':');
        return [node, { host: composeHostSync(stack, name), port: Number(nodePort) }];
      }),
    );
    return new Cluster(Object.values(natMap), { natMap, redisOptions: { maxRetriesPerRequest: 2 } });
  }
  if (stack.inventory.target === 'compose') {
    // ioredis connects lazily through a socket it makes itself: resolve the container first.
    return new Redis({ port, maxRetriesPerRequest: 2, lazyConnect: false, host: composeHostSync(stack, host) });
  }
  return new Redis({ host, port, maxRetriesPerRequest: 2, lazyConnect: false });
}

/** FLUSHALL on every master (a cluster client would send it to one node only). */
export async function flushAllRedis(redis: Redis | Cluster): Promise<void> {
  if (redis instanceof Cluster) await Promise.all(redis.nodes('master').map((node) => node.flushall()));
  else await redis.flushall();
}

/** Under compose: the address written into stack.json at start (`addresses`), for clients that cannot wait for a lookup. */
function composeHostSync(stack: StackHandle, host: string): string {
  return stack.inventory.addresses?.[host] ?? host;
}

export function kafkaClient(stack: StackHandle, clientId = 'system-e2e'): Kafka {
  if (stack.inventory.target === 'compose') {
    // The broker advertises kafka:9092, a name only the compose network resolves: connect to its container instead.
    const socketFactory = ({ host, port, onConnect }: { host: string; port: number; onConnect: () => void }) => {
      const socket = netConnect({ host: composeHostSync(stack, host), port }, onConnect);
      socket.setKeepAlive(true, 30_000);
      return socket;
    };
    return new Kafka({ clientId, brokers: stack.inventory.kafka.brokers, logLevel: logLevel.NOTHING, socketFactory: socketFactory as never });
  }
  return new Kafka({ clientId, brokers: stack.inventory.kafka.brokers, logLevel: logLevel.NOTHING });
}

/** Retries `check` until it returns without throwing (and not false), or fails with its last error. */
export async function eventually<T>(check: () => Promise<T>, { timeoutMs = 10_000, intervalMs = 200 } = {}): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown = new Error('condition never held');
  while (Date.now() < deadline) {
    try {
      const result = await check();
      if (result !== false) return result;
      lastError = new Error('condition returned false');
    } catch (error) {
      lastError = error;
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  throw lastError;
}
