/**
 * A model of one shard's PostgreSQL nodes and of the Kafka topology log, for the unit
 * tests and the simulation of the failover procedures (test code: not exported from the
 * library's index).
 */
import type { NodeView } from './failover-plan';
import type { FailoverPorts, SwitchoverPorts } from './failover-procedure';
import { initialTopology, isNewer, type ReplicationMode, type Topology } from './topology';

export interface ModelNode {
  name: string;
  /** The process runs. */
  alive: boolean;
  /** The monitors can reach it (false: cut off from them, or frozen). */
  reachable: boolean;
  inRecovery: boolean;
  readOnly: boolean;
  walLsn: bigint;
  /** A standby's upstream. */
  upstream: string | null;
}

/** How the node control fences: 'certain' kills the process wherever it is; 'sql' needs to reach it. */
export type ControlKind = 'certain' | 'sql';

export class ModelCluster {
  readonly nodes = new Map<string, ModelNode>();
  /** Committed topology documents, in log order. */
  readonly log: Topology[] = [];
  /** The newest term that initialised the shared transactional producer. */
  highestTerm = 0;
  promotions: { node: string; by: string }[] = [];
  publishFailures = 0;

  constructor(
    readonly mode: ReplicationMode,
    readonly control: ControlKind,
    names = ['n0', 'n1', 'n2'],
  ) {
    for (const [index, name] of names.entries()) {
      this.nodes.set(name, { name, alive: true, reachable: true, inRecovery: index > 0, readOnly: false, walLsn: 100n, upstream: index > 0 ? names[0] : null });
    }
    const first = { ...initialTopology([{ id: 0, nodes: names.map((node, i) => ({ name: node, host: '127.0.0.1', port: 5000 + i })) }], mode), term: 1 };
    this.highestTerm = 1;
    this.log.push(first);
  }

  node(name: string): ModelNode {
    const node = this.nodes.get(name);
    if (!node) throw new RangeError(name);
    return node;
  }

  get latest(): Topology {
    return this.log.at(-1)!;
  }

  /** A standby receives from its upstream: both run, and the upstream is a primary or a standby (cascading). */
  receiving(standby: ModelNode): boolean {
    if (!standby.alive || !standby.inRecovery || !standby.upstream) return false;
    const upstream = this.node(standby.upstream);
    return upstream.alive;
  }

  /** Whether a node can acknowledge a write now. */
  acknowledges(node: ModelNode): boolean {
    if (!node.alive || node.inRecovery || node.readOnly) return false;
    if (this.mode === 'async') return true;
    return [...this.nodes.values()].some((standby) => standby.upstream === node.name && this.receiving(standby));
  }

  view(name: string): NodeView | null {
    const node = this.node(name);
    if (!node.alive || !node.reachable) return null;
    return {
      inRecovery: node.inRecovery,
      walLsn: node.walLsn,
      receivedLsn: node.inRecovery ? node.walLsn : null,
      walReceiver: this.receiving(node) ? 'streaming' : 'none',
      receivingFrom: this.receiving(node) ? node.upstream : null,
      readOnly: node.readOnly,
    };
  }

  /** A new leader initialises the shared transactional producer: older terms are fenced. */
  claimTerm(): number {
    return ++this.highestTerm;
  }
}

export interface PortsOptions {
  monitor: string;
  term: number;
  /** Called before every effect; the simulation yields to its scheduler here. */
  pause?: () => Promise<void>;
  leading?: () => boolean;
  failNextPublish?: () => boolean;
  clock?: { now: number };
}

/** The ports of one monitor over the model, with a trace of the effects it ran. */
export function modelPorts(cluster: ModelCluster, options: PortsOptions) {
  const trace: string[] = [];
  const logs: { level: string; message: string }[] = [];
  const fenceFailures: string[] = [];
  const pause = options.pause ?? (async () => undefined);
  const clock = options.clock ?? { now: 1_000_000 };
  let own: Topology | null = null;
  const reach = (name: string): ModelNode => {
    const node = cluster.node(name);
    if (!node.alive || !node.reachable) throw new Error(`${name} unreachable`);
    return node;
  };
  const ports: SwitchoverPorts = {
    mode: cluster.mode,
    stillLeading: () => options.leading?.() ?? true,
    term: () => options.term,
    topology: () => {
      const followed = cluster.latest;
      return own && own.epoch > followed.epoch ? own : followed;
    },
    observe: async (nodes) => {
      await pause();
      return new Map(nodes.map((name) => [name, cluster.view(name)]));
    },
    // Requests take effect when they are sent (a monitor that dies after sending one does
    // not undo it); the pause after them is the wait for the answer.
    fence: async (name) => {
      trace.push(`fence ${name}`);
      const node = cluster.node(name);
      const fenced = cluster.control === 'certain' || (node.alive && node.reachable);
      if (cluster.control === 'certain') node.alive = false;
      else if (fenced) node.readOnly = true;
      await pause();
      if (!fenced) throw new Error(`${name} unreachable: cannot fence by SQL`);
    },
    fenceFailed: (name) => fenceFailures.push(name),
    promote: async (name) => {
      const node = reach(name);
      trace.push(`promote ${name}`);
      if (node.inRecovery) {
        Object.assign(node, { inRecovery: false, upstream: null, readOnly: false });
        cluster.promotions.push({ node: name, by: options.monitor });
      }
      await pause();
      return true;
    },
    configurePrimary: async (name) => {
      await pause();
      reach(name);
      trace.push(`configure ${name}`);
    },
    repoint: async (replica, upstream) => {
      const node = reach(replica);
      trace.push(`repoint ${replica}->${upstream}`);
      if (node.inRecovery) node.upstream = upstream;
      await pause();
    },
    publish: async (topology) => {
      await pause();
      // The commit reaches the broker only now: a newer term may have fenced this producer meanwhile.
      if (options.failNextPublish?.()) {
        cluster.publishFailures++;
        throw new Error('kafka: request timed out');
      }
      if (topology.term < cluster.highestTerm) throw new Error(`producer fenced (term ${topology.term} < ${cluster.highestTerm})`);
      if (!isNewer(topology, cluster.latest)) throw new Error('not newer');
      trace.push(`publish e${topology.epoch} ${topology.shards[0].primary}`);
      cluster.log.push(topology);
    },
    adopt: (topology) => {
      own = topology;
    },
    now: () => clock.now,
    log: (level, message) => logs.push({ level, message }),
    setReadOnly: async (name, readOnly) => {
      await pause();
      reach(name).readOnly = readOnly;
      trace.push(`read-only ${name} ${readOnly}`);
    },
    currentWalLsn: async (name) => {
      await pause();
      return reach(name).walLsn;
    },
    stop: async (name) => {
      await pause();
      trace.push(`stop ${name}`);
      reach(name).alive = false;
    },
    start: async (name) => {
      await pause();
      trace.push(`start ${name}`);
      cluster.node(name).alive = true;
    },
    isRunning: async (name) => cluster.node(name).alive,
    waitForReceived: async (name, lsn) => {
      await pause();
      if (reach(name).walLsn < lsn) throw new Error(`${name} behind`);
    },
  };
  return { ports: ports as FailoverPorts & SwitchoverPorts, trace, logs, fenceFailures };
}
