export const READER_CONFIG = Symbol('READER_CONFIG');
export const CLUSTER_VIEW = Symbol('CLUSTER_VIEW');
export const LINK_CACHE = Symbol('LINK_CACHE');
export const KAFKA = Symbol('KAFKA');
