import { positionOf, ShardRing, SLOT_COUNT, slotOf } from './shard-ring';

const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
/** Random-looking codes from a fixed seed (mulberry32): the spread checks hold or fail the same way on every run. */
function randomCodes(count: number, seed = 0x5eed): string[] {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) & 0xff;
  };
  const bytes = Uint8Array.from({ length: count * 7 }, next);
  return Array.from({ length: count }, (_, i) => Array.from(bytes.subarray(i * 7, i * 7 + 7), (b) => ALPHABET[b % 62]).join(''));
}

function shares(ring: ShardRing, codes: string[]): number[] {
  const counts = new Array<number>(ring.shardCount).fill(0);
  for (const code of codes) counts[ring.shardOf(code)] += 1;
  return counts.map((count) => count / codes.length);
}

describe('positionOf / slotOf', () => {
  it('is CRC-32 of the UTF-8 bytes, unsigned', () => {
    // Reference values: zlib.crc32 / `printf %s | gzip` agree on these.
    expect(positionOf('123456789')).toBe(0xcbf43926);
    expect(positionOf('')).toBe(0);
    expect(positionOf('é')).toBe(positionOf('\u00e9'));
    expect(positionOf('aB3xY9z')).toBeGreaterThanOrEqual(0);
  });

  it('takes the top 10 bits as the slot', () => {
    expect(slotOf('123456789')).toBe(0xcbf43926 >>> 22);
    for (const code of randomCodes(1000)) {
      const slot = slotOf(code);
      expect(slot).toBeGreaterThanOrEqual(0);
      expect(slot).toBeLessThan(SLOT_COUNT);
    }
  });
});

describe('ShardRing', () => {
  it('gives slot s to shard s % N in a new cluster', () => {
    const ring = ShardRing.initial(4);
    expect(ring.slots.slice(0, 6)).toEqual([0, 1, 2, 3, 0, 1]);
    expect(ring.shardOfSlot(1023)).toBe(3);
    expect(ring.slotCounts()).toEqual([256, 256, 256, 256]);
  });

  it('routes a code by its slot', () => {
    const ring = ShardRing.initial(3);
    for (const code of randomCodes(200)) expect(ring.shardOf(code)).toBe(slotOf(code) % 3);
  });

  it('spreads 100,000 random codes and 100,000 aliases within half a percent of equal', () => {
    const ring = ShardRing.initial(4);
    const aliases = Array.from({ length: 100_000 }, (_, i) => `promo${i}`);
    for (const codes of [randomCodes(100_000), aliases]) {
      for (const share of shares(ring, codes)) expect(Math.abs(share - 0.25)).toBeLessThan(0.005);
    }
  });

  it('rejects maps that are not 1024 slots or leave a shard without slots', () => {
    expect(() => new ShardRing([0, 1])).toThrow(RangeError);
    expect(() => new ShardRing(new Array(SLOT_COUNT).fill(0).map((_, s) => (s % 2 ? -1 : 0)))).toThrow(/bad shard id/);
    // A drained shard's id is retired: the ring may have gaps, and routes around them.
    const withGap = new ShardRing(new Array(SLOT_COUNT).fill(0).map((_, s) => (s % 2 ? 2 : 0)));
    expect(withGap.shardOfSlot(1)).toBe(2);
    expect(withGap.slotCounts()).toEqual([512, 0, 512]);
    expect(() => ShardRing.initial(0)).toThrow(RangeError);
  });

  it.each([1, 2, 3, 4, 7])('adding shard %i+1 hands it floor(1024/(N+1)) slots and moves nothing else', (n) => {
    const before = ShardRing.initial(n);
    const after = before.withAddedShard();
    expect(after.shardCount).toBe(n + 1);
    const moved = before.slots.filter((owner, slot) => after.shardOfSlot(slot) !== owner);
    expect(moved.length).toBe(Math.floor(SLOT_COUNT / (n + 1)));
    before.slots.forEach((owner, slot) => {
      const next = after.shardOfSlot(slot);
      expect(next === owner || next === n).toBe(true);
    });
    const counts = after.slotCounts();
    expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(1);
  });

  it('moves about 1/(N+1) of the codes when a shard is added', () => {
    const codes = randomCodes(50_000);
    const before = ShardRing.initial(4);
    const after = before.withAddedShard();
    const moved = codes.filter((code) => before.shardOf(code) !== after.shardOf(code)).length;
    expect(moved / codes.length).toBeGreaterThan(0.19);
    expect(moved / codes.length).toBeLessThan(0.21);
    for (const share of shares(after, codes)) expect(Math.abs(share - 0.2)).toBeLessThan(0.01);
  });

  it('spreads the new shard’s slots around the ring', () => {
    const after = ShardRing.initial(4).withAddedShard();
    const newSlots = after.slots.flatMap((owner, slot) => (owner === 4 ? [slot] : []));
    // In every eighth of the ring the new shard holds close to an eighth of its slots.
    for (let part = 0; part < 8; part++) {
      const inPart = newSlots.filter((slot) => Math.floor(slot / 128) === part).length;
      expect(Math.abs(inPart - newSlots.length / 8)).toBeLessThanOrEqual(3);
    }
  });
});
