export * from './frames';
export * from './rpc-client';
export * from './rpc-server';
