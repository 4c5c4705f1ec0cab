export * from './topology';
export * from './failover-rules';
export * from './failover-plan';
export * from './failover-procedure';
