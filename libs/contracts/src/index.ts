export * from './errors';
export * from './events';
export * from './rpc';
export * from './topics';
export * from './topology';
export * from './kubernetes';
