import { topologySchema, type TopologyDocument } from '@shortener/contracts';
import { ShardRing } from '@shortener/shard-router';

export type ReplicationMode = TopologyDocument['replicationMode'];

export type NodeAddress = TopologyDocument['nodes'][number];
export type ShardMembers = TopologyDocument['shards'][number];
export type FailoverRecord = TopologyDocument['failovers'][number];

/**
 * The cluster as every service must see it (the schema is `topologySchema` in
 * libs/contracts). Written only by the leading failover monitor, stamped with its leader
 * term; every change of primaries, replicas or ring raises `epoch` by one, and a follower
 * never goes back to a lower epoch or an older term.
 */
export type Topology = TopologyDocument;

export const TOPOLOGY_SCHEMA_VERSION = 1;
const MAX_FAILOVER_HISTORY = 50;

export function initialTopology(
  shards: { id: number; nodes: NodeAddress[] }[],
  replicationMode: ReplicationMode,
  primaries: Map<number, string> = new Map(),
): Topology {
  return {
    epoch: 1,
    term: 0,
    replicationMode,
    ring: { algorithm: 'crc32-slots', slots: ShardRing.initial(shards.length).slots },
    shards: shards.map((shard) => {
      const primary = primaries.get(shard.id) ?? shard.nodes[0].name;
      return {
        id: shard.id,
        primary,
        replicas: shard.nodes.map((node) => node.name).filter((name) => name !== primary),
      };
    }),
    nodes: shards.flatMap((shard) => shard.nodes.map(({ name, host, port }) => ({ name, host, port }))),
    failovers: [],
  };
}

/** Hands a shard's primary role to one of its replicas; the old primary becomes a replica. */
export function withPromotedReplica(topology: Topology, shardId: number, newPrimary: string, record: Omit<FailoverRecord, 'shard' | 'from' | 'to'>): Topology {
  const shard = topology.shards.find((candidate) => candidate.id === shardId);
  if (!shard) throw new RangeError(`no shard ${shardId}`);
  if (!shard.replicas.includes(newPrimary)) {
    throw new RangeError(`${newPrimary} is not a replica of shard ${shardId}`);
  }
  const oldPrimary = shard.primary;
  return {
    ...topology,
    epoch: topology.epoch + 1,
    shards: topology.shards.map((candidate) =>
      candidate.id !== shardId
        ? candidate
        : {
            id: shardId,
            primary: newPrimary,
            replicas: [...shard.replicas.filter((name) => name !== newPrimary), oldPrimary],
          },
    ),
    failovers: [...topology.failovers, { shard: shardId, from: oldPrimary, to: newPrimary, ...record }].slice(-MAX_FAILOVER_HISTORY),
  };
}

export function ringOf(topology: Topology): ShardRing {
  return new ShardRing(topology.ring.slots);
}

export function nodeAddress(topology: Topology, name: string): NodeAddress {
  const node = topology.nodes.find((candidate) => candidate.name === name);
  if (!node) throw new RangeError(`unknown node ${name}`);
  return node;
}

export function shardOfNode(topology: Topology, name: string): ShardMembers | undefined {
  return topology.shards.find((shard) => shard.primary === name || shard.replicas.includes(name));
}

/** The synchronous_standby_names a primary needs in the given mode. */
export function synchronousStandbyNames(mode: ReplicationMode, replicas: string[]): string {
  if (mode === 'async' || replicas.length === 0) return '';
  return `ANY 1 (${replicas.join(', ')})`;
}

/** Checks a document from the wire before a follower trusts it. */
export function parseTopology(json: unknown): Topology {
  const parsed = topologySchema.safeParse(json);
  if (!parsed.success) throw new TypeError(`not a topology document: ${parsed.error.issues[0]?.path.join('.')} ${parsed.error.issues[0]?.message}`);
  const candidate = parsed.data;
  new ShardRing(candidate.ring.slots);
  const names = new Set(candidate.nodes.map((node) => node.name));
  for (const shard of candidate.shards) {
    for (const member of [shard.primary, ...shard.replicas]) {
      if (!names.has(member)) throw new TypeError(`shard ${shard.id} names unknown node ${member}`);
    }
  }
  return candidate;
}

/**
 * A follower accepts a document only if it moves the epoch forward and comes from the
 * same or a newer leader term: a deposed leader that still publishes (its lease ran out
 * while it was frozen) cannot override what a newer leader wrote.
 */
export function isNewer(candidate: Topology, current: Topology | null): boolean {
  return current === null || (candidate.epoch > current.epoch && candidate.term >= current.term);
}

/** The document as the leader of `term` publishes it. */
export function withTerm(topology: Topology, term: number): Topology {
  return topology.term === term ? topology : { ...topology, term };
}
