import { SLOT_COUNT } from '@shortener/shard-router';
import { assertSlotMap, nextShardId, shardsOf, SlotMap, SlotMapError, withAddedShard, withDrainedShard } from './slot-map';

export type OperationType = 'add-shard' | 'drain-shard';

/** One slot that changes owner. `rows` is the source's row count for it (urls + idempotency keys). */
export interface SlotMove {
  slot: number;
  from: number;
  to: number;
  rows: number;
}

/**
 * Slots moved together: one source, one target, fenced, verified and switched as one.
 * Small enough that the fence (final catch-up + count/checksum of every row of the batch
 * on both sides + the switch) stays well under the 1 s write-pause budget.
 */
export interface MoveBatch {
  slots: number[];
  from: number;
  to: number;
  rows: number;
}

export interface BatchLimits {
  /** At most this many slots per batch (a fence covers 8/1024 of the writes at most). */
  maxSlotsPerBatch: number;
  /** At most this many rows per batch, unless one slot alone holds more (a slot is never split). The fenced checksum runs at about 50,000 rows/s on this machine (docs/resharding.md): 5,000 rows is ~100 ms of the 800 ms budget. */
  maxRowsPerBatch: number;
}

export const DEFAULT_BATCH_LIMITS: BatchLimits = { maxSlotsPerBatch: 8, maxRowsPerBatch: 5_000 };

export interface OperationPlan {
  type: OperationType;
  shard: number;
  before: number[];
  after: number[];
  moves: SlotMove[];
  batches: MoveBatch[];
}

export type OperationRequest = { type: 'add-shard'; shard?: number } | { type: 'drain-shard'; shard: number };

/** Row counts per slot on its current owner; slots not given count as empty. */
export type RowCounts = ReadonlyMap<number, number> | readonly number[];

function rowsOf(counts: RowCounts | undefined, slot: number): number {
  if (!counts) return 0;
  const rows = Array.isArray(counts) ? (counts as readonly number[])[slot] : (counts as ReadonlyMap<number, number>).get(slot);
  return rows ?? 0;
}

/** Every slot whose owner differs between the two maps, ascending. */
export function movesBetween(before: SlotMap, after: SlotMap, rowCounts?: RowCounts): SlotMove[] {
  assertSlotMap(before);
  assertSlotMap(after);
  const moves: SlotMove[] = [];
  for (let slot = 0; slot < SLOT_COUNT; slot++) {
    if (before[slot] !== after[slot]) moves.push({ slot, from: before[slot], to: after[slot], rows: rowsOf(rowCounts, slot) });
  }
  return moves;
}

/**
 * Groups moves into batches of one (source, target) pair, in slot order within a pair,
 * closing a batch when the next slot would pass either limit. Batches of different
 * pairs alternate, so every source gives its slots up gradually over the operation
 * instead of one source at a time.
 */
export function batchesOf(moves: readonly SlotMove[], limits: BatchLimits = DEFAULT_BATCH_LIMITS): MoveBatch[] {
  if (!(limits.maxSlotsPerBatch >= 1) || !(limits.maxRowsPerBatch >= 1)) throw new RangeError('batch limits must be at least 1');
  const byPair = new Map<string, SlotMove[]>();
  for (const move of [...moves].sort((a, b) => a.from - b.from || a.to - b.to || a.slot - b.slot)) {
    const key = `${move.from}>${move.to}`;
    byPair.set(key, [...(byPair.get(key) ?? []), move]);
  }
  const perPair = [...byPair.values()].map((pairMoves) => {
    const batches: MoveBatch[] = [];
    let open: MoveBatch | null = null;
    for (const move of pairMoves) {
      if (open && (open.slots.length >= limits.maxSlotsPerBatch || open.rows + move.rows > limits.maxRowsPerBatch)) {
        batches.push(open);
        open = null;
      }
      open ??= { slots: [], from: move.from, to: move.to, rows: 0 };
      open.slots.push(move.slot);
      open.rows += move.rows;
    }
    if (open) batches.push(open);
    return batches;
  });
  const interleaved: MoveBatch[] = [];
  for (let round = 0; perPair.some((batches) => round < batches.length); round++) {
    for (const batches of perPair) if (round < batches.length) interleaved.push(batches[round]);
  }
  return interleaved;
}

/**
 * The whole plan of an operation from the current map: the target map, the slots that
 * change owner and their batches. Refuses (SlotMapError) an id already in use or used
 * before, an unknown shard, and draining the last shard.
 */
export function planOperation(
  request: OperationRequest,
  slots: SlotMap,
  options: { rowCounts?: RowCounts; limits?: BatchLimits; highestIdEverUsed?: number } = {},
): OperationPlan {
  assertSlotMap(slots);
  const highest = options.highestIdEverUsed ?? Math.max(...slots);
  let shard: number;
  let after: number[];
  if (request.type === 'add-shard') {
    shard = request.shard ?? nextShardId(slots, highest);
    after = withAddedShard(slots, shard, highest);
  } else {
    shard = request.shard;
    if (!shardsOf(slots).includes(shard)) throw new SlotMapError('not-a-shard', `shard ${shard} owns no slots`);
    after = withDrainedShard(slots, shard);
  }
  const moves = movesBetween(slots, after, options.rowCounts);
  return { type: request.type, shard, before: [...slots], after, moves, batches: batchesOf(moves, options.limits) };
}
