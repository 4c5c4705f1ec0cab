/**
 * The local stack itself (CONTRACT section 1): PostgreSQL nodes with streaming
 * replication, Redis and Kafka, as tools/stack started them.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { allNodes, currentPrimary, eventually, kafkaClient, redisClient, stackFromEnv, withNode, type StackNode } from './support';

const stack = stackFromEnv();
const { inventory } = stack;

function parseStandbyNames(value: string): { count: number; names: string[] } | null {
  const match = /^ANY\s+(\d+)\s*\((.*)\)$/i.exec(value.trim());
  if (!match) return null;
  return {
    count: Number(match[1]),
    names: match[2]
      .split(',')
      .map((name) => name.trim().replace(/^"|"$/g, ''))
      .sort(),
  };
}

describe('stack directory', () => {
  it.each(['pg-password', 'admin-token', 'stack.json'])('has %s', (file) => {
    const path = join(stack.stackDir, file);
    expect(existsSync(path)).toBe(true);
    expect(readFileSync(path, 'utf8').trim().length).toBeGreaterThan(0);
  });

  it('gives the admin token at least 16 characters and the password no line breaks', () => {
    expect(stack.adminToken.length).toBeGreaterThanOrEqual(16);
    expect(readFileSync(join(stack.stackDir, 'pg-password'), 'utf8').trim()).not.toMatch(/\s/);
  });

  it('names every node s{shard}n{index}, on its own port', () => {
    const nodes = allNodes(stack);
    expect(nodes.length).toBeGreaterThan(0);
    for (const shard of inventory.shards) {
      shard.nodes.forEach((node, index) => expect(node.name).toBe(`s${shard.id}n${index}`));
    }
    expect(new Set(nodes.map((node) => node.port)).size).toBe(nodes.length);
  });
});

describe('PostgreSQL', () => {
  it('listens on 127.0.0.1 only, has the database shortener, on every node', async () => {
    for (const node of allNodes(stack)) {
      await withNode(stack, node, async (db) => {
        const { rows } = await db.query(
          "SELECT current_setting('listen_addresses') AS listen, host(inet_server_addr()) AS addr, current_database() AS db, current_setting('server_version_num')::int AS version",
        );
        expect({ node: node.name, ...rows[0] }).toEqual({
          node: node.name,
          listen: '127.0.0.1',
          addr: '127.0.0.1',
          db: 'shortener',
          version: expect.any(Number),
        });
        expect(Math.floor(rows[0].version / 10000)).toBe(15);
      });
    }
  });

  describe.each(inventory.shards.map((shard) => [shard.id] as const))('shard %i', (shardId) => {
    let primary: StackNode;
    let replicas: StackNode[];

    beforeAll(async () => {
      primary = await currentPrimary(stack, shardId);
      replicas = inventory.shards[shardId].nodes.filter((node) => node.name !== primary.name);
    });

    it('has one primary, not in recovery, and its replicas in recovery', async () => {
      expect(await withNode(stack, primary, async (db) => (await db.query('SELECT pg_is_in_recovery() AS r')).rows[0].r)).toBe(false);
      for (const replica of replicas) {
        expect({
          node: replica.name,
          inRecovery: await withNode(stack, replica, async (db) => (await db.query('SELECT pg_is_in_recovery() AS r')).rows[0].r),
        }).toEqual({
          node: replica.name,
          inRecovery: true,
        });
      }
    });

    it('streams to every replica, in the configured replication mode', async () => {
      const rows = await eventually(
        () =>
          withNode(stack, primary, async (db) => {
            const result = await db.query<{ application_name: string; state: string; sync_state: string }>(
              'SELECT application_name, state, sync_state FROM pg_stat_replication ORDER BY application_name',
            );
            const streaming = result.rows.filter((row) => row.state === 'streaming');
            if (streaming.length < replicas.length)
              throw new Error(`only ${streaming.length} of ${replicas.length} replicas streaming: ${JSON.stringify(result.rows)}`);
            return result.rows;
          }),
        { timeoutMs: 20_000, intervalMs: 500 },
      );
      for (const replica of replicas) {
        const row = rows.find((r) => r.application_name === replica.name);
        expect({ replica: replica.name, state: row?.state }).toEqual({ replica: replica.name, state: 'streaming' });
        expect(row?.sync_state).toBe(inventory.replicationMode === 'quorum' ? 'quorum' : 'async');
      }
      const names = await withNode(
        stack,
        primary,
        async (db) => (await db.query('SHOW synchronous_standby_names')).rows[0].synchronous_standby_names as string,
      );
      if (inventory.replicationMode === 'quorum') {
        expect(parseStandbyNames(names)).toEqual({ count: 1, names: replicas.map((replica) => replica.name).sort() });
      } else {
        expect(names).toBe('');
      }
    });

    it('has a physical replication slot per replica on the primary (named after it)', async () => {
      const slots = await withNode(
        stack,
        primary,
        async (db) => (await db.query("SELECT slot_name, active FROM pg_replication_slots WHERE slot_type = 'physical'")).rows,
      );
      for (const replica of replicas) expect(slots).toContainEqual({ slot_name: replica.name, active: true });
    });

    it('replicates a row written on the primary to every replica', async () => {
      const table = `e2e_scratch.probe_${randomBytes(6).toString('hex')}`;
      const value = randomBytes(8).toString('hex');
      await withNode(stack, primary, async (db) => {
        await db.query('CREATE SCHEMA IF NOT EXISTS e2e_scratch');
        await db.query(`CREATE TABLE ${table} (id int PRIMARY KEY, value text NOT NULL)`);
        await db.query(`INSERT INTO ${table} VALUES (1, $1)`, [value]);
      });
      try {
        for (const replica of replicas) {
          const seen = await eventually(
            () => withNode(stack, replica, async (db) => (await db.query(`SELECT value FROM ${table} WHERE id = 1`)).rows[0]?.value as string | undefined),
            { timeoutMs: 10_000, intervalMs: 100 },
          ).catch(() => undefined);
          expect({ replica: replica.name, value: seen }).toEqual({ replica: replica.name, value });
        }
      } finally {
        await withNode(stack, primary, (db) => db.query(`DROP TABLE IF EXISTS ${table}`));
      }
    });

    it('rejects writes on a replica', async () => {
      for (const replica of replicas) {
        await expect(withNode(stack, replica, (db) => db.query('CREATE TABLE e2e_should_fail (id int)'))).rejects.toThrow(/read-only/);
      }
    });

    it('has the migrations table on the primary and its replicas when migrations ran', async () => {
      const migrated = await withNode(
        stack,
        primary,
        async (db) => (await db.query("SELECT to_regclass('public.schema_migrations') IS NOT NULL AS ok")).rows[0].ok as boolean,
      );
      if (!inventory.migrations?.applied) return; // the launcher had nothing to migrate with (no build)
      expect(migrated).toBe(true);
      const version = await withNode(stack, primary, async (db) =>
        Number((await db.query('SELECT coalesce(max(version), 0) AS v FROM schema_migrations')).rows[0].v),
      );
      expect(version).toBeGreaterThan(0);
      for (const replica of replicas) {
        await eventually(() =>
          withNode(
            stack,
            replica,
            async (db) => Number((await db.query('SELECT coalesce(max(version), 0) AS v FROM schema_migrations')).rows[0].v) === version,
          ),
        );
      }
    });
  });
});

describe('Redis', () => {
  it('answers PING, SET and GET on the stack port, loopback only', async () => {
    const redis = redisClient(stack);
    try {
      expect(await redis.ping()).toBe('PONG');
      const key = `e2e:probe:${randomBytes(6).toString('hex')}`;
      expect(await redis.set(key, 'value', 'EX', 60)).toBe('OK');
      expect(await redis.get(key)).toBe('value');
      await redis.del(key);
      const bind = (await redis.config('GET', 'bind')) as string[];
      expect(bind[1].split(/\s+/)).toEqual(['127.0.0.1']);
    } finally {
      redis.disconnect();
    }
  });
});

describe('Kafka', () => {
  const admin = kafkaClient(stack).admin();
  beforeAll(() => admin.connect());
  afterAll(() => admin.disconnect());

  it.each([
    ['url.events', 6],
    ['url.clicks', 6],
    ['cluster.topology', 1],
  ] as const)('has topic %s with %i partition(s)', async (topic, partitions) => {
    const metadata = await admin.fetchTopicMetadata({ topics: [topic] });
    expect(metadata.topics[0].partitions).toHaveLength(partitions);
  });

  it('compacts cluster.topology', async () => {
    const { ConfigResourceTypes } = await import('kafkajs');
    const result = await admin.describeConfigs({
      includeSynonyms: false,
      resources: [{ type: ConfigResourceTypes.TOPIC, name: 'cluster.topology', configNames: ['cleanup.policy'] }],
    });
    const entry = result.resources[0].configEntries.find((config) => config.configName === 'cleanup.policy');
    expect(entry?.configValue).toBe('compact');
  });

  it('advertises a loopback broker address', async () => {
    const cluster = await admin.describeCluster();
    expect(cluster.brokers.length).toBeGreaterThan(0);
    for (const broker of cluster.brokers) expect(broker.host).toBe('127.0.0.1');
  });
});
