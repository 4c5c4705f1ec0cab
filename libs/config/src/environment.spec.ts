import {
  databaseRoles,
  gatewayEnvironmentSchema,
  InvalidEnvironmentError,
  monitorEnvironmentSchema,
  readerEnvironmentSchema,
  validateEnvironment,
  writerEnvironmentSchema,
} from './index';

const shardNodes = JSON.stringify([
  { id: 0, nodes: [{ name: 's0n0', host: '127.0.0.1', port: 16400 }] },
  { id: 1, nodes: [{ name: 's1n0', host: '127.0.0.1', port: 16408 }] },
]);

const writerEnv = {
  SHARD_NODES: shardNodes,
  PG_PASSWORD: 'secret',
  KAFKA_BROKERS: '127.0.0.1:19092',
  REDIS_URL: 'redis://127.0.0.1:16379',
  RPC_PORT: '4100',
  HTTP_PORT: '4101',
  RPC_SECRET: 'r'.repeat(32),
};

describe('validateEnvironment', () => {
  it('parses a complete writer environment with defaults', () => {
    const config = validateEnvironment(writerEnvironmentSchema, writerEnv);
    expect(config.RPC_PORT).toBe(4100);
    expect(config.REPLICATION_MODE).toBe('quorum');
    expect(config.KAFKA_BROKERS).toEqual([{ host: '127.0.0.1', port: 19092 }]);
    expect(config.SHARD_NODES[1].nodes[0].name).toBe('s1n0');
  });

  it('connects each database service as its own role by default, never as the superuser', () => {
    expect(validateEnvironment(writerEnvironmentSchema, writerEnv).PG_USER).toBe('shortener_writer');
    const { RPC_PORT: _port, RPC_SECRET: _secret, ...common } = writerEnv;
    expect(validateEnvironment(readerEnvironmentSchema, { ...writerEnv }).PG_USER).toBe('shortener_reader');
    expect(validateEnvironment(monitorEnvironmentSchema, { ...common, MONITOR_ID: 'monitor-0' }).PG_USER).toBe('shortener_monitor');
    expect(Object.values(databaseRoles)).not.toContain('postgres');
  });

  it('takes a Redis Cluster by its seed nodes instead of REDIS_URL, and requires one of the two', () => {
    const { REDIS_URL: _url, ...withoutRedis } = writerEnv;
    const clustered = validateEnvironment(readerEnvironmentSchema, { ...withoutRedis, REDIS_CLUSTER_NODES: 'redis-0:6379, redis-1:6379,redis-2:6379' });
    expect(clustered.REDIS_CLUSTER_NODES).toEqual([
      { host: 'redis-0', port: 6379 },
      { host: 'redis-1', port: 6379 },
      { host: 'redis-2', port: 6379 },
    ]);
    expect(clustered.REDIS_URL).toBeUndefined();
    expect(() => validateEnvironment(writerEnvironmentSchema, withoutRedis)).toThrow(/REDIS_URL.*REDIS_CLUSTER_NODES/);
    expect(() => validateEnvironment(writerEnvironmentSchema, { ...withoutRedis, REDIS_CLUSTER_NODES: 'redis-0' })).toThrow(/REDIS_CLUSTER_NODES/);
  });

  it('names the missing variable', () => {
    const { PG_PASSWORD: _omitted, ...rest } = writerEnv;
    expect(() => validateEnvironment(writerEnvironmentSchema, rest)).toThrow(/PG_PASSWORD/);
  });

  it('names a malformed variable and never echoes its value', () => {
    try {
      validateEnvironment(writerEnvironmentSchema, { ...writerEnv, HTTP_PORT: 'http-port-99999' });
      throw new Error('expected a failure');
    } catch (error) {
      expect(error).toBeInstanceOf(InvalidEnvironmentError);
      expect((error as Error).message).toMatch(/HTTP_PORT/);
      expect((error as Error).message).not.toMatch(/http-port-99999/);
    }
  });

  it('rejects shard ids out of order and duplicate node names', () => {
    const bad = JSON.stringify([
      { id: 1, nodes: [{ name: 'a', host: 'h', port: 1 }] },
      { id: 0, nodes: [{ name: 'a', host: 'h', port: 2 }] },
    ]);
    expect(() => validateEnvironment(writerEnvironmentSchema, { ...writerEnv, SHARD_NODES: bad })).toThrow(
      /SHARD_NODES.*shard ids must be unique and increasing; found 0 after 1.*node names must be unique/,
    );
  });

  it('accepts the gaps that retired shard ids leave', () => {
    const gaps = JSON.stringify([
      { id: 0, nodes: [{ name: 's0n0', host: 'h', port: 1 }] },
      { id: 2, nodes: [{ name: 's2n0', host: 'h', port: 2 }] },
    ]);
    const env = validateEnvironment(writerEnvironmentSchema, { ...writerEnv, SHARD_NODES: gaps });
    expect(env.SHARD_NODES.map((shard) => shard.id)).toEqual([0, 2]);
  });

  it('rejects a non-JSON SHARD_NODES and an unknown replication mode', () => {
    expect(() => validateEnvironment(writerEnvironmentSchema, { ...writerEnv, SHARD_NODES: 'shard0=...' })).toThrow(/SHARD_NODES: must be JSON/);
    expect(() => validateEnvironment(writerEnvironmentSchema, { ...writerEnv, REPLICATION_MODE: 'sync' })).toThrow(/REPLICATION_MODE/);
  });

  it('requires a long admin token and a list of readers at the gateway', () => {
    const gateway = {
      SHARD_NODES: shardNodes,
      KAFKA_BROKERS: '127.0.0.1:19092',
      REDIS_URL: 'redis://127.0.0.1:16379',
      WRITER_ADDR: '127.0.0.1:4100',
      READER_ADDRS: '127.0.0.1:4200, 127.0.0.1:4202',
      ADMIN_TOKEN: 'short',
      RPC_SECRET: 'r'.repeat(32),
    };
    expect(() => validateEnvironment(gatewayEnvironmentSchema, gateway)).toThrow(/ADMIN_TOKEN/);
    const config = validateEnvironment(gatewayEnvironmentSchema, { ...gateway, ADMIN_TOKEN: 'x'.repeat(32) });
    expect(config.READER_ADDRS).toHaveLength(2);
    expect(config.PORT).toBe(3000);
  });

  it('reads the keys, quotas and targets settings of section 8 with their defaults', () => {
    const gateway = {
      SHARD_NODES: shardNodes,
      KAFKA_BROKERS: '127.0.0.1:19092',
      REDIS_URL: 'redis://127.0.0.1:16379',
      WRITER_ADDR: '127.0.0.1:4100',
      READER_ADDRS: '127.0.0.1:4200',
      ADMIN_TOKEN: 'x'.repeat(32),
      RPC_SECRET: 'r'.repeat(32),
    };
    const defaults = validateEnvironment(gatewayEnvironmentSchema, gateway);
    expect(defaults).toMatchObject({
      KEY_RATE_LIMIT_PER_MINUTE: 600,
      ANONYMOUS_RATE_LIMIT_PER_MINUTE: 0,
      ANONYMOUS_CREATE: true,
      TRUST_PROXY: false,
      ALLOW_PRIVATE_TARGETS: false,
      BLOCKED_HOSTS: [],
      REDIRECT_CACHE_SECONDS: 300,
    });
    const set = validateEnvironment(gatewayEnvironmentSchema, {
      ...gateway,
      ANONYMOUS_RATE_LIMIT_PER_MINUTE: '60',
      ANONYMOUS_CREATE: 'false',
      TRUST_PROXY: '10.0.0.0/8, 127.0.0.1',
      ALLOW_PRIVATE_TARGETS: '1',
      BLOCKED_HOSTS: 'evil.example, bad.test',
    });
    expect(set).toMatchObject({
      ANONYMOUS_RATE_LIMIT_PER_MINUTE: 60,
      ANONYMOUS_CREATE: false,
      TRUST_PROXY: ['10.0.0.0/8', '127.0.0.1'],
      ALLOW_PRIVATE_TARGETS: true,
      BLOCKED_HOSTS: ['evil.example', 'bad.test'],
    });
    expect(validateEnvironment(gatewayEnvironmentSchema, { ...gateway, TRUST_PROXY: 'true' }).TRUST_PROXY).toBe(true);
    expect(validateEnvironment(gatewayEnvironmentSchema, { ...gateway, TRUST_PROXY: '2' }).TRUST_PROXY).toBe(2);
    expect(() => validateEnvironment(gatewayEnvironmentSchema, { ...gateway, ANONYMOUS_CREATE: 'nope' })).toThrow(/ANONYMOUS_CREATE/);
    expect(() => validateEnvironment(gatewayEnvironmentSchema, { ...gateway, KEY_RATE_LIMIT_PER_MINUTE: '0' })).toThrow(/KEY_RATE_LIMIT_PER_MINUTE/);
  });

  it('requires a long RPC secret at the gateway, the writer and the reader, and never echoes it', () => {
    const { RPC_SECRET: _omitted, ...withoutSecret } = writerEnv;
    expect(() => validateEnvironment(writerEnvironmentSchema, withoutSecret)).toThrow(/RPC_SECRET/);
    try {
      validateEnvironment(writerEnvironmentSchema, { ...writerEnv, RPC_SECRET: 'too-short-secret' });
      throw new Error('expected a failure');
    } catch (error) {
      expect((error as Error).message).toMatch(/RPC_SECRET: must be at least 32 characters/);
      expect((error as Error).message).not.toMatch(/too-short-secret/);
    }
    expect(validateEnvironment(writerEnvironmentSchema, writerEnv).RPC_SECRET).toBe('r'.repeat(32));
  });
});
