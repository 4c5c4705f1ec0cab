import { Module, type DynamicModule } from '@nestjs/common';
import { createRedis, LinkCache, redisTargetOf } from '@shortener/cache';
import type { WriterEnvironment } from '@shortener/config';
import { ApiKeyRepository, ClickRepository, IdempotencyRepository, LinkRepository, OutboxRepository } from '@shortener/db';
import { ClusterView, createKafka, EventProducer } from '@shortener/events';
import { createServiceLogger, ObservabilityModule } from '@shortener/observability';
import type { Kafka } from '@shortener/events';
import { CacheAfterWrite } from './cache-after-write';
import { ClickApplier } from './click-applier';
import { KeyStore } from './key-store';
import { LinkStore } from './link-store';
import { WriterLifecycle } from './writer.lifecycle';
import { WriterRpcController } from './writer.rpc.controller';
import { CLUSTER_VIEW, EVENT_PRODUCER, KAFKA, LINK_CACHE, WRITER_CONFIG } from './writer.constants';

@Module({})
export class WriterModule {
  static forRoot(config: WriterEnvironment): DynamicModule {
    const log = createServiceLogger({ service: 'writer', level: config.LOG_LEVEL });
    return {
      module: WriterModule,
      imports: [ObservabilityModule.forService({ service: 'writer', logger: log })],
      controllers: [WriterRpcController],
      providers: [
        { provide: WRITER_CONFIG, useValue: config },
        {
          provide: KAFKA,
          useFactory: () => createKafka(config.KAFKA_BROKERS, 'writer', (level, msg, extra) => log[level](extra, msg)),
        },
        { provide: EVENT_PRODUCER, inject: [KAFKA], useFactory: (kafka: Kafka) => new EventProducer(kafka) },
        {
          provide: CLUSTER_VIEW,
          inject: [KAFKA],
          useFactory: (kafka: Kafka) =>
            new ClusterView(kafka, {
              service: 'writer',
              shards: config.SHARD_NODES,
              replicationMode: config.REPLICATION_MODE,
              credentials: { user: config.PG_USER, password: config.PG_PASSWORD, database: config.PG_DATABASE },
              sizing: {
                // A dead primary refuses connections at once; the timeout only has to
                // catch a frozen one, and must not turn a busy moment into a 503. It is
                // enforced by the server too (a statement it cancels was not applied: a
                // 503), and stays well inside the gateway's 9 s deadline for a write.
                max: 16,
                connectTimeoutMs: config.PG_CONNECT_TIMEOUT_MS ?? 2000,
                statementTimeoutMs: 2500,
                applicationName: 'writer',
              },
              onTopology: (topology, demoted) => log.info({ epoch: topology.epoch, demoted }, 'topology applied'),
              onError: (error) => log.warn({ err: error.message }, 'cluster view'),
            }),
        },
        {
          provide: LINK_CACHE,
          useFactory: () =>
            new LinkCache(createRedis(redisTargetOf(config), {}, (status) => log.warn({ status }, 'redis cluster client not ready for 15 s; reconnecting'))),
        },
        // Repositories are providers so that the services can be built with fakes in tests.
        LinkRepository,
        OutboxRepository,
        IdempotencyRepository,
        ClickRepository,
        ApiKeyRepository,
        LinkStore,
        KeyStore,
        ClickApplier,
        CacheAfterWrite,
        WriterLifecycle,
      ],
    };
  }
}
