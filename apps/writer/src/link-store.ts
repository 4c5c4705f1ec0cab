import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import {
  DomainError,
  OutcomeUnknown,
  ShardUnavailable,
  Topics,
  type CreateLinkCommand,
  type DeleteLinkCommand,
  type LinkCreated,
  type UpdateLinkCommand,
  type UrlEvent,
} from '@shortener/contracts';
import {
  BatchQueueFull,
  DeadlineExceeded,
  IdempotencyRepository,
  inTransaction,
  isRefusedValue,
  LinkRepository,
  OutboxRepository,
  type LinkRow,
  type NewLink,
  type Pool,
  StatementBatcher,
  writeOutcomeOf,
} from '@shortener/db';
import type { ClusterView } from '@shortener/events';
import { DEFAULT_REDIRECT_TYPE, generateCode } from '@shortener/links';
import type { PoolClient } from '@shortener/db';
import { CLUSTER_VIEW } from './writer.constants';

export const MAX_CODE_ATTEMPTS = 8;

export function hashToken(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}

/** A stable hash of what a create asks for, so a replayed key can be told from a reused one. */
export function requestHashOf(command: CreateLinkCommand): Buffer {
  const { url, alias, expiresAt, redirectType, owner } = command;
  // The owner is part of it: another key presenting the same Idempotency-Key and body is
  // refused (422) instead of being handed the first one's manage token.
  return createHash('sha256')
    .update(JSON.stringify([url, alias ?? null, expiresAt ? Date.parse(expiresAt) : null, redirectType ?? null, ...(owner ? [owner] : [])]))
    .digest();
}

export function eventFor(type: UrlEvent['type'], row: Pick<LinkRow, 'code' | 'url' | 'redirectType' | 'expiresAt' | 'version'>): UrlEvent {
  const at = new Date().toISOString();
  if (type === 'url.deleted') return { type, version: 1, code: row.code, at, link: { version: row.version } };
  return {
    type,
    version: 1,
    code: row.code,
    at,
    link: {
      url: row.url,
      redirectType: row.redirectType,
      expiresAt: row.expiresAt?.toISOString() ?? null,
      version: row.version,
    },
  };
}

class CodeTaken extends Error {}

/**
 * The write reached a shard whose guard refused it (migration 6): the code's slot is
 * being switched to another shard (SQLSTATE SR001, for at most about a second) or has
 * moved there (SR002, this writer still routes by an older topology epoch). Nothing was
 * written, so the write is simply tried again, by the topology as it is then.
 */
export class SlotMoving extends Error {
  constructor(readonly moved: boolean) {
    super(moved ? 'the slot has moved to another shard' : 'the slot is being switched to another shard');
  }
}

/** How long a write waits for its slot's switch before answering 503 (the fence lasts at most about 1 s). */
export const SLOT_FENCE_WAIT_MS = 1500;
const SLOT_FENCE_RETRY_MS = 50;
class KeyTaken extends Error {}

interface NewLinkWithEvent {
  link: NewLink;
  event: { topic: string; payload: UrlEvent };
}

/**
 * Writes links to the owning shard's primary: the row, its outbox event and the
 * idempotency record in one transaction, so a failure leaves nothing half-written.
 */
@Injectable()
export class LinkStore {
  private readonly inserts = new StatementBatcher<number, NewLinkWithEvent, LinkRow | null>((shard, items) => this.insertBatch(shard, items), {
    maxBatch: 128,
    maxConcurrentPerKey: 2,
    // About two seconds of creates at the measured group-commit rate: more is queueing, not serving.
    maxQueuedPerKey: 2048,
    // A value the statement refuses fails only its own create; the others are sent again without it.
    isolate: isRefusedValue,
  });

  constructor(
    @Inject(CLUSTER_VIEW) private readonly cluster: ClusterView,
    private readonly links: LinkRepository,
    private readonly outbox: OutboxRepository,
    private readonly idempotency: IdempotencyRepository,
  ) {}

  /** `deadline`: epoch ms after which the caller has given up (work not started by then is dropped). */
  create(command: CreateLinkCommand, deadline = Infinity): Promise<{ created: LinkCreated; row: LinkRow | null; shard: number }> {
    return throughSlotFence(deadline, () => this.createOnce(command, deadline));
  }

  update(command: UpdateLinkCommand, deadline = Infinity): Promise<{ row: LinkRow; shard: number }> {
    return throughSlotFence(deadline, () => this.updateOnce(command, deadline));
  }

  remove(command: DeleteLinkCommand, deadline = Infinity): Promise<{ row: LinkRow; shard: number }> {
    return throughSlotFence(deadline, () => this.removeOnce(command, deadline));
  }

  private async createOnce(command: CreateLinkCommand, deadline: number): Promise<{ created: LinkCreated; row: LinkRow | null; shard: number }> {
    const pools = this.cluster.pools;
    const key = command.idempotencyKey;
    const requestHash = requestHashOf(command);
    // A key always lives on its own shard, so that a reuse with another body is found.
    // A generated code is drawn on that shard too, so the key and the link commit
    // together; an alias decides its own shard.
    const shard = command.alias ? pools.shardOf(command.alias) : key ? pools.shardOf(key) : null;

    if (key) {
      const keyShard = pools.shardOf(key);
      const replay = await this.replay(keyShard, key, requestHash);
      if (replay) return { created: replay, row: null, shard: keyShard };
      if (shard !== keyShard) return this.createWithKeyElsewhere(command, key, keyShard, requestHash, deadline);
    }

    for (let attempt = 0; attempt < MAX_CODE_ATTEMPTS; attempt++) {
      const code = command.alias ?? this.codeFor(shard);
      const owner = pools.shardOf(code);
      const manageToken = randomBytes(24).toString('base64url');
      const link: NewLink = {
        code,
        url: command.url,
        redirectType: command.redirectType ?? DEFAULT_REDIRECT_TYPE,
        expiresAt: command.expiresAt ? new Date(command.expiresAt) : null,
        manageTokenHash: hashToken(manageToken),
        owner: command.owner ?? null,
      };
      const event = { topic: Topics.urlEvents, payload: eventFor('url.created', { ...link, version: 0 }) };
      try {
        assertBefore(deadline, owner);
        const row = key
          ? await this.onPrimary(owner, async (client) => {
              if (!(await this.idempotency.claim(client, key, requestHash))) throw new KeyTaken();
              const [inserted] = await this.links.insertManyWithEvents(client, [link], [event]);
              if (!inserted) throw new CodeTaken();
              await this.idempotency.complete(client, key, this.createdFrom(inserted, manageToken));
              return inserted;
            })
          : // The common case joins the shard's next multi-row statement: one commit for many creates.
            await this.onPrimary(owner, () => this.inserts.run(owner, { link, event }, deadline), { transaction: false });
        if (!row) throw new CodeTaken();
        return { created: this.createdFrom(row, manageToken), row, shard: owner };
      } catch (error) {
        if (error instanceof KeyTaken) {
          const replay = await this.replay(owner, key!, requestHash);
          if (replay) return { created: replay, row: null, shard: owner };
          throw new DomainError('conflict', 'a request with this Idempotency-Key is still in progress');
        }
        if (!(error instanceof CodeTaken)) throw error;
        if (command.alias) throw new DomainError('conflict', `alias "${command.alias}" is already taken`);
      }
    }
    throw new DomainError('dependency-unavailable', 'could not find a free code; try again');
  }

  private async updateOnce(command: UpdateLinkCommand, deadline: number): Promise<{ row: LinkRow; shard: number }> {
    const shard = this.cluster.pools.shardOf(command.code);
    assertBefore(deadline, shard);
    const row = await this.onPrimary(shard, async (client) => {
      await this.authorize(client, command);
      const updated = await this.links.update(client, command.code, {
        url: command.url,
        redirectType: command.redirectType,
        expiresAt: command.expiresAt === undefined ? undefined : command.expiresAt === null ? null : new Date(command.expiresAt),
      });
      await this.outbox.enqueue(client, Topics.urlEvents, updated.code, JSON.stringify(eventFor('url.updated', updated)));
      return updated;
    });
    return { row, shard };
  }

  private async removeOnce(command: DeleteLinkCommand, deadline: number): Promise<{ row: LinkRow; shard: number }> {
    const shard = this.cluster.pools.shardOf(command.code);
    assertBefore(deadline, shard);
    const row = await this.onPrimary(shard, async (client) => {
      await this.authorize(client, command);
      const deleted = await this.links.markDeleted(client, command.code);
      await this.outbox.enqueue(client, Topics.urlEvents, deleted.code, JSON.stringify(eventFor('url.deleted', deleted)));
      return deleted;
    });
    return { row, shard };
  }

  /**
   * An alias on another shard than its Idempotency-Key: claim the key first (on its own
   * shard), create the link, then record the response; a failed create gives the claim
   * up. A crash in between leaves a claim that another attempt takes over after 30 s.
   */
  private async createWithKeyElsewhere(
    command: CreateLinkCommand,
    key: string,
    keyShard: number,
    requestHash: Buffer,
    deadline: number,
  ): Promise<{ created: LinkCreated; row: LinkRow | null; shard: number }> {
    const claimed = await this.onPrimary(keyShard, (client) => this.idempotency.claim(client, key, requestHash));
    if (!claimed) {
      const replay = await this.replay(keyShard, key, requestHash);
      if (replay) return { created: replay, row: null, shard: keyShard };
      throw new DomainError('conflict', 'a request with this Idempotency-Key is still in progress');
    }
    try {
      const result = await this.createOnce({ ...command, idempotencyKey: undefined }, deadline);
      await this.onPrimary(keyShard, (client) => this.idempotency.complete(client, key, result.created));
      return result;
    } catch (error) {
      await this.onPrimary(keyShard, (client) => this.idempotency.release(client, key)).catch(() => undefined);
      throw error;
    }
  }

  /** One statement for creates that arrived together; a code repeated in the batch loses to its first use. */
  private async insertBatch(shard: number, items: NewLinkWithEvent[]): Promise<(LinkRow | null)[]> {
    const first = new Map<string, number>();
    items.forEach((item, index) => {
      if (!first.has(item.link.code)) first.set(item.link.code, index);
    });
    const distinct = [...first.values()].map((index) => items[index]);
    // Raw errors on purpose: the batcher isolates a refused value by its SQLSTATE, and each
    // create's own onPrimary turns what is left into its answer.
    const rows = await this.links.insertManyWithEvents(
      this.cluster.pools.primary(shard),
      distinct.map((item) => item.link),
      distinct.map((item) => item.event),
    );
    const byIndex = new Map([...first.values()].map((index, position) => [index, rows[position]]));
    return items.map((_, index) => byIndex.get(index) ?? null);
  }

  private codeFor(shard: number | null): string {
    if (shard === null) return generateCode();
    // Draw until the code lands on the wanted shard: N draws on average for N shards.
    for (;;) {
      const code = generateCode();
      if (this.cluster.pools.shardOf(code) === shard) return code;
    }
  }

  private async replay(shard: number, key: string, requestHash: Buffer): Promise<LinkCreated | null> {
    const stored = await this.onPrimary(shard, (client) => this.idempotency.find<LinkCreated | null>(client, key));
    if (!stored || stored.response === null) return null;
    if (!stored.requestHash.equals(requestHash)) {
      throw new DomainError('idempotency-mismatch', 'this Idempotency-Key was used with a different request body');
    }
    return stored.response;
  }

  private async authorize(client: PoolClient, command: UpdateLinkCommand | DeleteLinkCommand): Promise<void> {
    const current = await this.links.lockForChange(client, command.code);
    if (!current) throw new DomainError('not-found', `no link with code "${command.code}"`);
    if (current.deleted) throw new DomainError('gone', `link "${command.code}" was deleted`);
    if ('admin' in command.credential) return;
    if ('apiKey' in command.credential) {
      if (current.owner !== command.credential.apiKey) throw new DomainError('forbidden', 'this link does not belong to the API key');
      return;
    }
    const presented = hashToken(command.credential.manageToken);
    if (!timingSafeEqual(presented, current.manageTokenHash)) {
      throw new DomainError('forbidden', 'the token does not manage this link');
    }
  }

  private createdFrom(row: LinkRow, manageToken: string): LinkCreated {
    return {
      code: row.code,
      url: row.url,
      createdAt: row.createdAt.toISOString(),
      expiresAt: row.expiresAt?.toISOString() ?? null,
      redirectType: row.redirectType,
      manageToken,
    };
  }

  /** Runs work on the shard's primary, in a transaction unless it is a single statement; a failure is answered by primaryWriteError. */
  private async onPrimary<T>(shard: number, work: (client: PoolClient) => Promise<T>): Promise<T>;
  private async onPrimary<T>(shard: number, work: (node: Pool) => Promise<T>, options: { transaction: false }): Promise<T>;
  private async onPrimary<T>(
    shard: number,
    work: ((client: PoolClient) => Promise<T>) | ((node: Pool) => Promise<T>),
    options: { transaction: boolean } = { transaction: true },
  ): Promise<T> {
    const primary = this.cluster.pools.primary(shard);
    try {
      return options.transaction
        ? await inTransaction(primary, work as (client: PoolClient) => Promise<T>)
        : await (work as (node: Pool) => Promise<T>)(primary);
    } catch (error) {
      if (error instanceof DomainError || error instanceof CodeTaken || error instanceof KeyTaken || error instanceof SlotMoving) throw error;
      throw primaryWriteError(error, shard);
    }
  }
}

/**
 * What a failed write on a shard's primary means for its caller: 503 only when nothing
 * was written (no primary, a read-only node, a server-side timeout, too busy to start in
 * time), 504 when the statement or its COMMIT was sent and no answer came, 400 for a
 * value the database refused.
 */
export function primaryWriteError(error: unknown, shard: number): Error {
  if (error instanceof DomainError || error instanceof SlotMoving) return error;
  const sqlState = (error as { code?: unknown })?.code;
  if (sqlState === 'SR001' || sqlState === 'SR002') return new SlotMoving(sqlState === 'SR002');
  if (error instanceof BatchQueueFull || error instanceof DeadlineExceeded) {
    return new DomainError('dependency-unavailable', `shard ${shard} is too busy to take this write in time; nothing was written`, { retryAfterSeconds: 1 });
  }
  switch (writeOutcomeOf(error)) {
    case 'refused':
      return new DomainError('validation', 'the database refused a value of this request', {
        errors: [{ field: '(body)', message: 'a value cannot be stored' }],
      });
    case 'not-applied':
      return ShardUnavailable(shard);
    default:
      return OutcomeUnknown();
  }
}

/**
 * Runs a write again while its slot is fenced for a switch (the topology read afresh each
 * time, so once the switch is published the write goes to the new owner); after
 * SLOT_FENCE_WAIT_MS, or at the caller's deadline, it is a 503 with Retry-After.
 */
export async function throughSlotFence<T>(deadline: number, work: () => Promise<T>, waitMs = SLOT_FENCE_WAIT_MS): Promise<T> {
  const giveUpAt = Math.min(deadline, Date.now() + waitMs);
  for (;;) {
    try {
      return await work();
    } catch (error) {
      if (!(error instanceof SlotMoving)) throw error;
      if (Date.now() + SLOT_FENCE_RETRY_MS >= giveUpAt) {
        throw new DomainError('dependency-unavailable', "the link's slot is being moved to another shard; nothing was written", { retryAfterSeconds: 1 });
      }
      await new Promise((resolve) => setTimeout(resolve, SLOT_FENCE_RETRY_MS));
    }
  }
}

function assertBefore(deadline: number, shard: number): void {
  if (Date.now() >= deadline) {
    throw new DomainError('dependency-unavailable', `the deadline passed before the write to shard ${shard} started; nothing was written`, {
      retryAfterSeconds: 1,
    });
  }
}
