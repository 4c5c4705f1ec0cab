/**
 * Turns concurrent single-row requests into one statement per key (a node, a shard):
 * requests that arrive in the same turn of the event loop, or while a statement for the
 * same key is running, go out together. Under load this is group commit and
 * multi-row lookups; an idle caller still gets its statement at once (one setImmediate).
 *
 * `execute` answers every item of a batch, by position; throwing fails the whole batch.
 */
export class StatementBatcher<Key, Item, Result> {
  private readonly waiting = new Map<Key, Pending<Item, Result>[]>();
  private readonly running = new Map<Key, number>();
  private readonly scheduled = new Set<Key>();

  constructor(
    private readonly execute: (key: Key, items: Item[]) => Promise<Result[]>,
    private readonly options: { maxBatch: number; maxConcurrentPerKey: number } = { maxBatch: 64, maxConcurrentPerKey: 4 },
  ) {}

  run(key: Key, item: Item): Promise<Result> {
    return new Promise<Result>((resolve, reject) => {
      let queue = this.waiting.get(key);
      if (!queue) this.waiting.set(key, (queue = []));
      queue.push({ item, resolve, reject });
      this.schedule(key);
    });
  }

  private schedule(key: Key): void {
    if (this.scheduled.has(key)) return;
    this.scheduled.add(key);
    setImmediate(() => {
      this.scheduled.delete(key);
      this.drain(key);
    });
  }

  private drain(key: Key): void {
    const queue = this.waiting.get(key);
    while (queue?.length && (this.running.get(key) ?? 0) < this.options.maxConcurrentPerKey) {
      const batch = queue.splice(0, this.options.maxBatch);
      if (queue.length === 0) this.waiting.delete(key);
      this.running.set(key, (this.running.get(key) ?? 0) + 1);
      void this.send(key, batch);
    }
  }

  private async send(key: Key, batch: Pending<Item, Result>[]): Promise<void> {
    try {
      const results = await this.execute(
        key,
        batch.map((pending) => pending.item),
      );
      batch.forEach((pending, index) => pending.resolve(results[index]));
    } catch (error) {
      for (const pending of batch) pending.reject(error);
    } finally {
      const left = (this.running.get(key) ?? 1) - 1;
      if (left === 0) this.running.delete(key);
      else this.running.set(key, left);
      // What queued up while this statement ran goes out now, as one batch.
      if (this.waiting.has(key)) this.drain(key);
    }
  }
}

interface Pending<Item, Result> {
  item: Item;
  resolve: (result: Result) => void;
  reject: (error: unknown) => void;
}
