import { OutboxRepository, type OutboxRecord, type ShardPools } from '@shortener/db';
import type { Pool, PoolClient } from 'pg';
import type { EventProducer, KeyedEvent } from './event-producer';
import { OutboxRelay } from './outbox-relay';

/** One shard's outbox table: removals a transaction makes count only once it commits. */
class InMemoryShard {
  rows: OutboxRecord[] = [];
  lockHolder: InMemoryTransaction | null = null;
  /** Another writer's relay holds the shard's advisory lock. */
  lockedElsewhere = false;
  unreachable = false;
  private nextId = 1;

  readonly pool = {
    connect: async () => {
      if (this.unreachable) throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
      return new InMemoryTransaction(this) as unknown as PoolClient;
    },
  } as unknown as Pool;

  add(count: number): void {
    for (let i = 0; i < count; i++) {
      const id = String(this.nextId++);
      this.rows.push({ id, topic: 'url.events', key: `code${id}`, payload: `{"n":${id}}` });
    }
  }
}

class InMemoryTransaction {
  staged = new Set<string>();

  constructor(readonly shard: InMemoryShard) {}

  async query(text: string): Promise<void> {
    if (text === 'COMMIT') this.shard.rows = this.shard.rows.filter((row) => !this.staged.has(row.id));
    if (text === 'COMMIT' || text === 'ROLLBACK') {
      this.staged.clear();
      if (this.shard.lockHolder === this) this.shard.lockHolder = null;
    }
  }

  on = (): void => undefined;
  off = (): void => undefined;
  release = (): void => undefined;
}

class InMemoryOutbox extends OutboxRepository {
  override async tryLockRelay(client: PoolClient): Promise<boolean> {
    const transaction = client as unknown as InMemoryTransaction;
    const { shard } = transaction;
    if (shard.lockedElsewhere || (shard.lockHolder && shard.lockHolder !== transaction)) return false;
    shard.lockHolder = transaction;
    return true;
  }

  override async oldest(client: PoolClient, limit: number): Promise<OutboxRecord[]> {
    const transaction = client as unknown as InMemoryTransaction;
    return transaction.shard.rows.filter((row) => !transaction.staged.has(row.id)).slice(0, limit);
  }

  override async remove(client: PoolClient, ids: string[]): Promise<void> {
    for (const id of ids) (client as unknown as InMemoryTransaction).staged.add(id);
  }
}

class RecordingProducer {
  sends: KeyedEvent[][] = [];
  refusing = false;
  onSend: () => Promise<void> = async () => undefined;

  async send(events: KeyedEvent[]): Promise<void> {
    await this.onSend();
    if (this.refusing) throw new Error('kafka send timed out');
    this.sends.push(events);
  }

  get sent(): string[] {
    return this.sends.flat().map((event) => event.key);
  }
}

function clusterOf(shards: InMemoryShard[]): ShardPools {
  return {
    primary: (shard: number) => shards[shard].pool,
    topology: { shards: shards.map((_, id) => ({ id })) },
  } as unknown as ShardPools;
}

async function until(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not reached');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe('OutboxRelay', () => {
  let relay: OutboxRelay | null = null;
  afterEach(async () => {
    await relay?.stop();
    relay = null;
  });

  function relayOver(shards: InMemoryShard[], producer: RecordingProducer, options = {}, onError = (_shard: number, _error: Error) => undefined) {
    relay = new OutboxRelay(
      clusterOf(shards),
      producer as unknown as EventProducer,
      new InMemoryOutbox(),
      { intervalMs: 3_600_000, batchSize: 500, nudgeDelayMs: 5, ...options },
      onError,
    );
    return relay;
  }

  it('sends a backlog oldest first in batches, and deletes each batch only after Kafka took it', async () => {
    const shard = new InMemoryShard();
    shard.add(1203);
    const producer = new RecordingProducer();
    const relayed = await relayOver([shard], producer).relayShard(0);

    expect(relayed).toBe(1203);
    expect(producer.sends.map((batch) => batch.length)).toEqual([500, 500, 203]);
    expect(producer.sent).toEqual(Array.from({ length: 1203 }, (_, i) => `code${i + 1}`));
    expect(shard.rows).toHaveLength(0);
  });

  it('keeps every row while Kafka refuses them, and sends them once it is back', async () => {
    const shard = new InMemoryShard();
    shard.add(3);
    const producer = new RecordingProducer();
    producer.refusing = true;
    const outbox = relayOver([shard], producer);

    await expect(outbox.relayShard(0)).rejects.toThrow('kafka send timed out');
    expect(shard.rows).toHaveLength(3);
    expect(shard.lockHolder).toBeNull();

    producer.refusing = false;
    await outbox.relayShard(0);
    expect(producer.sent).toEqual(['code1', 'code2', 'code3']);
    expect(shard.rows).toHaveLength(0);
  });

  it('leaves a shard alone while another relay holds its lock, so events keep their commit order', async () => {
    const shard = new InMemoryShard();
    shard.add(2);
    shard.lockedElsewhere = true;
    const producer = new RecordingProducer();

    expect(await relayOver([shard], producer).relayShard(0)).toBe(0);
    expect(producer.sends).toHaveLength(0);
    expect(shard.rows).toHaveLength(2);
  });

  it('relays again a shard nudged while its relay was running, so that no write waits for the next tick', async () => {
    const shard = new InMemoryShard();
    shard.add(1);
    const producer = new RecordingProducer();
    const outbox = relayOver([shard], producer);
    outbox.start();
    let concurrent: number | null = null;
    producer.onSend = async () => {
      if (concurrent !== null) return;
      // A write lands while the first batch is on its way to Kafka.
      shard.add(1);
      concurrent = await outbox.relayShard(0);
    };

    await outbox.relayShard(0);
    expect(concurrent).toBe(0);
    await until(() => shard.rows.length === 0);
    expect(producer.sent).toEqual(['code1', 'code2']);
  });

  it('relays every shard at each tick and reports the one that fails, without holding up the others', async () => {
    const healthy = new InMemoryShard();
    const dead = new InMemoryShard();
    healthy.add(4);
    dead.add(1);
    dead.unreachable = true;
    const producer = new RecordingProducer();
    const errors: [number, string][] = [];
    relayOver([healthy, dead], producer, { intervalMs: 5 }, (shard, error) => void errors.push([shard, error.message])).start();

    await until(() => healthy.rows.length === 0 && errors.length > 0);
    expect(errors[0]).toEqual([1, 'connect ECONNREFUSED']);
    expect(dead.rows).toHaveLength(1);
    expect(producer.sent).toEqual(['code1', 'code2', 'code3', 'code4']);
  });

  it('coalesces the nudges of a busy moment into one transaction and one send', async () => {
    const shard = new InMemoryShard();
    const producer = new RecordingProducer();
    const outbox = relayOver([shard], producer, { nudgeDelayMs: 30 });
    outbox.start();
    for (let i = 0; i < 5; i++) {
      shard.add(1);
      outbox.nudge(0);
    }

    await until(() => shard.rows.length === 0);
    expect(producer.sends).toHaveLength(1);
    expect(producer.sends[0]).toHaveLength(5);
  });
});
