import type { Kafka } from 'kafkajs';
import { operationRecordSchema, Topics, type OperationRecord } from '@shortener/contracts';
import { readToEnd } from './read-to-end';
import { followTopicFromBeginning, type SupervisedConsumer } from './supervised-consumer';

const startedAtOf = (record: OperationRecord): number => Date.parse(record.document.startedAt) || 0;
const newestFirst = (a: OperationRecord, b: OperationRecord): number => startedAtOf(b) - startedAtOf(a);

/**
 * The resharding operations as the leading monitor publishes them on the compacted
 * `cluster.operations` topic (key: the operation id): read from the topic's beginning in
 * a consumer group of its own (every instance sees every record), the newest record of
 * each id kept. Unlike the topology there is no restart-if-silent watchdog: the topic is
 * empty until the first operation, so silence is no sign of a stuck consumer.
 */
export class OperationsFollower {
  private supervisor: SupervisedConsumer | null = null;
  /** The offset of the newest record applied per id: a restarted consumer reads the topic again and must not step back. */
  private readonly offsets = new Map<string, number>();
  private readonly records = new Map<string, OperationRecord>();
  private readonly waiters = new Map<string, Set<(record: OperationRecord) => void>>();

  constructor(
    private readonly kafka: Kafka,
    private readonly service: string,
    private readonly onChange: () => void,
    private readonly onError: (error: Error) => void = () => undefined,
    private readonly onOffset: (offset: number) => void = () => undefined,
  ) {}

  async start(): Promise<void> {
    this.supervisor ??= followTopicFromBeginning(
      this.kafka,
      { topic: Topics.clusterOperations, groupPrefix: `operations-${this.service}` },
      (message) => this.apply(message.key?.toString() ?? null, message.value, Number(message.offset)),
      this.onOffset,
      this.onError,
    );
    await this.supervisor.run();
  }

  async stop(): Promise<void> {
    await this.supervisor?.stop();
  }

  get(id: string): OperationRecord | undefined {
    return this.records.get(id);
  }

  /** Every operation the monitor accepted, newest `startedAt` first (refused requests are not operations). */
  list(): OperationRecord[] {
    return this.all().filter((record) => !record.refused);
  }

  /** Every record, refused requests included, newest `startedAt` first. */
  all(): OperationRecord[] {
    return [...this.records.values()].sort(newestFirst);
  }

  /** The operation that runs now, if any (the monitor runs one at a time). */
  running(): OperationRecord | undefined {
    return this.list().find((record) => record.document.state === 'running');
  }

  /** The record of `id` once there is one (at once if there is), or null after `timeoutMs`. */
  waitFor(id: string, timeoutMs: number): Promise<OperationRecord | null> {
    const known = this.records.get(id);
    if (known) return Promise.resolve(known);
    return new Promise((resolve) => {
      const waiting = this.waiters.get(id) ?? new Set();
      this.waiters.set(id, waiting);
      const done = (record: OperationRecord | null): void => {
        clearTimeout(timer);
        waiting.delete(arrived);
        if (waiting.size === 0 && this.waiters.get(id) === waiting) this.waiters.delete(id);
        resolve(record);
      };
      const arrived = (record: OperationRecord): void => done(record);
      const timer = setTimeout(() => done(null), timeoutMs);
      timer.unref();
      waiting.add(arrived);
    });
  }

  private apply(key: string | null, value: Buffer | null, offset: number): void {
    let record: OperationRecord | null = null;
    let id = key;
    if (value) {
      try {
        record = operationRecordSchema.parse(JSON.parse(value.toString()));
      } catch (error) {
        this.onError(error as Error);
        return;
      }
      // The key is the id; a record without one is still usable by the id it carries.
      id = key ?? record.document.id;
      if (id !== record.document.id) {
        this.onError(new Error(`operation record ${record.document.id} under the key ${key}`));
        return;
      }
    }
    if (id === null) return;
    if ((this.offsets.get(id) ?? -1) >= offset) return;
    this.offsets.set(id, offset);
    if (record) this.records.set(id, record);
    // A compaction tombstone: the operation is forgotten.
    else if (!this.records.delete(id)) return;
    if (record) for (const waiter of [...(this.waiters.get(id) ?? [])]) waiter(record);
    this.onChange();
  }
}

/**
 * Reads every operation record once, to the end of the topic (for a monitor that takes
 * the lead and must resume or roll back what its predecessor left running). Refused
 * requests are included; newest `startedAt` first.
 */
export async function readAllOperations(kafka: Kafka, timeoutMs = 8000): Promise<OperationRecord[]> {
  let follower: OperationsFollower | null = null;
  const read = await readToEnd(
    kafka,
    Topics.clusterOperations,
    (onOffset) =>
      (follower = new OperationsFollower(
        kafka,
        'once',
        () => undefined,
        () => undefined,
        onOffset,
      )),
    timeoutMs,
  );
  return read && follower ? (follower as OperationsFollower).all() : [];
}
