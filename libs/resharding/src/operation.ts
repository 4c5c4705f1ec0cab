import { BatchLimits, DEFAULT_BATCH_LIMITS, OperationRequest, OperationType, planOperation, RowCounts } from './planner';
import { SlotMap, SlotMapError } from './slot-map';

/**
 * The resharding operation as a plain, JSON-serialisable record, and the pure functions
 * that move it on. The leading failover monitor is the driver:
 *
 *   state = startOperation(...)                 persist, then run stepOf(state)
 *   { state, step } = next(state, observation)  persist, then run step
 *   ...after a leader change: { state, step } = resume(state, now)
 *
 * The record is persisted BEFORE its step runs, and every step is idempotent, so a
 * leader that dies at any point leaves a record whose step the next leader can simply
 * run again (resume also lifts a fence the dead leader may have left up). The one
 * irrevocable moment is the switch: once the record says `switch`, the batch rolls
 * forward; before it, a rollback drops the copies and the slots stay where they were.
 */

export const OPERATION_RECORD_VERSION = 1;

/** Per batch, in order: copy, catch-up, fence, final-catch-up, verify, switch, await-epoch, cleanup, done. */
export type BatchPhase =
  | 'pending'
  | 'copy'
  | 'catch-up'
  | 'fence'
  | 'final-catch-up'
  | 'verify'
  | 'switch'
  | 'await-epoch'
  | 'cleanup'
  | 'done'
  | 'unfence'
  | 'drop-copies'
  | 'rolled-back';

export type OperationPhase = 'provision' | Exclude<BatchPhase, 'pending' | 'done' | 'rolled-back'> | 'retire' | 'done' | 'failed';

/** Phases in which the batch's slots are fenced on the source (writes refused). */
const FENCED: ReadonlySet<BatchPhase> = new Set(['fence', 'final-catch-up', 'verify']);
/** Phases at or after the switch: the batch can only roll forward. */
const SWITCHED: ReadonlySet<BatchPhase> = new Set(['switch', 'await-epoch', 'cleanup', 'done']);
/** Phases after the switch has completed: the slots have their new owner in the published topology. */
const MOVED: ReadonlySet<BatchPhase> = new Set(['await-epoch', 'cleanup', 'done']);

export interface MoverOptions {
  /** Enter the fence once a catch-up pass leaves at most this many changes pending (pgdog pauses at <= 1 MB of lag). */
  fenceLagRows: number;
  /** Abort (unfence) a fence that has not reached the switch in this long; contract: a write pause <= 1 s. */
  fenceBudgetMs: number;
  /** Give up (roll back) after this many aborted fences of one batch. */
  maxFenceAttempts: number;
  /** Give up when catch-up has not come within fenceLagRows in this long (pgdog aborts its cutover after 30 s). */
  catchUpTimeoutMs: number;
  /** Give up after this many consecutive failed steps before the switch (after it, steps are retried forever). */
  maxStepFailures: number;
  limits: BatchLimits;
}

export const DEFAULT_MOVER_OPTIONS: MoverOptions = {
  fenceLagRows: 200,
  fenceBudgetMs: 800,
  maxFenceAttempts: 5,
  catchUpTimeoutMs: 120_000,
  maxStepFailures: 30,
  limits: DEFAULT_BATCH_LIMITS,
};

export interface BatchState {
  slots: number[];
  from: number;
  to: number;
  /** Rows the planner expected (source counts when the operation started). */
  rows: number;
  phase: BatchPhase;
  /** Keyset cursor of the copy: the last key copied, null before the first page. */
  cursor: string | null;
  /** Where the next catch-up pass reads changes from (an opaque position: an xid snapshot). */
  changesFrom: string | null;
  copied: number;
  verified: number;
  catchUpSince: number | null;
  fencedAt: number | null;
  fenceAttempts: number;
  failures: number;
  epoch: number | null;
  pauseMs: number | null;
}

export interface OperationState {
  version: typeof OPERATION_RECORD_VERSION;
  id: string;
  type: OperationType;
  shard: number;
  state: 'running' | 'done' | 'failed';
  phase: OperationPhase;
  /** The slot map when the operation started and the one it is heading for. */
  before: number[];
  after: number[];
  batches: BatchState[];
  /** Index of the batch being moved (batches.length once all are through). */
  current: number;
  rows: { copied: number; verified: number };
  maxWritePauseMs: number;
  startedAt: number;
  finishedAt: number | null;
  error: string | null;
  /** Set when a rollback was asked for while the current batch could only roll forward. */
  stopAfterBatch: string | null;
  /** Last topology epoch this operation published. */
  epoch: number | null;
  /** Consecutive failed provision/retire steps. */
  failures: number;
  options: MoverOptions;
}

export interface SlotChecksum {
  slot: number;
  count: number;
  checksum: string;
}

/** What the driver reports after running a step. */
export type Observation =
  | { kind: 'provisioned' }
  | { kind: 'copied'; rows: number; cursor: string | null; done: boolean; changesFrom?: string }
  | { kind: 'caught-up'; applied: number; pending: number; changesFrom: string }
  | { kind: 'fenced' }
  | { kind: 'final-caught-up'; applied: number; pending: number; changesFrom: string }
  | { kind: 'verified'; source: SlotChecksum[]; target: SlotChecksum[] }
  | { kind: 'switch-refused'; reason: string }
  | { kind: 'switched'; epoch: number }
  | { kind: 'epoch-followed'; epoch: number; lagging: number }
  | { kind: 'cleaned'; rows: number; done: boolean }
  | { kind: 'unfenced' }
  | { kind: 'copies-dropped' }
  | { kind: 'retired' }
  | { kind: 'step-failed'; error: string }
  | { kind: 'tick' };

interface BatchRef {
  batch: number;
  from: number;
  to: number;
  slots: number[];
}

/** What the driver must do now. */
export type Step =
  | { kind: 'provision'; shard: number }
  /** Copy the next page of rows (urls, idempotency_keys) of the slots after `cursor`; the first page starts change capture. */
  | ({ kind: 'copy'; cursor: string | null } & BatchRef)
  /** Apply the changes captured since `changesFrom` (re-reading each changed key's current row on the source). */
  | ({ kind: 'catch-up'; changesFrom: string | null } & BatchRef)
  /** Mark the slots fenced on the source; returns once no transaction can still write them there. */
  | ({ kind: 'fence'; deadline: number } & BatchRef)
  | ({ kind: 'final-catch-up'; changesFrom: string | null; deadline: number } & BatchRef)
  /** Count and checksum the slots' rows on the source and the target (VDiff). */
  | ({ kind: 'verify'; deadline: number } & BatchRef)
  /**
   * Source: fenced -> moved (only while the fence is still the one this step checked;
   * else report switch-refused); wait until the target's replicas have replayed the copy;
   * target: -> owned; publish the topology with `slots` under a new epoch.
   */
  | ({ kind: 'switch'; map: number[] } & BatchRef)
  | { kind: 'await-epoch'; batch: number; epoch: number }
  /** Delete the slots' rows on the source, in pages; stop change capture. */
  | ({ kind: 'cleanup' } & BatchRef)
  | ({ kind: 'unfence' } & BatchRef)
  /** Delete the slots' copies on the target and stop change capture on the source. */
  | ({ kind: 'drop-copies' } & BatchRef)
  /** Drain: remove the shard from the topology and stop its nodes. A failed add: remove the empty new shard. */
  | { kind: 'retire'; shard: number }
  | { kind: 'none' };

export interface Transition {
  state: OperationState;
  step: Step;
}

export class OperationRefused extends Error {
  constructor(
    readonly reason: 'conflict' | 'last-shard' | 'not-a-shard' | 'shard-exists' | 'id-reused' | 'bad-map' | 'no-slots',
    message: string,
    readonly running?: string,
  ) {
    super(message);
  }
}

/** One operation at a time: refuses (409) while another is running, naming it. */
export function assertNoOperationRunning(operations: Iterable<Pick<OperationState, 'id' | 'type' | 'shard' | 'state'>>): void {
  for (const operation of operations) {
    if (operation.state === 'running') {
      throw new OperationRefused('conflict', `operation ${operation.id} (${operation.type} ${operation.shard}) is still running`, operation.id);
    }
  }
}

export function startOperation(input: {
  id: string;
  request: OperationRequest;
  slots: SlotMap;
  now: number;
  rowCounts?: RowCounts;
  highestIdEverUsed?: number;
  running?: Iterable<OperationState>;
  options?: Partial<MoverOptions>;
}): OperationState {
  assertNoOperationRunning(input.running ?? []);
  const options = { ...DEFAULT_MOVER_OPTIONS, ...input.options };
  let plan;
  try {
    plan = planOperation(input.request, input.slots, { rowCounts: input.rowCounts, limits: options.limits, highestIdEverUsed: input.highestIdEverUsed });
  } catch (error) {
    if (error instanceof SlotMapError) throw new OperationRefused(error.reason, error.message);
    throw error;
  }
  if (plan.batches.length === 0) throw new OperationRefused('no-slots', 'nothing to move');
  const batches: BatchState[] = plan.batches.map((batch) => ({
    ...batch,
    phase: 'pending',
    cursor: null,
    changesFrom: null,
    copied: 0,
    verified: 0,
    catchUpSince: null,
    fencedAt: null,
    fenceAttempts: 0,
    failures: 0,
    epoch: null,
    pauseMs: null,
  }));
  const state: OperationState = {
    version: OPERATION_RECORD_VERSION,
    id: input.id,
    type: plan.type,
    shard: plan.shard,
    state: 'running',
    phase: 'provision',
    before: plan.before,
    after: plan.after,
    batches,
    current: 0,
    rows: { copied: 0, verified: 0 },
    maxWritePauseMs: 0,
    startedAt: input.now,
    finishedAt: null,
    error: null,
    stopAfterBatch: null,
    epoch: null,
    failures: 0,
    options,
  };
  // A drain has nothing to provision: its targets are running shards.
  return plan.type === 'add-shard' ? state : enterBatch(state, 0);
}

function clone(state: OperationState): OperationState {
  return structuredClone(state);
}

function enterBatch(state: OperationState, index: number): OperationState {
  state.current = index;
  const batch = state.batches[index];
  batch.phase = 'copy';
  state.phase = 'copy';
  return state;
}

function setBatchPhase(state: OperationState, phase: BatchPhase): void {
  state.batches[state.current].phase = phase;
  state.phase = phase === 'pending' || phase === 'done' || phase === 'rolled-back' ? state.phase : phase;
}

function finish(state: OperationState, now: number, outcome: 'done' | 'failed'): void {
  state.state = outcome;
  state.phase = outcome;
  state.finishedAt = now;
}

/** The slot map once every switched batch (and, with `including`, the current one) is applied. */
export function mapAfterSwitched(state: OperationState, including = false): number[] {
  const map = [...state.before];
  state.batches.forEach((batch, index) => {
    if (SWITCHED.has(batch.phase) || (including && index === state.current)) for (const slot of batch.slots) map[slot] = batch.to;
  });
  return map;
}

function anySwitched(state: OperationState): boolean {
  return state.batches.some((batch) => SWITCHED.has(batch.phase));
}

/** Stops the operation as failed, after whatever the current batch still needs to leave things clean. */
function fail(state: OperationState, error: string, now: number): OperationState {
  state.error ??= error;
  const batch = state.batches[state.current];
  if (batch && FENCED.has(batch.phase)) {
    setBatchPhase(state, 'unfence');
  } else if (batch && (batch.phase === 'copy' || batch.phase === 'catch-up')) {
    setBatchPhase(state, 'drop-copies');
  } else if (batch && batch.phase === 'unfence') {
    // already lifting the fence; the copies are dropped next
  } else if (batch && batch.phase === 'drop-copies') {
    // already dropping
  } else {
    conclude(state, now);
  }
  return state;
}

/** After the current batch is settled: a failed add-shard that moved nothing removes its empty shard. */
function conclude(state: OperationState, now: number): void {
  if (state.type === 'add-shard' && !anySwitched(state)) {
    state.phase = 'retire';
    return;
  }
  finish(state, now, 'failed');
}

function fenceExpired(state: OperationState, now: number): boolean {
  const batch = state.batches[state.current];
  return batch.fencedAt !== null && now - batch.fencedAt > state.options.fenceBudgetMs;
}

function sameChecksums(slots: number[], source: SlotChecksum[], target: SlotChecksum[]): { equal: boolean; rows: number; differing: number[] } {
  const index = (sums: SlotChecksum[]) => new Map(sums.map((sum) => [sum.slot, sum]));
  const [left, right] = [index(source), index(target)];
  const differing: number[] = [];
  let rows = 0;
  for (const slot of slots) {
    const a = left.get(slot) ?? { slot, count: 0, checksum: '' };
    const b = right.get(slot) ?? { slot, count: 0, checksum: '' };
    if (a.count !== b.count || (a.count > 0 && a.checksum !== b.checksum)) differing.push(slot);
    else rows += a.count;
  }
  return { equal: differing.length === 0, rows, differing };
}

/** The step the record asks for, derived from the record alone (so a new leader derives the same one). */
export function stepOf(state: OperationState): Step {
  if (state.state !== 'running') return { kind: 'none' };
  if (state.phase === 'provision') return { kind: 'provision', shard: state.shard };
  if (state.phase === 'retire') return { kind: 'retire', shard: state.shard };
  const batch = state.batches[state.current];
  const ref: BatchRef = { batch: state.current, from: batch.from, to: batch.to, slots: [...batch.slots] };
  const deadline = (batch.fencedAt ?? 0) + state.options.fenceBudgetMs;
  switch (batch.phase) {
    case 'copy':
      return { kind: 'copy', cursor: batch.cursor, ...ref };
    case 'catch-up':
      return { kind: 'catch-up', changesFrom: batch.changesFrom, ...ref };
    case 'fence':
      return { kind: 'fence', deadline, ...ref };
    case 'final-catch-up':
      return { kind: 'final-catch-up', changesFrom: batch.changesFrom, deadline, ...ref };
    case 'verify':
      return { kind: 'verify', deadline, ...ref };
    case 'switch':
      return { kind: 'switch', map: mapAfterSwitched(state, true), ...ref };
    case 'await-epoch':
      return { kind: 'await-epoch', batch: state.current, epoch: batch.epoch ?? state.epoch ?? 0 };
    case 'cleanup':
      return { kind: 'cleanup', ...ref };
    case 'unfence':
      return { kind: 'unfence', ...ref };
    case 'drop-copies':
      return { kind: 'drop-copies', ...ref };
    default:
      throw new Error(`operation ${state.id}: batch ${state.current} is ${batch.phase} while the operation runs`);
  }
}

function batchDone(state: OperationState, now: number): void {
  setBatchPhase(state, 'done');
  if (state.stopAfterBatch !== null) {
    state.error ??= state.stopAfterBatch;
    finish(state, now, 'failed');
  } else if (state.current + 1 < state.batches.length) {
    enterBatch(state, state.current + 1);
  } else if (state.type === 'drain-shard') {
    state.current = state.batches.length;
    state.phase = 'retire';
  } else {
    state.current = state.batches.length;
    finish(state, now, 'done');
  }
}

/**
 * The next record, given what the last step observed at time `now`. Pure: the same
 * record and observation always give the same result.
 */
export function next(previous: OperationState, observation: Observation, now: number): Transition {
  const state = clone(previous);
  if (state.state !== 'running') return { state, step: { kind: 'none' } };
  const options = state.options;

  if (state.phase === 'provision' || state.phase === 'retire') {
    if (observation.kind === 'step-failed') {
      state.failures += 1;
      // Retiring is retried forever: the shard must leave the topology, and no row depends on it.
      if (state.phase === 'provision' && state.failures > options.maxStepFailures) {
        state.error = `provisioning shard ${state.shard} failed: ${observation.error}`;
        state.failures = 0;
        state.phase = 'retire';
      }
    } else if (observation.kind === 'provisioned' && state.phase === 'provision') {
      state.failures = 0;
      enterBatch(state, 0);
    } else if (observation.kind === 'retired' && state.phase === 'retire') {
      finish(state, now, state.error === null ? 'done' : 'failed');
    }
    return { state, step: stepOf(state) };
  }

  const batch = state.batches[state.current];
  const fenced = FENCED.has(batch.phase);

  if (observation.kind === 'step-failed') {
    batch.failures += 1;
    if (fenced && fenceExpired(state, now)) {
      setBatchPhase(state, 'unfence');
    } else if (!SWITCHED.has(batch.phase) && batch.phase !== 'unfence' && batch.phase !== 'drop-copies' && batch.failures > options.maxStepFailures) {
      fail(state, `batch ${state.current} (${batch.phase}): ${observation.error}`, now);
    }
    return { state, step: stepOf(state) };
  }
  batch.failures = 0;

  // The 1 s promise: a fence that has not reached the switch in time is lifted, and the batch tried again later.
  if (fenced && fenceExpired(state, now)) {
    setBatchPhase(state, 'unfence');
    return { state, step: stepOf(state) };
  }

  switch (batch.phase) {
    case 'copy':
      if (observation.kind !== 'copied') break;
      if (batch.changesFrom === null) {
        if (!observation.changesFrom) throw new Error('the first copied page must say where change capture started');
        batch.changesFrom = observation.changesFrom;
      }
      batch.copied += observation.rows;
      state.rows.copied += observation.rows;
      batch.cursor = observation.cursor;
      if (observation.done) {
        setBatchPhase(state, 'catch-up');
        batch.catchUpSince = now;
      }
      break;
    case 'catch-up':
      if (observation.kind !== 'caught-up') break;
      batch.changesFrom = observation.changesFrom;
      state.rows.copied += observation.applied;
      if (observation.pending <= options.fenceLagRows) {
        setBatchPhase(state, 'fence');
        batch.fencedAt = now;
      } else if (batch.catchUpSince !== null && now - batch.catchUpSince > options.catchUpTimeoutMs) {
        fail(state, `batch ${state.current}: catch-up still ${observation.pending} changes behind after ${options.catchUpTimeoutMs} ms`, now);
      }
      break;
    case 'fence':
      if (observation.kind === 'fenced') setBatchPhase(state, 'final-catch-up');
      break;
    case 'final-catch-up':
      if (observation.kind !== 'final-caught-up') break;
      batch.changesFrom = observation.changesFrom;
      state.rows.copied += observation.applied;
      if (observation.pending === 0) setBatchPhase(state, 'verify');
      break;
    case 'verify': {
      if (observation.kind !== 'verified') break;
      const result = sameChecksums(batch.slots, observation.source, observation.target);
      if (result.equal) {
        batch.verified = result.rows;
        state.rows.verified += result.rows;
        setBatchPhase(state, 'switch');
      } else {
        fail(state, `verify: slots ${result.differing.join(', ')} differ between shard ${batch.from} and shard ${batch.to}`, now);
      }
      break;
    }
    case 'switch':
      if (observation.kind === 'switch-refused') {
        // Nothing switched (the source never said moved): the same as a lifted fence.
        setBatchPhase(state, 'unfence');
      } else if (observation.kind === 'switched') {
        batch.epoch = observation.epoch;
        state.epoch = observation.epoch;
        batch.pauseMs = now - (batch.fencedAt ?? now);
        state.maxWritePauseMs = Math.max(state.maxWritePauseMs, batch.pauseMs);
        setBatchPhase(state, 'await-epoch');
      }
      break;
    case 'await-epoch':
      if (observation.kind === 'epoch-followed' && observation.epoch >= (batch.epoch ?? 0) && observation.lagging === 0) setBatchPhase(state, 'cleanup');
      break;
    case 'cleanup':
      if (observation.kind === 'cleaned' && observation.done) batchDone(state, now);
      break;
    case 'unfence':
      if (observation.kind !== 'unfenced') break;
      batch.fencedAt = null;
      if (state.error !== null) {
        setBatchPhase(state, 'drop-copies');
      } else {
        batch.fenceAttempts += 1;
        if (batch.fenceAttempts >= options.maxFenceAttempts) {
          state.error = `batch ${state.current}: the write fence could not be switched within ${options.fenceBudgetMs} ms in ${batch.fenceAttempts} attempts`;
          setBatchPhase(state, 'drop-copies');
        } else {
          setBatchPhase(state, 'catch-up');
          batch.catchUpSince = now;
        }
      }
      break;
    case 'drop-copies':
      if (observation.kind !== 'copies-dropped') break;
      setBatchPhase(state, 'rolled-back');
      conclude(state, now);
      break;
  }
  return { state, step: stepOf(state) };
}

/**
 * What a new leader does with a running record. Steps are idempotent, so it mostly runs
 * the record's step again (the copy from its cursor, the catch-up from its position, the
 * switch to its end). A batch that was fenced is unfenced first: the dead leader's fence
 * has already outlived its budget, and a verify it may have run proves nothing now.
 */
export function resume(previous: OperationState): Transition {
  const state = clone(previous);
  state.failures = 0;
  if (state.state === 'running' && state.phase !== 'provision' && state.phase !== 'retire') {
    const batch = state.batches[state.current];
    batch.failures = 0;
    if (FENCED.has(batch.phase)) {
      setBatchPhase(state, 'unfence');
      // A leader change is not the batch's fault: the unfence that follows counts one
      // attempt, which this takes back (so the count may dip below zero meanwhile).
      batch.fenceAttempts -= 1;
    }
  }
  return { state, step: stepOf(state) };
}

/**
 * Rolls the operation back. Before the current batch's switch: lift its fence, drop
 * its copies on the target, and the slots stay where they were. At or after the switch:
 * roll the batch forward, then stop. Batches switched earlier stay with their new owner.
 */
export function rollback(previous: OperationState, reason: string, now: number): Transition {
  const state = clone(previous);
  if (state.state !== 'running') return { state, step: { kind: 'none' } };
  if (state.phase === 'provision') {
    state.error ??= `rolled back: ${reason}`;
    state.phase = 'retire';
    return { state, step: stepOf(state) };
  }
  if (state.phase === 'retire') return { state, step: stepOf(state) };
  const batch = state.batches[state.current];
  if (SWITCHED.has(batch.phase)) {
    state.stopAfterBatch ??= `rolled back after batch ${state.current} (${reason}); that batch had switched, so it rolled forward`;
  } else {
    fail(state, `rolled back: ${reason}`, now);
  }
  return { state, step: stepOf(state) };
}

/** The operation as the admin API shows it (docs/reference.md section 7). */
export interface OperationDocument {
  id: string;
  type: OperationType;
  shard: number;
  state: 'running' | 'done' | 'failed';
  phase: OperationPhase;
  slots: { total: number; moved: number };
  rows: { copied: number; verified: number };
  maxWritePauseMs: number;
  startedAt: string;
  finishedAt: string | null;
  error?: string;
}

export function documentOf(state: OperationState): OperationDocument {
  const total = state.batches.reduce((sum, batch) => sum + batch.slots.length, 0);
  const moved = state.batches.filter((batch) => MOVED.has(batch.phase)).reduce((sum, batch) => sum + batch.slots.length, 0);
  return {
    id: state.id,
    type: state.type,
    shard: state.shard,
    state: state.state,
    phase: state.phase,
    slots: { total, moved },
    rows: { ...state.rows },
    maxWritePauseMs: state.maxWritePauseMs,
    startedAt: new Date(state.startedAt).toISOString(),
    finishedAt: state.finishedAt === null ? null : new Date(state.finishedAt).toISOString(),
    ...(state.error === null ? {} : { error: state.error }),
  };
}

/** One line of progress for `npm run stack -- add-shard` (like pg_basebackup --progress). */
export function progressLine(document: OperationDocument): string {
  const pct = document.slots.total ? Math.floor((100 * document.slots.moved) / document.slots.total) : 100;
  return (
    `${document.type} ${document.shard}: ${document.state}, ${document.phase}, ` +
    `slots ${document.slots.moved}/${document.slots.total} (${pct} %), rows copied ${document.rows.copied}, verified ${document.rows.verified}, ` +
    `longest write pause ${document.maxWritePauseMs} ms${document.error ? `, error: ${document.error}` : ''}`
  );
}
