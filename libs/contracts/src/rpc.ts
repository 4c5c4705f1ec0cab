import { z } from 'zod';
import { DomainError, type DomainErrorPayload, type FieldError } from './errors';

/** Message patterns of the writer's and readers' TCP microservices. */
export const RpcPatterns = {
  createLink: 'links.create',
  updateLink: 'links.update',
  deleteLink: 'links.delete',
  resolveLink: 'links.resolve',
  getLink: 'links.get',
  nodeHealth: 'cluster.node-health',
  applyClicks: 'clicks.apply',
  listLinks: 'links.list',
  createKey: 'keys.create',
  revokeKey: 'keys.revoke',
  getKey: 'keys.get',
  listKeys: 'keys.list',
} as const;

export type RedirectTypeValue = 301 | 302 | 307 | 308;

const redirectTypeValue = z.union([z.literal(301), z.literal(302), z.literal(307), z.literal(308)]);

// A lone UTF-16 surrogate survives JSON.parse but not PostgreSQL's jsonb (the event of a
// create is cast to jsonb in the group-commit statement), and NUL is refused by text and
// jsonb alike: both are rejected here, before a payload can join a batch.
const LONE_SURROGATE = /\p{Cs}/u;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

/** Text that every column and cast of the write statements accepts. */
export const storableText = (max: number) =>
  z
    .string()
    .min(1)
    .max(max)
    .refine((value) => !LONE_SURROGATE.test(value), 'must be well-formed Unicode (no lone surrogate)')
    .refine((value) => !CONTROL.test(value), 'must not contain control characters');

const code = z.string().regex(/^[A-Za-z0-9_-]{3,32}$/, 'is not a link code');
/** The id part of an API key (libs/links api-key.ts). */
export const apiKeyId = z.string().regex(/^[A-Za-z0-9]{10}$/, 'is not an API key id');
// Years 1..9999 only: what toISOString and timestamptz agree on.
const instant = z.string().refine((value) => {
  const time = Date.parse(value);
  return Number.isFinite(time) && time >= -62135596800000 && time < 253402300800000;
}, 'must be an RFC 3339 date-time');

// The link commands keep fields this schema does not name (looseObject): a field added by
// the gateway reaches the writer, which decides what it reads; every field named is checked.
export const createLinkCommandSchema = z.looseObject({
  url: storableText(2048),
  alias: code.optional(),
  expiresAt: instant.optional(),
  redirectType: redirectTypeValue.optional(),
  idempotencyKey: z
    .string()
    .regex(/^[\x21-\x7e]{1,255}$/, 'must be 1 to 255 visible ASCII characters')
    .optional(),
  /** The id of the API key the link is created with; absent for an anonymous create. */
  owner: apiKeyId.optional(),
});
export type CreateLinkCommand = z.infer<typeof createLinkCommandSchema>;

const credential = z.union([
  z.strictObject({ manageToken: z.string().regex(/^[\x21-\x7e]{1,512}$/) }),
  z.strictObject({ admin: z.literal(true) }),
  /** A key the gateway has verified: it may change the links it owns. */
  z.strictObject({ apiKey: apiKeyId }),
]);

export const updateLinkCommandSchema = z.looseObject({
  code,
  /** Either the link's manage token or the admin's authority (checked by the gateway). */
  credential,
  // Absent means unchanged; null is not a url (PATCH {"url": null} is a 400, not a NOT NULL violation).
  url: storableText(2048).optional(),
  expiresAt: instant.nullable().optional(),
  redirectType: redirectTypeValue.optional(),
});
export type UpdateLinkCommand = z.infer<typeof updateLinkCommandSchema>;

export const deleteLinkCommandSchema = z.looseObject({ code, credential });
export type DeleteLinkCommand = z.infer<typeof deleteLinkCommandSchema>;

/** links.resolve and links.get. */
export const codeRequestSchema = z.strictObject({ code: z.string().max(64) });
export type CodeRequest = z.infer<typeof codeRequestSchema>;

/** One shard-merged page of GET /api/urls: `owner` null is everyone's links (the admin's view). */
export const listLinksRequestSchema = z.strictObject({
  owner: apiKeyId.nullable(),
  limit: z.number().int().min(1).max(100),
  after: z.strictObject({ createdMicros: z.string().regex(/^\d{1,19}$/), code }).nullable(),
});
export type ListLinksRequest = z.infer<typeof listLinksRequestSchema>;

export const createKeyCommandSchema = z.strictObject({
  name: storableText(200),
  rateLimitPerMinute: z.number().int().min(1).max(100_000).nullable(),
});
export type CreateKeyCommand = z.infer<typeof createKeyCommandSchema>;

export const keyIdRequestSchema = z.strictObject({ id: apiKeyId });
export const listKeysRequestSchema = z.strictObject({});

export const nodeHealthRequestSchema = z.strictObject({});

/**
 * Clicks the gateway could not hand to Kafka, applied by the writer straight to the
 * primaries. `batchId` makes a retry of the same batch (after a lost answer) a no-op.
 */
export const applyClicksCommandSchema = z.strictObject({
  batchId: z.string().regex(/^[A-Za-z0-9_-]{8,64}$/),
  counts: z.array(z.tuple([code, z.number().int().positive()])).max(100_000),
});
export type ApplyClicksCommand = z.infer<typeof applyClicksCommandSchema>;

export interface LinkCreated {
  code: string;
  url: string;
  createdAt: string;
  expiresAt: string | null;
  redirectType: RedirectTypeValue;
  manageToken: string;
}

export interface LinkDetails {
  code: string;
  url: string;
  createdAt: string;
  updatedAt: string;
  expiresAt: string | null;
  redirectType: RedirectTypeValue;
  clicks: number;
}

/** A page of links, newest first, and where the next page starts (null: none). */
export interface LinkPage {
  items: LinkDetails[];
  next: { createdMicros: string; code: string } | null;
}

/** An API key as listed: never its secret. `rateLimitPerMinute` null is the gateway's default. */
export interface ApiKeyInfo {
  id: string;
  name: string;
  rateLimitPerMinute: number | null;
  createdAt: string;
}

/** Shown once, at creation. */
export interface ApiKeyCreated extends ApiKeyInfo {
  key: string;
}

/** What a gateway needs to check a presented key: the stored SHA-256 of its secret (base64). */
export interface ApiKeyCredential {
  id: string;
  secretHash: string;
  rateLimitPerMinute: number | null;
  revoked: boolean;
}

/** A reader's answer for a redirect: `url` and `redirectType` only when it can be followed. */
export type Resolution =
  { status: 'found'; url: string; redirectType: RedirectTypeValue; expiresAt: number | null } | { status: 'gone' } | { status: 'unknown' };

export interface NodeHealth {
  name: string;
  healthy: boolean;
  inRecovery: boolean | null;
  lagBytes: number | null;
  lagSeconds: number | null;
  checkedAt: string;
}

/** Every RPC answers with this envelope, so domain errors cross the wire intact. */
export type RpcResult<T> = { ok: true; value: T } | { ok: false; error: DomainErrorPayload };

/** The field errors of a payload that does not match its schema (never echoing values). */
export function fieldErrorsOf(error: z.ZodError): FieldError[] {
  return error.issues.map((issue) => ({ field: issue.path.join('.') || '(body)', message: issue.message }));
}

/** Parses an RPC payload with its schema; a mismatch is a validation error (a 400 at the gateway). */
export function parseRpcPayload<S extends z.ZodType>(schema: S, payload: unknown): z.output<S> {
  const result = schema.safeParse(payload);
  if (result.success) return result.data;
  const errors = fieldErrorsOf(result.error);
  throw new DomainError('validation', errors.map((error) => `${error.field}: ${error.message}`).join('; '), { errors });
}
