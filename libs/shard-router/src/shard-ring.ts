import { str as crc32 } from 'crc-32';

/** The ring is cut into this many equal arcs (virtual nodes); a code's slot is its arc. */
export const SLOT_COUNT = 1024;
const SLOT_SHIFT = 22; // 32-bit position, top 10 bits = slot

/** A code's position on the ring: CRC-32 of its UTF-8 bytes as an unsigned integer. */
export function positionOf(code: string): number {
  return crc32(code) >>> 0;
}

export function slotOf(code: string): number {
  return positionOf(code) >>> SLOT_SHIFT;
}

/**
 * The slot-to-shard map. Immutable: every change (adding a shard) makes a new ring,
 * which the topology publishes under a new epoch.
 */
export class ShardRing {
  readonly algorithm = 'crc32-slots' as const;
  private readonly slotOwners: Uint16Array;
  readonly shardCount: number;

  /**
   * Any owner ids may appear: after online resharding a drained shard's id is retired for
   * good, so the ring may have gaps (docs/reference.md section 7). `shardCount` is one past
   * the highest id.
   */
  constructor(slots: readonly number[]) {
    if (slots.length !== SLOT_COUNT) {
      throw new RangeError(`a ring has ${SLOT_COUNT} slots, got ${slots.length}`);
    }
    for (const shard of slots) {
      if (!Number.isInteger(shard) || shard < 0 || shard > 0xffff) throw new RangeError(`bad shard id ${shard}`);
    }
    this.slotOwners = Uint16Array.from(slots);
    this.shardCount = Math.max(...slots) + 1;
  }

  /** A new cluster of N shards gives slot s to shard s % N. */
  static initial(shardCount: number): ShardRing {
    if (!Number.isInteger(shardCount) || shardCount < 1 || shardCount > SLOT_COUNT) {
      throw new RangeError(`shard count must be 1..${SLOT_COUNT}, got ${shardCount}`);
    }
    return new ShardRing(Array.from({ length: SLOT_COUNT }, (_, slot) => slot % shardCount));
  }

  shardOf(code: string): number {
    return this.slotOwners[slotOf(code)];
  }

  shardOfSlot(slot: number): number {
    return this.slotOwners[slot];
  }

  get slots(): number[] {
    return Array.from(this.slotOwners);
  }

  slotCounts(): number[] {
    const counts = new Array<number>(this.shardCount).fill(0);
    for (const shard of this.slotOwners) counts[shard] += 1;
    return counts;
  }

  /**
   * Adds shard N. It receives floor(1024 / (N + 1)) slots, always taken from whichever
   * shard holds the most at that moment (so every shard ends within one slot of an
   * equal share), and from each donor at evenly spaced positions of its own slots (so
   * the new shard's arcs are spread around the ring). No other slot moves.
   */
  withAddedShard(): ShardRing {
    const newShard = this.shardCount;
    const quota = Math.floor(SLOT_COUNT / (newShard + 1));
    const owned: number[][] = Array.from({ length: this.shardCount }, () => []);
    this.slotOwners.forEach((shard, slot) => owned[shard].push(slot));

    const giving = new Array<number>(this.shardCount).fill(0);
    const counts = owned.map((slots) => slots.length);
    for (let taken = 0; taken < quota; taken++) {
      let donor = 0;
      for (let shard = 1; shard < counts.length; shard++) {
        if (counts[shard] > counts[donor]) donor = shard;
      }
      counts[donor] -= 1;
      giving[donor] += 1;
    }

    const next = Array.from(this.slotOwners);
    owned.forEach((slots, donor) => {
      const count = giving[donor];
      for (let i = 0; i < count; i++) {
        next[slots[Math.floor(((i + 0.5) * slots.length) / count)]] = newShard;
      }
    });
    return new ShardRing(next);
  }
}
