export const Topics = {
  urlEvents: 'url.events',
  urlClicks: 'url.clicks',
  clusterTopology: 'cluster.topology',
} as const;

/** Key of the one record of the compacted topology topic. */
export const TOPOLOGY_KEY = 'topology';
