/** The item waited past its caller's deadline and was dropped before reaching the database. */
export class DeadlineExceeded extends Error {
  constructor() {
    super("the caller's deadline passed before the statement was sent");
    this.name = 'DeadlineExceeded';
  }
}

/** The key's queue is full: the item was refused at once, nothing was sent. */
export class BatchQueueFull extends Error {
  constructor(limit: number) {
    super(`more than ${limit} statements are waiting for this database node`);
    this.name = 'BatchQueueFull';
  }
}

export interface StatementBatcherOptions {
  maxBatch: number;
  maxConcurrentPerKey: number;
  /** Items allowed to wait per key (behind the running statements); over it, run() fails with BatchQueueFull. */
  maxQueuedPerKey?: number;
  /**
   * True when a failed statement failed for something one of its items holds (a value a
   * cast refuses, a constraint), and nothing of it was applied: the batch is then split and
   * retried so that only the offending items fail. Never true for an error whose outcome is
   * unknown (a timeout, a lost connection): those fail the whole batch as they are.
   */
  isolate?: (error: unknown) => boolean;
}

/**
 * Turns concurrent single-row requests into one statement per key (a node, a shard):
 * requests that arrive in the same turn of the event loop, or while a statement for the
 * same key is running, go out together. Under load this is group commit and
 * multi-row lookups; an idle caller still gets its statement at once (one setImmediate).
 *
 * `execute` answers every item of a batch, by position. The queue per key is bounded, an
 * item whose deadline passed while it waited is dropped before its statement is sent, and
 * (with `isolate`) one bad item fails alone, not the whole batch.
 */
export class StatementBatcher<Key, Item, Result> {
  private readonly waiting = new Map<Key, Pending<Item, Result>[]>();
  private readonly running = new Map<Key, number>();
  private readonly scheduled = new Set<Key>();
  private readonly options: Required<StatementBatcherOptions>;
  /** Items dropped for their deadline, refused for a full queue, and statements re-run to isolate a bad item. */
  readonly stats = { expired: 0, refused: 0, isolationRetries: 0 };

  constructor(
    private readonly execute: (key: Key, items: Item[]) => Promise<Result[]>,
    options: StatementBatcherOptions = { maxBatch: 64, maxConcurrentPerKey: 4 },
  ) {
    this.options = { maxQueuedPerKey: 4096, isolate: () => false, ...options };
  }

  /** `deadline`: epoch ms after which the caller no longer waits for the answer. */
  run(key: Key, item: Item, deadline = Infinity): Promise<Result> {
    return new Promise<Result>((resolve, reject) => {
      let queue = this.waiting.get(key);
      if (!queue) this.waiting.set(key, (queue = []));
      if (queue.length >= this.options.maxQueuedPerKey) {
        this.stats.refused++;
        reject(new BatchQueueFull(this.options.maxQueuedPerKey));
        return;
      }
      queue.push({ item, deadline, resolve, reject });
      this.schedule(key);
    });
  }

  /** Items waiting for a statement, over every key. */
  get queued(): number {
    let total = 0;
    for (const queue of this.waiting.values()) total += queue.length;
    return total;
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
      const batch = this.live(queue.splice(0, this.options.maxBatch));
      if (queue.length === 0) this.waiting.delete(key);
      if (batch.length === 0) continue;
      this.running.set(key, (this.running.get(key) ?? 0) + 1);
      void this.send(key, batch);
    }
  }

  /** Drops (and fails) the items whose caller has given up. */
  private live(batch: Pending<Item, Result>[]): Pending<Item, Result>[] {
    const now = Date.now();
    if (batch.every((pending) => pending.deadline > now)) return batch;
    const live: Pending<Item, Result>[] = [];
    for (const pending of batch) {
      if (pending.deadline > now) live.push(pending);
      else {
        this.stats.expired++;
        pending.reject(new DeadlineExceeded());
      }
    }
    return live;
  }

  private async send(key: Key, batch: Pending<Item, Result>[]): Promise<void> {
    try {
      await this.attempt(key, batch);
    } finally {
      const left = (this.running.get(key) ?? 1) - 1;
      if (left === 0) this.running.delete(key);
      else this.running.set(key, left);
      // What queued up while this statement ran goes out now, as one batch.
      if (this.waiting.has(key)) this.drain(key);
    }
  }

  private async attempt(key: Key, batch: Pending<Item, Result>[]): Promise<void> {
    let results: Result[];
    try {
      results = await this.execute(
        key,
        batch.map((pending) => pending.item),
      );
    } catch (error) {
      if (batch.length === 1 || !this.options.isolate(error)) {
        for (const pending of batch) pending.reject(error);
        return;
      }
      // Halves, one after the other: one bad item among n costs about 2·log2(n) statements,
      // and every good item is answered by a statement it really took part in.
      const middle = Math.ceil(batch.length / 2);
      for (const half of [batch.slice(0, middle), batch.slice(middle)]) {
        const live = this.live(half);
        if (live.length === 0) continue;
        this.stats.isolationRetries++;
        await this.attempt(key, live);
      }
      return;
    }
    batch.forEach((pending, index) => pending.resolve(results[index]));
  }
}

interface Pending<Item, Result> {
  item: Item;
  deadline: number;
  resolve: (result: Result) => void;
  reject: (error: unknown) => void;
}
