import { Topics, type ClusterCommand } from '@shortener/contracts';
import type { Kafka } from 'kafkajs';
import { LeaderElection } from './leader-election';

type Listener = (event: { payload: unknown }) => void;

/** A consumer whose group events the test emits, as the Kafka group coordinator would. */
class ScriptedConsumer {
  readonly events = { GROUP_JOIN: 'group_join', HEARTBEAT: 'heartbeat', CRASH: 'crash', DISCONNECT: 'disconnect', STOP: 'stop' };
  private readonly listeners = new Map<string, Listener[]>();
  eachMessage: ((args: { message: { value: Buffer | null }; heartbeat: () => Promise<void> }) => Promise<void>) | null = null;
  subscribed: string[] = [];
  connected = false;
  refuseConnect = false;

  on(event: string, listener: Listener): void {
    this.listeners.set(event, [...(this.listeners.get(event) ?? []), listener]);
  }

  emit(event: string, payload: unknown = {}): void {
    for (const listener of this.listeners.get(event) ?? []) listener({ payload });
  }

  async connect(): Promise<void> {
    if (this.refuseConnect) throw new Error('Connection error: connect ECONNREFUSED');
    this.connected = true;
  }

  async subscribe({ topic }: { topic: string }): Promise<void> {
    this.subscribed.push(topic);
  }

  async run({ eachMessage }: { eachMessage: ScriptedConsumer['eachMessage'] }): Promise<void> {
    this.eachMessage = eachMessage;
  }

  async disconnect(): Promise<void> {
    this.connected = false;
  }

  joinWith(partitions: number[]): void {
    this.emit(this.events.GROUP_JOIN, { memberAssignment: { [Topics.clusterCommands]: partitions } });
  }

  async deliver(value: unknown): Promise<void> {
    const text = typeof value === 'string' ? value : JSON.stringify(value);
    await this.eachMessage?.({ message: { value: Buffer.from(text) }, heartbeat: async () => undefined });
  }
}

const switchover: ClusterCommand = { type: 'switchover', version: 1, shard: 1, epoch: 4, requestId: 'r-1', at: '2030-01-01T00:00:00Z' };

describe('LeaderElection', () => {
  let consumer: ScriptedConsumer;
  let election: LeaderElection;
  let commands: ClusterCommand[];
  let changes: boolean[];
  let errors: string[];

  beforeEach(async () => {
    consumer = new ScriptedConsumer();
    commands = [];
    changes = [];
    errors = [];
    const kafka = { consumer: () => consumer } as unknown as Kafka;
    election = new LeaderElection(
      kafka,
      async (command) => void commands.push(command),
      (leader) => void changes.push(leader),
      (error) => void errors.push(error.message),
    );
  });

  afterEach(async () => {
    await election.stop();
  });

  it('leads while it holds partition 0 of the commands topic, and only then', async () => {
    await election.start();
    expect(consumer.subscribed).toEqual([Topics.clusterCommands]);
    expect(election.isLeader()).toBe(false);

    consumer.joinWith([]);
    expect(election.isLeader()).toBe(false);
    consumer.joinWith([0]);
    expect(election.isLeader()).toBe(true);
    // A rebalance that hands the partition to the other monitor ends the lead.
    consumer.joinWith([]);
    expect(election.isLeader()).toBe(false);
    expect(changes).toEqual([true, false]);
  });

  it('stops counting itself leader once its heartbeats are stale (a frozen leader), and again after one', async () => {
    await election.start();
    consumer.joinWith([0]);
    const now = Date.now();
    expect(election.isLeader(now + 2900)).toBe(true);
    expect(election.isLeader(now + 3100)).toBe(false);

    consumer.emit(consumer.events.HEARTBEAT);
    expect(election.isLeader(Date.now() + 2900)).toBe(true);
  });

  it.each(['CRASH', 'DISCONNECT', 'STOP'] as const)('gives up the lead when the consumer reports %s', async (event) => {
    await election.start();
    consumer.joinWith([0]);
    consumer.emit(consumer.events[event], { error: new Error('The coordinator is not aware of this member'), restart: true });
    expect(election.isLeader()).toBe(false);
    expect(changes).toEqual([true, false]);
  });

  it('hands commands on only while leading, and skips records that are not commands', async () => {
    await election.start();
    await consumer.deliver(switchover);
    expect(commands).toEqual([]);

    consumer.joinWith([0]);
    await consumer.deliver('not json');
    await consumer.deliver({ ...switchover, type: 'format-disk' });
    await consumer.deliver({ type: 'leader-claim', version: 1, monitor: 'm2', at: 'x' });
    await consumer.deliver(switchover);
    expect(commands).toEqual([switchover]);
  });

  it('reports a broker it cannot reach and does not lead', async () => {
    consumer.refuseConnect = true;
    await election.start();
    expect(errors).toEqual(['Connection error: connect ECONNREFUSED']);
    expect(election.isLeader()).toBe(false);
  });

  it('leaves the group when stopped', async () => {
    await election.start();
    consumer.joinWith([0]);
    await election.stop();
    expect(consumer.connected).toBe(false);
    expect(election.isLeader()).toBe(false);
    expect(changes).toEqual([true, false]);
  });
});
