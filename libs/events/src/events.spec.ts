import { clickEventSchema, urlEventSchema } from '@shortener/contracts';
import { cacheEntryForEvent } from './cache-warmer';
import { ClickBatcher } from './click-batcher';
import type { EventProducer, KeyedEvent } from './event-producer';

class RecordingProducer {
  sent: KeyedEvent[][] = [];
  failNext = false;
  async send(events: KeyedEvent[]) {
    if (this.failNext) {
      this.failNext = false;
      throw new Error('broker down');
    }
    this.sent.push(events);
  }
}

describe('ClickBatcher', () => {
  it('sends one event per code with the summed count', async () => {
    const producer = new RecordingProducer();
    const batcher = new ClickBatcher(producer as unknown as EventProducer);
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

  it('keeps the counts of a failed flush for the next one', async () => {
    const producer = new RecordingProducer();
    const errors: Error[] = [];
    const batcher = new ClickBatcher(producer as unknown as EventProducer, 500, 10, (error) => errors.push(error));
    batcher.record('abc');
    batcher.record('abc');
    producer.failNext = true;
    await batcher.flush();
    expect(errors).toHaveLength(1);
    batcher.record('abc');
    await batcher.flush();
    expect(JSON.parse(producer.sent[0][0].value).count).toBe(3);
  });

  it('bounds the number of distinct codes it holds', () => {
    const batcher = new ClickBatcher(new RecordingProducer() as unknown as EventProducer, 500, 2);
    batcher.record('a');
    batcher.record('b');
    batcher.record('c');
    expect(batcher.pendingCodes).toBe(2);
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
