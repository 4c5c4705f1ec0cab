import type { NodeAddress } from '@shortener/topology';

/**
 * What the monitor does to database nodes beyond SQL. Locally: processes and data
 * directories under STACK_DIR. In Kubernetes: pods of the shard's StatefulSet (see
 * k8s/README.md), with the same verbs.
 */
export interface NodeControl {
  /** How `fence` reaches a primary the monitor cannot talk to (for logs and docs). */
  readonly fenceMethod: string;
  /**
   * Resolves only once the node can acknowledge no write; rejects (never swallows) when
   * that cannot be made sure. The caller then promotes only where that is safe without a
   * fence (libs/topology `promotionGate`).
   */
  fence(node: string): Promise<void>;
  /**
   * Brings a node back as a standby of `primary` and starts it: pg_rewind, or a new base
   * backup when the rewind fails or `fromScratch` asks for one.
   */
  rejoin(node: string, primary: NodeAddress, options?: { fromScratch?: boolean }): Promise<void>;
  /** Starts a stopped node as it is (a standby that died). */
  start(node: string): Promise<void>;
  /** Clean shutdown: a primary first sends all its WAL to its standbys. */
  stop(node: string): Promise<void>;
  isRunning(node: string): Promise<boolean>;
  /**
   * Makes the platform's routing follow the topology: in Kubernetes the pods' role labels,
   * which the `pg-s<n>-primary` Services select. Nothing to do for local processes.
   */
  markRoles(shards: { primary: string; replicas: string[] }[]): Promise<void>;
  /**
   * Whether `provision` can make a new shard's nodes (online resharding, POST
   * /api/cluster/shards with body `{}`). Only the local stack can; elsewhere the operator
   * runs the nodes and names them in the request.
   */
  readonly canProvision: boolean;
  /**
   * Creates and starts shard `shard`'s nodes (a primary and REPLICAS streaming replicas in
   * the cluster's replication mode, every migration applied) and resolves their addresses,
   * the primary first. Idempotent: after a partial failure a second call completes it.
   */
  provision(shard: number): Promise<NodeAddress[]>;
  /** Stops a drained shard's nodes; their data is kept until an operator removes it. */
  retire(shard: number, nodes: string[]): Promise<void>;
}
