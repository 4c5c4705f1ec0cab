import { Controller } from '@nestjs/common';
import { Ctx, MessagePattern, Payload } from '@nestjs/microservices';
import {
  applyClicksCommandSchema,
  createKeyCommandSchema,
  createLinkCommandSchema,
  deleteLinkCommandSchema,
  DomainError,
  keyIdRequestSchema,
  parseRpcPayload,
  RpcPatterns,
  updateLinkCommandSchema,
  type ApiKeyCreated,
  type LinkCreated,
  type LinkDetails,
  type RpcResult,
} from '@shortener/contracts';
import { cacheEntryOf, linkDetailsOf, targetOf } from '@shortener/db';
import { counter } from '@shortener/observability';
import type { LineRpcContext } from '@shortener/rpc';
import { PinoLogger } from 'nestjs-pino';
import { CacheAfterWrite } from './cache-after-write';
import { ClickApplier } from './click-applier';
import { KeyStore } from './key-store';
import { LinkStore } from './link-store';

const writes = counter('shortener_writes_total', 'Link writes by operation and outcome', ['operation', 'outcome']);
const shardWrites = counter('shortener_shard_writes_total', 'Link writes acknowledged by the shard primary, by shard and operation', ['shard', 'operation']);

/**
 * Every payload is parsed with its schema from libs/contracts before anything else: a
 * value the write statements could not store is a 400 of its own request and never
 * reaches a batch it would fail. The caller's deadline comes with the call.
 */
@Controller()
export class WriterRpcController {
  constructor(
    private readonly store: LinkStore,
    private readonly clicks: ClickApplier,
    private readonly keys: KeyStore,
    private readonly cacheAfterWrite: CacheAfterWrite,
    private readonly logger: PinoLogger,
  ) {}

  @MessagePattern(RpcPatterns.createLink)
  create(@Payload() payload: unknown, @Ctx() context: LineRpcContext): Promise<RpcResult<LinkCreated>> {
    return this.run('create', async () => {
      const { created, row, shard } = await this.store.create(parseRpcPayload(createLinkCommandSchema, payload), context.deadline);
      shardWrites.labels(String(shard), 'create').inc();
      if (row) await this.cacheAfterWrite.written(shard, row.code, cacheEntryOf(targetOf(row)));
      return created;
    });
  }

  @MessagePattern(RpcPatterns.updateLink)
  update(@Payload() payload: unknown, @Ctx() context: LineRpcContext): Promise<RpcResult<LinkDetails>> {
    return this.run('update', async () => {
      const { row, shard } = await this.store.update(parseRpcPayload(updateLinkCommandSchema, payload), context.deadline);
      shardWrites.labels(String(shard), 'update').inc();
      await this.cacheAfterWrite.written(shard, row.code, cacheEntryOf(targetOf(row)));
      return linkDetailsOf(row);
    });
  }

  @MessagePattern(RpcPatterns.deleteLink)
  remove(@Payload() payload: unknown, @Ctx() context: LineRpcContext): Promise<RpcResult<null>> {
    return this.run('delete', async () => {
      const { row, shard } = await this.store.remove(parseRpcPayload(deleteLinkCommandSchema, payload), context.deadline);
      shardWrites.labels(String(shard), 'delete').inc();
      await this.cacheAfterWrite.written(shard, row.code, cacheEntryOf(targetOf(row)));
      return null;
    });
  }

  @MessagePattern(RpcPatterns.applyClicks)
  applyClicks(@Payload() payload: unknown): Promise<RpcResult<{ applied: number }>> {
    return this.run('clicks', () => this.clicks.apply(parseRpcPayload(applyClicksCommandSchema, payload)));
  }

  @MessagePattern(RpcPatterns.createKey)
  createKey(@Payload() payload: unknown): Promise<RpcResult<ApiKeyCreated>> {
    return this.run('create-key', async () => {
      const { created, shard } = await this.keys.create(parseRpcPayload(createKeyCommandSchema, payload));
      shardWrites.labels(String(shard), 'create-key').inc();
      // The id names the key in logs; the key itself never is.
      this.logger.info({ keyId: created.id, shard }, 'API key created');
      return created;
    });
  }

  @MessagePattern(RpcPatterns.revokeKey)
  revokeKey(@Payload() payload: unknown): Promise<RpcResult<null>> {
    return this.run('revoke-key', async () => {
      const { id } = parseRpcPayload(keyIdRequestSchema, payload);
      const { shard } = await this.keys.revoke(id);
      shardWrites.labels(String(shard), 'revoke-key').inc();
      this.logger.info({ keyId: id, shard }, 'API key revoked');
      return null;
    });
  }

  /** Domain errors travel back as values; anything else is logged here with its stack. */
  private async run<T>(operation: string, work: () => Promise<T>): Promise<RpcResult<T>> {
    try {
      const value = await work();
      writes.inc({ operation, outcome: 'ok' });
      return { ok: true, value };
    } catch (error) {
      if (error instanceof DomainError) {
        writes.inc({ operation, outcome: error.kind });
        return { ok: false, error: error.toPayload() };
      }
      writes.inc({ operation, outcome: 'error' });
      this.logger.error({ err: error, operation }, 'write failed');
      // Unexpected: whether something was written cannot be promised either way.
      return { ok: false, error: { kind: 'outcome-unknown', message: 'the write failed unexpectedly and may or may not have been applied' } };
    }
  }
}
