import { Module, type DynamicModule } from '@nestjs/common';
import type { MonitorEnvironment } from '@shortener/config';
import { ClusterView, createKafka } from '@shortener/events';
import { createServiceLogger, ObservabilityModule } from '@shortener/observability';
import type { Kafka } from '@shortener/events';
import { KubernetesNodeControl } from './kubernetes-node-control';
import { LocalNodeControl } from './local-node-control';
import { SqlOnlyNodeControl } from './sql-only-node-control';
import { NodeAdmin } from '@shortener/db';
import { MonitorLifecycle } from './monitor.lifecycle';
import { CLUSTER_VIEW, KAFKA, MONITOR_CONFIG, NODE_CONTROL } from './monitor.constants';

@Module({})
export class MonitorModule {
  static forRoot(config: MonitorEnvironment): DynamicModule {
    const log = createServiceLogger({ service: 'failover-monitor', level: config.LOG_LEVEL, base: { monitor: config.MONITOR_ID } });
    if (config.NODE_CONTROL === 'local' && !config.STACK_DIR) {
      throw new Error('Invalid environment variables: STACK_DIR: required when NODE_CONTROL=local');
    }
    return {
      module: MonitorModule,
      imports: [ObservabilityModule.forService({ service: 'failover-monitor', logger: log })],
      providers: [
        { provide: MONITOR_CONFIG, useValue: config },
        {
          provide: KAFKA,
          useFactory: () => createKafka(config.KAFKA_BROKERS, `failover-monitor-${config.MONITOR_ID}`, (level, msg, extra) => log[level](extra, msg)),
        },
        {
          provide: CLUSTER_VIEW,
          inject: [KAFKA],
          useFactory: (kafka: Kafka) =>
            new ClusterView(kafka, {
              service: `monitor-${config.MONITOR_ID}`,
              shards: config.SHARD_NODES,
              replicationMode: config.REPLICATION_MODE,
              credentials: { user: config.PG_USER, password: config.PG_PASSWORD, database: config.PG_DATABASE },
              sizing: { max: 2, connectTimeoutMs: config.PG_CONNECT_TIMEOUT_MS ?? 800, statementTimeoutMs: 500, applicationName: 'failover-monitor' },
              onTopology: (topology) => log.info({ epoch: topology.epoch }, 'topology applied'),
              onError: (error) => log.debug({ err: error.message }, 'cluster view'),
            }),
        },
        {
          provide: NODE_CONTROL,
          inject: [CLUSTER_VIEW],
          useFactory: (cluster: ClusterView) => {
            const note = (message: string, extra?: object) => log.info(extra ?? {}, message);
            switch (config.NODE_CONTROL) {
              case 'kubernetes':
                return new KubernetesNodeControl(config.SHARD_NODES.flatMap((shard) => shard.nodes));
              case 'sql':
                return new SqlOnlyNodeControl((node) => NodeAdmin.setReadOnly(cluster.pools.pool(node), true), note);
              default:
                return new LocalNodeControl(config.STACK_DIR!, note);
            }
          },
        },
        MonitorLifecycle,
      ],
    };
  }
}
