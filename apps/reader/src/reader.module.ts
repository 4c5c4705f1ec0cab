import { Module, type DynamicModule } from '@nestjs/common';
import { createRedis, LinkCache, redisTargetOf } from '@shortener/cache';
import type { ReaderEnvironment } from '@shortener/config';
import { ApiKeyRepository, LinkRepository } from '@shortener/db';
import { ClusterView, createKafka } from '@shortener/events';
import { createServiceLogger, ObservabilityModule } from '@shortener/observability';
import type { Kafka } from '@shortener/events';
import { CatalogReader } from './catalog-reader';
import { LinkReader } from './link-reader';
import { NodeHealthMonitor } from './node-health.monitor';
import { ReaderLifecycle } from './reader.lifecycle';
import { ReaderRpcController } from './reader.rpc.controller';
import { CLUSTER_VIEW, KAFKA, LINK_CACHE, READER_CONFIG } from './reader.constants';

@Module({})
export class ReaderModule {
  static forRoot(config: ReaderEnvironment): DynamicModule {
    const log = createServiceLogger({ service: 'reader', level: config.LOG_LEVEL });
    return {
      module: ReaderModule,
      imports: [ObservabilityModule.forService({ service: 'reader', logger: log })],
      controllers: [ReaderRpcController],
      providers: [
        { provide: READER_CONFIG, useValue: config },
        {
          provide: KAFKA,
          useFactory: () => createKafka(config.KAFKA_BROKERS, 'reader', (level, msg, extra) => log[level](extra, msg)),
        },
        {
          provide: CLUSTER_VIEW,
          inject: [KAFKA],
          useFactory: (kafka: Kafka) =>
            new ClusterView(kafka, {
              service: 'reader',
              shards: config.SHARD_NODES,
              replicationMode: config.REPLICATION_MODE,
              credentials: { user: config.PG_USER, password: config.PG_PASSWORD, database: config.PG_DATABASE },
              sizing: { max: 6, connectTimeoutMs: config.PG_CONNECT_TIMEOUT_MS ?? 800, statementTimeoutMs: 1000, applicationName: 'reader' },
              onTopology: (topology, demoted) => log.info({ epoch: topology.epoch, demoted }, 'topology applied'),
              onError: (error) => log.warn({ err: error.message }, 'cluster view'),
            }),
        },
        {
          provide: LINK_CACHE,
          useFactory: () =>
            new LinkCache(createRedis(redisTargetOf(config), {}, (status) => log.warn({ status }, 'redis cluster client not ready for 15 s; reconnecting'))),
        },
        LinkRepository,
        ApiKeyRepository,
        LinkReader,
        CatalogReader,
        NodeHealthMonitor,
        ReaderLifecycle,
      ],
    };
  }
}
