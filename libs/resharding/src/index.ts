export * from './slot-map';
export * from './planner';
export * from './operation';
