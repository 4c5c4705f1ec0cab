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

export const clusterCommandSchema = z.object({
  type: z.literal('switchover'),
  version: z.literal(1),
  shard: z.number().int().nonnegative(),
  /** The epoch the requester saw: a command for an older topology is ignored. */
  epoch: z.number().int().nonnegative(),
  requestId: z.string(),
  at: z.string(),
});
export type ClusterCommand = z.infer<typeof clusterCommandSchema>;
