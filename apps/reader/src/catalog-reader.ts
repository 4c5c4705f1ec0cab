import { Inject, Injectable } from '@nestjs/common';
import { DomainError, type ApiKeyCredential, type ApiKeyInfo, type LinkPage, type ListLinksRequest } from '@shortener/contracts';
import { ApiKeyRepository, LinkRepository, linkDetailsOf, type ApiKeyRow, type Pool } from '@shortener/db';
import type { ClusterView } from '@shortener/events';
import { mergeShardPages } from '@shortener/links';
import { CLUSTER_VIEW } from './reader.constants';

/**
 * The reads that span shards or are not links by code: API keys (found on the shard that
 * owns the id) and the listing of links, a scatter-gather over every shard.
 */
@Injectable()
export class CatalogReader {
  constructor(
    @Inject(CLUSTER_VIEW) private readonly cluster: ClusterView,
    private readonly links: LinkRepository,
    private readonly keys: ApiKeyRepository,
  ) {}

  /**
   * A key as the gateway checks it. A replica that has no row may not have received it
   * yet (a key used the moment it was made), so the primary is asked before "not found".
   */
  async credential(id: string): Promise<ApiKeyCredential> {
    const shard = this.cluster.pools.shardOf(id);
    const row = await this.onShard(shard, (node) => this.keys.find(node, id), { confirmMissOnPrimary: true });
    if (!row) throw new DomainError('not-found', `no API key with id "${id}"`);
    return { id: row.id, secretHash: row.secretHash.toString('base64'), rateLimitPerMinute: row.rateLimitPerMinute, revoked: row.revokedAt !== null };
  }

  /** Every live key of every shard, oldest first. */
  async listKeys(): Promise<ApiKeyInfo[]> {
    const shards = this.cluster.pools.topology.shards.map((shard) => shard.id);
    const perShard = await Promise.all(shards.map((shard) => this.onShard(shard, (node) => this.keys.listLive(node))));
    return perShard
      .flat()
      .sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || (a.id < b.id ? -1 : 1))
      .map(keyInfoOf);
  }

  /**
   * One page of GET /api/urls: every shard is asked, in parallel, for its newest
   * `limit + 1` links after the position, and the pages are merged. A shard that cannot
   * be read fails the page (503): a page without it could skip links for good.
   */
  async listLinks(request: ListLinksRequest): Promise<LinkPage> {
    const shards = this.cluster.pools.topology.shards.map((shard) => shard.id);
    const pages = await Promise.all(
      shards.map((shard) => this.onShard(shard, (node) => this.links.listPage(node, request.owner, request.after, request.limit + 1))),
    );
    const positioned = pages.map((page) => page.map((row) => ({ row, createdMicros: BigInt(row.createdMicros), code: row.code })));
    const merged = mergeShardPages(positioned, request.limit);
    return {
      items: merged.items.map((item) => linkDetailsOf(item.row)),
      next: merged.next && { createdMicros: merged.next.createdMicros.toString(), code: merged.next.code },
    };
  }

  /**
   * Runs a read on a healthy replica of the shard, else on its primary. With
   * `confirmMissOnPrimary`, a replica's "none" is asked again of the primary, and stands
   * only when the primary cannot answer.
   */
  private async onShard<T>(shard: number, read: (node: Pool) => Promise<T>, options: { confirmMissOnPrimary?: boolean } = {}): Promise<T> {
    const pools = this.cluster.pools;
    const replicas = pools.readCandidates(shard);
    let missed: { value: T } | null = null;
    for (const name of replicas) {
      const value = await read(pools.pool(name)).then(
        (answer) => ({ answer }),
        () => null,
      );
      if (!value) continue;
      if (!options.confirmMissOnPrimary || value.answer !== null) return value.answer;
      missed = { value: value.answer };
      break;
    }
    try {
      return await read(pools.primary(shard));
    } catch {
      if (missed) return missed.value;
      throw new DomainError('dependency-unavailable', `shard ${shard} cannot be read right now`, { retryAfterSeconds: 1 });
    }
  }
}

function keyInfoOf(row: ApiKeyRow): ApiKeyInfo {
  return { id: row.id, name: row.name, rateLimitPerMinute: row.rateLimitPerMinute, createdAt: row.createdAt.toISOString() };
}
