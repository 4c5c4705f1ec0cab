import { Topics, type ClickEvent } from '@shortener/contracts';
import type { EventProducer } from './event-producer';

/**
 * Counts redirects in memory and sends one event per code per flush, so the redirect
 * path only increments a map entry. While Kafka is away the counts keep accumulating
 * (bounded by the number of distinct codes) and go out with the next successful flush.
 */
export class ClickBatcher {
  private pending = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> | null = null;

  constructor(
    private readonly producer: EventProducer,
    private readonly flushIntervalMs = 500,
    private readonly maxDistinctCodes = 100_000,
    private readonly onError: (error: Error) => void = () => undefined,
  ) {}

  record(code: string): void {
    const count = this.pending.get(code);
    if (count !== undefined) this.pending.set(code, count + 1);
    else if (this.pending.size < this.maxDistinctCodes) this.pending.set(code, 1);
  }

  start(): void {
    this.timer ??= setInterval(() => void this.flush(), this.flushIntervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.flush();
  }

  get pendingCodes(): number {
    return this.pending.size;
  }

  flush(): Promise<void> {
    if (this.flushing || this.pending.size === 0) return this.flushing ?? Promise.resolve();
    const batch = this.pending;
    this.pending = new Map();
    const at = new Date().toISOString();
    const events = [...batch].map(([code, count]) => ({
      topic: Topics.urlClicks,
      key: code,
      value: JSON.stringify({ type: 'url.clicked', version: 1, code, count, at } satisfies ClickEvent),
    }));
    this.flushing = this.producer
      .send(events)
      .catch((error: Error) => {
        for (const [code, count] of batch) this.pending.set(code, (this.pending.get(code) ?? 0) + count);
        this.onError(error);
      })
      .finally(() => {
        this.flushing = null;
      });
    return this.flushing;
  }
}
