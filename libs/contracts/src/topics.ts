export const Topics = {
  urlEvents: 'url.events',
  urlClicks: 'url.clicks',
  clusterTopology: 'cluster.topology',
  /** Operator requests to the leading failover monitor (planned switchover). */
  clusterCommands: 'cluster.commands',
} as const;

/** Key of the one record of the compacted topology topic. */
export const TOPOLOGY_KEY = 'topology';
