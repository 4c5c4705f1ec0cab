import type { OperationRecord } from '@shortener/contracts';
import type { ShardPools } from '@shortener/db';
import { initialTopology, type Topology } from '@shortener/topology';
import { ReshardingRunner, type RunnerDependencies } from './resharding-runner';
import type { NodeControl } from './node-control';

const shards = [0, 1].map((id) => ({ id, nodes: [0, 1].map((i) => ({ name: `s${id}n${i}`, host: '127.0.0.1', port: 16400 + id * 8 + i })) }));

/** Pools whose every query fails: the runner's row counts then plan with empty slots. */
const deadPools = {
  primary: () => ({ connect: () => Promise.reject(new Error('no database in this test')) }),
  pool: () => ({ connect: () => Promise.reject(new Error('no database in this test')) }),
} as unknown as ShardPools;

function runner(overrides: Partial<RunnerDependencies> & { canProvision?: boolean } = {}) {
  const published: OperationRecord[] = [];
  let topology: Topology = { ...initialTopology(shards, 'quorum'), term: 1 };
  const control = { canProvision: overrides.canProvision ?? false, fenceMethod: 'test' } as unknown as NodeControl;
  const deps: RunnerDependencies = {
    pools: deadPools,
    control,
    topology: () => topology,
    publishChange: async (change) => (topology = { ...change(topology), epoch: topology.epoch + 1 }),
    publishOperation: async (record) => void published.push(record),
    publishTopologyAndOperation: async (_topology, record) => void published.push(record),
    readOperations: async () => [],
    isLeader: () => true,
    regainTerm: async () => false,
    log: () => undefined,
    epochGraceMs: 0,
    ...overrides,
  };
  return { runner: new ReshardingRunner(deps), published };
}

const at = '2030-01-01T00:00:00.000Z';

describe('ReshardingRunner', () => {
  it('refuses to add a shard it would have to provision when node control cannot, naming the body that works', async () => {
    const { runner: subject, published } = runner({ canProvision: false });
    await subject.handleCommand({ type: 'add-shard', version: 1, operationId: 'op-1', requestId: 'r', at });
    expect(published).toHaveLength(1);
    expect(published[0].refused).toMatchObject({ reason: 'unsupported' });
    expect(published[0].refused!.message).toMatch(/"nodes"/);
    expect(published[0].document).toMatchObject({ id: 'op-1', state: 'failed' });
  });

  it('refuses nodes already in the topology, and draining the last shard or one that is not there', async () => {
    const { runner: subject, published } = runner();
    await subject.handleCommand({ type: 'add-shard', version: 1, operationId: 'op-2', nodes: [{ name: 's0n1', host: 'h', port: 5432 }], requestId: 'r', at });
    await subject.handleCommand({ type: 'drain-shard', version: 1, operationId: 'op-3', shard: 7, requestId: 'r', at });
    expect(published.map((record) => record.refused?.reason)).toEqual(['shard-exists', 'not-a-shard']);
  });

  it('starts an operation from named nodes, persists it before any step, and refuses a second one while it runs', async () => {
    let leading = true;
    const { runner: subject, published } = runner({ isLeader: () => leading });
    const nodes = [0, 1].map((i) => ({ name: `s2n${i}`, host: '127.0.0.1', port: 16416 + i }));
    await subject.handleCommand({ type: 'add-shard', version: 1, operationId: 'op-4', nodes, requestId: 'r', at });
    leading = false; // the step loop stops at its next turn
    expect(published[0].document).toMatchObject({ id: 'op-4', type: 'add-shard', shard: 2, state: 'running', phase: 'provision' });
    expect((published[0].record as { nodes: unknown }).nodes).toEqual(nodes);
    leading = true;
    await subject.handleCommand({ type: 'drain-shard', version: 1, operationId: 'op-5', shard: 1, requestId: 'r', at });
    const refusal = published.find((record) => record.document.id === 'op-5');
    expect(refusal?.refused).toMatchObject({ reason: 'conflict', running: 'op-4' });
    leading = false;
    await new Promise((resolve) => setTimeout(resolve, 600)); // the loop sees it and ends
  });

  it('ignores a command it has already answered (a redelivered request)', async () => {
    const known: OperationRecord = {
      version: 1,
      document: {
        id: 'op-6',
        type: 'drain-shard',
        shard: 1,
        state: 'done',
        phase: 'done',
        slots: { total: 1, moved: 1 },
        rows: { copied: 0, verified: 0 },
        maxWritePauseMs: 0,
        startedAt: at,
        finishedAt: at,
      },
      at,
    };
    const { runner: subject, published } = runner({ readOperations: async () => [known] });
    await subject.resumeAfterLeadership();
    await subject.handleCommand({ type: 'drain-shard', version: 1, operationId: 'op-6', shard: 1, requestId: 'r', at });
    expect(published).toEqual([]);
  });
});
