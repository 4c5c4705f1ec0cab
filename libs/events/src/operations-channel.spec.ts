import { Topics, type OperationRecord } from '@shortener/contracts';
import { initialTopology, type Topology } from '@shortener/topology';
import type { Kafka } from 'kafkajs';
import { FakeTopicConsumer, kafkaOf } from './fake-topic-consumer.spec-helper';
import { OperationsFollower, readAllOperations } from './operations-channel';
import { TopologyPublisher } from './topology-channel';

const operation = (id: string, startedAt: string, extra: Partial<OperationRecord['document']> = {}, refused?: OperationRecord['refused']): OperationRecord => ({
  version: 1,
  document: {
    id,
    type: 'add-shard',
    shard: 4,
    state: 'running',
    phase: 'copy',
    slots: { total: 204, moved: 0 },
    rows: { copied: 0, verified: 0 },
    maxWritePauseMs: 0,
    startedAt,
    finishedAt: null,
    ...extra,
  },
  record: { private: 'resumable state' },
  ...(refused ? { refused } : {}),
  at: startedAt,
});

function followerOn(consumer: FakeTopicConsumer) {
  const { kafka, groups } = kafkaOf(consumer);
  const changes = { count: 0 };
  const errors: string[] = [];
  const follower = new OperationsFollower(
    kafka,
    'gateway',
    () => void changes.count++,
    (error) => void errors.push(error.message),
  );
  return { follower, groups, changes, errors };
}

describe('OperationsFollower', () => {
  it('reads cluster.operations from its beginning in a group of its own and keeps the newest record of each id', async () => {
    const consumer = new FakeTopicConsumer();
    const { follower, groups, changes, errors } = followerOn(consumer);
    await follower.start();
    expect(consumer.subscription).toEqual({ topic: Topics.clusterOperations, fromBeginning: true });
    expect(groups[0]).toMatch(/^operations-gateway-/);

    await consumer.deliver(0, 'a', operation('a', '2030-01-01T00:00:00.000Z'));
    await consumer.deliver(1, 'a', operation('a', '2030-01-01T00:00:00.000Z', { state: 'done', phase: 'done', finishedAt: '2030-01-01T00:05:00.000Z' }));
    await consumer.deliver(2, 'b', operation('b', '2030-01-02T00:00:00.000Z', { type: 'drain-shard', shard: 1 }));
    await consumer.deliver(3, 'r', operation('r', '2030-01-03T00:00:00.000Z', { state: 'failed' }, { reason: 'conflict', message: 'b runs', running: 'b' }));
    await consumer.deliver(4, 'x', 'not json');
    await consumer.deliver(5, 'y', { version: 1, document: { id: 'y' } });
    await consumer.deliver(6, 'z', operation('other', '2030-01-01T00:00:00.000Z')); // key and id disagree
    await follower.stop();

    expect(errors).toHaveLength(3);
    expect(changes.count).toBe(4);
    expect(follower.get('a')?.document.state).toBe('done');
    expect(follower.get('r')?.refused?.reason).toBe('conflict');
    expect(follower.get('x')).toBeUndefined();
    expect(follower.list().map((record) => record.document.id)).toEqual(['b', 'a']);
    expect(follower.all().map((record) => record.document.id)).toEqual(['r', 'b', 'a']);
    expect(follower.running()?.document.id).toBe('b');
  });

  it('never steps back when a restarted consumer reads the topic again, and forgets an id at its tombstone', async () => {
    const consumer = new FakeTopicConsumer();
    const { follower, changes } = followerOn(consumer);
    await follower.start();
    await consumer.deliver(0, 'a', operation('a', '2030-01-01T00:00:00.000Z'));
    await consumer.deliver(1, 'a', operation('a', '2030-01-01T00:00:00.000Z', { state: 'done' }));
    // The same records again, as a consumer restarted in a new group reads them.
    await consumer.deliver(0, 'a', operation('a', '2030-01-01T00:00:00.000Z'));
    expect(follower.get('a')?.document.state).toBe('done');
    expect(follower.running()).toBeUndefined();
    expect(changes.count).toBe(2);

    await consumer.deliver(2, 'a', null);
    expect(follower.get('a')).toBeUndefined();
    await consumer.deliver(3, 'gone', null); // a tombstone of an id never seen changes nothing
    expect(changes.count).toBe(3);
    await follower.stop();
  });

  it('waitFor answers at once for a known id, when the record arrives, or null at the deadline', async () => {
    const consumer = new FakeTopicConsumer();
    const { follower } = followerOn(consumer);
    await follower.start();
    await consumer.deliver(0, 'a', operation('a', '2030-01-01T00:00:00.000Z'));
    await expect(follower.waitFor('a', 10)).resolves.toMatchObject({ document: { id: 'a' } });

    const waiting = follower.waitFor('b', 5000);
    const alsoWaiting = follower.waitFor('b', 5000);
    await consumer.deliver(1, 'b', operation('b', '2030-01-02T00:00:00.000Z'));
    await expect(waiting).resolves.toMatchObject({ document: { id: 'b' } });
    await expect(alsoWaiting).resolves.toMatchObject({ document: { id: 'b' } });

    const started = Date.now();
    await expect(follower.waitFor('never', 50)).resolves.toBeNull();
    expect(Date.now() - started).toBeGreaterThanOrEqual(45);
    await follower.stop();
  });
});

describe('readAllOperations', () => {
  function kafkaWith(high: string, records: { offset: number; key: string; value: OperationRecord }[]) {
    const consumer = new FakeTopicConsumer();
    const kafka = {
      admin: () => ({
        connect: async () => undefined,
        disconnect: async () => undefined,
        fetchTopicOffsets: async () => [{ partition: 0, offset: high, high, low: '0' }],
      }),
      consumer: () => consumer,
    } as unknown as Kafka;
    // The consumer delivers once it is running, as Kafka would after the subscription.
    const run = consumer.run.bind(consumer);
    consumer.run = async (options) => {
      await run(options);
      setImmediate(
        () =>
          void (async () => {
            for (const record of records) await consumer.deliver(record.offset, record.key, record.value);
          })(),
      );
    };
    return kafka;
  }

  it('reads to the end of the topic, the last offset being a transaction marker', async () => {
    const kafka = kafkaWith('4', [
      { offset: 0, key: 'a', value: operation('a', '2030-01-01T00:00:00.000Z') },
      { offset: 2, key: 'a', value: operation('a', '2030-01-01T00:00:00.000Z', { state: 'done' }) },
    ]);
    const records = await readAllOperations(kafka, 3000);
    expect(records.map((record) => [record.document.id, record.document.state])).toEqual([['a', 'done']]);
  });

  it('answers none for an empty topic without consuming', async () => {
    const kafka = kafkaWith('0', []);
    await expect(readAllOperations(kafka, 1000)).resolves.toEqual([]);
  });
});

/** A transactional producer as Kafka runs it: only the newest initialised producer of an id may commit. */
class TransactionalBroker {
  private generation = 0;
  commandsOffset = 41;
  committed: { topic: string; key?: string; value: string }[][] = [];

  producer() {
    let mine = 0;
    return {
      connect: async () => undefined,
      disconnect: async () => undefined,
      transaction: async () => {
        if (mine === 0) mine = ++this.generation;
        const staged: { topic: string; key?: string; value: string }[] = [];
        return {
          send: async ({ topic, messages }: { topic: string; messages: { key?: string; value: string }[] }) => {
            for (const message of messages) staged.push({ topic, key: message.key, value: message.value });
            return [{ baseOffset: String(topic === Topics.clusterCommands ? this.commandsOffset++ : 0) }];
          },
          commit: async () => {
            if (mine !== this.generation) throw new Error('The producer has been fenced by a newer instance');
            this.committed.push(staged);
          },
          abort: async () => undefined,
        };
      },
    };
  }
}

describe('TopologyPublisher, operation records', () => {
  const shards = [0, 1].map((id) => ({ id, nodes: [{ name: `s${id}n0`, host: '127.0.0.1', port: 16400 + id * 8 }] }));
  const topologyOf = (epoch: number, term: number): Topology => ({ ...initialTopology(shards, 'quorum'), epoch, term });

  it('publishes an operation alone, or with the topology in one transaction, and is fenced like publish', async () => {
    const broker = new TransactionalBroker();
    const kafka = { producer: () => broker.producer() } as unknown as Kafka;
    const old = new TopologyPublisher(kafka, 'monitor-a');
    await expect(old.publishOperation(operation('a', '2030-01-01T00:00:00.000Z'))).rejects.toThrow('not started');
    const term = await old.start();

    await old.publishOperation(operation('a', '2030-01-01T00:00:00.000Z'));
    await expect(old.publishTopologyAndOperation(topologyOf(2, term + 5), operation('a', '2030-01-01T00:00:00.000Z'))).rejects.toThrow(`term ${term + 5}`);
    await old.publishTopologyAndOperation(topologyOf(2, term), operation('a', '2030-01-01T00:00:00.000Z', { phase: 'await-epoch' }));

    const [claim, alone, together] = broker.committed;
    expect(claim.map((record) => record.topic)).toEqual([Topics.clusterCommands]);
    expect(alone).toEqual([{ topic: Topics.clusterOperations, key: 'a', value: expect.any(String) }]);
    expect(together.map((record) => [record.topic, record.key])).toEqual([
      [Topics.clusterTopology, 'topology'],
      [Topics.clusterOperations, 'a'],
    ]);
    expect(JSON.parse(together[1].value)).toMatchObject({ version: 1, document: { id: 'a', phase: 'await-epoch' }, record: { private: 'resumable state' } });

    await new TopologyPublisher(kafka, 'monitor-b').start();
    await expect(old.publishTopologyAndOperation(topologyOf(3, term), operation('a', '2030-01-01T00:00:00.000Z'))).rejects.toThrow('fenced');
    expect(old.term).toBeNull();
    expect(broker.committed).toHaveLength(4);
  });
});
