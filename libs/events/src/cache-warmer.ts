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
        maxWaitTimeInMs: 3000,
        retry: { retries: 5, initialRetryTime: 300, maxRetryTime: 3000 },
      }),
      async (consumer) => {
        await consumer.subscribe({ topic: Topics.urlEvents, fromBeginning: true });
        await consumer.run({
          eachMessage: async ({ message }) => {
            let event: UrlEvent;
            try {
              event = urlEventSchema.parse(JSON.parse(message.value?.toString() ?? 'null'));
            } catch (error) {
              this.onError(error as Error);
              return;
            }
            // Throws while Redis is down: Kafka redelivers, so nothing is skipped.
            await this.cache.put(event.code, cacheEntryForEvent(event));
            this.applied += 1;
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
