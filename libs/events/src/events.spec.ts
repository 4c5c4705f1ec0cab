import fc from 'fast-check';
import { clickEventSchema, urlEventSchema } from '@shortener/contracts';
import { cacheEntryForEvent } from './cache-warmer';
import { ClickBatcher } from './click-batcher';
import type { KeyedEvent } from './event-producer';

class RecordingProducer {
  sent: KeyedEvent[][] = [];
  failNext = false;
  down = false;
  async send(events: KeyedEvent[]) {
    if (this.down || this.failNext) {
      this.failNext = false;
      throw new Error('broker down');
    }
    this.sent.push(events);
  }
  counts(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const event of this.sent.flat()) {
      const { code, count } = clickEventSchema.parse(JSON.parse(event.value));
      counts.set(code, (counts.get(code) ?? 0) + count);
    }
    return counts;
  }
}

/** The writer's clicks.apply: applies a batch id once; can lose its answer or never be reached. */
class FakeWriter {
  applied = new Map<string, number>();
  batches: string[] = [];
  mode: 'up' | 'answer-lost' | 'unreachable' = 'up';
  async apply(batchId: string, counts: [string, number][]) {
    if (this.mode === 'unreachable') throw Object.assign(new Error('connect ECONNREFUSED'), { sent: false });
    if (!this.batches.includes(batchId)) {
      this.batches.push(batchId);
      for (const [code, count] of counts) this.applied.set(code, (this.applied.get(code) ?? 0) + count);
    }
    if (this.mode === 'answer-lost') throw new Error('timed out');
  }
}

const total = (...maps: Map<string, number>[]) => maps.reduce((sum, map) => sum + [...map.values()].reduce((a, b) => a + b, 0), 0);

describe('ClickBatcher', () => {
  it('sends one event per code with the summed count', async () => {
    const producer = new RecordingProducer();
    const batcher = new ClickBatcher(producer);
    for (let i = 0; i < 5; i++) batcher.record('abc');
    batcher.record('xyz');
    await batcher.flush();
    expect(producer.sent).toHaveLength(1);
    const events = producer.sent[0].map((event) => ({ key: event.key, ...clickEventSchema.parse(JSON.parse(event.value)) }));
    expect(events.map(({ key, code, count }) => ({ key, code, count }))).toEqual([
      { key: 'abc', code: 'abc', count: 5 },
      { key: 'xyz', code: 'xyz', count: 1 },
    ]);
    expect(producer.sent[0][0].topic).toBe('url.clicks');
  });

  it('without a fallback, keeps the counts of a failed flush for the next one', async () => {
    const producer = new RecordingProducer();
    const errors: Error[] = [];
    const batcher = new ClickBatcher(producer, { maxDistinctCodes: 10, onError: (error) => errors.push(error) });
    batcher.record('abc');
    batcher.record('abc');
    producer.failNext = true;
    await batcher.flush();
    expect(errors).toHaveLength(1);
    expect(batcher.pendingClicks).toBe(2);
    batcher.record('abc');
    await batcher.flush();
    expect(JSON.parse(producer.sent[0][0].value).count).toBe(3);
  });

  it('bounds the distinct codes it holds, also when a failed flush merges back, and reports every click it drops', async () => {
    const producer = new RecordingProducer();
    const reports: { pending: number; dropped: number }[] = [];
    const batcher = new ClickBatcher(producer, { maxDistinctCodes: 2, onReport: (report) => reports.push(report) });
    batcher.record('a');
    batcher.record('b');
    batcher.record('c'); // a third code: dropped
    expect(batcher.pendingCodes).toBe(2);
    producer.failNext = true;
    const flushing = batcher.flush();
    batcher.record('d'); // while the batch is in hand
    batcher.record('d');
    await flushing; // a and b merge back: only one of them still fits beside d
    expect(batcher.pendingCodes).toBe(2);
    expect(batcher.droppedClicks).toBe(2);
    expect(reports.at(-1)).toEqual({ pending: 3, dropped: 2 });
    await batcher.flush();
    expect(total(producer.counts()) + batcher.droppedClicks).toBe(5);
    expect(reports.at(-1)).toEqual({ pending: 0, dropped: 0 });
  });

  it('hands a batch Kafka refused to the writer under a batch id', async () => {
    const producer = new RecordingProducer();
    const writer = new FakeWriter();
    const batcher = new ClickBatcher(producer, { fallback: writer, newBatchId: () => 'batch-0001' });
    for (let i = 0; i < 4; i++) batcher.record('abc');
    producer.failNext = true;
    await batcher.flush();
    expect(writer.batches).toEqual(['batch-0001']);
    expect(writer.applied).toEqual(new Map([['abc', 4]]));
    expect(producer.sent).toHaveLength(0);
    expect(batcher.pendingClicks).toBe(0);
  });

  it('retries a batch whose outcome is unknown with the same id, before any newer clicks, and never through Kafka', async () => {
    const producer = new RecordingProducer();
    const writer = new FakeWriter();
    let ids = 0;
    const batcher = new ClickBatcher(producer, { fallback: writer, newBatchId: () => `batch-${++ids}` });
    batcher.record('abc');
    producer.failNext = true;
    writer.mode = 'answer-lost';
    await batcher.flush(); // applied, but the gateway does not know
    batcher.record('xyz');
    await batcher.flush(); // the same batch again: the writer adds nothing twice; xyz waits
    expect(producer.sent).toHaveLength(0);
    expect(batcher.pendingClicks).toBe(2);
    writer.mode = 'up';
    await batcher.flush(); // batch-1 settles, then xyz goes to Kafka
    expect(writer.batches).toEqual(['batch-1']);
    expect(writer.applied).toEqual(new Map([['abc', 1]]));
    expect(producer.counts()).toEqual(new Map([['xyz', 1]]));
    expect(batcher.pendingClicks).toBe(0);
  });

  it('keeps a batch sealed once an attempt may have applied it, even if a later attempt reaches no writer', async () => {
    const producer = new RecordingProducer();
    const writer = new FakeWriter();
    const batcher = new ClickBatcher(producer, { fallback: writer });
    batcher.record('abc');
    producer.failNext = true;
    writer.mode = 'answer-lost';
    await batcher.flush();
    writer.mode = 'unreachable';
    await batcher.flush();
    writer.mode = 'up';
    await batcher.flush();
    expect(producer.sent).toHaveLength(0);
    expect(writer.applied).toEqual(new Map([['abc', 1]]));
    expect(batcher.pendingClicks).toBe(0);
  });

  it('merges back a batch that certainly reached no writer, and sends it to Kafka later', async () => {
    const producer = new RecordingProducer();
    const writer = new FakeWriter();
    const batcher = new ClickBatcher(producer, { fallback: writer });
    batcher.record('abc');
    producer.failNext = true;
    writer.mode = 'unreachable';
    await batcher.flush();
    expect(batcher.pendingClicks).toBe(1);
    await batcher.flush();
    expect(producer.counts()).toEqual(new Map([['abc', 1]]));
    expect(writer.batches).toEqual([]);
  });

  it('runs one flush at a time: clicks recorded while Kafka decides wait for the next flush', async () => {
    let release!: () => void;
    const sent: KeyedEvent[][] = [];
    const batcher = new ClickBatcher({
      send: (events) =>
        new Promise<void>((resolve) => {
          sent.push(events);
          release = resolve;
        }),
    });
    batcher.record('abc');
    const first = batcher.flush();
    batcher.record('abc');
    expect(batcher.flush()).toBe(first);
    expect(batcher.pendingClicks).toBe(2);
    release();
    await first;
    expect(batcher.pendingClicks).toBe(1);
    const second = batcher.flush();
    release();
    await second;
    expect(sent.map((events) => JSON.parse(events[0].value).count)).toEqual([1, 1]);
  });

  it('counts every click exactly once through any sequence of Kafka and writer outages (property)', async () => {
    const step = fc.oneof(
      fc.record({ kind: fc.constant('click' as const), code: fc.constantFrom('a', 'b', 'c', 'd'), times: fc.integer({ min: 1, max: 5 }) }),
      fc.record({
        kind: fc.constant('flush' as const),
        kafkaDown: fc.boolean(),
        writer: fc.constantFrom('up' as const, 'answer-lost' as const, 'unreachable' as const),
      }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(step, { maxLength: 40 }), async (steps) => {
        const producer = new RecordingProducer();
        const writer = new FakeWriter();
        let ids = 0;
        const batcher = new ClickBatcher(producer, { fallback: writer, maxDistinctCodes: 3, newBatchId: () => `batch-${++ids}` });
        const recorded = new Map<string, number>();
        for (const s of steps) {
          if (s.kind === 'click') {
            for (let i = 0; i < s.times; i++) batcher.record(s.code);
            recorded.set(s.code, (recorded.get(s.code) ?? 0) + s.times);
          } else {
            producer.down = s.kafkaDown;
            writer.mode = s.writer;
            await batcher.flush();
          }
        }
        producer.down = false;
        writer.mode = 'up';
        await batcher.flush();
        await batcher.flush();
        expect(batcher.pendingClicks).toBe(0);
        // delivered + dropped (reported) = recorded, and per code never more than recorded
        expect(total(producer.counts(), writer.applied) + batcher.droppedClicks).toBe(total(recorded));
        for (const [code, count] of recorded) expect((producer.counts().get(code) ?? 0) + (writer.applied.get(code) ?? 0)).toBeLessThanOrEqual(count);
      }),
      { numRuns: 300 },
    );
  });
});

describe('cacheEntryForEvent', () => {
  it('turns events into versioned cache entries', () => {
    const updated = urlEventSchema.parse({
      type: 'url.updated',
      version: 1,
      code: 'abc',
      at: 'x',
      link: { url: 'https://e', redirectType: 301, expiresAt: '2030-01-01T00:00:00.000Z', version: 7 },
    });
    expect(cacheEntryForEvent(updated)).toEqual({
      kind: 'link',
      version: 7,
      redirectType: 301,
      expiresAt: Date.parse('2030-01-01T00:00:00.000Z'),
      url: 'https://e',
    });
    const deleted = urlEventSchema.parse({ type: 'url.deleted', version: 1, code: 'abc', at: 'x', link: { version: 9 } });
    expect(cacheEntryForEvent(deleted)).toEqual({ kind: 'gone', version: 9 });
  });
});
