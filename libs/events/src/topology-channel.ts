import type { Kafka, Producer } from 'kafkajs';
import { TOPOLOGY_KEY, Topics, type LeaderClaim, type OperationRecord } from '@shortener/contracts';
import { isNewer, parseTopology, type Topology } from '@shortener/topology';
import { withTimeout } from './event-producer';
import { readToEnd } from './read-to-end';
import { followTopicFromBeginning, type SupervisedConsumer } from './supervised-consumer';

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
    this.supervisor ??= followTopicFromBeginning(
      this.kafka,
      { topic: Topics.clusterTopology, groupPrefix: `topology-${this.service}` },
      (message) => {
        if (!message.value) return;
        try {
          const topology = parseTopology(JSON.parse(message.value.toString()));
          if (isNewer(topology, this.latest)) {
            this.latest = topology;
            this.onTopology(topology);
          }
        } catch (error) {
          this.onError(error as Error);
        }
      },
      this.onOffset,
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
 * same transactional id, and `start` initialises it at once, when leadership is gained:
 * Kafka then fences every older producer of that id (a deposed leader can commit
 * nothing more). Within that first transaction the new leader appends a claim to
 * `cluster.commands`; the offset Kafka gives it is the leader's term, unique and rising
 * with every new leader, and every document it publishes carries it so that followers
 * refuse one from an older term. `publish` never initialises anything: a monitor that is
 * not leading cannot fence the leader by publishing.
 */
/** How long one publish may take before the publisher gives its term up (it is below the producer's transactionTimeout). */
const TRANSACTION_TIMEOUT_MS = 8000;

export class TopologyPublisher {
  private producer: Producer | null = null;
  private heldTerm: number | null = null;
  private turns: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly kafka: Kafka,
    private readonly monitor: string,
    private readonly transactionalId = 'failover-monitor-topology',
  ) {}

  /** The leader term won by `start`, null before it or after `stop` or a fenced publish. */
  get term(): number | null {
    return this.heldTerm;
  }

  async start(): Promise<number> {
    await this.stop();
    const producer = this.kafka.producer({
      transactionalId: this.transactionalId,
      idempotent: true,
      maxInFlightRequests: 1,
      transactionTimeout: 10_000,
    });
    await withTimeout(producer.connect(), 10_000, 'kafka connect');
    try {
      const transaction = await withTimeout(producer.transaction(), 10_000, 'kafka init transactions');
      try {
        const claim: LeaderClaim = { type: 'leader-claim', version: 1, monitor: this.monitor, at: new Date().toISOString() };
        const [metadata] = await transaction.send({ topic: Topics.clusterCommands, acks: -1, messages: [{ value: JSON.stringify(claim) }] });
        await transaction.commit();
        // +1: documents written before terms existed carry term 0.
        this.heldTerm = Number(metadata.baseOffset) + 1;
      } catch (error) {
        await transaction.abort().catch(() => undefined);
        throw error;
      }
    } catch (error) {
      await producer.disconnect().catch(() => undefined);
      throw error;
    }
    this.producer = producer;
    return this.heldTerm;
  }

  async publish(topology: Topology): Promise<void> {
    await this.inTransaction({ topology });
  }

  /** A resharding operation's record on `cluster.operations` (key: its id), fenced like the topology. */
  async publishOperation(record: OperationRecord): Promise<void> {
    await this.inTransaction({ operation: record });
  }

  /**
   * A slot switch: the topology that gives the slots their new owner and the operation
   * record that says so commit together or not at all, so a leader that dies in between
   * leaves no topology its successor's record does not know about (nor the reverse).
   */
  async publishTopologyAndOperation(topology: Topology, record: OperationRecord): Promise<void> {
    await this.inTransaction({ topology, operation: record });
  }

  /**
   * A transactional producer runs one transaction at a time: the failover coordinator and
   * the resharding runner publish independently, so their transactions take turns here
   * (Kafka refuses a second one begun meanwhile, and the refusal stopped the publisher).
   */
  private inTransaction(records: { topology?: Topology; operation?: OperationRecord }): Promise<void> {
    // A transaction that never answers would hold every later one (failovers too): after
    // TRANSACTION_TIMEOUT_MS it counts as failed, and the publisher stops (a new term is needed).
    const turn = this.turns.then(async () => {
      let timedOut = false;
      const transaction = this.transact(records);
      try {
        await withTimeout(
          transaction.catch((error: Error) => {
            if (timedOut) return; // the caller has already been told
            throw error;
          }),
          TRANSACTION_TIMEOUT_MS,
          'topology transaction',
        );
      } catch (error) {
        timedOut = true;
        if ((error as Error).message.includes('timed out')) await this.stop();
        throw error;
      }
    });
    this.turns = turn.catch(() => undefined);
    return turn;
  }

  private async transact(records: { topology?: Topology; operation?: OperationRecord }): Promise<void> {
    const producer = this.producer;
    if (!producer || this.heldTerm === null) throw new Error('topology publisher not started: only a leader that won a term publishes');
    const { topology, operation } = records;
    if (topology && topology.term !== this.heldTerm) {
      throw new Error(`document of term ${topology.term} offered to the publisher of term ${this.heldTerm}`);
    }
    const transaction = await producer.transaction();
    try {
      if (topology) {
        await transaction.send({
          topic: Topics.clusterTopology,
          acks: -1,
          messages: [{ key: TOPOLOGY_KEY, value: JSON.stringify({ ...topology, version: 1, at: new Date().toISOString() }) }],
        });
      }
      if (operation) {
        await transaction.send({
          topic: Topics.clusterOperations,
          acks: -1,
          messages: [{ key: operation.document.id, value: JSON.stringify(operation) }],
        });
      }
      await transaction.commit();
    } catch (error) {
      await transaction.abort().catch(() => undefined);
      // A fenced producer is dead for good, and so is this term: the next lead starts afresh.
      await this.stop();
      throw error;
    }
  }

  async stop(): Promise<void> {
    const producer = this.producer;
    this.producer = null;
    this.heldTerm = null;
    await producer?.disconnect().catch(() => undefined);
  }
}

/** Reads the newest topology document once (for a monitor that takes the lead). */
export async function readLatestTopology(kafka: Kafka, timeoutMs = 8000): Promise<Topology | null> {
  let latest: Topology | null = null;
  await readToEnd(
    kafka,
    Topics.clusterTopology,
    (onOffset) =>
      new TopologyFollower(
        kafka,
        'once',
        (topology) => (latest = topology),
        () => undefined,
        onOffset,
      ),
    timeoutMs,
  );
  return latest;
}
