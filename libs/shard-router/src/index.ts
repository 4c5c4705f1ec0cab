export * from './shard-ring';
