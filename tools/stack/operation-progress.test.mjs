// node --test: npm run stack -- add-shard | drain-shard, the pure part (operation-progress.mjs).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UsageError, exitCodeOf, parseReshardingArgs, progressLine, progressOutput, refusalMessage } from './operation-progress.mjs';

const document = (extra = {}) => ({
  id: 'f1c8e0de-0000-4000-8000-000000000001',
  type: 'add-shard',
  shard: 4,
  state: 'running',
  phase: 'copy',
  slots: { total: 204, moved: 40 },
  rows: { copied: 12345, verified: 11000 },
  maxWritePauseMs: 120,
  startedAt: '2026-12-04T10:00:00.000Z',
  finishedAt: null,
  ...extra,
});

test('the progress line is the one of libs/resharding progressLine', () => {
  assert.equal(progressLine(document()), 'add-shard 4: running, copy, slots 40/204 (19 %), rows copied 12345, verified 11000, longest write pause 120 ms');
  assert.equal(
    progressLine(document({ type: 'drain-shard', shard: 1, state: 'failed', phase: 'failed', error: 'verify: slot 17 differs' })),
    'drain-shard 1: failed, failed, slots 40/204 (19 %), rows copied 12345, verified 11000, longest write pause 120 ms, error: verify: slot 17 differs',
  );
  // A drain of a shard that owns no slot has nothing to move: 100 %, not a division by zero.
  assert.match(progressLine(document({ slots: { total: 0, moved: 0 } })), /slots 0\/0 \(100 %\)/);
});

test('add-shard asks node control for the nodes, or names them from --nodes', () => {
  assert.deepEqual(parseReshardingArgs('add-shard', []), { method: 'POST', path: '/api/cluster/shards', body: {} });
  const nodes = [{ name: 's4n0', host: 'pg-a', port: 5432 }];
  assert.deepEqual(parseReshardingArgs('add-shard', ['--nodes', JSON.stringify(nodes)]).body, { nodes });
  assert.deepEqual(parseReshardingArgs('add-shard', [`--nodes=${JSON.stringify(nodes)}`]).body, { nodes });
  for (const args of [['--nodes'], ['--nodes', '{not json'], ['--nodes', '{"name":"a"}'], ['--shard', '4'], ['--nodes', '[]', '--nodes', '[]']]) {
    assert.throws(() => parseReshardingArgs('add-shard', args), UsageError, JSON.stringify(args));
  }
});

test('drain-shard takes one shard id', () => {
  assert.deepEqual(parseReshardingArgs('drain-shard', ['3']), { method: 'DELETE', path: '/api/cluster/shards/3' });
  for (const args of [[], ['x'], ['-1'], ['1', '2']]) assert.throws(() => parseReshardingArgs('drain-shard', args), UsageError);
});

test('a terminal gets one line rewritten, a log a line at each change', () => {
  assert.equal(progressOutput('a', null, true), '\ra\x1b[K');
  assert.equal(progressOutput('a', 'a', true), null);
  assert.equal(progressOutput('b', 'a', false), 'b\n');
  assert.equal(progressOutput('b', 'b', false), null);
});

test('it ends 0 when the operation is done, 1 when it failed, and waits while it runs', () => {
  assert.equal(exitCodeOf(document({ state: 'done' })), 0);
  assert.equal(exitCodeOf(document({ state: 'failed' })), 1);
  assert.equal(exitCodeOf(document()), null);
});

test('a refusal says the problem detail, or the answer as it came', () => {
  const problem = { type: 'https://shortener.dev/problems/conflict', title: 'Conflict', status: 409, detail: 'operation x (add-shard of shard 4) is running' };
  assert.equal(refusalMessage(409, JSON.stringify(problem)), 'refused (409): operation x (add-shard of shard 4) is running');
  assert.equal(refusalMessage(502, 'Bad Gateway\n'), 'refused (502): Bad Gateway');
  assert.equal(refusalMessage(500, ''), 'refused (500): no body');
});
