// node --test tools/stack/provision.test.mjs: the pure parts of provision-shard / retire-shard.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ProvisionError,
  nodeName,
  parseShardId,
  pgBasePortOf,
  plannedShard,
  replicasOf,
  shardSummary,
  shardsToStop,
  withRetiredShard,
  withShard,
} from './provision.mjs';
import { buildInventory, readEnvironment } from './config.mjs';

/** An inventory as the launcher writes it for SHARDS=2 REPLICAS=2 PG_BASE_PORT=26400, with its services' environments. */
function stack({ shards = 2, replicas = 2, readers = 1 } = {}) {
  const config = readEnvironment({
    STACK_DIR: '/tmp/provision-test-stack',
    SHARDS: String(shards),
    REPLICAS: String(replicas),
    READERS: String(readers),
    PG_BASE_PORT: '26400',
    REDIS_PORT: '26379',
    KAFKA_PORT: '29092',
    SERVICES_BASE_PORT: '24100',
    PORT: '23000',
  });
  const inventory = buildInventory(config, undefined);
  const env = { SHARD_NODES: JSON.stringify([]), LOG_LEVEL: 'info' };
  inventory.services.env = { migrate: { ...env }, writer: { ...env }, 'monitor-0': { ...env }, gateway: { ...env, SHARD_NODES: undefined } };
  delete inventory.services.env.gateway.SHARD_NODES;
  return inventory;
}

test('names and ports: s{id}n{i} on PG_BASE_PORT + id*8 + i, REPLICAS and PG_BASE_PORT read back from the inventory', () => {
  const inventory = stack();
  assert.equal(nodeName(3, 1), 's3n1');
  assert.equal(pgBasePortOf(inventory), 26400);
  assert.equal(replicasOf(inventory), 2);
  const shard = plannedShard(inventory, 2);
  assert.deepEqual(
    shard.nodes.map((n) => [n.name, n.host, n.port, n.dataDir]),
    [
      ['s2n0', '127.0.0.1', 26416, '/tmp/provision-test-stack/pg/s2n0'],
      ['s2n1', '127.0.0.1', 26417, '/tmp/provision-test-stack/pg/s2n1'],
      ['s2n2', '127.0.0.1', 26418, '/tmp/provision-test-stack/pg/s2n2'],
    ],
  );
  assert.deepEqual(shardSummary(shard), {
    id: 2,
    nodes: [
      { name: 's2n0', host: '127.0.0.1', port: 26416 },
      { name: 's2n1', host: '127.0.0.1', port: 26417 },
      { name: 's2n2', host: '127.0.0.1', port: 26418 },
    ],
  });
  // a stack with no replica gets shards without one
  assert.deepEqual(
    plannedShard(stack({ replicas: 0 }), 5).nodes.map((n) => n.port),
    [26440],
  );
  // an existing shard is planned as it is recorded
  assert.deepEqual(
    plannedShard(inventory, 1).nodes.map((n) => n.name),
    ['s1n0', 's1n1', 's1n2'],
  );
});

test('refuses ids that are no integers, ports past 65535 and ports the stack already uses', () => {
  assert.equal(parseShardId('7'), 7);
  for (const bad of [undefined, '-1', '1.5', 'x', '']) assert.throws(() => parseShardId(bad), ProvisionError);
  assert.throws(() => plannedShard(stack(), 5000), /above 65535/);
  const inventory = stack();
  inventory.redis.port = 26424; // shard 3's primary port
  assert.throws(() => plannedShard(inventory, 3), /port 26424 of s3n0 is already the stack's \(redis\)/);
});

test('inventory: a provisioning shard is recorded in order, the flag goes once it is complete, SHARD_NODES follows', () => {
  const inventory = stack();
  const planned = plannedShard(inventory, 2);
  const provisioning = withShard(inventory, planned, { provisioning: true });
  assert.deepEqual(
    provisioning.shards.map((s) => [s.id, Boolean(s.provisioning)]),
    [
      [0, false],
      [1, false],
      [2, true],
    ],
  );
  const done = withShard(provisioning, planned, { provisioning: false });
  assert.equal(done.shards[2].provisioning, undefined);
  assert.equal(done.shards.length, 3);
  for (const name of ['migrate', 'writer', 'monitor-0']) {
    assert.deepEqual(
      JSON.parse(done.services.env[name].SHARD_NODES).map((s) => s.id),
      [0, 1, 2],
    );
  }
  assert.equal('SHARD_NODES' in done.services.env.gateway, false);
  // the inventory it came from is not changed
  assert.equal(inventory.shards.length, 2);
  // an added shard with a lower id than the last still lands in order
  assert.deepEqual(
    withShard(withShard(inventory, plannedShard(inventory, 4), { provisioning: false }), plannedShard(inventory, 3), { provisioning: false }).shards.map(
      (s) => s.id,
    ),
    [0, 1, 3, 4],
  );
});

test('retiring moves the shard to retiredShards, out of SHARD_NODES, never to be provisioned again; not the last shard', () => {
  const inventory = withShard(stack(), plannedShard(stack(), 2), { provisioning: false });
  const retired = withRetiredShard(inventory, 1, '2026-01-01T00:00:00.000Z');
  assert.deepEqual(
    retired.shards.map((s) => s.id),
    [0, 2],
  );
  assert.deepEqual(
    retired.retiredShards.map((s) => [s.id, s.retiredAt, s.nodes.length]),
    [[1, '2026-01-01T00:00:00.000Z', 3]],
  );
  assert.deepEqual(
    JSON.parse(retired.services.env.writer.SHARD_NODES).map((s) => s.id),
    [0, 2],
  );
  assert.equal(withRetiredShard(retired, 1), retired, 'retiring again changes nothing');
  assert.throws(() => plannedShard(retired, 1), /shard 1 was retired; shard ids are never reused/);
  // its ports stay taken
  assert.equal(pgBasePortOf(retired), 26400);
  assert.throws(() => withRetiredShard(retired, 9), /no shard 9/);
  const one = withRetiredShard(retired, 2);
  assert.throws(() => withRetiredShard(one, 0), /last shard/);
});

test('the next start keeps provisioning and retired shards as they are (buildInventory)', () => {
  const config = readEnvironment({ STACK_DIR: '/tmp/provision-test-stack', PG_BASE_PORT: '26400' });
  const base = stack();
  const previous = withRetiredShard(
    withShard(withShard(base, plannedShard(base, 2), { provisioning: true }), plannedShard(base, 3), { provisioning: false }),
    1,
  );
  const next = buildInventory(config, JSON.parse(JSON.stringify(previous)));
  assert.deepEqual(
    next.shards.map((s) => [s.id, Boolean(s.provisioning), s.nodes.length]),
    [
      [0, false, 3],
      [2, true, 3],
      [3, false, 3],
    ],
  );
  assert.deepEqual(
    next.retiredShards.map((s) => s.id),
    [1],
  );
});

test('a running launcher stops the shards it started with and those provisioned since', () => {
  const started = stack().shards;
  const now = withShard(stack(), plannedShard(stack(), 2), { provisioning: false });
  assert.deepEqual(
    shardsToStop(started, now).map((s) => s.id),
    [0, 1, 2],
  );
  assert.deepEqual(
    shardsToStop(started, undefined).map((s) => s.id),
    [0, 1],
  );
});
