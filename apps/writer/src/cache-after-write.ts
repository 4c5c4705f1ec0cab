import { Inject, Injectable } from '@nestjs/common';
import type { LinkCache } from '@shortener/cache';
import type { OutboxRelay } from '@shortener/events';
import type { CacheEntry } from '@shortener/links';
import { counter } from '@shortener/observability';
import { PinoLogger } from 'nestjs-pino';
import { LINK_CACHE } from './writer.constants';

const cacheWriteFailures = counter('shortener_cache_write_failures_total', 'Cache writes after commit that failed');

/**
 * After a commit: the cache gets the new state before the caller is answered, so the
 * link redirects from any gateway at once; the outbox relay is nudged so the event
 * (which also repairs a lost cache write) leaves without waiting for the next tick.
 */
@Injectable()
export class CacheAfterWrite {
  relay: OutboxRelay | null = null;

  constructor(
    @Inject(LINK_CACHE) private readonly cache: LinkCache,
    private readonly logger: PinoLogger,
  ) {}

  async written(shard: number, code: string, entry: CacheEntry): Promise<void> {
    try {
      await this.cache.put(code, entry);
    } catch (error) {
      // Redis down: readers fall back to the primary, and the event fixes the cache later.
      cacheWriteFailures.inc();
      this.logger.warn({ err: error, code }, 'cache write after commit failed');
    }
    this.relay?.nudge(shard);
  }
}
