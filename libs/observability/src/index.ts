export * from './access-log';
export * from './metrics';
export * from './observability.module';
export * from './problem';
export * from './readiness.registry';
export * from './request-metrics';
export * from './service-logger';
export * from './start-service';
