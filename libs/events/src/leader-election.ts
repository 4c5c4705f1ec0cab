import type { Consumer, Kafka } from 'kafkajs';
import { clusterCommandSchema, Topics, type ClusterCommand } from '@shortener/contracts';
import { SupervisedConsumer } from './supervised-consumer';

export const LEADER_GROUP = 'failover-monitor';

/**
 * Leadership as a Kafka group lease: every monitor joins one consumer group on the
 * single-partition `cluster.commands` topic, and the member that holds partition 0 leads
 * and receives the commands. A leader that dies stops heartbeating; after the session
 * timeout (4 s; the broker's group.min.session.timeout.ms must allow it) the coordinator
 * hands the partition to the other monitor. A leader that was
 * frozen also stops counting itself as one once its heartbeats are stale.
 */
export class LeaderElection {
  private supervisor: SupervisedConsumer | null = null;
  private assigned = false;
  private lastHeartbeat = 0;

  constructor(
    private readonly kafka: Kafka,
    private readonly onCommand: (command: ClusterCommand) => Promise<void>,
    private readonly onChange: (leader: boolean) => void = () => undefined,
    private readonly onError: (error: Error) => void = () => undefined,
    private readonly options = { sessionTimeoutMs: 4000, heartbeatIntervalMs: 500, staleAfterMs: 3000 },
  ) {}

  isLeader(now = Date.now()): boolean {
    return this.assigned && now - this.lastHeartbeat < this.options.staleAfterMs;
  }

  async start(): Promise<void> {
    this.supervisor ??= new SupervisedConsumer(
      this.kafka,
      () => ({
        groupId: LEADER_GROUP,
        sessionTimeout: this.options.sessionTimeoutMs,
        rebalanceTimeout: this.options.sessionTimeoutMs,
        heartbeatInterval: this.options.heartbeatIntervalMs,
        maxWaitTimeInMs: 1000,
        retry: { retries: 5, initialRetryTime: 300, maxRetryTime: 2000 },
      }),
      (consumer) => this.lead(consumer),
      (error) => {
        this.setAssigned(false);
        this.onError(error);
      },
    );
    await this.supervisor.run();
  }

  async stop(): Promise<void> {
    this.setAssigned(false);
    await this.supervisor?.stop();
  }

  private async lead(consumer: Consumer): Promise<void> {
    consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
      const partitions = payload.memberAssignment[Topics.clusterCommands] ?? [];
      this.lastHeartbeat = Date.now();
      this.setAssigned(partitions.includes(0));
    });
    consumer.on(consumer.events.HEARTBEAT, () => {
      this.lastHeartbeat = Date.now();
    });
    for (const event of [consumer.events.CRASH, consumer.events.DISCONNECT, consumer.events.STOP]) {
      consumer.on(event, () => this.setAssigned(false));
    }
    await consumer.subscribe({ topic: Topics.clusterCommands, fromBeginning: false });
    await consumer.run({
      eachMessage: async ({ message, heartbeat }) => {
        const parsed = clusterCommandSchema.safeParse(safeJson(message.value?.toString()));
        if (!parsed.success || !this.isLeader()) return;
        const beat = setInterval(() => void heartbeat().catch(() => undefined), 1000);
        try {
          await this.onCommand(parsed.data);
        } finally {
          clearInterval(beat);
        }
      },
    });
  }

  private setAssigned(assigned: boolean): void {
    if (assigned === this.assigned) return;
    this.assigned = assigned;
    this.onChange(assigned);
  }
}

function safeJson(text: string | undefined): unknown {
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return null;
  }
}
