import { Inject, Injectable } from '@nestjs/common';
import type { LinkCache } from '@shortener/cache';
import { DomainError, type LinkDetails, type Resolution } from '@shortener/contracts';
import { cacheEntryOf, LinkRepository, linkDetailsOf, StatementBatcher, type LinkRow, type LinkTarget } from '@shortener/db';
import type { ClusterView } from '@shortener/events';
import { counter } from '@shortener/observability';
import { CLUSTER_VIEW, LINK_CACHE } from './reader.constants';

const reads = counter('shortener_reads_total', 'Link reads by the node role that answered', ['role', 'outcome']);

type Lookup<T> = { row: T | null; authoritative: boolean };

export function resolutionOf(link: LinkTarget | null, now = Date.now()): Resolution {
  if (!link) return { status: 'unknown' };
  if (link.deleted || (link.expiresAt !== null && link.expiresAt <= now)) return { status: 'gone' };
  return { status: 'found', url: link.url, redirectType: link.redirectType, expiresAt: link.expiresAt };
}

/**
 * Reads from a healthy replica of the owning shard. A replica that does not have the
 * code may simply not have received it yet, so the primary is asked before the answer
 * is "unknown"; when every replica fails, the primary answers alone.
 */
@Injectable()
export class LinkReader {
  // Lookups on the same node that arrive together share one `code = ANY($1)` statement.
  private readonly targets = new StatementBatcher<string, string, LinkTarget | null>(
    (node, codes) => this.links.findTargets(this.cluster.pools.pool(node), codes),
    { maxBatch: 128, maxConcurrentPerKey: 2 },
  );
  private readonly rows = new StatementBatcher<string, string, LinkRow | null>(
    (node, codes) => this.links.findManyByCode(this.cluster.pools.pool(node), codes),
    { maxBatch: 128, maxConcurrentPerKey: 2 },
  );

  constructor(
    @Inject(CLUSTER_VIEW) private readonly cluster: ClusterView,
    @Inject(LINK_CACHE) private readonly cache: LinkCache,
    private readonly links: LinkRepository,
  ) {}

  async resolve(code: string): Promise<Resolution> {
    const { row, authoritative } = await this.lookup(code, this.targets);
    if (authoritative) {
      // Fill the cache off the answer's path; versions keep a stale fill from winning.
      void this.cache.put(code, cacheEntryOf(row)).catch(() => undefined);
    }
    return resolutionOf(row);
  }

  async details(code: string): Promise<LinkDetails> {
    const { row } = await this.lookup(code, this.rows);
    if (!row) throw new DomainError('not-found', `no link with code "${code}"`);
    if (row.deletedAt) throw new DomainError('gone', `link "${code}" was deleted`);
    if (row.expiresAt && row.expiresAt.getTime() <= Date.now()) throw new DomainError('gone', `link "${code}" has expired`);
    return linkDetailsOf(row);
  }

  /** authoritative = the answer came from a node that must have the row if it exists. */
  private async lookup<T>(code: string, batcher: StatementBatcher<string, string, T | null>): Promise<Lookup<T>> {
    const pools = this.cluster.pools;
    const shard = pools.shardOf(code);
    const candidates = pools.readCandidates(shard);
    const tried = new Set<string>();
    let missed = false;
    // Streaming replicas first; one that does not stream may serve a row older than an update already acknowledged.
    for (const replica of candidates.filter((name) => pools.isStreaming(name))) {
      tried.add(replica);
      const row = await this.readOn(batcher, replica, 'replica', code);
      if (row) return { row, authoritative: true };
      if (row === null) {
        missed = true;
        break; // A miss on a healthy replica: only the primary can say more.
      }
    }
    const primary = pools.primaryName(shard);
    const askPrimary = async (): Promise<Lookup<T> | null> => {
      const fromPrimary = await this.readOn(batcher, primary, 'primary', code);
      return fromPrimary === undefined ? null : { row: fromPrimary, authoritative: true };
    };
    // A primary that failed its last probe is asked after the other replicas: a frozen one
    // would hold the read until the gateway's own timeout ran out.
    const primaryFirst = pools.isResponsive(primary);
    if (primaryFirst) {
      const answer = await askPrimary();
      if (answer) return answer;
    }
    // The primary is away (failover under way): any replica may hold an acknowledged row.
    for (const replica of candidates) {
      if (tried.has(replica)) continue;
      const row = await this.readOn(batcher, replica, 'replica', code);
      if (row) return { row, authoritative: true };
      if (row === null) missed = true;
    }
    if (!primaryFirst) {
      const answer = await askPrimary();
      if (answer) return answer;
    }
    if (missed) return { row: null, authoritative: false };
    throw new DomainError('dependency-unavailable', `shard ${shard} cannot be read right now`, { retryAfterSeconds: 1 });
  }

  /** The row, null when the node has none, undefined when the node did not answer. */
  private async readOn<T>(
    batcher: StatementBatcher<string, string, T | null>,
    node: string,
    role: 'replica' | 'primary',
    code: string,
  ): Promise<T | null | undefined> {
    try {
      const row = await batcher.run(node, code);
      reads.inc({ role, outcome: row ? 'hit' : 'miss' });
      return row;
    } catch {
      reads.inc({ role, outcome: 'error' });
      return undefined;
    }
  }
}
