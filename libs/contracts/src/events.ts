import { z } from 'zod';

const redirectType = z.union([z.literal(301), z.literal(302), z.literal(307), z.literal(308)]);

const linkState = z.object({
  url: z.string(),
  redirectType,
  expiresAt: z.string().nullable(),
  /** updated_at in ms: the cache never moves back to a lower version. */
  version: z.number().int().nonnegative(),
});

export const urlEventSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('url.created'), version: z.literal(1), code: z.string(), at: z.string(), link: linkState }),
  z.object({ type: z.literal('url.updated'), version: z.literal(1), code: z.string(), at: z.string(), link: linkState }),
  z.object({
    type: z.literal('url.deleted'),
    version: z.literal(1),
    code: z.string(),
    at: z.string(),
    link: z.object({ version: z.number().int().nonnegative() }),
  }),
]);
export type UrlEvent = z.infer<typeof urlEventSchema>;

export const clickEventSchema = z.object({
  type: z.literal('url.clicked'),
  version: z.literal(1),
  code: z.string(),
  count: z.number().int().positive(),
  at: z.string(),
});
export type ClickEvent = z.infer<typeof clickEventSchema>;

const switchoverCommand = z.object({
  type: z.literal('switchover'),
  version: z.literal(1),
  shard: z.number().int().nonnegative(),
  /** The epoch the requester saw: a command for an older topology is ignored. */
  epoch: z.number().int().nonnegative(),
  requestId: z.string(),
  at: z.string(),
});

/** A node an operator already runs, named in `POST /api/cluster/shards` (the first is the primary). */
export const adoptedNodeSchema = z.object({
  name: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/),
  host: z.string().min(1).max(253),
  port: z.number().int().min(1).max(65535),
});
export type AdoptedNode = z.infer<typeof adoptedNodeSchema>;

/**
 * Resharding requests (CONTRACT section 7). The gateway names the operation id; the
 * leading monitor answers by publishing the operation's record on `cluster.operations`
 * under that id (running, or failed with the reason it was refused).
 */
const addShardCommand = z.object({
  type: z.literal('add-shard'),
  version: z.literal(1),
  operationId: z.string().min(1),
  /** Absent: node control provisions the shard's nodes. */
  nodes: z.array(adoptedNodeSchema).min(1).max(16).optional(),
  requestId: z.string(),
  at: z.string(),
});
const drainShardCommand = z.object({
  type: z.literal('drain-shard'),
  version: z.literal(1),
  operationId: z.string().min(1),
  shard: z.number().int().nonnegative(),
  requestId: z.string(),
  at: z.string(),
});

export const clusterCommandSchema = z.discriminatedUnion('type', [switchoverCommand, addShardCommand, drainShardCommand]);
export type ClusterCommand = z.infer<typeof clusterCommandSchema>;
export type SwitchoverCommand = z.infer<typeof switchoverCommand>;
export type AddShardCommand = z.infer<typeof addShardCommand>;
export type DrainShardCommand = z.infer<typeof drainShardCommand>;

/**
 * The admin API's view of a resharding operation (CONTRACT section 7), as the leading
 * monitor publishes it on the compacted `cluster.operations` topic (key: the id), beside
 * its full resumable state (`record`, libs/resharding OperationState), which only
 * monitors read.
 */
export const operationDocumentSchema = z.object({
  id: z.string(),
  type: z.enum(['add-shard', 'drain-shard']),
  shard: z.number().int().nonnegative(),
  state: z.enum(['running', 'done', 'failed']),
  phase: z.string(),
  slots: z.object({ total: z.number().int().nonnegative(), moved: z.number().int().nonnegative() }),
  rows: z.object({ copied: z.number().int().nonnegative(), verified: z.number().int().nonnegative() }),
  maxWritePauseMs: z.number().nonnegative(),
  startedAt: z.string(),
  finishedAt: z.string().nullable(),
  error: z.string().optional(),
});
export type OperationDocumentV1 = z.infer<typeof operationDocumentSchema>;

export const operationRecordSchema = z.object({
  version: z.literal(1),
  document: operationDocumentSchema,
  /** The monitor's resumable state; opaque to every other service. */
  record: z.unknown().optional(),
  /** Set when the monitor refused the command of this id (document.state is then 'failed'); the gateway answers with it. */
  refused: z
    .object({
      reason: z.enum(['conflict', 'last-shard', 'not-a-shard', 'shard-exists', 'bad-request', 'no-slots', 'unsupported']),
      message: z.string(),
      /** The id of the operation that runs, for a conflict. */
      running: z.string().optional(),
    })
    .optional(),
  at: z.string(),
});
export type OperationRecord = z.infer<typeof operationRecordSchema>;
