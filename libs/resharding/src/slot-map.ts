import { SLOT_COUNT } from '@shortener/shard-router';

/**
 * A slot-to-shard map as the topology stores it (`ring.slots`): 1024 shard ids. Unlike
 * ShardRing, it allows gaps in the ids: a drained shard's id is retired and never
 * reused, so after draining shard 1 of {0, 1, 2} the map holds only 0 and 2.
 */
export type SlotMap = readonly number[];

export class SlotMapError extends RangeError {
  constructor(
    readonly reason: 'bad-map' | 'shard-exists' | 'id-reused' | 'not-a-shard' | 'last-shard',
    message: string,
  ) {
    super(message);
  }
}

export function assertSlotMap(slots: SlotMap): void {
  if (slots.length !== SLOT_COUNT) throw new SlotMapError('bad-map', `a slot map has ${SLOT_COUNT} slots, got ${slots.length}`);
  for (const shard of slots) {
    if (!Number.isInteger(shard) || shard < 0 || shard > 0xffff) throw new SlotMapError('bad-map', `bad shard id ${shard}`);
  }
}

/** The shards that own at least one slot, ascending. */
export function shardsOf(slots: SlotMap): number[] {
  return [...new Set(slots)].sort((a, b) => a - b);
}

/** Slots owned per shard, for the shards that own any. */
export function slotCountsOf(slots: SlotMap): Map<number, number> {
  const counts = new Map<number, number>();
  for (const shard of shardsOf(slots)) counts.set(shard, 0);
  for (const shard of slots) counts.set(shard, (counts.get(shard) ?? 0) + 1);
  return counts;
}

/**
 * The id a new shard gets: one above every id ever used. The map alone cannot know a
 * retired id that was the highest (drain shard 2 of {0, 1, 2} and the map tops out at 1),
 * so the caller passes the highest id the topology has ever held.
 */
export function nextShardId(slots: SlotMap, highestIdEverUsed = -1): number {
  return Math.max(highestIdEverUsed, ...slots) + 1;
}

/**
 * Adds shard `newShard`: it receives floor(1024 / (shards + 1)) slots, each taken from
 * whichever shard holds the most at that moment (ties: the lowest id), and from each donor
 * at evenly spaced positions among its own slots, so the new shard's arcs are spread
 * around the ring. No other slot moves. On a map without gaps this is exactly
 * ShardRing.withAddedShard (checked in the spec), so the contract's placement holds.
 */
export function withAddedShard(slots: SlotMap, newShard: number, highestIdEverUsed = -1): number[] {
  assertSlotMap(slots);
  const shards = shardsOf(slots);
  if (shards.includes(newShard)) throw new SlotMapError('shard-exists', `shard ${newShard} already owns slots`);
  if (newShard <= highestIdEverUsed) throw new SlotMapError('id-reused', `shard id ${newShard} was used before; ids are never reused`);
  const quota = Math.floor(SLOT_COUNT / (shards.length + 1));

  // Per shard, by its position in `shards`.
  const position = new Map(shards.map((shard, index) => [shard, index]));
  const owned: number[][] = shards.map(() => []);
  slots.forEach((shard, slot) => owned[position.get(shard) ?? 0].push(slot));
  const counts = owned.map((own) => own.length);
  const giving = shards.map(() => 0);
  for (let taken = 0; taken < quota; taken++) {
    let donor = 0;
    for (let index = 1; index < counts.length; index++) if (counts[index] > counts[donor]) donor = index;
    counts[donor] -= 1;
    giving[donor] += 1;
  }

  const next = [...slots];
  owned.forEach((own, donor) => {
    const count = giving[donor];
    for (let i = 0; i < count; i++) next[own[Math.floor(((i + 0.5) * own.length) / count)]] = newShard;
  });
  return next;
}

/**
 * Drains `shard`: every slot it owns goes to one of the remaining shards, each slot to
 * whichever holds the fewest at that moment (ties: the lowest id), so the remaining
 * shards end as even as they can be. Each recipient's slots are spread evenly among the
 * drained shard's slots (not handed out in runs), so no recipient takes one stretch of
 * the ring. No other slot moves. Draining the last shard is refused.
 */
export function withDrainedShard(slots: SlotMap, shard: number): number[] {
  assertSlotMap(slots);
  const shards = shardsOf(slots);
  if (!shards.includes(shard)) throw new SlotMapError('not-a-shard', `shard ${shard} owns no slots`);
  const remaining = shards.filter((id) => id !== shard);
  if (remaining.length === 0) throw new SlotMapError('last-shard', `shard ${shard} is the last shard; it cannot be drained`);

  const drained = slots.flatMap((owner, slot) => (owner === shard ? [slot] : []));
  const counts = remaining.map((id) => slots.filter((owner) => owner === id).length);
  const receiving = remaining.map(() => 0);
  for (let given = 0; given < drained.length; given++) {
    let recipient = 0;
    for (let index = 1; index < counts.length; index++) if (counts[index] < counts[recipient]) recipient = index;
    counts[recipient] += 1;
    receiving[recipient] += 1;
  }

  // Interleave: recipient r's i-th slot sits at position (i + 0.5) / quota_r of the run.
  const places: { at: number; recipient: number }[] = [];
  receiving.forEach((quota, index) => {
    for (let i = 0; i < quota; i++) places.push({ at: (i + 0.5) / quota, recipient: remaining[index] });
  });
  places.sort((a, b) => a.at - b.at || a.recipient - b.recipient);
  const next = [...slots];
  drained.forEach((slot, index) => (next[slot] = places[index].recipient));
  return next;
}
