// node --test: how the launcher's inventory treats a stack that `npm run stack -- restore` wrote.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildInventory, readEnvironment } from './config.mjs';

const restoredInventory = (startedAt) => ({
  createdAt: '2026-12-03T10:00:00.000Z',
  replicationMode: 'async',
  shards: [0, 1].map((id) => ({ id, nodes: [0, 1].map((i) => ({ name: `s${id}n${i}`, host: '127.0.0.1', port: 18400 + id * 8 + i })) })),
  redis: { port: 18379 },
  kafka: { brokers: ['127.0.0.1:21092'] },
  restoredFrom: { stackDir: '/srv/old', to: 'latest', ...(startedAt ? { startedAt } : {}) },
});

test('the first start of a restored stack moves its nodes to the ports it is given, and records that it started', () => {
  const config = readEnvironment({ STACK_DIR: '/tmp/restored', PG_BASE_PORT: '26400', REDIS_PORT: '26379', KAFKA_PORT: '29092' });
  const inventory = buildInventory(config, restoredInventory());
  assert.deepEqual(
    inventory.shards.flatMap((shard) => shard.nodes.map((node) => node.port)),
    [26400, 26401, 26408, 26409],
  );
  assert.equal(inventory.redis.port, 26379);
  assert.deepEqual(inventory.kafka.brokers, ['127.0.0.1:29092']);
  assert.equal(inventory.replicationMode, 'async');
  assert.equal(inventory.restoredFrom.to, 'latest');
  assert.match(inventory.restoredFrom.startedAt, /^\d{4}-\d{2}-\d{2}T/);
});

test('without ports given, or once it has run (its replicas point at those ports), a restored stack keeps its own', () => {
  const unmoved = buildInventory(readEnvironment({ STACK_DIR: '/tmp/restored' }), restoredInventory());
  assert.deepEqual(
    unmoved.shards.flatMap((shard) => shard.nodes.map((node) => node.port)),
    [18400, 18401, 18408, 18409],
  );
  const ran = buildInventory(readEnvironment({ STACK_DIR: '/tmp/restored', PG_BASE_PORT: '26400' }), restoredInventory('2026-12-03T11:00:00.000Z'));
  assert.equal(ran.shards[0].nodes[0].port, 18400);
  assert.equal(ran.restoredFrom.startedAt, '2026-12-03T11:00:00.000Z');
});

test('a restore of a stack whose shards were added and drained keeps their ids, names and ports', () => {
  const config = readEnvironment({ STACK_DIR: '/tmp/restored', SHARDS: '3', REPLICAS: '1', PG_BASE_PORT: '26400' });
  const inventory = buildInventory(config, undefined, { shardIds: [0, 1, 4] });
  assert.deepEqual(
    inventory.shards.map((shard) => [shard.id, shard.nodes.map((node) => `${node.name}:${node.port}`)]),
    [
      [0, ['s0n0:26400', 's0n1:26401']],
      [1, ['s1n0:26408', 's1n1:26409']],
      [4, ['s4n0:26432', 's4n1:26433']],
    ],
  );
  assert.equal(inventory.shards[2].nodes[0].dataDir, '/tmp/restored/pg/s4n0');
});
