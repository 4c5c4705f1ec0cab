export * from './redis-server';
export * from './postgres-server';
