import { ShardRing } from '@shortener/shard-router';
import {
  assertNoOperationRunning,
  BatchPhase,
  documentOf,
  mapAfterSwitched,
  next,
  Observation,
  OperationRefused,
  OperationState,
  progressLine,
  resume,
  rollback,
  startOperation,
  Step,
  stepOf,
} from './operation';

/**
 * A fake cluster that answers each step the way the monitor's real effects will, with
 * a fake clock: every step takes `stepMs`, unless a test overrides the answer or the
 * time for one kind of step. It also keeps the published slot map, so a test can see
 * which slots really switched.
 */
class FakeCluster {
  now = 1_000_000;
  stepMs = 10;
  epoch = 7;
  published: number[];
  readonly steps: Step[] = [];
  readonly rowsPerSlot = 120;
  readonly pageRows = 500;
  /** Per step kind: how long it takes, and an answer that replaces the usual one. */
  readonly slow = new Map<Step['kind'], number>();
  readonly answers = new Map<Step['kind'], (step: Step) => Observation | undefined>();
  private catchUpPasses = 0;
  /** Compare each persisted record with the original (slow; one test does it). */
  checkRoundTrip = false;

  constructor(slots: number[]) {
    this.published = [...slots];
  }

  answer(step: Step): Observation {
    this.steps.push(step);
    this.now += this.slow.get(step.kind) ?? this.stepMs;
    const custom = this.answers.get(step.kind)?.(step);
    if (custom) return custom;
    switch (step.kind) {
      case 'provision':
        return { kind: 'provisioned' };
      case 'copy': {
        const total = step.slots.length * this.rowsPerSlot;
        const offset = step.cursor === null ? 0 : Number(step.cursor);
        const rows = Math.min(this.pageRows, total - offset);
        return { kind: 'copied', rows, cursor: String(offset + rows), done: offset + rows >= total, changesFrom: 'snapshot:0' };
      }
      case 'catch-up':
        this.catchUpPasses += 1;
        return { kind: 'caught-up', applied: 30, pending: this.catchUpPasses % 2 ? 1_000 : 5, changesFrom: `snapshot:${this.catchUpPasses}` };
      case 'fence':
        return { kind: 'fenced' };
      case 'final-catch-up':
        return { kind: 'final-caught-up', applied: 2, pending: 0, changesFrom: 'snapshot:final' };
      case 'verify': {
        const sums = step.slots.map((slot) => ({ slot, count: this.rowsPerSlot, checksum: `md5-${slot}` }));
        return { kind: 'verified', source: sums, target: sums };
      }
      case 'switch':
        for (const slot of step.slots) expect(this.published[slot]).toBe(step.from);
        this.published = step.map;
        return { kind: 'switched', epoch: ++this.epoch };
      case 'await-epoch':
        return { kind: 'epoch-followed', epoch: this.epoch, lagging: 0 };
      case 'cleanup':
        return { kind: 'cleaned', rows: step.slots.length * this.rowsPerSlot, done: true };
      case 'unfence':
        return { kind: 'unfenced' };
      case 'drop-copies':
        return { kind: 'copies-dropped' };
      case 'retire':
        return { kind: 'retired' };
      case 'none':
        throw new Error('nothing to answer');
    }
  }

  /** Runs the driver loop until the operation ends or `until` holds; the record round-trips through JSON each time. */
  drive(state: OperationState, until: (state: OperationState) => boolean = () => false, limit = 20_000): OperationState {
    let current = state;
    for (let i = 0; i < limit; i++) {
      if (current.state !== 'running' || until(current)) return current;
      const persisted = JSON.parse(JSON.stringify(current)) as OperationState;
      if (this.checkRoundTrip) expect(persisted).toEqual(current);
      current = next(persisted, this.answer(stepOf(persisted)), this.now).state;
    }
    throw new Error('the operation did not end');
  }
}

const ROWS = new Array(1024).fill(120);

function add(from: number, options = {}): { state: OperationState; cluster: FakeCluster } {
  const slots = ShardRing.initial(from).slots;
  const cluster = new FakeCluster(slots);
  const state = startOperation({ id: 'op-1', request: { type: 'add-shard' }, slots, now: cluster.now, rowCounts: ROWS, options });
  return { state, cluster };
}

function drain(from: number, shard: number, options = {}): { state: OperationState; cluster: FakeCluster } {
  const slots = ShardRing.initial(from).slots;
  const cluster = new FakeCluster(slots);
  const state = startOperation({ id: 'op-2', request: { type: 'drain-shard', shard }, slots, now: cluster.now, rowCounts: ROWS, options });
  return { state, cluster };
}

const atBatch = (index: number, phase: BatchPhase) => (state: OperationState) => state.current === index && state.batches[index].phase === phase;

describe('a whole operation', () => {
  it('adds shard 2 to a 2-shard cluster batch by batch, in the phase order, and ends with the planned map', () => {
    const { state, cluster } = add(2);
    cluster.checkRoundTrip = true; // the record is plain JSON at every step
    expect(state.phase).toBe('provision');
    expect(state.batches.every((batch) => batch.slots.length <= 8 && batch.to === 2)).toBe(true);
    const done = cluster.drive(state);
    expect(done.state).toBe('done');
    expect(cluster.published).toEqual(state.after);
    expect(cluster.published).toEqual(ShardRing.initial(2).withAddedShard().slots);

    const kinds = cluster.steps.map((step) => step.kind);
    const firstBatch = kinds.slice(1, kinds.indexOf('cleanup') + 1).filter((kind, i, all) => kind !== all[i - 1]);
    expect(kinds[0]).toBe('provision');
    expect(firstBatch).toEqual(['copy', 'catch-up', 'fence', 'final-catch-up', 'verify', 'switch', 'await-epoch', 'cleanup']);

    const doc = documentOf(done);
    expect(doc).toEqual({
      id: 'op-1',
      type: 'add-shard',
      shard: 2,
      state: 'done',
      phase: 'done',
      slots: { total: 341, moved: 341 },
      rows: { copied: expect.any(Number), verified: 341 * 120 },
      maxWritePauseMs: 40, // fence, final catch-up, verify and switch: four 10 ms steps
      startedAt: new Date(state.startedAt).toISOString(),
      finishedAt: new Date(cluster.now).toISOString(),
    });
    expect(doc.rows.copied).toBeGreaterThanOrEqual(341 * 120);
    expect(Object.keys(doc)).not.toContain('error');
  });

  it('drains shard 1 of 3 into the other two and then retires it', () => {
    const { state, cluster } = drain(3, 1);
    expect(state.phase).toBe('copy');
    const done = cluster.drive(state);
    expect(done.state).toBe('done');
    expect(cluster.steps.at(-1)).toEqual({ kind: 'retire', shard: 1 });
    expect(cluster.published).not.toContain(1);
    expect(cluster.published).toEqual(state.after);
    expect(documentOf(done).slots).toEqual({ total: 341, moved: 341 });
  });

  it('reports progress while it runs', () => {
    const { state, cluster } = add(4);
    const midway = cluster.drive(state, (s) => s.current === 5 && s.batches[5].phase === 'copy');
    const doc = documentOf(midway);
    expect(doc).toMatchObject({ state: 'running', phase: 'copy', slots: { total: 204, moved: 40 } });
    expect(progressLine(doc)).toMatch(/^add-shard 4: running, copy, slots 40\/204 \(19 %\), rows copied \d+, verified 4800, longest write pause 40 ms$/);
  });

  it('waits in await-epoch until every service follows the new epoch', () => {
    const { state, cluster } = add(2);
    let lagging = 3;
    cluster.answers.set('await-epoch', () => ({ kind: 'epoch-followed', epoch: cluster.epoch, lagging: lagging-- > 0 ? 1 : 0 }));
    const settled = cluster.drive(state, atBatch(0, 'cleanup'));
    expect(cluster.steps.filter((step) => step.kind === 'await-epoch')).toHaveLength(4);
    expect(settled.batches[0].phase).toBe('cleanup');
  });
});

describe('one operation at a time, and refusals', () => {
  it('refuses a second operation while one runs, naming it', () => {
    const { state } = add(2);
    const second = () =>
      startOperation({ id: 'op-9', request: { type: 'drain-shard', shard: 0 }, slots: ShardRing.initial(2).slots, now: 0, running: [state] });
    expect(second).toThrow(OperationRefused);
    expect(second).toThrow(expect.objectContaining({ reason: 'conflict', running: 'op-1' }));
    expect(() => assertNoOperationRunning([{ ...state, state: 'done' }])).not.toThrow();
  });

  it('refuses to drain the last shard or a shard that does not exist', () => {
    const one = ShardRing.initial(1).slots;
    expect(() => startOperation({ id: 'x', request: { type: 'drain-shard', shard: 0 }, slots: one, now: 0 })).toThrow(
      expect.objectContaining({ reason: 'last-shard' }),
    );
    expect(() => startOperation({ id: 'x', request: { type: 'drain-shard', shard: 3 }, slots: ShardRing.initial(2).slots, now: 0 })).toThrow(
      expect.objectContaining({ reason: 'not-a-shard' }),
    );
  });

  it('gives an added shard an id never used before', () => {
    const slots = ShardRing.initial(3).slots.map((owner) => (owner === 2 ? 0 : owner)); // shard 2 was drained
    const state = startOperation({ id: 'x', request: { type: 'add-shard' }, slots, now: 0, highestIdEverUsed: 2 });
    expect(state.shard).toBe(3);
  });
});

const PRE_SWITCH: BatchPhase[] = ['copy', 'catch-up', 'fence', 'final-catch-up', 'verify'];
const FENCED: BatchPhase[] = ['fence', 'final-catch-up', 'verify'];
const POST_SWITCH: BatchPhase[] = ['switch', 'await-epoch', 'cleanup'];

describe('resume after the leader dies', () => {
  it.each([...PRE_SWITCH, ...POST_SWITCH])('in %s of the second batch: the next leader finishes the operation', (phase) => {
    const { state, cluster } = add(3);
    const dying = cluster.drive(state, atBatch(1, phase));
    const record = JSON.parse(JSON.stringify(dying)) as OperationState;
    const { state: resumed, step } = resume(record);
    if (FENCED.includes(phase)) {
      expect(step).toMatchObject({ kind: 'unfence', batch: 1 });
    } else {
      expect(step).toEqual(stepOf(dying));
    }
    const done = cluster.drive(resumed);
    expect(done.state).toBe('done');
    expect(cluster.published).toEqual(state.after);
    expect(done.batches[1].fenceAttempts).toBe(0);
  });

  it('resumes the copy from its cursor, not from the start', () => {
    const { state, cluster } = add(2);
    cluster.answers.set('copy', (step) => (step.kind === 'copy' ? undefined : undefined));
    const dying = cluster.drive(state, (s) => s.phase === 'copy' && s.batches[0].cursor === '500');
    const { step } = resume(dying);
    expect(step).toMatchObject({ kind: 'copy', cursor: '500', batch: 0 });
  });

  it.each(['provision', 'retire'] as const)('in %s: runs that step again', (phase) => {
    const fixture = phase === 'provision' ? add(2) : drain(2, 1);
    const dying = fixture.cluster.drive(fixture.state, (s) => s.phase === phase);
    const { state: resumed, step } = resume(dying);
    expect(step.kind).toBe(phase);
    expect(fixture.cluster.drive(resumed).state).toBe('done');
  });

  it('in unfence or drop-copies of a rollback: finishes the rollback', () => {
    for (const phase of ['unfence', 'drop-copies'] as const) {
      const { state, cluster } = add(2);
      const fenced = cluster.drive(state, atBatch(0, 'verify'));
      const rolling = rollback(fenced, 'operator', cluster.now).state;
      const dying = cluster.drive(rolling, (s) => s.batches[0].phase === phase);
      const { state: resumed, step } = resume(dying);
      expect(step.kind).toBe(phase);
      const end = cluster.drive(resumed);
      expect(end).toMatchObject({ state: 'failed', error: 'rolled back: operator' });
    }
  });
});

describe('rollback', () => {
  it.each(PRE_SWITCH)('in %s of the second batch: drops the copies, the batch’s slots stay, earlier batches keep their move', (phase) => {
    const { state, cluster } = add(3);
    const mid = cluster.drive(state, atBatch(1, phase));
    const { state: rolling, step } = rollback(mid, 'operator asked', cluster.now);
    expect(step.kind).toBe(FENCED.includes(phase) ? 'unfence' : 'drop-copies');
    const end = cluster.drive(rolling);
    expect(end.state).toBe('failed');
    expect(end.error).toBe('rolled back: operator asked');
    expect(end.batches[1].phase).toBe('rolled-back');
    expect(end.batches.slice(2).every((batch) => batch.phase === 'pending')).toBe(true);
    // Batch 0 had switched: it stays with the new shard, which therefore stays (no retire).
    expect(cluster.steps.some((s) => s.kind === 'retire')).toBe(false);
    const expected = [...state.before];
    for (const slot of state.batches[0].slots) expected[slot] = 3;
    expect(cluster.published).toEqual(expected);
    expect(mapAfterSwitched(end)).toEqual(expected);
    expect(documentOf(end).slots.moved).toBe(state.batches[0].slots.length);
  });

  it.each(PRE_SWITCH)('in %s of the first batch of an add: also removes the new, empty shard', (phase) => {
    const { state, cluster } = add(2);
    const mid = cluster.drive(state, atBatch(0, phase));
    const end = cluster.drive(rollback(mid, 'operator asked', cluster.now).state);
    expect(end.state).toBe('failed');
    expect(cluster.steps.at(-1)).toEqual({ kind: 'retire', shard: 2 });
    expect(cluster.published).toEqual(state.before);
  });

  it.each(POST_SWITCH)('in %s: rolls the batch forward, then stops', (phase) => {
    const { state, cluster } = drain(3, 2);
    const mid = cluster.drive(state, atBatch(1, phase));
    const { state: rolling, step } = rollback(mid, 'operator asked', cluster.now);
    expect(step).toEqual(stepOf(mid));
    const end = cluster.drive(rolling);
    expect(end.state).toBe('failed');
    expect(end.error).toMatch(/rolled back after batch 1 .*rolled forward/);
    expect(end.batches[1].phase).toBe('done');
    expect(end.batches[2].phase).toBe('pending');
    expect(cluster.steps.some((s) => s.kind === 'retire')).toBe(false); // the drained shard keeps its other slots
    expect(cluster.published.filter((owner) => owner === 2).length).toBe(state.batches.slice(2).reduce((n, b) => n + b.slots.length, 0));
  });

  it('in provision: removes what was provisioned', () => {
    const { state, cluster } = add(2);
    const { state: rolling, step } = rollback(state, 'operator asked', cluster.now);
    expect(step).toEqual({ kind: 'retire', shard: 2 });
    expect(cluster.drive(rolling)).toMatchObject({ state: 'failed', error: 'rolled back: operator asked' });
  });

  it('of a finished operation changes nothing', () => {
    const { state, cluster } = add(2);
    const done = cluster.drive(state);
    expect(rollback(done, 'late', cluster.now)).toEqual({ state: done, step: { kind: 'none' } });
  });
});

describe('verify (VDiff)', () => {
  it('a checksum mismatch fails the operation and leaves the slot where it was', () => {
    const { state, cluster } = drain(2, 1);
    const start = cluster.drive(state, atBatch(2, 'verify'));
    const bad = start.batches[2].slots[3];
    cluster.answers.set('verify', (step) => {
      if (step.kind !== 'verify') return undefined;
      const source = step.slots.map((slot) => ({ slot, count: 120, checksum: `md5-${slot}` }));
      return { kind: 'verified', source, target: source.map((sum) => (sum.slot === bad ? { ...sum, checksum: 'other' } : sum)) };
    });
    const end = cluster.drive(start);
    expect(end.state).toBe('failed');
    expect(end.error).toBe(`verify: slots ${bad} differ between shard 1 and shard 0`);
    expect(cluster.steps.slice(-2).map((s) => s.kind)).toEqual(['unfence', 'drop-copies']);
    expect(cluster.published[bad]).toBe(1);
    expect(start.batches[2].slots.every((slot) => cluster.published[slot] === 1)).toBe(true);
    expect(documentOf(end)).toMatchObject({ state: 'failed', phase: 'failed', slots: { moved: 16 } });
  });

  it('a missing row (count differs) fails it too, and a slot empty on both sides is equal', () => {
    const { state, cluster } = add(2);
    const start = cluster.drive(state, atBatch(0, 'verify'));
    const [first, second] = start.batches[0].slots;
    const ok = next(
      start,
      { kind: 'verified', source: [{ slot: first, count: 1, checksum: 'a' }], target: [{ slot: first, count: 1, checksum: 'a' }] },
      cluster.now,
    );
    expect(ok.step.kind).toBe('switch');
    expect(ok.state.rows.verified).toBe(1);
    const bad = next(
      start,
      { kind: 'verified', source: [{ slot: second, count: 2, checksum: 'a' }], target: [{ slot: second, count: 1, checksum: 'a' }] },
      cluster.now,
    );
    expect(bad.step.kind).toBe('unfence');
    expect(bad.state.error).toMatch(new RegExp(`slots ${second} differ`));
  });
});

describe('the 1 s write fence', () => {
  it('lifts a fence that does not reach the switch within the budget, and tries again', () => {
    const { state, cluster } = add(2, { fenceBudgetMs: 800 });
    const fenced = cluster.drive(state, atBatch(0, 'final-catch-up'));
    cluster.slow.set('final-catch-up', 900);
    const aborted = next(fenced, cluster.answer(stepOf(fenced)), cluster.now);
    expect(aborted.step.kind).toBe('unfence');
    cluster.slow.delete('final-catch-up');
    const retried = next(aborted.state, cluster.answer(aborted.step), cluster.now);
    expect(retried.step.kind).toBe('catch-up');
    expect(retried.state.batches[0].fenceAttempts).toBe(1);
    const done = cluster.drive(retried.state);
    expect(done.state).toBe('done');
    expect(done.maxWritePauseMs).toBeLessThan(800);
  });

  it('gives up after maxFenceAttempts and leaves the slots where they were', () => {
    const { state, cluster } = add(2, { maxFenceAttempts: 3 });
    cluster.slow.set('verify', 1_000);
    const end = cluster.drive(state);
    expect(end.state).toBe('failed');
    expect(end.error).toMatch(/could not be switched within 800 ms in 3 attempts/);
    expect(cluster.steps.filter((s) => s.kind === 'fence')).toHaveLength(3);
    expect(cluster.published).toEqual(state.before);
    expect(end.maxWritePauseMs).toBe(0);
  });

  it('a tick past the budget lifts the fence even when no step answered', () => {
    const { state, cluster } = add(2);
    const fenced = cluster.drive(state, atBatch(0, 'verify'));
    expect(next(fenced, { kind: 'tick' }, fenced.batches[0].fencedAt! + 500).step.kind).toBe('verify');
    expect(next(fenced, { kind: 'tick' }, fenced.batches[0].fencedAt! + 801).step.kind).toBe('unfence');
  });

  it('a failed step under the fence is retried inside the budget and lifts the fence after it', () => {
    const { state, cluster } = add(2);
    const fenced = cluster.drive(state, atBatch(0, 'final-catch-up'));
    const at = fenced.batches[0].fencedAt!;
    expect(next(fenced, { kind: 'step-failed', error: 'connection reset' }, at + 100).step.kind).toBe('final-catch-up');
    expect(next(fenced, { kind: 'step-failed', error: 'connection reset' }, at + 900).step.kind).toBe('unfence');
  });

  it('a switch the source refuses (its fence was no longer valid) counts as a lifted fence', () => {
    const { state, cluster } = add(2);
    cluster.answers.set('switch', () =>
      cluster.steps.filter((s) => s.kind === 'switch').length === 1 ? { kind: 'switch-refused', reason: 'fence expired' } : undefined,
    );
    const done = cluster.drive(state);
    expect(done.state).toBe('done');
    expect(done.batches[0].fenceAttempts).toBe(1);
    expect(cluster.published).toEqual(state.after);
  });

  it('enters the fence only once catch-up is within fenceLagRows', () => {
    const { state, cluster } = add(2, { fenceLagRows: 10 });
    const catching = cluster.drive(state, atBatch(0, 'catch-up'));
    expect(next(catching, { kind: 'caught-up', applied: 100, pending: 11, changesFrom: 's1' }, cluster.now).step.kind).toBe('catch-up');
    const fencing = next(catching, { kind: 'caught-up', applied: 100, pending: 10, changesFrom: 's2' }, cluster.now);
    expect(fencing.step).toMatchObject({ kind: 'fence', deadline: cluster.now + 800 });
    expect(fencing.state.batches[0].changesFrom).toBe('s2');
  });

  it('fails when catch-up never comes within reach', () => {
    const { state, cluster } = add(2, { catchUpTimeoutMs: 1_000 });
    cluster.answers.set('catch-up', () => ({ kind: 'caught-up', applied: 5_000, pending: 5_000, changesFrom: 's' }));
    const end = cluster.drive(state);
    expect(end.state).toBe('failed');
    expect(end.error).toMatch(/catch-up still 5000 changes behind/);
    expect(cluster.steps.slice(-2).map((s) => s.kind)).toEqual(['drop-copies', 'retire']);
  });
});

describe('failed steps', () => {
  it('before the switch: retried, then the operation is rolled back', () => {
    const { state, cluster } = drain(2, 1, { maxStepFailures: 3 });
    cluster.answers.set('copy', () => ({ kind: 'step-failed', error: 'source primary unreachable' }));
    const end = cluster.drive(state);
    expect(end.state).toBe('failed');
    expect(end.error).toBe('batch 0 (copy): source primary unreachable');
    expect(cluster.steps.filter((s) => s.kind === 'copy')).toHaveLength(4);
    expect(cluster.published).toEqual(state.before);
  });

  it('at the switch: retried until it succeeds (the batch can only roll forward)', () => {
    const { state, cluster } = add(2, { maxStepFailures: 3 });
    let failures = 50;
    cluster.answers.set('switch', () => (failures-- > 0 ? { kind: 'step-failed', error: 'topology publish failed' } : undefined));
    const end = cluster.drive(state);
    expect(end.state).toBe('done');
    expect(cluster.published).toEqual(state.after);
  });

  it('a provisioning that keeps failing fails the operation and removes the half-made shard', () => {
    const { state, cluster } = add(2, { maxStepFailures: 2 });
    cluster.answers.set('provision', () => ({ kind: 'step-failed', error: 'initdb failed' }));
    const end = cluster.drive(state);
    expect(end).toMatchObject({ state: 'failed', error: 'provisioning shard 2 failed: initdb failed' });
    expect(cluster.steps.at(-1)?.kind).toBe('retire');
  });

  it('ignores a late answer meant for another phase', () => {
    const { state, cluster } = add(2);
    const fenced = cluster.drive(state, atBatch(0, 'verify'));
    const late = next(fenced, { kind: 'copied', rows: 5, cursor: 'x', done: true }, cluster.now);
    expect(late.state).toEqual(fenced);
  });
});
