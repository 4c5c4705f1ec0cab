import type { Kafka } from 'kafkajs';
import { Topics, urlEventSchema, type UrlEvent } from '@shortener/contracts';
import type { LinkCache } from '@shortener/cache';
import type { CacheEntry } from '@shortener/links';
import { SupervisedConsumer } from './supervised-consumer';

export function cacheEntryForEvent(event: UrlEvent): CacheEntry {
  if (event.type === 'url.deleted') return { kind: 'gone', version: event.link.version };
  return {
    kind: 'link',
    version: event.link.version,
    redirectType: event.link.redirectType,
    expiresAt: event.link.expiresAt ? Date.parse(event.link.expiresAt) : null,
    url: event.link.url,
  };
}

/**
 * Keeps the cache right from url.events (one consumer group shared by all readers): a
 * create or update sets the key, a delete leaves a tombstone. Versions make replays and
 * late events harmless.
 */
export class CacheWarmer {
  private supervisor: SupervisedConsumer | null = null;
  applied = 0;

  constructor(
    private readonly kafka: Kafka,
    private readonly cache: LinkCache,
    private readonly onError: (error: Error) => void = () => undefined,
  ) {}

  async start(): Promise<void> {
    this.supervisor ??= new SupervisedConsumer(
      this.kafka,
      () => ({
        groupId: 'cache-warmer',
        sessionTimeout: 10_000,
        heartbeatInterval: 1000,
        // A fetch waits up to 200 ms for 64 KiB, so a burst of writes is applied as
        // one Redis pipeline rather than one round trip (and one offset commit) each.
        minBytes: 64 * 1024,
        maxWaitTimeInMs: 200,
        retry: { retries: 5, initialRetryTime: 300, maxRetryTime: 3000 },
      }),
      async (consumer) => {
        await consumer.subscribe({ topic: Topics.urlEvents, fromBeginning: true });
        await consumer.run({
          eachBatch: async ({ batch, resolveOffset, heartbeat }) => {
            const events: UrlEvent[] = [];
            for (const message of batch.messages) {
              try {
                events.push(urlEventSchema.parse(JSON.parse(message.value?.toString() ?? 'null')));
              } catch (error) {
                this.onError(error as Error);
              }
            }
            // Throws while Redis is down: nothing is resolved and Kafka redelivers the batch.
            await Promise.all(events.map((event) => this.cache.put(event.code, cacheEntryForEvent(event))));
            this.applied += events.length;
            const last = batch.messages.at(-1);
            if (last) resolveOffset(last.offset);
            await heartbeat();
          },
        });
      },
      this.onError,
    );
    await this.supervisor.run();
  }

  async stop(): Promise<void> {
    await this.supervisor?.stop();
  }
}
