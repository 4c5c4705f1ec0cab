export * from './link-cache';
