import type { Kafka, Message, Producer } from 'kafkajs';

export interface KeyedEvent {
  topic: string;
  key: string;
  value: string;
}

/**
 * An idempotent producer (acks from all in-sync replicas) that connects in the
 * background and reconnects after a broker outage: callers see a failed send, never a
 * hang, and retry on their own schedule (the outbox, the click batcher).
 */
export class EventProducer {
  private producer: Producer | null = null;
  private connecting: Promise<Producer> | null = null;

  constructor(
    private readonly kafka: Kafka,
    private readonly sendTimeoutMs = 5000,
  ) {}

  /**
   * Sends the events; rejects after `sendTimeoutMs` at the latest. The producer may still
   * deliver events whose send timed out (it retries on its own): a caller that must not
   * deliver them twice by another way passes `settle`, and the promise then settles only
   * when the producer itself gave up or succeeded (its retry policy bounds that wait).
   */
  async send(events: KeyedEvent[], options: { settle?: boolean } = {}): Promise<void> {
    if (events.length === 0) return;
    const producer = await this.connected();
    const byTopic = new Map<string, Message[]>();
    for (const event of events) {
      const messages = byTopic.get(event.topic) ?? [];
      messages.push({ key: event.key, value: event.value } satisfies Message);
      byTopic.set(event.topic, messages);
    }
    const sent = producer.sendBatch({
      acks: -1,
      topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })),
    });
    await (options.settle ? sent : withTimeout(sent, this.sendTimeoutMs, 'kafka send'));
  }

  async stop(): Promise<void> {
    const producer = this.producer;
    this.producer = null;
    await producer?.disconnect().catch(() => undefined);
  }

  private async connected(): Promise<Producer> {
    if (this.producer) return this.producer;
    if (!this.connecting) {
      const producer = this.kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
      producer.on(producer.events.DISCONNECT, () => {
        if (this.producer === producer) this.producer = null;
      });
      this.connecting = withTimeout(producer.connect(), this.sendTimeoutMs, 'kafka connect')
        .then(() => {
          this.producer = producer;
          return producer;
        })
        .catch(async (error) => {
          await producer.disconnect().catch(() => undefined);
          throw error;
        })
        .finally(() => {
          this.connecting = null;
        });
    }
    return this.connecting;
  }
}

export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
    }),
  ]);
}
