import { Controller, Get, HttpCode, Inject, Param, ParseIntPipe, Post, Req, Res, UseGuards } from '@nestjs/common';
import { ApiBearerAuth, ApiOperation, ApiProduces, ApiResponse, ApiTags } from '@nestjs/swagger';
import { DomainError, RpcPatterns, type NodeHealth } from '@shortener/contracts';
import type { GatewayEnvironment } from '@shortener/config';
import type { TopologyFollower } from '@shortener/events';
import { initialTopology, type Topology } from '@shortener/topology';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AdminGuard } from './auth';
import type { ClusterEventHub } from './cluster-events';
import { CLUSTER_EVENTS, GATEWAY_CONFIG, READER_POOL, REQUEST_TIMEOUTS, TOPOLOGY_FOLLOWER } from './gateway.constants';
import { ProblemDto } from './create-url.dto';
import type { ReaderPool } from './rpc-channel';
import { SwitchoverRequests } from './switchover-requests';

export interface ClusterNodeView {
  name: string;
  host: string;
  port: number;
  role: 'primary' | 'replica';
  healthy: boolean;
  lagBytes: number | null;
  lagSeconds: number | null;
}

export function clusterDocument(
  topology: Topology,
  health: NodeHealth[],
  config: Pick<GatewayEnvironment, 'REDIS_URL' | 'REDIS_CLUSTER_NODES' | 'KAFKA_BROKERS'>,
) {
  const healthByName = new Map(health.map((node) => [node.name, node]));
  const view = (name: string, role: 'primary' | 'replica'): ClusterNodeView => {
    const address = topology.nodes.find((node) => node.name === name)!;
    const seen = healthByName.get(name);
    return {
      name,
      host: address.host,
      port: address.port,
      role,
      healthy: seen?.healthy ?? false,
      lagBytes: role === 'primary' ? null : (seen?.lagBytes ?? null),
      lagSeconds: role === 'primary' ? null : (seen?.lagSeconds ?? null),
    };
  };
  const clusterNodes = config.REDIS_CLUSTER_NODES ?? [];
  const redisUrl = config.REDIS_URL ? new URL(config.REDIS_URL) : null;
  // A Redis Cluster is named by its seed nodes; `host`/`port` stay those of the first one.
  const redis =
    clusterNodes.length > 0
      ? { host: clusterNodes[0].host, port: clusterNodes[0].port, cluster: { nodes: clusterNodes.map(({ host, port }) => `${host}:${port}`) } }
      : { host: redisUrl!.hostname, port: Number(redisUrl!.port || 6379) };
  return {
    epoch: topology.epoch,
    replicationMode: topology.replicationMode,
    ring: { algorithm: topology.ring.algorithm, slots: topology.ring.slots },
    shards: topology.shards.map((shard) => ({
      id: shard.id,
      primary: view(shard.primary, 'primary'),
      replicas: shard.replicas.map((name) => view(name, 'replica')),
    })),
    failovers: topology.failovers,
    redis,
    kafka: { brokers: config.KAFKA_BROKERS.map(({ host, port }) => `${host}:${port}`) },
  };
}

/** The topology before the follower delivered one: what the configuration says, at epoch 0. */
export function configuredTopology(config: Pick<GatewayEnvironment, 'SHARD_NODES' | 'REPLICATION_MODE'>): Topology {
  return { ...initialTopology(config.SHARD_NODES, config.REPLICATION_MODE), epoch: 0 };
}

/** Node health as the readers probe it; none (every node unknown) when no reader answers. */
export function nodeHealth(readers: ReaderPool): Promise<NodeHealth[]> {
  return readers.call<NodeHealth[]>(RpcPatterns.nodeHealth, {}, REQUEST_TIMEOUTS.clusterMs).catch(() => []);
}

@ApiTags('admin')
@ApiBearerAuth()
@UseGuards(AdminGuard)
@Controller('api/cluster')
export class ClusterController {
  constructor(
    @Inject(GATEWAY_CONFIG) private readonly config: GatewayEnvironment,
    @Inject(TOPOLOGY_FOLLOWER) private readonly follower: TopologyFollower,
    @Inject(READER_POOL) private readonly readers: ReaderPool,
    private readonly switchovers: SwitchoverRequests,
    @Inject(CLUSTER_EVENTS) private readonly clusterEvents: ClusterEventHub,
  ) {}

  @Get()
  @ApiOperation({ summary: 'The topology: ring, shards, nodes with health and lag, failovers' })
  @ApiResponse({ status: 200, description: 'The cluster document of docs/reference.md section 2' })
  @ApiResponse({ status: 401, type: ProblemDto })
  @ApiResponse({ status: 403, type: ProblemDto })
  async cluster() {
    return clusterDocument(this.topology(), await this.health(), this.config);
  }

  @Get('events')
  @ApiProduces('text/event-stream')
  @ApiOperation({
    summary: 'Server-sent events: `topology` (the cluster document) at once and on every new epoch, `health` when node health changes, `operations`',
  })
  @ApiResponse({ status: 200, description: 'text/event-stream' })
  @ApiResponse({ status: 401, type: ProblemDto })
  @ApiResponse({ status: 403, type: ProblemDto })
  events(@Req() request: FastifyRequest, @Res() reply: FastifyReply): void {
    reply.hijack();
    reply.raw.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      // Proxies that buffer (nginx) would hold events back.
      'x-accel-buffering': 'no',
    });
    const close = this.clusterEvents.subscribe({ write: (chunk) => reply.raw.write(chunk), end: () => reply.raw.end() });
    request.raw.on('close', close);
  }

  @Post('shards/:id/switchover')
  @HttpCode(200)
  @ApiOperation({ summary: "Hand the shard's primary role to its best replica, losing no acknowledged write" })
  @ApiResponse({ status: 200, description: 'The new cluster document' })
  @ApiResponse({ status: 404, type: ProblemDto })
  @ApiResponse({ status: 503, type: ProblemDto, description: 'No monitor completed the switchover in time' })
  async switchover(@Param('id', ParseIntPipe) id: number) {
    const topology = this.topology();
    if (!topology.shards.some((shard) => shard.id === id)) throw new DomainError('not-found', `no shard ${id}`);
    const next = await this.switchovers.request(id, topology.epoch, () => this.follower.current);
    return clusterDocument(next, await this.health(), this.config);
  }

  private topology(): Topology {
    return this.follower.current ?? configuredTopology(this.config);
  }

  private health(): Promise<NodeHealth[]> {
    return nodeHealth(this.readers);
  }
}
