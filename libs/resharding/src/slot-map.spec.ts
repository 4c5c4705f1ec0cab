import { ShardRing, SLOT_COUNT } from '@shortener/shard-router';
import { planOperation } from './planner';
import { nextShardId, shardsOf, slotCountsOf, SlotMapError, withAddedShard, withDrainedShard } from './slot-map';

function spread(slots: readonly number[]): number {
  const counts = [...slotCountsOf(slots).values()];
  return Math.max(...counts) - Math.min(...counts);
}

function moved(before: readonly number[], after: readonly number[]): number[] {
  return before.flatMap((owner, slot) => (after[slot] !== owner ? [slot] : []));
}

/** Deterministic PRNG (mulberry32), so a failing sequence can be replayed from its seed. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('withAddedShard on a slot map', () => {
  it.each([1, 2, 3, 4, 5, 7])('gives the same map as ShardRing.withAddedShard from %i shards', (n) => {
    let ring = ShardRing.initial(n);
    let slots = ring.slots;
    for (let step = 0; step < 3; step++) {
      ring = ring.withAddedShard();
      slots = withAddedShard(slots, n + step);
      expect(slots).toEqual(ring.slots);
    }
  });

  it('refuses an id that owns slots or was used before', () => {
    const slots = ShardRing.initial(3).slots;
    expect(() => withAddedShard(slots, 2)).toThrow(SlotMapError);
    const drained = withDrainedShard(slots, 2);
    expect(() => withAddedShard(drained, 2, 2)).toThrow(/never reused/);
    expect(shardsOf(withAddedShard(drained, 3, 2))).toEqual([0, 1, 3]);
  });

  it('names the next id above every id ever used', () => {
    const slots = withDrainedShard(ShardRing.initial(3).slots, 2);
    expect(nextShardId(slots)).toBe(2); // the map alone cannot know shard 2 existed
    expect(nextShardId(slots, 2)).toBe(3);
  });
});

describe('withDrainedShard', () => {
  it.each([
    [2, 1],
    [3, 0],
    [3, 2],
    [5, 3],
  ])('from %i shards, draining %i moves only its slots and leaves the rest within one slot', (n, drained) => {
    const before = ShardRing.initial(n).slots;
    const after = withDrainedShard(before, drained);
    const changed = moved(before, after);
    expect(changed).toEqual(before.flatMap((owner, slot) => (owner === drained ? [slot] : [])));
    expect(after).not.toContain(drained);
    expect(spread(after)).toBeLessThanOrEqual(1);
  });

  it('spreads each recipient over the drained shard’s slots instead of handing out runs', () => {
    const before = ShardRing.initial(5).slots;
    const after = withDrainedShard(before, 2);
    const drained = before.flatMap((owner, slot) => (owner === 2 ? [slot] : []));
    const quarter = Math.ceil(drained.length / 4);
    for (const recipient of [0, 1, 3, 4]) {
      const received = drained.filter((slot) => after[slot] === recipient).length;
      for (let part = 0; part < 4; part++) {
        const inPart = drained.slice(part * quarter, (part + 1) * quarter).filter((slot) => after[slot] === recipient).length;
        expect(Math.abs(inPart - received / 4)).toBeLessThanOrEqual(1);
      }
    }
  });

  it('refuses the last shard and a shard without slots', () => {
    const one = ShardRing.initial(1).slots;
    expect(() => withDrainedShard(one, 0)).toThrow(expect.objectContaining({ reason: 'last-shard' }));
    expect(() => withDrainedShard(ShardRing.initial(2).slots, 5)).toThrow(expect.objectContaining({ reason: 'not-a-shard' }));
  });

  it('rejects maps that are not 1024 shard ids', () => {
    expect(() => withDrainedShard([0, 1], 0)).toThrow(expect.objectContaining({ reason: 'bad-map' }));
    expect(() => withAddedShard(new Array(SLOT_COUNT).fill(-1), 1)).toThrow(expect.objectContaining({ reason: 'bad-map' }));
  });
});

describe('planner shares', () => {
  const cases: [string, number[], () => ReturnType<typeof planOperation>][] = [
    ['2 -> 3', [0, 1, 2], () => planOperation({ type: 'add-shard' }, ShardRing.initial(2).slots)],
    ['3 -> 2', [0, 1], () => planOperation({ type: 'drain-shard', shard: 2 }, ShardRing.initial(3).slots)],
    ['4 -> 5', [0, 1, 2, 3, 4], () => planOperation({ type: 'add-shard' }, ShardRing.initial(4).slots)],
    ['5 -> 4', [0, 2, 3, 4], () => planOperation({ type: 'drain-shard', shard: 1 }, ShardRing.initial(5).slots)],
  ];
  it.each(cases)('%s: every shard within a few slots of an equal share, only handed-over slots move', (_, shards, plan) => {
    const { before, after, moves, type, shard } = plan();
    expect(shardsOf(after)).toEqual(shards);
    const equal = SLOT_COUNT / shards.length;
    for (const count of slotCountsOf(after).values()) expect(Math.abs(count - equal)).toBeLessThanOrEqual(2);
    expect(moves.map((move) => move.slot)).toEqual(moved(before, after));
    for (const move of moves) {
      if (type === 'add-shard') expect(move.to).toBe(shard);
      else expect(move.from).toBe(shard);
    }
    const expected = type === 'add-shard' ? Math.floor(SLOT_COUNT / shards.length) : before.filter((owner) => owner === shard).length;
    expect(moves.length).toBe(expected);
  });
});

describe('random sequences of add and drain (property)', () => {
  it.each(Array.from({ length: 40 }, (_, i) => i + 1))('seed %i: balance, minimal moves and never a reused id', (seed) => {
    const rand = random(seed);
    let slots = ShardRing.initial(1 + Math.floor(rand() * 5)).slots;
    let highest = Math.max(...slots);
    const used = new Set(slots);
    for (let step = 0; step < 25; step++) {
      const shards = shardsOf(slots);
      const add = shards.length === 1 || (shards.length < 12 && rand() < 0.5);
      const before = slots;
      if (add) {
        const plan = planOperation({ type: 'add-shard' }, before, { highestIdEverUsed: highest });
        expect(used.has(plan.shard)).toBe(false);
        used.add(plan.shard);
        highest = plan.shard;
        slots = plan.after;
        expect(slots.filter((owner) => owner === plan.shard).length).toBe(Math.floor(SLOT_COUNT / (shards.length + 1)));
        expect(plan.moves.every((move) => move.to === plan.shard)).toBe(true);
      } else {
        const victim = shards[Math.floor(rand() * shards.length)];
        const plan = planOperation({ type: 'drain-shard', shard: victim }, before, { highestIdEverUsed: highest });
        slots = plan.after;
        expect(slots).not.toContain(victim);
        expect(plan.moves.length).toBe(before.filter((owner) => owner === victim).length);
        expect(plan.moves.every((move) => move.from === victim)).toBe(true);
      }
      expect(spread(slots)).toBeLessThanOrEqual(1);
      // Every batch is one source and one target, within the limits, and together they are exactly the moves.
      const plan = planOperation(add ? { type: 'drain-shard', shard: shardsOf(slots)[0] } : { type: 'add-shard' }, slots, { highestIdEverUsed: highest });
      const batched = plan.batches.flatMap((batch) => batch.slots).sort((a, b) => a - b);
      expect(batched).toEqual(plan.moves.map((move) => move.slot));
    }
  });
});
