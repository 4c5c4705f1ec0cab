export const MONITOR_CONFIG = Symbol('MONITOR_CONFIG');
export const CLUSTER_VIEW = Symbol('CLUSTER_VIEW');
export const KAFKA = Symbol('KAFKA');
export const NODE_CONTROL = Symbol('NODE_CONTROL');
