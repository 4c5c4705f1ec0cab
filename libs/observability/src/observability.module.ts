import { DynamicModule, Global, Module } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { TerminusModule } from '@nestjs/terminus';
import { LoggerModule } from 'nestjs-pino';
import type { Logger } from 'pino';
import { HealthController } from './health.controller';
import { ProblemFilter } from './problem';
import { collectProcessMetrics, MetricsController } from './metrics';
import { ReadinessRegistry } from './readiness.registry';

export interface ObservabilityOptions {
  service: string;
  /** The service's one logger (createServiceLogger): Nest logs through it too. */
  logger: Logger;
}

/** JSON logs (one line per event, secrets redacted), /metrics, /health/live and /health/ready, problem+json errors. */
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
          pinoHttp: { logger: options.logger, autoLogging: false },
          // No request middleware (and so no AsyncLocalStorage): access logs come from installAccessLog.
          forRoutes: [],
        }),
      ],
      controllers: [HealthController, MetricsController],
      // every HTTP error of every service as problem+json
      providers: [ReadinessRegistry, { provide: APP_FILTER, useClass: ProblemFilter }],
      exports: [ReadinessRegistry],
    };
  }
}
