export const Topics = {
  urlEvents: 'url.events',
  urlClicks: 'url.clicks',
  clusterTopology: 'cluster.topology',
  /** Operator requests to the leading failover monitor (planned switchover, add-shard, drain-shard). */
  clusterCommands: 'cluster.commands',
  /** Resharding operations (compacted, key: operation id), written by the leading monitor only. */
  clusterOperations: 'cluster.operations',
} as const;

/** Key of the one record of the compacted topology topic. */
export const TOPOLOGY_KEY = 'topology';
