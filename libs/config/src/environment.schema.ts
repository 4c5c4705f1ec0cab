import { z } from 'zod';

/**
 * One zod schema per service. Every variable a service reads is declared here and
 * nowhere else: deployment checks (docker/, k8s/) compare their environments with
 * these shapes, so the three ways of running cannot drift apart.
 */

const port = z.coerce.number().int().min(1).max(65535);

const hostPort = z
  .string()
  .regex(/^[A-Za-z0-9.\-_]+:\d{1,5}$/, 'expected host:port')
  .transform((value) => {
    const separator = value.lastIndexOf(':');
    return { host: value.slice(0, separator), port: Number(value.slice(separator + 1)) };
  });

const hostPortList = z
  .string()
  .min(1)
  .transform((value, ctx) => {
    const parsed = value
      .split(',')
      .map((item) => item.trim())
      .filter(Boolean)
      .map((item) => hostPort.safeParse(item));
    const bad = parsed.findIndex((result) => !result.success);
    if (bad >= 0 || parsed.length === 0) {
      ctx.addIssue({ code: 'custom', message: 'expected a comma-separated list of host:port' });
      return z.NEVER;
    }
    return parsed.map((result) => result.data!);
  });

const nodeAddress = z.object({
  name: z.string().regex(/^[a-z0-9_]{1,63}$/, 'node names are lower-case letters, digits and _'),
  host: z.string().min(1),
  port,
});

export const shardNodesSchema = z
  .array(z.object({ id: z.number().int().min(0), nodes: z.array(nodeAddress).min(1) }))
  .min(1)
  .superRefine((shards, ctx) => {
    // Increasing, not necessarily 0..N-1: a drained shard's id is retired for good (docs/reference.md section 7).
    shards.forEach((shard, index) => {
      if (index > 0 && shard.id <= shards[index - 1].id) {
        ctx.addIssue({ code: 'custom', message: `shard ids must be unique and increasing; found ${shard.id} after ${shards[index - 1].id}` });
      }
    });
    const names = shards.flatMap((shard) => shard.nodes.map((node) => node.name));
    if (new Set(names).size !== names.length) {
      ctx.addIssue({ code: 'custom', message: 'node names must be unique' });
    }
  });

export type ShardNodes = z.infer<typeof shardNodesSchema>;

const shardNodesJson = z.string().transform((value, ctx) => {
  let json: unknown;
  try {
    json = JSON.parse(value);
  } catch {
    ctx.addIssue({ code: 'custom', message: 'must be JSON: [{"id":0,"nodes":[{"name","host","port"}]}]' });
    return z.NEVER;
  }
  const result = shardNodesSchema.safeParse(json);
  if (!result.success) {
    for (const issue of result.error.issues) {
      ctx.addIssue({ code: 'custom', message: `${issue.path.join('.') || '(root)'}: ${issue.message}` });
    }
    return z.NEVER;
  }
  return result.data;
});

const common = {
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  HTTP_HOST: z.string().min(1).default('127.0.0.1'),
  REPLICATION_MODE: z.enum(['quorum', 'async']).default('quorum'),
  KAFKA_BROKERS: hostPortList,
};

/**
 * The PostgreSQL login role of each service that uses the database (libs/db migration 3 makes
 * them, each with only the rights its service uses; docs/reference.md, security of the inside).
 */
export const databaseRoles = { writer: 'shortener_writer', reader: 'shortener_reader', 'failover-monitor': 'shortener_monitor' } as const;

/** The migrate CLI's variable with each role's password (it runs as the superuser and sets them). */
export const databaseRolePasswordVariables = {
  writer: 'PG_WRITER_PASSWORD',
  reader: 'PG_READER_PASSWORD',
  'failover-monitor': 'PG_MONITOR_PASSWORD',
} as const;

/** A service's database settings; PG_USER defaults to the service's own role, never the superuser. */
const database = (role: string) => ({
  SHARD_NODES: shardNodesJson,
  PG_USER: z.string().min(1).default(role),
  PG_PASSWORD: z.string().min(1),
  PG_DATABASE: z.string().min(1).default('shortener'),
  /**
   * How long a new connection may take before the node counts as unreachable. Each service
   * has its own default (800 ms for the monitor and readers, 2 s for writers); a host that
   * runs many containers on few cores (the compose topology on a laptop) needs more, or
   * SCRAM handshakes that are merely slow are abandoned and retried, which slows them more.
   */
  PG_CONNECT_TIMEOUT_MS: z.coerce.number().int().min(100).max(60_000).optional(),
});

const redisUrl = z.string().regex(/^rediss?:\/\/[^\s]+$/, 'expected redis://host:port');

/**
 * One Redis (REDIS_URL) or a Redis Cluster (REDIS_CLUSTER_NODES, seed nodes as host:port
 * list; REDIS_URL then only carries a password, if any). One of the two is required.
 */
const redis = {
  REDIS_URL: redisUrl.optional(),
  REDIS_CLUSTER_NODES: hostPortList.optional(),
};

function requireRedis(settings: { REDIS_URL?: string; REDIS_CLUSTER_NODES?: unknown[] }, ctx: z.RefinementCtx) {
  if (!settings.REDIS_URL && !(settings.REDIS_CLUSTER_NODES && settings.REDIS_CLUSTER_NODES.length > 0))
    ctx.addIssue({ code: 'custom', path: ['REDIS_URL'], message: 'required (or REDIS_CLUSTER_NODES for a Redis Cluster)' });
}

/** Shared secret of the RPC channel between the gateway and the writer and readers (docs/reference.md section 5). */
const rpcSecret = z.string().min(32, 'must be at least 32 characters').regex(/^\S+$/, 'must not contain whitespace');

const rpc = {
  RPC_HOST: z.string().min(1).default('127.0.0.1'),
  RPC_PORT: port,
  RPC_SECRET: rpcSecret,
};

/** true/false (also 1/0, yes/no); z.coerce.boolean would read "false" as true. */
const flag = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'], { message: 'expected true or false' })
  .transform((value) => value === 'true' || value === '1' || value === 'yes');

const perMinute = z.coerce.number().int().min(0).max(100_000);

/**
 * Fastify's trustProxy: false (the peer address counts), true (the left-most
 * X-Forwarded-For entry counts), a hop count, or a comma list of proxy addresses/CIDRs.
 */
const trustProxy = z
  .string()
  .regex(/^(true|false|\d{1,2}|[0-9A-Fa-f:./]+(\s*,\s*[0-9A-Fa-f:./]+)*)$/, 'expected true, false, a hop count or a comma list of addresses')
  .transform((value): boolean | number | string[] =>
    value === 'true' ? true : value === 'false' ? false : /^\d+$/.test(value) ? Number(value) : value.split(',').map((item) => item.trim()),
  );

const hostList = z
  .string()
  .regex(/^[^\s,]*(\s*,\s*[^\s,]*)*$/, 'expected a comma list of host names')
  .transform((value) =>
    value
      .split(',')
      .map((item) => item.trim())
      .filter(Boolean),
  );

export const gatewayEnvironmentSchema = z
  .object({
    ...common,
    PORT: port.default(3000),
    PUBLIC_BASE_URL: z.url({ protocol: /^https?$/ }).optional(),
    ADMIN_TOKEN: z.string().min(16, 'must be at least 16 characters'),
    SHARD_NODES: shardNodesJson,
    ...redis,
    WRITER_ADDR: hostPort,
    READER_ADDRS: hostPortList,
    RPC_SECRET: rpcSecret,
    // docs/reference.md section 8: keys, quotas, targets, redirect caching.
    KEY_RATE_LIMIT_PER_MINUTE: perMinute.min(1).default(600),
    ANONYMOUS_RATE_LIMIT_PER_MINUTE: perMinute.default(0),
    ANONYMOUS_CREATE: flag.default(true),
    TRUST_PROXY: trustProxy.default(false),
    ALLOW_PRIVATE_TARGETS: flag.default(false),
    BLOCKED_HOSTS: hostList.default([]),
    REDIRECT_CACHE_SECONDS: z.coerce.number().int().min(0).max(31_536_000).default(300),
  })
  .superRefine(requireRedis);

export const writerEnvironmentSchema = z
  .object({
    ...common,
    ...database(databaseRoles.writer),
    ...rpc,
    HTTP_PORT: port,
    ...redis,
  })
  .superRefine(requireRedis);

export const readerEnvironmentSchema = z
  .object({
    ...common,
    ...database(databaseRoles.reader),
    ...rpc,
    HTTP_PORT: port,
    ...redis,
  })
  .superRefine(requireRedis);

export const monitorEnvironmentSchema = z.object({
  ...common,
  ...database(databaseRoles['failover-monitor']),
  HTTP_PORT: port,
  MONITOR_ID: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/),
  NODE_CONTROL: z.enum(['local', 'kubernetes', 'sql']).default('local'),
  STACK_DIR: z.string().min(1).optional(),
  /** NODE_CONTROL=local: directory of the stack's cli.mjs (provision-shard, retire-shard); the launcher sets it. */
  STACK_TOOLS_DIR: z.string().min(1).optional(),
  /** Resharding: how long after a slot switch the old owner's copies are kept (every service follows the new epoch by then). */
  RESHARD_EPOCH_GRACE_MS: z.coerce.number().int().min(0).max(60_000).optional(),
});

export type GatewayEnvironment = z.output<typeof gatewayEnvironmentSchema>;
export type WriterEnvironment = z.output<typeof writerEnvironmentSchema>;
export type ReaderEnvironment = z.output<typeof readerEnvironmentSchema>;
export type MonitorEnvironment = z.output<typeof monitorEnvironmentSchema>;

/** What deployment manifests must agree with: variables, and the HTTP health port's variable. */
export const serviceEnvironments = {
  gateway: { schema: gatewayEnvironmentSchema, httpPortVariable: 'PORT' },
  writer: { schema: writerEnvironmentSchema, httpPortVariable: 'HTTP_PORT' },
  reader: { schema: readerEnvironmentSchema, httpPortVariable: 'HTTP_PORT' },
  'failover-monitor': { schema: monitorEnvironmentSchema, httpPortVariable: 'HTTP_PORT' },
} as const;

export type ServiceName = keyof typeof serviceEnvironments;

/** Health endpoints every service serves on its HTTP port. */
export const healthPaths = { live: '/health/live', ready: '/health/ready', metrics: '/metrics' } as const;
