import { Controller } from '@nestjs/common';
import { MessagePattern, Payload } from '@nestjs/microservices';
import {
  DomainError,
  RpcPatterns,
  type CreateLinkCommand,
  type DeleteLinkCommand,
  type LinkCreated,
  type LinkDetails,
  type RpcResult,
  type UpdateLinkCommand,
} from '@shortener/contracts';
import { cacheEntryOf, linkDetailsOf, targetOf } from '@shortener/db';
import { counter } from '@shortener/observability';
import { PinoLogger } from 'nestjs-pino';
import { CacheAfterWrite } from './cache-after-write';
import { LinkStore } from './link-store';

const writes = counter('shortener_writes_total', 'Link writes by operation and outcome', ['operation', 'outcome']);

@Controller()
export class WriterRpcController {
  constructor(
    private readonly store: LinkStore,
    private readonly cacheAfterWrite: CacheAfterWrite,
    private readonly logger: PinoLogger,
  ) {}

  @MessagePattern(RpcPatterns.createLink)
  create(@Payload() command: CreateLinkCommand): Promise<RpcResult<LinkCreated>> {
    return this.run('create', async () => {
      const { created, row, shard } = await this.store.create(command);
      if (row) await this.cacheAfterWrite.written(shard, row.code, cacheEntryOf(targetOf(row)));
      return created;
    });
  }

  @MessagePattern(RpcPatterns.updateLink)
  update(@Payload() command: UpdateLinkCommand): Promise<RpcResult<LinkDetails>> {
    return this.run('update', async () => {
      const { row, shard } = await this.store.update(command);
      await this.cacheAfterWrite.written(shard, row.code, cacheEntryOf(targetOf(row)));
      return linkDetailsOf(row);
    });
  }

  @MessagePattern(RpcPatterns.deleteLink)
  remove(@Payload() command: DeleteLinkCommand): Promise<RpcResult<null>> {
    return this.run('delete', async () => {
      const { row, shard } = await this.store.remove(command);
      await this.cacheAfterWrite.written(shard, row.code, cacheEntryOf(targetOf(row)));
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
      return { ok: false, error: { kind: 'dependency-unavailable', message: 'the write could not be completed' } };
    }
  }
}
