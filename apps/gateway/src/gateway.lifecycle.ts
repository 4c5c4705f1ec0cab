import { Inject, Injectable, type BeforeApplicationShutdown, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import type { LinkCache } from '@shortener/cache';
import type { ClickBatcher, EventProducer, OperationsFollower, TopologyFollower } from '@shortener/events';
import { ReadinessRegistry } from '@shortener/observability';
import { PinoLogger } from 'nestjs-pino';
import type { ClusterEventHub } from './cluster-events';
import type { CreateQuota } from './create-quota';
import {
  CLICK_BATCHER,
  CLUSTER_EVENTS,
  CREATE_QUOTA,
  EVENT_PRODUCER,
  LINK_CACHE,
  OPERATIONS_FOLLOWER,
  READER_POOL,
  TOPOLOGY_FOLLOWER,
  WRITER_CHANNEL,
} from './gateway.constants';
import type { ReaderPool, RpcChannel } from './rpc-channel';

@Injectable()
export class GatewayLifecycle implements OnApplicationBootstrap, BeforeApplicationShutdown, OnApplicationShutdown {
  constructor(
    @Inject(LINK_CACHE) private readonly cache: LinkCache,
    @Inject(READER_POOL) private readonly readers: ReaderPool,
    @Inject(WRITER_CHANNEL) private readonly writer: RpcChannel,
    @Inject(CLICK_BATCHER) private readonly clicks: ClickBatcher,
    @Inject(EVENT_PRODUCER) private readonly producer: EventProducer,
    @Inject(TOPOLOGY_FOLLOWER) private readonly follower: TopologyFollower,
    @Inject(OPERATIONS_FOLLOWER) private readonly operations: OperationsFollower,
    @Inject(CLUSTER_EVENTS) private readonly clusterEvents: ClusterEventHub,
    @Inject(CREATE_QUOTA) private readonly quota: CreateQuota,
    private readonly readiness: ReadinessRegistry,
    private readonly logger: PinoLogger,
  ) {
    logger.setContext('gateway');
  }

  onApplicationBootstrap(): void {
    this.clicks.start();
    // Never reject: the followers retry on their own while Kafka is away.
    void this.follower.start();
    void this.operations.start();
    // Ready = redirects can be served: from the cache, or through a reader.
    this.readiness.add('redirects', async () => {
      const cacheUp = await this.cache.ping().catch(() => false);
      const readerUp = await this.readers
        .call('cluster.node-health', {}, 1000)
        .then(() => true)
        .catch(() => false);
      return cacheUp || readerUp;
    });
  }

  /** Before the HTTP server closes: an open event stream would keep it from closing. */
  beforeApplicationShutdown(): void {
    this.clusterEvents.close();
  }

  async onApplicationShutdown(): Promise<void> {
    await this.clicks.stop();
    await this.producer.stop();
    await this.follower.stop();
    await this.operations.stop();
    await this.readers.close();
    await this.writer.close();
    await this.cache.close();
    await this.quota.close();
  }
}
