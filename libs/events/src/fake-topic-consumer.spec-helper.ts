import type { Kafka } from 'kafkajs';

type EachMessage = (args: { message: { offset: string; key: Buffer | null; value: Buffer | null } }) => Promise<void>;

/** A kafkajs consumer stand-in for the followers' specs: records are handed in with `deliver`. */
export class FakeTopicConsumer {
  readonly events = { CRASH: 'crash', END_BATCH_PROCESS: 'end-batch' };
  eachMessage: EachMessage | null = null;
  subscription: { topic: string; fromBeginning: boolean } | null = null;
  on = (): void => undefined;
  connect = async (): Promise<void> => undefined;
  disconnect = async (): Promise<void> => undefined;
  async subscribe(subscription: { topic: string; fromBeginning: boolean }): Promise<void> {
    this.subscription = subscription;
  }
  async run({ eachMessage }: { eachMessage: EachMessage }): Promise<void> {
    this.eachMessage = eachMessage;
  }
  /** A record at `offset`; `value` null is a compaction tombstone, a string is sent as it is, anything else as JSON. */
  async deliver(offset: number, key: string | null, value: unknown): Promise<void> {
    const buffer = value === null ? null : Buffer.from(typeof value === 'string' ? value : JSON.stringify(value));
    await this.eachMessage?.({ message: { offset: String(offset), key: key === null ? null : Buffer.from(key), value: buffer } });
  }
}

/** A Kafka whose every consumer is `consumer`; `groups` lists the group ids asked for. */
export function kafkaOf(consumer: FakeTopicConsumer): { kafka: Kafka; groups: string[] } {
  const groups: string[] = [];
  const kafka = { consumer: (config: { groupId: string }) => (groups.push(config.groupId), consumer) } as unknown as Kafka;
  return { kafka, groups };
}
