export * from './api-key';
export * from './cache-entry';
export * from './link-listing';
export * from './link-rules';
export * from './short-code';
export * from './target-url';
