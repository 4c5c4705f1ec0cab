import { Module, ValidationPipe, type DynamicModule } from '@nestjs/common';
import { APP_PIPE } from '@nestjs/core';
import type { ValidationError } from 'class-validator';
import { createRedis, LinkCache, redisTargetOf } from '@shortener/cache';
import { RateLimiterRedis } from 'rate-limiter-flexible';
import type { GatewayEnvironment } from '@shortener/config';
import { DomainError, type FieldError } from '@shortener/contracts';
import { createKafka, EventProducer, OperationsFollower, TopologyFollower } from '@shortener/events';
import { createServiceLogger, ObservabilityModule } from '@shortener/observability';
import type { Kafka } from '@shortener/events';
import { ApiKeyVerifier } from './api-keys';
import { AdminGuard, ManageAuthGuard } from './auth';
import { createClickBatcher } from './click-delivery';
import { ClusterController, clusterDocument, configuredTopology, nodeHealth } from './cluster.controller';
import { ClusterEventHub } from './cluster-events';
import { CreateQuota, QUOTA_WINDOW_SECONDS } from './create-quota';
import {
  API_KEYS,
  CLICK_BATCHER,
  CLUSTER_EVENTS,
  CREATE_QUOTA,
  EVENT_PRODUCER,
  GATEWAY_CONFIG,
  KAFKA,
  LINK_CACHE,
  OPERATIONS_FOLLOWER,
  READER_POOL,
  TOPOLOGY_FOLLOWER,
  WRITER_CHANNEL,
} from './gateway.constants';
import { GatewayLifecycle } from './gateway.lifecycle';
import { ReaderPool, RpcChannel } from './rpc-channel';
import { OperationRequests } from './operation-requests';
import { ReshardingController } from './resharding.controller';
import { SwitchoverRequests } from './switchover-requests';
import { KeysController } from './keys.controller';
import { UrlsController } from './urls.controller';

export function fieldErrors(errors: ValidationError[], parent = ''): FieldError[] {
  return errors.flatMap((error) => {
    const field = parent ? `${parent}.${error.property}` : error.property;
    const own = Object.values(error.constraints ?? {}).map((message) => ({ field, message }));
    return [...own, ...fieldErrors(error.children ?? [], field)];
  });
}

export const validationPipe = new ValidationPipe({
  whitelist: true,
  forbidNonWhitelisted: true,
  forbidUnknownValues: true,
  transform: true,
  exceptionFactory: (errors) => {
    const fields = fieldErrors(errors);
    return new DomainError('validation', fields.map((error) => error.message).join('; ') || 'the request body is invalid', {
      errors: fields.length ? fields : [{ field: '(body)', message: 'must be a JSON object' }],
    });
  },
});

export type GatewayConfig = GatewayEnvironment & { publicBaseUrl: string };

@Module({})
export class GatewayModule {
  static forRoot(config: GatewayConfig): DynamicModule {
    const log = createServiceLogger({ service: 'gateway', level: config.LOG_LEVEL });
    let operationsChanged = (): void => undefined;
    return {
      module: GatewayModule,
      imports: [ObservabilityModule.forService({ service: 'gateway', logger: log })],
      controllers: [UrlsController, KeysController, ClusterController, ReshardingController],
      providers: [
        { provide: GATEWAY_CONFIG, useValue: config },
        { provide: APP_PIPE, useValue: validationPipe },
        {
          provide: KAFKA,
          useFactory: () => createKafka(config.KAFKA_BROKERS, 'gateway', (level, msg, extra) => log[level](extra, msg)),
        },
        { provide: EVENT_PRODUCER, inject: [KAFKA], useFactory: (kafka: Kafka) => new EventProducer(kafka) },
        {
          provide: CLICK_BATCHER,
          inject: [EVENT_PRODUCER, WRITER_CHANNEL],
          // Flushing once a second sums a popular code's clicks into one event and one
          // row update, and keeps counts within the contract's 5 s. Kafka's own outcome is
          // awaited (settle), so a batch it refused can go to the writer without counting twice.
          useFactory: (producer: EventProducer, writer: RpcChannel) =>
            createClickBatcher({ send: (events) => producer.send(events, { settle: true }) }, writer, log),
        },
        {
          provide: OPERATIONS_FOLLOWER,
          inject: [KAFKA],
          // The hub is told of changes through a late binding: it reads the follower too.
          useFactory: (kafka: Kafka) =>
            new OperationsFollower(
              kafka,
              'gateway',
              () => operationsChanged(),
              (error) => log.warn({ err: error.message }, 'operations follower'),
            ),
        },
        {
          provide: CLUSTER_EVENTS,
          inject: [READER_POOL, OPERATIONS_FOLLOWER],
          useFactory: (readers: ReaderPool, operations: OperationsFollower) => {
            const hub = new ClusterEventHub({
              configuredTopology: () => configuredTopology(config),
              health: () => nodeHealth(readers),
              document: (topology, health) => clusterDocument(topology, health, config),
              operations: () => operations.list().map((record) => record.document),
            });
            operationsChanged = () => hub.operationsChanged();
            return hub;
          },
        },
        {
          provide: TOPOLOGY_FOLLOWER,
          inject: [KAFKA, CLUSTER_EVENTS],
          useFactory: (kafka: Kafka, clusterEvents: ClusterEventHub) =>
            new TopologyFollower(
              kafka,
              'gateway',
              (topology) => {
                log.info({ epoch: topology.epoch }, 'topology applied');
                clusterEvents.topologyChanged(topology);
              },
              (error) => log.warn({ err: error.message }, 'topology follower'),
            ),
        },
        {
          provide: LINK_CACHE,
          useFactory: () =>
            new LinkCache(createRedis(redisTargetOf(config), {}, (status) => log.warn({ status }, 'redis cluster client not ready for 15 s; reconnecting'))),
        },
        { provide: API_KEYS, inject: [READER_POOL], useFactory: (readers: ReaderPool) => new ApiKeyVerifier(readers) },
        {
          provide: CREATE_QUOTA,
          // rate-limiter-flexible on the shared Redis: every gateway counts into the same
          // budget. The client fails fast (no offline queue, 250 ms per command), so a Redis
          // outage makes the quota fail open rather than hold creates.
          useFactory: () => {
            const store = createRedis(redisTargetOf(config), { enableAutoPipelining: false }, (status) =>
              log.warn({ status }, 'redis cluster client (rate limits) not ready for 15 s; reconnecting'),
            );
            return new CreateQuota(
              (points, keyPrefix) => new RateLimiterRedis({ storeClient: store, points, duration: QUOTA_WINDOW_SECONDS, keyPrefix }),
              () => store.quit().catch(() => store.disconnect()),
            );
          },
        },
        { provide: WRITER_CHANNEL, useFactory: () => new RpcChannel(config.WRITER_ADDR, config.RPC_SECRET) },
        {
          provide: READER_POOL,
          useFactory: () => new ReaderPool(config.READER_ADDRS.map((address) => new RpcChannel(address, config.RPC_SECRET))),
        },
        ManageAuthGuard,
        AdminGuard,
        SwitchoverRequests,
        OperationRequests,
        GatewayLifecycle,
      ],
    };
  }
}
