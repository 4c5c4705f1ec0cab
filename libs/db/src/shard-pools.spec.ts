import { initialTopology, withPromotedReplica } from '@shortener/topology';
import { NodePools } from './node-pools';
import { ShardPools } from './shard-pools';
import { isConnectionError, isReadOnlyError } from './node-pools';

const topology = initialTopology(
  [0, 1].map((id) => ({
    id,
    nodes: [0, 1, 2].map((i) => ({ name: `s${id}n${i}`, host: '127.0.0.1', port: 1 })),
  })),
  'quorum',
);

function pools() {
  const nodes = new NodePools(
    topology.nodes,
    { user: 'u', password: 'p', database: 'd' },
    {
      max: 1,
      connectTimeoutMs: 100,
      statementTimeoutMs: 100,
      applicationName: 'spec',
    },
  );
  return { nodes, shardPools: new ShardPools(nodes, topology) };
}

describe('ShardPools', () => {
  it('routes codes through the ring and names primaries', () => {
    const { shardPools } = pools();
    expect(shardPools.primaryName(0)).toBe('s0n0');
    expect([0, 1]).toContain(shardPools.shardOf('abc1234'));
    expect(() => shardPools.primaryName(2)).toThrow(RangeError);
  });

  it('switches the primary with a newer epoch only and drops the old primary’s pool', async () => {
    const { nodes, shardPools } = pools();
    const oldPool = shardPools.primary(0);
    const next = withPromotedReplica(topology, 0, 's0n1', { at: 'now', reason: 'test', durationMs: 1 });
    expect(shardPools.apply(next)).toEqual(['s0n0']);
    expect(shardPools.primaryName(0)).toBe('s0n1');
    expect(nodes.pool('s0n0')).not.toBe(oldPool);
    expect(shardPools.apply(topology)).toEqual([]);
    expect(shardPools.primaryName(0)).toBe('s0n1');
    await shardPools.close();
  });

  it('offers only readable replicas for reads', () => {
    const { shardPools } = pools();
    expect(shardPools.readCandidates(1).sort()).toEqual(['s1n1', 's1n2']);
    shardPools.setReadable('s1n2', false);
    expect(shardPools.readCandidates(1)).toEqual(['s1n1']);
    shardPools.setReadable('s1n2', true);
    expect(shardPools.readCandidates(1)).toHaveLength(2);
  });
});

describe('error classification', () => {
  it('tells connection failures and read-only nodes from query errors', () => {
    expect(isConnectionError(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }))).toBe(true);
    expect(isConnectionError(new Error('Connection terminated unexpectedly'))).toBe(true);
    expect(isConnectionError(Object.assign(new Error('duplicate key'), { code: '23505' }))).toBe(false);
    expect(isReadOnlyError({ code: '25006' })).toBe(true);
  });
});

describe('parseLsn', () => {
  it('turns an LSN into a byte position', () => {
    const { parseLsn } = jest.requireActual('./node-probe');
    expect(parseLsn('0/0')).toBe(0n);
    expect(parseLsn('16/B374D848')).toBe((0x16n << 32n) + 0xb374d848n);
    expect(parseLsn(null)).toBeNull();
  });
});

describe('withHostAndPort', () => {
  it('swaps the address and keeps the rest of a conninfo', () => {
    const { withHostAndPort } = jest.requireActual('./node-admin');
    expect(withHostAndPort("user=postgres passfile='/s/pg/.pgpass' host=127.0.0.1 port=16400 application_name=s0n1", '127.0.0.1', 16402)).toBe(
      "host=127.0.0.1 port=16402 user=postgres passfile='/s/pg/.pgpass' application_name=s0n1",
    );
  });
});
