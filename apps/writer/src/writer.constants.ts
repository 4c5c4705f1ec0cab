export const WRITER_CONFIG = Symbol('WRITER_CONFIG');
export const CLUSTER_VIEW = Symbol('CLUSTER_VIEW');
export const LINK_CACHE = Symbol('LINK_CACHE');
export const KAFKA = Symbol('KAFKA');
export const EVENT_PRODUCER = Symbol('EVENT_PRODUCER');
