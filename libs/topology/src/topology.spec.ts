import {
  initialTopology,
  isNewer,
  parseTopology,
  ringOf,
  synchronousStandbyNames,
  withAddedShard,
  withoutShard,
  withPromotedReplica,
  withSlotMap,
} from './topology';

const shards = [0, 1].map((id) => ({
  id,
  nodes: [0, 1, 2].map((index) => ({ name: `s${id}n${index}`, host: '127.0.0.1', port: 16400 + id * 8 + index })),
}));

describe('topology', () => {
  it('starts at epoch 1 with n0 primaries and the s % N ring', () => {
    const topology = initialTopology(shards, 'quorum');
    expect(topology.epoch).toBe(1);
    expect(topology.shards[1]).toEqual({ id: 1, primary: 's1n0', replicas: ['s1n1', 's1n2'] });
    expect(topology.ring.slots.slice(0, 4)).toEqual([0, 1, 0, 1]);
    expect(ringOf(topology).shardCount).toBe(2);
  });

  it('starts a ring over the listed shards only when a retired id left a gap', () => {
    const gapped = initialTopology([shards[0], { ...shards[1], id: 2 }], 'quorum');
    expect(gapped.ring.slots.slice(0, 4)).toEqual([0, 2, 0, 2]);
    expect(parseTopology(JSON.parse(JSON.stringify(gapped)))).toEqual(gapped);
  });

  it('can start from primaries found by probing', () => {
    const topology = initialTopology(shards, 'async', new Map([[0, 's0n2']]));
    expect(topology.shards[0]).toEqual({ id: 0, primary: 's0n2', replicas: ['s0n0', 's0n1'] });
  });

  it('promotes a replica under a new epoch and records the failover', () => {
    const before = initialTopology(shards, 'quorum');
    const after = withPromotedReplica(before, 0, 's0n2', { at: 'now', reason: 'primary down', durationMs: 4000 });
    expect(after.epoch).toBe(2);
    expect(after.shards[0]).toEqual({ id: 0, primary: 's0n2', replicas: ['s0n1', 's0n0'] });
    expect(after.shards[1]).toBe(before.shards[1]);
    expect(after.failovers).toEqual([{ shard: 0, from: 's0n0', to: 's0n2', at: 'now', reason: 'primary down', durationMs: 4000 }]);
    expect(isNewer(after, before)).toBe(true);
    expect(isNewer(before, after)).toBe(false);
    expect(isNewer(before, null)).toBe(true);
  });

  it('refuses a document from an older leader term even with a higher epoch (a deposed leader)', () => {
    const current = { ...initialTopology(shards, 'quorum'), epoch: 5, term: 7 };
    expect(isNewer({ ...current, epoch: 6, term: 3 }, current)).toBe(false);
    expect(isNewer({ ...current, epoch: 6, term: 7 }, current)).toBe(true);
    expect(isNewer({ ...current, epoch: 6, term: 9 }, current)).toBe(true);
    expect(isNewer({ ...current, epoch: 5, term: 9 }, current)).toBe(false);
    // Documents from before terms existed parse as term 0.
    const legacy = JSON.parse(JSON.stringify(current));
    delete legacy.term;
    expect(parseTopology(legacy).term).toBe(0);
  });

  it('refuses to promote a node that is not a replica of the shard', () => {
    const topology = initialTopology(shards, 'quorum');
    expect(() => withPromotedReplica(topology, 0, 's1n1', { at: '', reason: '', durationMs: 0 })).toThrow(/not a replica/);
    expect(() => withPromotedReplica(topology, 0, 's0n0', { at: '', reason: '', durationMs: 0 })).toThrow();
  });

  it('gives quorum primaries ANY 1 of their replicas', () => {
    expect(synchronousStandbyNames('quorum', ['s0n1', 's0n2'])).toBe('ANY 1 (s0n1, s0n2)');
    expect(synchronousStandbyNames('async', ['s0n1'])).toBe('');
  });

  it('parses only sound documents', () => {
    const topology = initialTopology(shards, 'quorum');
    expect(parseTopology(JSON.parse(JSON.stringify(topology)))).toEqual(topology);
    expect(() => parseTopology({ ...topology, epoch: 0 })).toThrow();
    expect(() => parseTopology({ ...topology, ring: { algorithm: 'crc32-slots', slots: [0] } })).toThrow();
    expect(() => parseTopology({ ...topology, shards: [{ id: 0, primary: 'ghost', replicas: [] }, topology.shards[1]] })).toThrow(/unknown node ghost/);
  });

  describe('online resharding', () => {
    const newNodes = [0, 1, 2].map((index) => ({ name: `s2n${index}`, host: '127.0.0.1', port: 16416 + index }));

    it('adds a shard with its nodes but no slot, then hands it slots, then removes it once it owns none', () => {
      const start = initialTopology(shards, 'quorum');
      const added = withAddedShard(start, 2, newNodes);
      expect(added.epoch).toBe(start.epoch + 1);
      expect(added.shards.at(-1)).toEqual({ id: 2, primary: 's2n0', replicas: ['s2n1', 's2n2'] });
      expect(added.ring).toEqual(start.ring);
      expect(parseTopology(JSON.parse(JSON.stringify(added)))).toEqual(added);

      const slots = added.ring.slots.map((owner, slot) => (slot % 3 === 2 ? 2 : owner));
      const switched = withSlotMap(added, slots);
      expect(ringOf(switched).shardOfSlot(2)).toBe(2);
      expect(switched.ring.slots.filter((owner) => owner === 2)).toHaveLength(slots.filter((owner) => owner === 2).length);
      expect(() => withoutShard(switched, 2)).toThrow(/still owns slots/);

      const back = withSlotMap(switched, start.ring.slots);
      const removed = withoutShard(back, 2);
      expect(removed.shards.map((shard) => shard.id)).toEqual([0, 1]);
      expect(removed.nodes.map((node) => node.name)).not.toContain('s2n0');
      expect(removed.epoch).toBe(back.epoch + 1);
    });

    it('refuses an id or a node already in the topology, and a ring naming a shard it does not list', () => {
      const start = initialTopology(shards, 'quorum');
      expect(() => withAddedShard(start, 1, newNodes)).toThrow(/already in the topology/);
      expect(() => withAddedShard(start, 2, [{ name: 's0n0', host: 'h', port: 1 }])).toThrow(/s0n0 is already/);
      expect(() =>
        withSlotMap(
          start,
          start.ring.slots.map(() => 7),
        ),
      ).toThrow(/not a shard/);
      const bad = { ...start, ring: { ...start.ring, slots: start.ring.slots.map((owner, slot) => (slot === 0 ? 5 : owner)) } };
      expect(() => parseTopology(JSON.parse(JSON.stringify(bad)))).toThrow(/names shard 5/);
    });

    it('routes by a ring with gaps once a shard was drained (ids are never reused)', () => {
      const three = withAddedShard(initialTopology(shards, 'quorum'), 2, newNodes);
      const withoutOne = withSlotMap(
        three,
        three.ring.slots.map((owner) => (owner === 1 ? 2 : owner)),
      );
      const drained = withoutShard(withoutOne, 1);
      expect(drained.shards.map((shard) => shard.id)).toEqual([0, 2]);
      expect(new Set(ringOf(drained).slots)).toEqual(new Set([0, 2]));
    });
  });
});
