import { Inject, Injectable, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import type { LinkCache } from '@shortener/cache';
import { ClickCounter, OutboxRelay, type ClusterView, type EventProducer } from '@shortener/events';
import type { WriterEnvironment } from '@shortener/config';
import { ClickRepository, IdempotencyRepository, OutboxRepository } from '@shortener/db';
import { gauge, ReadinessRegistry } from '@shortener/observability';
import type { Kafka } from '@shortener/events';
import { PinoLogger } from 'nestjs-pino';
import { CacheAfterWrite } from './cache-after-write';
import { CLUSTER_VIEW, EVENT_PRODUCER, KAFKA, LINK_CACHE, WRITER_CONFIG } from './writer.constants';

const epochGauge = gauge('shortener_topology_epoch', 'Epoch of the topology this service follows');
const outboxRelayed = gauge('shortener_outbox_relayed', 'Outbox events relayed to Kafka since start');
const clicksApplied = gauge('shortener_clicks_applied', 'Clicks applied to primaries since start');
const outboxPending = gauge('shortener_outbox_pending', 'Outbox events on the shard primary not yet relayed to Kafka (the backlog)', ['shard']);
export const OUTBOX_PENDING_INTERVAL_MS = 5000;

/** Starts and stops the writer's background work with the application. */
@Injectable()
export class WriterLifecycle implements OnApplicationBootstrap, OnApplicationShutdown {
  private relay: OutboxRelay | null = null;
  private clicks: ClickCounter | null = null;
  private purgeTimer: NodeJS.Timeout | null = null;
  private pendingTimer: NodeJS.Timeout | null = null;

  constructor(
    @Inject(WRITER_CONFIG) private readonly config: WriterEnvironment,
    @Inject(CLUSTER_VIEW) private readonly cluster: ClusterView,
    @Inject(KAFKA) private readonly kafka: Kafka,
    @Inject(EVENT_PRODUCER) private readonly producer: EventProducer,
    @Inject(LINK_CACHE) private readonly cache: LinkCache,
    private readonly cacheAfterWrite: CacheAfterWrite,
    private readonly readiness: ReadinessRegistry,
    private readonly logger: PinoLogger,
    private readonly outbox: OutboxRepository,
    private readonly idempotency: IdempotencyRepository,
    private readonly clickRows: ClickRepository,
  ) {
    logger.setContext('writer');
  }

  onApplicationBootstrap(): void {
    this.cluster.start();
    this.relay = new OutboxRelay(this.cluster.pools, this.producer, this.outbox, { intervalMs: 1000, batchSize: 500, nudgeDelayMs: 100 }, (shard, error) =>
      this.logger.debug({ shard, err: error.message }, 'outbox relay waiting'),
    );
    this.relay.start();
    this.cacheAfterWrite.relay = this.relay;
    this.clicks = new ClickCounter(this.kafka, this.cluster.pools, this.clickRows, (error) => this.logger.warn({ err: error.message }, 'click counter error'));
    // Never rejects: the consumer retries on its own while Kafka is away.
    void this.clicks.start();
    this.purgeTimer = setInterval(() => void this.purgeIdempotencyKeys(), 3_600_000);
    this.purgeTimer.unref();

    this.readiness.add('topology', async () => this.cluster.hasPublishedTopology);
    this.readiness.add('primaries', async () => {
      const shards = this.cluster.topology.shards;
      const answers = await Promise.all(
        shards.map((shard) =>
          this.cluster.pools
            .primary(shard.id)
            .query('SELECT 1')
            .then(() => true)
            .catch(() => false),
        ),
      );
      return answers.some(Boolean);
    });
    setInterval(() => {
      epochGauge.set(this.cluster.topology.epoch);
      outboxRelayed.set(this.relay?.relayed ?? 0);
      clicksApplied.set(this.clicks?.applied ?? 0);
    }, 1000).unref();
    this.pendingTimer = setInterval(() => void this.measureOutboxBacklog(), OUTBOX_PENDING_INTERVAL_MS);
    this.pendingTimer.unref();
    void this.measureOutboxBacklog();
    this.logger.info({ rpcPort: this.config.RPC_PORT, httpPort: this.config.HTTP_PORT }, 'writer started');
  }

  async onApplicationShutdown(): Promise<void> {
    if (this.purgeTimer) clearInterval(this.purgeTimer);
    if (this.pendingTimer) clearInterval(this.pendingTimer);
    await this.relay?.stop();
    await this.clicks?.stop();
    await this.producer.stop();
    await this.cluster.stop();
    await this.cache.close();
  }

  /** shortener_outbox_pending per shard; a shard whose primary does not answer keeps its last value. */
  private async measureOutboxBacklog(): Promise<void> {
    const shards = this.cluster.topology.shards;
    const known = new Set(shards.map((shard) => String(shard.id)));
    await Promise.all(
      shards.map((shard) =>
        this.outbox
          .pending(this.cluster.pools.primary(shard.id))
          .then((pending) => outboxPending.labels(String(shard.id)).set(pending))
          .catch(() => undefined),
      ),
    );
    // A drained shard leaves the gauge.
    for (const { labels } of (await outboxPending.get()).values) {
      if (labels.shard !== undefined && !known.has(String(labels.shard))) outboxPending.remove(String(labels.shard));
    }
  }

  private async purgeIdempotencyKeys(): Promise<void> {
    for (const shard of this.cluster.topology.shards) {
      await this.idempotency.purgeExpired(this.cluster.pools.primary(shard.id)).catch(() => 0);
    }
  }
}
