import { z } from 'zod';

/**
 * The topology document on `cluster.topology`, declared once: the failover monitor
 * writes it, every service (through libs/topology and the topology channel) reads it.
 */
const nodeAddress = z.object({ name: z.string().min(1), host: z.string().min(1), port: z.number().int().min(1).max(65535) });

const shardMembers = z.object({
  id: z.number().int().nonnegative(),
  primary: z.string().min(1),
  replicas: z.array(z.string().min(1)),
});

const failoverRecord = z.object({
  shard: z.number().int().nonnegative(),
  at: z.string(),
  from: z.string(),
  to: z.string(),
  reason: z.string(),
  durationMs: z.number().nonnegative(),
});

export const topologySchema = z.object({
  /** Rises by one with every change; a follower never goes back to a lower one. */
  epoch: z.number().int().positive(),
  /**
   * The fencing token of the monitor that wrote the document: its leader term (the
   * offset Kafka gave its leadership claim on `cluster.commands`, so terms are unique and
   * increase with every new leader). A follower refuses a document from an older term
   * than one it has already applied. 0: written before terms existed.
   */
  term: z.number().int().nonnegative().default(0),
  replicationMode: z.enum(['quorum', 'async']),
  ring: z.object({ algorithm: z.literal('crc32-slots'), slots: z.array(z.number().int().nonnegative()).length(1024) }),
  shards: z.array(shardMembers),
  nodes: z.array(nodeAddress),
  failovers: z.array(failoverRecord).default([]),
});
export type TopologyDocument = z.infer<typeof topologySchema>;

/** What a new leader appends to `cluster.commands` to learn its term (the record's offset). */
export const leaderClaimSchema = z.object({
  type: z.literal('leader-claim'),
  version: z.literal(1),
  monitor: z.string(),
  at: z.string(),
});
export type LeaderClaim = z.infer<typeof leaderClaimSchema>;
