import { StatementBatcher } from './statement-batcher';

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
});
