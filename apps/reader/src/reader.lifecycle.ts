import { Inject, Injectable, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import type { LinkCache } from '@shortener/cache';
import { CacheWarmer, type ClusterView } from '@shortener/events';
import { gauge, ReadinessRegistry } from '@shortener/observability';
import type { Kafka } from '@shortener/events';
import { PinoLogger } from 'nestjs-pino';
import { NodeHealthMonitor } from './node-health.monitor';
import { CLUSTER_VIEW, KAFKA, LINK_CACHE } from './reader.constants';

const epochGauge = gauge('shortener_topology_epoch', 'Epoch of the topology this service follows');
const warmed = gauge('shortener_cache_warmer_applied', 'url.events applied to the cache since start');

@Injectable()
export class ReaderLifecycle implements OnApplicationBootstrap, OnApplicationShutdown {
  private warmer: CacheWarmer | null = null;

  constructor(
    @Inject(CLUSTER_VIEW) private readonly cluster: ClusterView,
    @Inject(KAFKA) private readonly kafka: Kafka,
    @Inject(LINK_CACHE) private readonly cache: LinkCache,
    private readonly health: NodeHealthMonitor,
    private readonly readiness: ReadinessRegistry,
    private readonly logger: PinoLogger,
  ) {
    logger.setContext('reader');
  }

  onApplicationBootstrap(): void {
    this.cluster.start();
    this.health.start();
    this.warmer = new CacheWarmer(this.kafka, this.cache, (error) => this.logger.warn({ err: error.message }, 'cache warmer error'));
    // Never rejects: the consumer retries on its own while Kafka is away.
    void this.warmer.start();
    this.readiness.add('topology', async () => this.cluster.hasPublishedTopology);
    this.readiness.add('databases', async () => this.health.everyShardReachable());
    setInterval(() => {
      epochGauge.set(this.cluster.topology.epoch);
      warmed.set(this.warmer?.applied ?? 0);
    }, 1000).unref();
  }

  async onApplicationShutdown(): Promise<void> {
    this.health.stop();
    await this.warmer?.stop();
    await this.cluster.stop();
    await this.cache.close();
  }
}
