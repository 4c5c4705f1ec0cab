import { BatchQueueFull, DeadlineExceeded, StatementBatcher } from './statement-batcher';

function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

describe('StatementBatcher', () => {
  it('sends what arrives in one turn as one statement per key, and answers each by position', async () => {
    const statements: [string, number[]][] = [];
    const batcher = new StatementBatcher<string, number, number>(async (key, items) => {
      statements.push([key, items]);
      return items.map((item) => item * 10);
    });
    const answers = await Promise.all([batcher.run('a', 1), batcher.run('b', 2), batcher.run('a', 3)]);
    expect(answers).toEqual([10, 20, 30]);
    expect(statements).toEqual([
      ['a', [1, 3]],
      ['b', [2]],
    ]);
  });

  it('queues behind running statements and sends the queue as one batch when one finishes', async () => {
    const gates: ReturnType<typeof deferred<void>>[] = [];
    const statements: number[][] = [];
    const batcher = new StatementBatcher<string, number, number>(
      async (_key, items) => {
        statements.push(items);
        const gate = deferred<void>();
        gates.push(gate);
        await gate.promise;
        return items;
      },
      { maxBatch: 2, maxConcurrentPerKey: 1 },
    );
    const first = batcher.run('k', 1);
    await new Promise((resolve) => setImmediate(resolve));
    const rest = [2, 3, 4, 5].map((item) => batcher.run('k', item));
    await new Promise((resolve) => setImmediate(resolve));
    expect(statements).toEqual([[1]]);
    gates[0].resolve();
    await first;
    await new Promise((resolve) => setImmediate(resolve));
    // One at a time, at most two items each.
    expect(statements).toEqual([[1], [2, 3]]);
    gates[1].resolve();
    await Promise.all(rest.slice(0, 2));
    await new Promise((resolve) => setImmediate(resolve));
    expect(statements).toEqual([[1], [2, 3], [4, 5]]);
    gates[2].resolve();
    expect(await Promise.all(rest)).toEqual([2, 3, 4, 5]);
  });

  it('fails every item of a failed statement, and the next batch still runs', async () => {
    let fail = true;
    const batcher = new StatementBatcher<string, number, number>(async (_key, items) => {
      if (fail) throw new Error('connection refused');
      return items;
    });
    const failed = await Promise.allSettled([batcher.run('k', 1), batcher.run('k', 2)]);
    expect(failed.map((outcome) => outcome.status)).toEqual(['rejected', 'rejected']);
    fail = false;
    expect(await batcher.run('k', 3)).toBe(3);
  });

  it('isolates a bad item: the others of its batch succeed, only its own caller fails', async () => {
    const statements: number[][] = [];
    const batcher = new StatementBatcher<string, number, number>(
      async (_key, items) => {
        statements.push(items);
        // Like PostgreSQL refusing one value of a multi-row INSERT: the whole statement fails.
        if (items.includes(38)) throw Object.assign(new Error('invalid input syntax for type json'), { code: '22P02' });
        return items.map((item) => item * 2);
      },
      { maxBatch: 128, maxConcurrentPerKey: 2, isolate: (error) => (error as { code?: string }).code === '22P02' },
    );
    const outcomes = await Promise.allSettled(Array.from({ length: 120 }, (_, item) => batcher.run('k', item)));
    const failed = outcomes.flatMap((outcome, item) => (outcome.status === 'rejected' ? [item] : []));
    expect(failed).toEqual([38]);
    expect(outcomes[37]).toEqual({ status: 'fulfilled', value: 74 });
    // One statement for all, then about 2 log2(120) to find the bad one, not 120.
    expect(statements[0]).toHaveLength(120);
    expect(statements.length).toBeLessThanOrEqual(1 + 2 * 7);
    expect(batcher.stats.isolationRetries).toBe(statements.length - 1);
  });

  it('never splits and retries a batch whose failure has an unknown outcome', async () => {
    let statements = 0;
    const batcher = new StatementBatcher<string, number, number>(
      async () => {
        statements++;
        throw new Error('Query read timeout');
      },
      { maxBatch: 128, maxConcurrentPerKey: 2, isolate: () => false },
    );
    const outcomes = await Promise.allSettled([1, 2, 3, 4].map((item) => batcher.run('k', item)));
    expect(outcomes.every((outcome) => outcome.status === 'rejected')).toBe(true);
    expect(statements).toBe(1);
  });

  it('drops an item whose deadline passed while it waited, before its statement is sent', async () => {
    const gate = deferred<void>();
    const statements: number[][] = [];
    const batcher = new StatementBatcher<string, number, number>(
      async (_key, items) => {
        statements.push(items);
        if (items.includes(1)) await gate.promise;
        return items;
      },
      { maxBatch: 8, maxConcurrentPerKey: 1 },
    );
    const first = batcher.run('k', 1);
    await new Promise((resolve) => setImmediate(resolve));
    const late = batcher.run('k', 2, Date.now() + 20);
    const patient = batcher.run('k', 3, Date.now() + 60_000);
    await new Promise((resolve) => setTimeout(resolve, 40));
    gate.resolve();
    await first;
    await expect(late).rejects.toBeInstanceOf(DeadlineExceeded);
    expect(await patient).toBe(3);
    expect(statements).toEqual([[1], [3]]);
    expect(batcher.stats.expired).toBe(1);
  });

  it('bounds the queue per key: over it a run fails at once and nothing is sent', async () => {
    const gate = deferred<void>();
    let sent = 0;
    const batcher = new StatementBatcher<string, number, number>(
      async (_key, items) => {
        sent += items.length;
        await gate.promise;
        return items;
      },
      { maxBatch: 2, maxConcurrentPerKey: 1, maxQueuedPerKey: 3 },
    );
    const running = batcher.run('k', 0);
    await new Promise((resolve) => setImmediate(resolve));
    const queued = [1, 2, 3].map((item) => batcher.run('k', item));
    await expect(batcher.run('k', 4)).rejects.toBeInstanceOf(BatchQueueFull);
    // Another key has its own queue.
    const other = batcher.run('other', 9);
    gate.resolve();
    expect(await Promise.all([running, ...queued, other])).toEqual([0, 1, 2, 3, 9]);
    expect(sent).toBe(5);
    expect(batcher.stats.refused).toBe(1);
  });
});
