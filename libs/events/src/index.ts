export * from './cache-warmer';
export * from './cluster-view';
export * from './click-batcher';
export * from './click-counter';
export * from './event-producer';
export * from './kafka';
export * from './outbox-relay';
export * from './topology-channel';
