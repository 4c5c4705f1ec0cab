/**
 * The local stack itself (docs/reference.md section 1): PostgreSQL nodes with streaming
 * replication, Redis and Kafka, as tools/stack started them.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import type { Cluster } from 'ioredis';
import { allNodes, currentPrimary, eventually, kafkaClient, reachableHost, redisClient, stackFromEnv, withNode, type StackNode } from './support';

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
  it.each(['pg-password', 'pg-writer-password', 'pg-reader-password', 'pg-monitor-password', 'admin-token', 'stack.json'])('has %s', (file) => {
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

/** The local stack (loopback everywhere), not the compose topology (tools/docker/test.mjs). */
const local = inventory.target !== 'compose';

describe('PostgreSQL', () => {
  // Locally every node listens on loopback only; a container listens on its network (the
  // compose network is the boundary there, and no database port is published).
  it('listens on 127.0.0.1 only (locally), has the database shortener, on every node', async () => {
    for (const node of allNodes(stack)) {
      await withNode(stack, node, async (db) => {
        const { rows } = await db.query(
          "SELECT current_setting('listen_addresses') AS listen, host(inet_server_addr()) AS addr, current_database() AS db, current_setting('server_version_num')::int AS version",
        );
        expect({ node: node.name, ...rows[0] }).toEqual({
          node: node.name,
          listen: local ? '127.0.0.1' : '*',
          addr: local ? '127.0.0.1' : await reachableHost(stack, node.host),
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
        // Compose names every node of the shard (a node is never its own standby), so that the
        // setting stays true whichever node is primary; the local stack names the replicas.
        const expected = local ? replicas : [primary, ...replicas];
        expect(parseStandbyNames(names)).toEqual({ count: 1, names: expected.map((node) => node.name).sort() });
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

// Least privilege (docs/reference.md, security of the inside): libs/db migration 3 makes one
// role per service; the stack hands each service only its own role's password.
const SERVICE_ROLES = { writer: 'shortener_writer', reader: 'shortener_reader', monitor: 'shortener_monitor' } as const;
type RoleService = keyof typeof SERVICE_ROLES;

function rolePassword(service: RoleService): string {
  const file = join(stack.stackDir, `pg-${service}-password`);
  const fromEnv = process.env[`E2E_PG_${service.toUpperCase()}_PASSWORD`];
  if (fromEnv) return fromEnv;
  if (!existsSync(file)) throw new Error(`${file} does not exist (or set E2E_PG_${service.toUpperCase()}_PASSWORD)`);
  return readFileSync(file, 'utf8').trim();
}

async function asRole<T>(service: RoleService, node: StackNode, fn: (db: Client) => Promise<T>): Promise<T> {
  const db = new Client({
    host: await reachableHost(stack, node.host),
    port: node.port,
    user: SERVICE_ROLES[service],
    password: rolePassword(service),
    database: 'shortener',
    connectionTimeoutMillis: 5000,
    application_name: 'system-e2e',
  });
  await db.connect();
  try {
    return await fn(db);
  } finally {
    await db.end().catch(() => undefined);
  }
}

/**
 * The error a statement fails with as `service`, or null. Inside a transaction that is rolled
 * back, except ALTER SYSTEM, which cannot run in one (every ALTER SYSTEM tried here is refused).
 */
function failureAs(service: RoleService, node: StackNode, sql: string): Promise<string | null> {
  return asRole(service, node, async (db) => {
    if (/^ALTER SYSTEM/.test(sql))
      return db.query(sql).then(
        () => null,
        (error: Error) => error.message,
      );
    await db.query('BEGIN');
    try {
      await db.query(sql);
      return null;
    } catch (error) {
      return (error as Error).message;
    } finally {
      await db.query('ROLLBACK').catch(() => undefined);
    }
  });
}

/** How PostgreSQL refuses a statement to a role without the right (object rights; ownership for DDL). */
const DENIED = /permission denied|must be owner/;

describe('service roles (least privilege)', () => {
  let primary: StackNode;
  let replica: StackNode | undefined;

  beforeAll(async () => {
    primary = await currentPrimary(stack, 0);
    replica = inventory.shards[0].nodes.find((node) => node.name !== primary.name);
  });

  it('are login roles without superuser, role, database or RLS-bypass rights; only the monitor may replicate', async () => {
    const { rows } = await withNode(stack, primary, (db) =>
      db.query(
        `SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolreplication, rolcanlogin FROM pg_roles
         WHERE rolname = ANY($1) ORDER BY rolname`,
        [Object.values(SERVICE_ROLES)],
      ),
    );
    const attributes = { rolsuper: false, rolcreaterole: false, rolcreatedb: false, rolbypassrls: false, rolcanlogin: true };
    expect(rows).toEqual([
      { rolname: 'shortener_monitor', ...attributes, rolreplication: true },
      { rolname: 'shortener_reader', ...attributes, rolreplication: false },
      { rolname: 'shortener_writer', ...attributes, rolreplication: false },
    ]);
  });

  it('each service connects as its own role, none as the superuser', async () => {
    if (process.env.STACK_SKIP_SERVICES && process.env.STACK_SKIP_SERVICES !== '0') return; // no services run
    // every monitor probes every node each second; readers probe every node; the writer holds primary connections
    const seen = await eventually(
      async () => {
        const users = new Map<string, Set<string>>();
        for (const node of [primary, ...(replica ? [replica] : [])]) {
          const { rows } = await withNode(stack, node, (db) =>
            db.query<{ application_name: string; usename: string }>(
              "SELECT DISTINCT application_name, usename FROM pg_stat_activity WHERE backend_type = 'client backend' AND application_name = ANY($1)",
              [['writer', 'reader', 'failover-monitor']],
            ),
          );
          for (const row of rows) users.set(row.application_name, new Set([...(users.get(row.application_name) ?? []), row.usename]));
        }
        if (!users.has('reader') || !users.has('failover-monitor')) throw new Error(`not every service seen yet: ${JSON.stringify([...users])}`);
        return users;
      },
      { timeoutMs: 20_000, intervalMs: 500 },
    );
    expect([...seen.get('reader')!]).toEqual(['shortener_reader']);
    expect([...seen.get('failover-monitor')!]).toEqual(['shortener_monitor']);
    if (seen.has('writer')) expect([...seen.get('writer')!]).toEqual(['shortener_writer']);
  });

  it('the stack keeps the role passwords out of stack.json, and the gateway has none', () => {
    const text = readFileSync(join(stack.stackDir, 'stack.json'), 'utf8');
    const env = (JSON.parse(text) as { services: { env?: Record<string, Record<string, string>> } }).services.env;
    if (!env) return; // compose: no service environments in stack.json
    for (const service of Object.keys(SERVICE_ROLES) as RoleService[]) expect(text).not.toContain(rolePassword(service));
    expect(env.writer).toMatchObject({ PG_USER: 'shortener_writer', PG_PASSWORD: '(secret)' });
    expect(env['reader-0']).toMatchObject({ PG_USER: 'shortener_reader', PG_PASSWORD: '(secret)' });
    expect(env['monitor-0']).toMatchObject({ PG_USER: 'shortener_monitor', PG_PASSWORD: '(secret)' });
    expect(Object.keys(env.gateway).filter((key) => key.startsWith('PG_'))).toEqual([]);
  });

  it('the reader reads links and nothing else: no writes, no other tables, no DDL', async () => {
    expect(await failureAs('reader', primary, 'SELECT count(*) FROM urls')).toBeNull();
    for (const sql of [
      "INSERT INTO urls (code, url, manage_token_hash) VALUES ('e2e-role-probe', 'https://example.com', '\\x00')",
      "UPDATE urls SET clicks = clicks + 1 WHERE code = 'e2e-role-probe'",
      "DELETE FROM urls WHERE code = 'e2e-role-probe'",
      "INSERT INTO outbox (topic, key, payload) VALUES ('t', 'k', 'p')",
      'SELECT count(*) FROM idempotency_keys',
      'CREATE TABLE e2e_role_probe (id int)',
      'CREATE TEMP TABLE e2e_role_probe (id int)',
    ]) {
      expect({ sql, error: await failureAs('reader', primary, sql) }).toEqual({ sql, error: expect.stringMatching(DENIED) });
    }
  });

  it('the writer changes rows but no schema, no settings and no node state', async () => {
    expect(
      await failureAs(
        'writer',
        primary,
        "WITH link AS (INSERT INTO urls (code, url, manage_token_hash) VALUES ('e2e-role-probe', 'https://example.com', '\\x00') RETURNING code) INSERT INTO outbox (topic, key, payload) SELECT 't', code, 'p' FROM link",
      ),
    ).toBeNull();
    for (const sql of [
      'TRUNCATE urls',
      'DROP TABLE outbox',
      'ALTER TABLE urls ADD COLUMN e2e int',
      'CREATE TABLE e2e_role_probe (id int)',
      "ALTER SYSTEM SET work_mem = '8MB'",
      'SELECT pg_promote()',
      'SELECT pg_reload_conf()',
      'SELECT count(*) FROM schema_migrations',
      'CREATE ROLE e2e_role_probe',
    ]) {
      expect({ sql, error: await failureAs('writer', primary, sql) }).toEqual({ sql, error: expect.stringMatching(DENIED) });
    }
  });

  it('the monitor administers nodes (promote, four settings, slots, pg_rewind functions) and moves the rows of slots, but writes no event and changes no schema', async () => {
    // pg_promote passes the privilege check and fails only because a primary is not in recovery
    expect(await failureAs('monitor', primary, 'SELECT pg_promote(false, 1)')).toMatch(/recovery is not in progress/);
    const allowed = await asRole('monitor', primary, async (db) => {
      const { rows } = await db.query(`SELECT has_parameter_privilege(current_user, p, 'ALTER SYSTEM') AS ok, p FROM unnest($1::text[]) AS p`, [
        ['synchronous_standby_names', 'default_transaction_read_only', 'primary_conninfo', 'primary_slot_name', 'work_mem', 'archive_command'],
      ]);
      return Object.fromEntries(rows.map((row) => [row.p, row.ok]));
    });
    expect(allowed).toEqual({
      synchronous_standby_names: true,
      default_transaction_read_only: true,
      primary_conninfo: true,
      primary_slot_name: true,
      work_mem: false,
      archive_command: false,
    });
    await asRole('monitor', primary, async (db) => {
      // what node-admin.ts runs: the same value back, a reload, a slot (temporary here), the standbys in full
      const current = (await db.query('SHOW synchronous_standby_names')).rows[0].synchronous_standby_names as string;
      const { rows } = await db.query("SELECT format('ALTER SYSTEM SET synchronous_standby_names = %L', $1::text) AS sql", [current]);
      await db.query(rows[0].sql);
      await db.query('SELECT pg_reload_conf()');
      await db.query("SELECT pg_create_physical_replication_slot('e2e_role_probe', false, true)");
      const standbys = (await db.query('SELECT application_name, state FROM pg_stat_replication')).rows;
      if (replica) expect(standbys).toContainEqual({ application_name: replica.name, state: 'streaming' });
      // pg_rewind --source-server
      await db.query(
        "SELECT pg_ls_dir('.', true, false), pg_stat_file('PG_VERSION', true), pg_read_binary_file('PG_VERSION'), pg_read_binary_file('PG_VERSION', 0, 2, true)",
      );
    });
    if (replica) {
      const conninfo = await asRole('monitor', replica, async (db) => (await db.query('SHOW primary_conninfo')).rows[0].primary_conninfo as string);
      expect(conninfo).toMatch(/port=/);
    }
    // Since migration 6 it moves slots' rows (urls, idempotency_keys, api_keys, the guard and
    // change log); it still writes no event, truncates nothing and changes no schema.
    await asRole('monitor', primary, async (db) => {
      await db.query('SELECT count(*) FROM urls');
      await db.query('SELECT count(*) FROM slot_guard');
    });
    for (const sql of [
      "INSERT INTO outbox (topic, key, payload) VALUES ('t', 'k', 'p')",
      'DELETE FROM outbox',
      'TRUNCATE urls',
      "ALTER SYSTEM SET work_mem = '8MB'",
      'CREATE TABLE e2e_role_probe (id int)',
      'CREATE ROLE e2e_role_probe',
    ]) {
      expect({ sql, error: await failureAs('monitor', primary, sql) }).toEqual({ sql, error: expect.stringMatching(DENIED) });
    }
  });
});

describe('Redis', () => {
  it('answers PING, SET and GET: locally on the stack port, loopback only; under compose as a healthy Redis Cluster', async () => {
    const redis = redisClient(stack);
    try {
      expect(await redis.ping()).toBe('PONG');
      const key = `e2e:probe:${randomBytes(6).toString('hex')}`;
      expect(await redis.set(key, 'value', 'EX', 60)).toBe('OK');
      expect(await redis.get(key)).toBe('value');
      await redis.del(key);
      if (stack.inventory.redis.cluster) {
        const info = String(await (redis as Cluster).cluster('INFO'));
        expect(info).toMatch(/cluster_state:ok/);
        expect(info).toMatch(/cluster_slots_assigned:16384/);
        expect(info).toMatch(new RegExp(`cluster_size:${stack.inventory.redis.cluster.nodes.length}\\b`));
      } else {
        const bind = (await redis.config('GET', 'bind')) as string[];
        expect(bind[1].split(/\s+/)).toEqual(['127.0.0.1']);
      }
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

  it('advertises a loopback broker address (locally)', async () => {
    const cluster = await admin.describeCluster();
    expect(cluster.brokers.length).toBeGreaterThan(0);
    // Under compose the broker advertises its service name, which only the compose network resolves.
    const advertised = local ? '127.0.0.1' : inventory.kafka.brokers[0].split(':')[0];
    for (const broker of cluster.brokers) expect(broker.host).toBe(advertised);
  });
});
