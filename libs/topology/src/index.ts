export * from './topology';
export * from './failover-rules';
