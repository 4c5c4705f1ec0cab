import type { Consumer, ConsumerConfig, Kafka, KafkaMessage } from 'kafkajs';
import { randomUUID } from 'node:crypto';

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

/**
 * A supervised consumer of every record of a compacted cluster topic, from its beginning,
 * in a consumer group of its own (every instance must see every record), made anew at each
 * restart so that a restarted follower reads the topic from its beginning again.
 * `onOffset` gets each record's offset and each batch's last one: records are written in
 * transactions, so a topic may end in commit or abort markers, or in the records of a
 * transaction a dead leader never finished, which no message shows; a batch's last offset
 * counts them, so a reader to the end (readToEnd) knows when it got there.
 */
export function followTopicFromBeginning(
  kafka: Kafka,
  { topic, groupPrefix }: { topic: string; groupPrefix: string },
  onMessage: (message: KafkaMessage) => void,
  onOffset: (offset: number) => void,
  onError: (error: Error) => void,
): SupervisedConsumer {
  return new SupervisedConsumer(
    kafka,
    () => ({
      groupId: `${groupPrefix}-${randomUUID()}`,
      sessionTimeout: 10_000,
      heartbeatInterval: 1000,
      maxWaitTimeInMs: 3000,
      retry: { retries: 5, initialRetryTime: 300, maxRetryTime: 3000 },
    }),
    async (consumer) => {
      await consumer.subscribe({ topic, fromBeginning: true });
      consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => onOffset(Number(payload.lastOffset)));
      await consumer.run({
        autoCommit: false,
        eachMessage: async ({ message }) => {
          onMessage(message);
          onOffset(Number(message.offset));
        },
      });
    },
    onError,
  );
}
