import { Topics } from '@shortener/contracts';
import { initialTopology, type Topology } from '@shortener/topology';
import type { Kafka } from 'kafkajs';
import { FakeTopicConsumer, kafkaOf } from './fake-topic-consumer.spec-helper';
import { TopologyFollower, TopologyPublisher } from './topology-channel';

const shards = [0, 1].map((id) => ({
  id,
  nodes: [0, 1].map((index) => ({ name: `s${id}n${index}`, host: '127.0.0.1', port: 16400 + id * 8 + index })),
}));
const first: Topology = { ...initialTopology(shards, 'quorum'), term: 3 };
const at = (epoch: number, term = first.term): Topology => ({ ...first, epoch, term });

describe('TopologyFollower', () => {
  it('reads the topic from its beginning and hands on each document that moves the epoch forward, in a group of its own', async () => {
    const consumer = new FakeTopicConsumer();
    const { kafka, groups } = kafkaOf(consumer);
    const seen: number[] = [];
    const errors: string[] = [];
    const offsets: number[] = [];
    const follower = new TopologyFollower(
      kafka,
      'reader',
      (topology) => void seen.push(topology.epoch),
      (error) => void errors.push(error.message),
      (offset) => void offsets.push(offset),
    );
    await follower.start();
    expect(consumer.subscription).toEqual({ topic: Topics.clusterTopology, fromBeginning: true });

    await consumer.deliver(0, null, at(1));
    await consumer.deliver(1, null, at(3));
    await consumer.deliver(2, null, at(2)); // late, older epoch
    await consumer.deliver(3, null, { ...at(9), term: 1 }); // a deposed leader's document
    await consumer.deliver(4, null, 'not json');
    await consumer.deliver(5, null, { ...at(10), ring: { slots: [] } });
    await consumer.deliver(6, null, null); // a compaction tombstone
    await consumer.deliver(7, null, at(4));
    await follower.stop();

    expect(seen).toEqual([1, 3, 4]);
    expect(follower.current?.epoch).toBe(4);
    expect(errors).toHaveLength(2);
    expect(offsets).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);

    const other = new TopologyFollower(kafka, 'reader', () => undefined);
    await other.start();
    await other.stop();
    expect(groups[0]).toMatch(/^topology-reader-/);
    expect(groups[1]).not.toBe(groups[0]);
  });
});

/** A transactional producer as Kafka runs it: only the newest initialised producer of an id may commit. */
class TransactionalBroker {
  private generation = 0;
  commandsOffset = 41;
  committed: { topic: string; value: string }[] = [];

  producer() {
    let mine = 0;
    return {
      connect: async () => undefined,
      disconnect: async () => undefined,
      transaction: async () => {
        // Initialising transactions under the shared id fences every older producer of it.
        if (mine === 0) mine = ++this.generation;
        const staged: { topic: string; value: string }[] = [];
        return {
          send: async ({ topic, messages }: { topic: string; messages: { value: string }[] }) => {
            for (const message of messages) staged.push({ topic, value: message.value });
            return [{ baseOffset: String(topic === Topics.clusterCommands ? this.commandsOffset++ : 0) }];
          },
          commit: async () => {
            if (mine !== this.generation) throw new Error('The producer has been fenced by a newer instance');
            this.committed.push(...staged);
          },
          abort: async () => undefined,
        };
      },
    };
  }
}

describe('TopologyPublisher', () => {
  it('wins a term by claiming it, publishes only documents of that term, and is fenced by the next leader', async () => {
    const broker = new TransactionalBroker();
    const kafka = { producer: () => broker.producer() } as unknown as Kafka;
    const old = new TopologyPublisher(kafka, 'monitor-a');
    const next = new TopologyPublisher(kafka, 'monitor-b');

    await expect(old.publish(at(2, 42))).rejects.toThrow('not started');
    const term = await old.start();
    expect(term).toBe(42);
    await expect(old.publish(at(2, 7))).rejects.toThrow('term 7');
    await old.publish(at(2, term));

    const nextTerm = await next.start();
    expect(nextTerm).toBe(43);
    await expect(old.publish(at(3, term))).rejects.toThrow('fenced');
    expect(old.term).toBeNull();
    await next.publish(at(3, nextTerm));

    const documents = broker.committed.filter((record) => record.topic === Topics.clusterTopology).map((record) => JSON.parse(record.value));
    expect(documents.map((document) => [document.epoch, document.term])).toEqual([
      [2, 42],
      [3, 43],
    ]);
    const claims = broker.committed.filter((record) => record.topic === Topics.clusterCommands).map((record) => JSON.parse(record.value).monitor);
    expect(claims).toEqual(['monitor-a', 'monitor-b']);
  });
});
