import type { Consumer, ConsumerConfig, Kafka } from 'kafkajs';

/**
 * A consumer that keeps itself alive: when it cannot start (Kafka down, topic missing)
 * or crashes with an error kafkajs will not retry, it disconnects and starts again after
 * a pause, for as long as it is not stopped. `run` never rejects.
 */
export class SupervisedConsumer {
  private consumer: Consumer | null = null;
  private stopped = true;
  private retryTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly kafka: Kafka,
    private readonly config: () => ConsumerConfig,
    private readonly setUp: (consumer: Consumer) => Promise<void>,
    private readonly onError: (error: Error) => void,
    private readonly retryMs = 2000,
  ) {}

  get current(): Consumer | null {
    return this.consumer;
  }

  async run(): Promise<void> {
    this.stopped = false;
    const consumer = this.kafka.consumer(this.config());
    this.consumer = consumer;
    consumer.on(consumer.events.CRASH, ({ payload }) => {
      this.onError(payload.error);
      if (!payload.restart) this.restartLater(consumer);
    });
    try {
      await consumer.connect();
      await this.setUp(consumer);
    } catch (error) {
      this.onError(error as Error);
      this.restartLater(consumer);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const consumer = this.consumer;
    this.consumer = null;
    await consumer?.disconnect().catch(() => undefined);
  }

  private restartLater(crashed: Consumer): void {
    if (this.stopped || this.consumer !== crashed) return;
    this.consumer = null;
    void crashed.disconnect().catch(() => undefined);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (!this.stopped) void this.run();
    }, this.retryMs);
    this.retryTimer.unref();
  }
}
