import { Inject, Injectable } from '@nestjs/common';
import { DomainError, type ApiKeyCreated, type CreateKeyCommand } from '@shortener/contracts';
import { ApiKeyRepository } from '@shortener/db';
import type { ClusterView } from '@shortener/events';
import { issueApiKey } from '@shortener/links';
import { primaryWriteError, throughSlotFence } from './link-store';
import { CLUSTER_VIEW } from './writer.constants';

const MAX_ID_ATTEMPTS = 4;

/**
 * API keys on the primary of the shard that owns each key's id: a key is found, like a
 * code, with one ring lookup and one primary-key read, and no table has to be kept equal
 * on every shard. Only the SHA-256 of the secret is stored; the key itself leaves here once.
 */
@Injectable()
export class KeyStore {
  constructor(
    @Inject(CLUSTER_VIEW) private readonly cluster: ClusterView,
    private readonly keys: ApiKeyRepository,
  ) {}

  async create(command: CreateKeyCommand): Promise<{ created: ApiKeyCreated; shard: number }> {
    for (let attempt = 0; attempt < MAX_ID_ATTEMPTS; attempt++) {
      const issued = issueApiKey();
      const shard = this.cluster.pools.shardOf(issued.id);
      const row = await this.onPrimary(shard, () =>
        this.keys.insert(this.cluster.pools.primary(shard), {
          id: issued.id,
          name: command.name,
          secretHash: issued.secretHash,
          rateLimitPerMinute: command.rateLimitPerMinute,
        }),
      );
      if (!row) continue; // the id is taken: among 62^10 ids, only a bad random source makes this likely
      return {
        created: { id: row.id, name: row.name, key: issued.key, rateLimitPerMinute: row.rateLimitPerMinute, createdAt: row.createdAt.toISOString() },
        shard,
      };
    }
    throw new DomainError('dependency-unavailable', 'could not draw a free key id; try again');
  }

  /** Revokes a live key; 404 for an id that names none (never issued, or revoked before). */
  async revoke(id: string): Promise<{ shard: number }> {
    const shard = this.cluster.pools.shardOf(id);
    const revoked = await this.onPrimary(shard, () => this.keys.revoke(this.cluster.pools.primary(shard), id));
    if (!revoked) throw new DomainError('not-found', `no API key with id "${id}"`);
    return { shard };
  }

  /** A key's slot fenced for a switch: tried again by the topology as it is then (throughSlotFence). */
  private onPrimary<T>(shard: number, work: () => Promise<T>): Promise<T> {
    return throughSlotFence(Infinity, async () => {
      try {
        return await work();
      } catch (error) {
        throw primaryWriteError(error, shard);
      }
    });
  }
}
