import type { NodeAddress } from '@shortener/topology';
import type { NodeControl } from './node-control';

/**
 * For platforms where the monitor cannot touch processes (docker compose): it fences by
 * SQL when it can reach the old primary (default_transaction_read_only through ALTER
 * SYSTEM and a reload), and leaves restarts to the node's own entrypoint, which rewinds a
 * returning old primary into a standby of the current one (docker/postgres/node-entrypoint.sh).
 * Fence: a primary the monitor cannot reach cannot be fenced here; `fence` rejects, and
 * the monitor promotes only where that is safe without a fence (quorum mode with no
 * standby feeding the old primary); in async mode the shard stays read-only.
 */
export class SqlOnlyNodeControl implements NodeControl {
  readonly fenceMethod = 'read-only by SQL; an unreachable primary cannot be fenced';

  constructor(
    private readonly makeReadOnly: (node: string) => Promise<void>,
    private readonly log: (message: string, extra?: object) => void,
  ) {}

  async fence(node: string): Promise<void> {
    try {
      await this.makeReadOnly(node);
    } catch (error) {
      throw new Error(`${node} cannot be fenced by SQL: ${(error as Error).message}`);
    }
    this.log('node fenced (read-only)', { node });
  }

  async stop(node: string): Promise<void> {
    await this.fence(node);
  }

  async rejoin(node: string, primary: NodeAddress): Promise<void> {
    // A node that accepts writes but is no primary of the topology takes none until its entrypoint rewinds it.
    await this.fence(node).catch((error: Error) => this.log('could not make the node read-only', { node, err: error.message }));
    this.log('rejoin is left to the node entrypoint', { node, primary: primary.name });
  }

  async start(node: string): Promise<void> {
    this.log('start is left to the container runtime', { node });
  }

  /** Clients find primaries through the topology alone here: nothing to mark. */
  async markRoles(): Promise<void> {
    return undefined;
  }

  async isRunning(): Promise<boolean> {
    return true;
  }

  /** The nodes are containers the operator runs: a new shard's are named in the request. */
  readonly canProvision = false;

  async provision(): Promise<NodeAddress[]> {
    throw new Error('node control sql cannot provision nodes: name them in the body of POST /api/cluster/shards');
  }

  /** Nothing the monitor can do: the operator stops the drained shard's containers (their volumes keep the data). */
  async retire(shard: number, nodes: string[]): Promise<void> {
    this.log('shard retired: its containers are left to the operator to stop', { shard, nodes });
  }
}
