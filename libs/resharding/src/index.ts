export * from './slot-map';
export * from './planner';
export * from './operation';
export { SLOT_FUNCTION_SQL } from './slot-sql';
