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
    // Slot s goes to the (s mod N)-th listed shard: ShardRing.initial for ids 0..N-1, and a
    // ring of listed shards only when a retired id left a gap.
    ring: { algorithm: 'crc32-slots', slots: ShardRing.initial(shards.length).slots.map((index) => shards[index].id) },
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
  const shardIds = new Set(candidate.shards.map((shard) => shard.id));
  for (const owner of new Set(candidate.ring.slots)) {
    if (!shardIds.has(owner)) throw new TypeError(`the ring names shard ${owner}, which the document does not list`);
  }
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

/**
 * Online resharding, step 1 of an add: the new shard joins with its nodes but owns no
 * slot yet (services open pools to it; nothing is routed there until a slot switches).
 */
export function withAddedShard(topology: Topology, shardId: number, nodes: NodeAddress[]): Topology {
  if (topology.shards.some((shard) => shard.id === shardId)) throw new RangeError(`shard ${shardId} is already in the topology`);
  if (nodes.length === 0) throw new RangeError('a shard needs at least one node');
  const taken = new Set(topology.nodes.map((node) => node.name));
  for (const node of nodes) if (taken.has(node.name)) throw new RangeError(`node ${node.name} is already in the topology`);
  return {
    ...topology,
    epoch: topology.epoch + 1,
    shards: [...topology.shards, { id: shardId, primary: nodes[0].name, replicas: nodes.slice(1).map((node) => node.name) }],
    nodes: [...topology.nodes, ...nodes.map(({ name, host, port }) => ({ name, host, port }))],
  };
}

/** The switch of a slot batch: the ring with its new owners, under the next epoch. */
export function withSlotMap(topology: Topology, slots: readonly number[]): Topology {
  const known = new Set(topology.shards.map((shard) => shard.id));
  for (const owner of new Set(slots)) if (!known.has(owner)) throw new RangeError(`slot owner ${owner} is not a shard of the topology`);
  return { ...topology, epoch: topology.epoch + 1, ring: { ...topology.ring, slots: [...slots] } };
}

/** The last step of a drain (or of a failed add): a shard that owns no slot leaves with its nodes. */
export function withoutShard(topology: Topology, shardId: number): Topology {
  const shard = topology.shards.find((candidate) => candidate.id === shardId);
  if (!shard) return topology;
  if (topology.ring.slots.includes(shardId)) throw new RangeError(`shard ${shardId} still owns slots`);
  const leaving = new Set([shard.primary, ...shard.replicas]);
  return {
    ...topology,
    epoch: topology.epoch + 1,
    shards: topology.shards.filter((candidate) => candidate.id !== shardId),
    nodes: topology.nodes.filter((node) => !leaving.has(node.name)),
  };
}
