import type { Kafka, Producer } from 'kafkajs';
import { randomUUID } from 'node:crypto';
import { TOPOLOGY_KEY, Topics } from '@shortener/contracts';
import { isNewer, parseTopology, type Topology } from '@shortener/topology';
import { withTimeout } from './event-producer';
import { SupervisedConsumer } from './supervised-consumer';

const FIRST_RECORD_TIMEOUT_MS = 15_000;

/**
 * Every service's view of the cluster: reads the compacted `cluster.topology` topic
 * from its beginning (a consumer group of its own, so every instance sees every
 * record) and hands on each document that moves the epoch forward.
 */
export class TopologyFollower {
  private supervisor: SupervisedConsumer | null = null;
  private watchdog: NodeJS.Timeout | null = null;
  private latest: Topology | null = null;

  constructor(
    private readonly kafka: Kafka,
    private readonly service: string,
    private readonly onTopology: (topology: Topology) => void,
    private readonly onError: (error: Error) => void = () => undefined,
    private readonly onOffset: (offset: number) => void = () => undefined,
  ) {}

  get current(): Topology | null {
    return this.latest;
  }

  async start(): Promise<void> {
    this.supervisor ??= new SupervisedConsumer(
      this.kafka,
      () => ({
        // A group of its own (every instance must see every record), made anew at each
        // restart so that a restarted follower reads the topic from its beginning again.
        groupId: `topology-${this.service}-${randomUUID()}`,
        sessionTimeout: 10_000,
        heartbeatInterval: 1000,
        maxWaitTimeInMs: 3000,
        retry: { retries: 5, initialRetryTime: 300, maxRetryTime: 3000 },
      }),
      async (consumer) => {
        await consumer.subscribe({ topic: Topics.clusterTopology, fromBeginning: true });
        await consumer.run({
          autoCommit: false,
          eachMessage: async ({ message }) => {
            if (!message.value) return this.onOffset(Number(message.offset));
            try {
              const topology = parseTopology(JSON.parse(message.value.toString()));
              if (isNewer(topology, this.latest)) {
                this.latest = topology;
                this.onTopology(topology);
              }
            } catch (error) {
              this.onError(error as Error);
            }
            this.onOffset(Number(message.offset));
          },
        });
      },
      this.onError,
    );
    await this.supervisor.run();
    this.watchdog ??= setInterval(() => void this.restartIfSilent(), FIRST_RECORD_TIMEOUT_MS);
    this.watchdog.unref();
  }

  async stop(): Promise<void> {
    if (this.watchdog) clearInterval(this.watchdog);
    this.watchdog = null;
    await this.supervisor?.stop();
  }

  /**
   * A consumer that joined while the broker was still loading its groups can sit silent
   * without an error; until a first document arrives, it is replaced periodically.
   */
  private async restartIfSilent(): Promise<void> {
    if (this.latest !== null || !this.supervisor) return;
    await this.supervisor.stop();
    await this.supervisor.run();
  }
}

/**
 * Publishes topology documents through a transactional producer. Every monitor uses the
 * same transactional id, so when a new leader initialises its producer Kafka fences the
 * old one: a monitor that lost its leadership cannot publish over a newer epoch.
 */
export class TopologyPublisher {
  private producer: Producer | null = null;

  constructor(
    private readonly kafka: Kafka,
    private readonly transactionalId = 'failover-monitor-topology',
  ) {}

  async start(): Promise<void> {
    const producer = this.kafka.producer({
      transactionalId: this.transactionalId,
      idempotent: true,
      maxInFlightRequests: 1,
      transactionTimeout: 10_000,
    });
    await withTimeout(producer.connect(), 10_000, 'kafka connect');
    this.producer = producer;
  }

  async publish(topology: Topology): Promise<void> {
    if (!this.producer) await this.start();
    const transaction = await this.producer!.transaction();
    try {
      await transaction.send({
        topic: Topics.clusterTopology,
        acks: -1,
        messages: [{ key: TOPOLOGY_KEY, value: JSON.stringify({ ...topology, version: 1, at: new Date().toISOString() }) }],
      });
      await transaction.commit();
    } catch (error) {
      await transaction.abort().catch(() => undefined);
      // A fenced producer is dead for good: drop it so the next leader term starts afresh.
      await this.stop();
      throw error;
    }
  }

  async stop(): Promise<void> {
    const producer = this.producer;
    this.producer = null;
    await producer?.disconnect().catch(() => undefined);
  }
}

/** Reads the newest topology document once (for a monitor that takes the lead). */
export async function readLatestTopology(kafka: Kafka, timeoutMs = 8000): Promise<Topology | null> {
  const admin = kafka.admin();
  let lastOffset: number;
  await withTimeout(admin.connect(), timeoutMs, 'kafka admin connect');
  try {
    const offsets = await admin.fetchTopicOffsets(Topics.clusterTopology);
    lastOffset = Math.max(-1, ...offsets.map((offset) => Number(offset.high) - 1));
  } finally {
    await admin.disconnect();
  }
  if (lastOffset < 0) return null;
  let latest: Topology | null = null;
  let reached: () => void;
  const caughtUp = new Promise<void>((resolve) => (reached = resolve));
  const follower = new TopologyFollower(
    kafka,
    'once',
    (topology) => (latest = topology),
    () => undefined,
    // Topology records are written in transactions: the last offset below the high
    // watermark is usually a commit marker, which consumers never see.
    (offset) => offset >= lastOffset - 1 && setTimeout(reached, 300),
  );
  try {
    await withTimeout(
      follower.start().then(() => caughtUp),
      timeoutMs,
      'reading cluster.topology',
    );
    return latest;
  } finally {
    await follower.stop();
  }
}
