import type { NodeAddress } from '@shortener/topology';
import type { NodeControl } from './node-control';

/**
 * For platforms where the monitor cannot touch processes (docker compose): it fences by
 * SQL when it can reach the old primary (the caller has already promoted around it), and
 * leaves restarts to the node's own entrypoint, which rewinds a returning old primary
 * into a standby of the current one (docker/postgres/node-entrypoint.sh).
 */
export class SqlOnlyNodeControl implements NodeControl {
  constructor(
    private readonly makeReadOnly: (node: string) => Promise<void>,
    private readonly log: (message: string, extra?: object) => void,
  ) {}

  async fence(node: string): Promise<void> {
    await this.makeReadOnly(node).catch(() => this.log('node unreachable; its entrypoint fences it on restart', { node }));
  }

  async stop(node: string): Promise<void> {
    await this.fence(node);
  }

  async rejoin(node: string, primary: NodeAddress): Promise<void> {
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
}
