import type { DomainErrorPayload } from './errors';

/** Message patterns of the writer's and readers' TCP microservices. */
export const RpcPatterns = {
  createLink: 'links.create',
  updateLink: 'links.update',
  deleteLink: 'links.delete',
  resolveLink: 'links.resolve',
  getLink: 'links.get',
  nodeHealth: 'cluster.node-health',
} as const;

export type RedirectTypeValue = 301 | 302 | 307 | 308;

export interface CreateLinkCommand {
  url: string;
  alias?: string;
  expiresAt?: string;
  redirectType?: RedirectTypeValue;
  idempotencyKey?: string;
}

export interface LinkCreated {
  code: string;
  url: string;
  createdAt: string;
  expiresAt: string | null;
  redirectType: RedirectTypeValue;
  manageToken: string;
}

export interface UpdateLinkCommand {
  code: string;
  /** Either the link's manage token or the admin's authority (checked by the gateway). */
  credential: { manageToken: string } | { admin: true };
  url?: string;
  expiresAt?: string | null;
  redirectType?: RedirectTypeValue;
}

export interface DeleteLinkCommand {
  code: string;
  credential: UpdateLinkCommand['credential'];
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
