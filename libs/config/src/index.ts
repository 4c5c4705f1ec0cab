export * from './environment.schema';
export * from './validate-environment';
