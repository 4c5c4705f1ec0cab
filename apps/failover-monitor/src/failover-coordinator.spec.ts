import type { ShardPools } from '@shortener/db';
import { initialTopology, withPromotedReplica, type Topology } from '@shortener/topology';
import { FailoverCoordinator } from './failover-coordinator';
import type { NodeControl } from './node-control';

interface FakeNode {
  inRecovery: boolean;
  /** While set, the node's probe waits for it (a probe slower than the rest of the round). */
  held?: Promise<void>;
}

/**
 * Pools whose "nodes" answer the monitor's probe from `nodes`; the topology is what `follow` last
 * set. A CHECKPOINT (on a client of its own, as NodeAdmin.checkpoint takes one) is logged in `calls`.
 */
function fakePools(nodes: Map<string, FakeNode>, first: Topology, calls: string[]) {
  let followed = first;
  const clientOf = (name: string) => ({
    on: () => undefined,
    off: () => undefined,
    release: () => undefined,
    query: async (query: string | { text: string }) => {
      if ((typeof query === 'string' ? query : query.text) === 'CHECKPOINT') calls.push(`checkpoint ${name}`);
      return { rows: [] };
    },
  });
  const poolOf = (name: string) => ({
    connect: async () => clientOf(name),
    query: async (query: string | { name?: string }) => {
      const node = nodes.get(name)!;
      if (typeof query === 'object' && query.name === 'node-probe') {
        await node.held;
        return {
          rows: [
            {
              in_recovery: node.inRecovery,
              wal_lsn: '0/3000000',
              received_lsn: node.inRecovery ? '0/3000000' : null,
              replay_delay: node.inRecovery ? 0 : null,
              wal_receiver: node.inRecovery ? 'streaming' : null,
              read_only: false,
              wal_sender: null,
            },
          ],
        };
      }
      // pg_stat_replication of a primary: every other node streams.
      return {
        rows: [...nodes.keys()].filter((other) => other !== name).map((other) => ({ application_name: other, state: 'streaming', sync_state: 'quorum' })),
      };
    },
  });
  const pools = {
    get topology() {
      return followed;
    },
    pool: poolOf,
    nodes: { reset: async () => undefined },
  } as unknown as ShardPools;
  return { pools, follow: (topology: Topology) => (followed = topology) };
}

function fakeControl() {
  const calls: string[] = [];
  const control: NodeControl = {
    fenceMethod: 'test',
    canProvision: false,
    fence: async (node) => void calls.push(`fence ${node}`),
    rejoin: async (node, primary) => void calls.push(`rejoin ${node} to ${primary.name}`),
    start: async (node) => void calls.push(`start ${node}`),
    stop: async (node) => void calls.push(`stop ${node}`),
    isRunning: async () => true,
    markRoles: async () => undefined,
    provision: async () => [],
    retire: async () => undefined,
  };
  return { control, calls };
}

describe('FailoverCoordinator health rounds', () => {
  const shardNodes = [{ id: 0, nodes: ['a', 'b', 'c'].map((name, i) => ({ name, host: '127.0.0.1', port: 5000 + i })) }];

  function setUp() {
    const nodes = new Map<string, FakeNode>([
      ['a', { inRecovery: false }],
      ['b', { inRecovery: true }],
      ['c', { inRecovery: true }],
    ]);
    const first = initialTopology(shardNodes, 'quorum');
    const { control, calls } = fakeControl();
    const { pools, follow } = fakePools(nodes, first, calls);
    const coordinator = new FailoverCoordinator({
      pools,
      control,
      publish: async () => undefined,
      isLeader: () => true,
      term: () => 1,
      log: () => undefined,
    });
    return { nodes, first, follow, coordinator, calls };
  }

  it('takes no decision on roles that changed while its probes ran: a replica promoted meanwhile is not rejoined as a replica', async () => {
    const { nodes, first, follow, coordinator, calls } = setUp();
    let release!: () => void;
    nodes.get('b')!.held = new Promise<void>((resolve) => (release = resolve));
    const round = coordinator.checkOnce();
    // While b's probe is slow, a switchover (of another monitor, followed here) promotes b.
    await new Promise((resolve) => setTimeout(resolve, 20));
    nodes.get('b')!.inRecovery = false;
    nodes.get('a')!.inRecovery = true;
    follow(withPromotedReplica(first, 0, 'b', { at: new Date().toISOString(), reason: 'planned switchover', durationMs: 1 }));
    release();
    await round;
    expect(calls).toEqual([]);

    // The next round sees b as the primary: nothing to do either.
    nodes.get('b')!.held = undefined;
    await coordinator.checkOnce();
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(calls).toEqual([]);
  });

  it('still fences and rejoins a replica that accepts writes under the topology it probed, after a checkpoint on the primary', async () => {
    const { nodes, coordinator, calls } = setUp();
    nodes.get('c')!.inRecovery = false;
    await coordinator.checkOnce();
    await new Promise((resolve) => setTimeout(resolve, 20));
    // pg_rewind (inside rejoin) reads the primary's timeline from its control file: checkpoint first.
    expect(calls).toEqual(['checkpoint a', 'rejoin c to a']);
  });
});
