export * from './click.repository';
export * from './idempotency.repository';
export * from './link.repository';
export * from './migrator';
export * from './node-pools';
export * from './outbox.repository';
export * from './shard-pools';
export * from './node-probe';
