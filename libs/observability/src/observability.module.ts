import { DynamicModule, Global, Module } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { LoggerModule } from 'nestjs-pino';
import { HealthController } from './health.controller';
import { collectProcessMetrics, MetricsController } from './metrics';
import { ReadinessRegistry } from './readiness.registry';

export interface ObservabilityOptions {
  service: string;
  logLevel: string;
}

/** JSON logs (one line per event, secrets redacted), /metrics, /health/live and /health/ready. */
@Global()
@Module({})
export class ObservabilityModule {
  static forService(options: ObservabilityOptions): DynamicModule {
    collectProcessMetrics(options.service);
    return {
      module: ObservabilityModule,
      imports: [
        TerminusModule.forRoot({ logger: false }),
        LoggerModule.forRoot({
          pinoHttp: {
            level: options.logLevel,
            base: { service: options.service, pid: process.pid },
            timestamp: () => `,"time":"${new Date().toISOString()}"`,
            redact: ['req.headers.authorization', 'req.headers.cookie', '*.password', '*.manageToken'],
            autoLogging: false,
          },
          // No request middleware (and so no AsyncLocalStorage): access logs come from installAccessLog.
          forRoutes: [],
        }),
      ],
      controllers: [HealthController, MetricsController],
      providers: [ReadinessRegistry],
      exports: [ReadinessRegistry],
    };
  }
}
