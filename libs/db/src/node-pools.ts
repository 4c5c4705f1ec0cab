import { Pool, type PoolClient, type PoolConfig } from 'pg';
import type { NodeAddress } from '@shortener/topology';

export interface DatabaseCredentials {
  user: string;
  password: string;
  database: string;
}

export interface PoolSizing {
  /** Connections per node. */
  max: number;
  /** Gives up on a node that does not accept a connection in time (a dead or frozen host). */
  connectTimeoutMs: number;
  /** Server-side and client-side limit for one statement. */
  statementTimeoutMs: number;
  /**
   * Also enforce the limit on the server (the default), so a statement cut short there
   * is rolled back and known not to have been applied. PostgreSQL disarms
   * statement_timeout before it commits, so a COMMIT waiting for its synchronous replica
   * is never cancelled by it (checked on PostgreSQL 15: a 1 s timeout, a commit waiting
   * for a standby that never comes, still waiting after 6 s) and quorum acknowledgement
   * holds. The client-side limit is 500 ms longer: it fires only when the server is gone.
   */
  serverSideTimeout?: boolean;
  applicationName: string;
}

/**
 * One pg.Pool per database node, created on first use. Which node is a primary is the
 * topology's business; this class only knows addresses.
 */
export class NodePools {
  private readonly pools = new Map<string, Pool>();
  private readonly addresses = new Map<string, NodeAddress>();

  constructor(
    nodes: NodeAddress[],
    private readonly credentials: DatabaseCredentials,
    private readonly sizing: PoolSizing,
    private readonly onError: (node: string, error: Error) => void = () => undefined,
  ) {
    for (const node of nodes) this.addresses.set(node.name, node);
  }

  /**
   * The nodes of a newer topology: a shard added by resharding brings nodes this process
   * has never heard of; a node no longer listed (a drained shard's) loses its pool, and one
   * whose address changed gets a new pool at the new address.
   */
  learn(nodes: NodeAddress[]): void {
    const listed = new Set(nodes.map((node) => node.name));
    for (const node of nodes) {
      const known = this.addresses.get(node.name);
      if (known && (known.host !== node.host || known.port !== node.port)) void this.reset(node.name);
      this.addresses.set(node.name, node);
    }
    for (const name of [...this.addresses.keys()]) {
      if (listed.has(name)) continue;
      this.addresses.delete(name);
      void this.reset(name);
    }
  }

  pool(name: string): Pool {
    let pool = this.pools.get(name);
    if (pool) return pool;
    const address = this.addresses.get(name);
    if (!address) throw new RangeError(`unknown database node ${name}`);
    const config: PoolConfig = {
      host: address.host,
      port: address.port,
      user: this.credentials.user,
      password: this.credentials.password,
      database: this.credentials.database,
      max: this.sizing.max,
      idleTimeoutMillis: 60_000,
      connectionTimeoutMillis: this.sizing.connectTimeoutMs,
      statement_timeout: this.sizing.serverSideTimeout === false ? undefined : this.sizing.statementTimeoutMs,
      query_timeout: this.sizing.statementTimeoutMs + 500,
      application_name: this.sizing.applicationName,
      keepAlive: true,
    };
    pool = new Pool(config);
    // An idle client whose server went away emits here; without a listener the process dies.
    pool.on('error', (error) => this.onError(name, error));
    this.pools.set(name, pool);
    return pool;
  }

  /** Drops every connection to a node (after it was demoted, fenced or died). */
  async reset(name: string): Promise<void> {
    const pool = this.pools.get(name);
    if (!pool) return;
    this.pools.delete(name);
    await pool.end().catch(() => undefined);
  }

  async close(): Promise<void> {
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(pools.map((pool) => pool.end().catch(() => undefined)));
  }
}

/** Runs `work` in a transaction on one client, always releasing it. */
export async function inTransaction<T>(pool: Pool, work: (client: PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken = false;
  // A checked-out client whose server dies between two statements emits 'error'; the
  // pool only listens on idle clients, and an unheard 'error' would end the process.
  const onError = () => {
    broken = true;
  };
  client.on('error', onError);
  let committing = false;
  try {
    await client.query('BEGIN');
    const result = await work(client);
    committing = true;
    await client.query('COMMIT');
    return result;
  } catch (error) {
    // Before COMMIT was sent nothing can have been committed, whatever the error says.
    if (!committing && error && typeof error === 'object') (error as { transactionNotCommitted?: boolean }).transactionNotCommitted = true;
    try {
      await client.query('ROLLBACK');
    } catch {
      broken = true;
    }
    throw error;
  } finally {
    client.off('error', onError);
    client.release(broken);
  }
}

const CONNECTION_ERROR_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  '57P01',
  '57P02',
  '57P03',
  '08006',
  '08001',
  '08003',
  '08004',
]);

/** True when the error says the node is unreachable or shutting down, not that the query was wrong. */
export function isConnectionError(error: unknown): boolean {
  const candidate = error as { code?: string; message?: string };
  if (candidate?.code && CONNECTION_ERROR_CODES.has(candidate.code)) return true;
  const message = candidate?.message ?? '';
  return /timeout|terminat|Connection|connect|ECONN|read-only|recovery/i.test(message);
}

/** SQLSTATE 25006: the node is a hot standby (or fenced read-only), so not a primary. */
export function isReadOnlyError(error: unknown): boolean {
  return (error as { code?: string })?.code === '25006';
}
