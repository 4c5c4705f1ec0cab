import { Body, Controller, Delete, Get, HttpCode, Inject, Param, ParseIntPipe, Post, Res, UseGuards } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiOperation, ApiProperty, ApiPropertyOptional, ApiResponse, ApiTags } from '@nestjs/swagger';
import { adoptedNodeSchema, DomainError, type AdoptedNode, type FieldError, type OperationDocumentV1 } from '@shortener/contracts';
import type { OperationsFollower, TopologyFollower } from '@shortener/events';
import type { Topology } from '@shortener/topology';
import type { FastifyReply } from 'fastify';
import { z } from 'zod';
import { AdminGuard } from './auth';
import { ProblemDto } from './create-url.dto';
import { OPERATIONS_FOLLOWER, TOPOLOGY_FOLLOWER } from './gateway.constants';
import { OperationRequests } from './operation-requests';

export class AdoptedNodeDto {
  @ApiProperty({ example: 's4n0', pattern: '^[a-z0-9][a-z0-9-]{0,62}$' }) name!: string;
  @ApiProperty({ example: 'pg-s4n0.internal', maxLength: 253 }) host!: string;
  @ApiProperty({ example: 5432, minimum: 1, maximum: 65535 }) port!: number;
}

export class AddShardDto {
  @ApiPropertyOptional({
    type: [AdoptedNodeDto],
    minItems: 1,
    maxItems: 16,
    description: 'Nodes an operator already runs, the first as primary; absent: node control provisions them',
  })
  nodes?: AdoptedNodeDto[];
}

class SlotProgressDto {
  @ApiProperty() total!: number;
  @ApiProperty() moved!: number;
}

class RowProgressDto {
  @ApiProperty() copied!: number;
  @ApiProperty({ description: 'Rows compared equal on the old and the new owner before their slot switched' }) verified!: number;
}

export class OperationDocumentDto {
  @ApiProperty() id!: string;
  @ApiProperty({ enum: ['add-shard', 'drain-shard'] }) type!: 'add-shard' | 'drain-shard';
  @ApiProperty({ description: 'The shard added or drained' }) shard!: number;
  @ApiProperty({ enum: ['running', 'done', 'failed'] }) state!: 'running' | 'done' | 'failed';
  @ApiProperty({ example: 'copy' }) phase!: string;
  @ApiProperty({ type: SlotProgressDto }) slots!: SlotProgressDto;
  @ApiProperty({ type: RowProgressDto }) rows!: RowProgressDto;
  @ApiProperty({ description: 'The longest write pause of a slot switch so far' }) maxWritePauseMs!: number;
  @ApiProperty({ format: 'date-time' }) startedAt!: string;
  @ApiProperty({ format: 'date-time', nullable: true, type: String }) finishedAt!: string | null;
  @ApiPropertyOptional() error?: string;
}

/**
 * The body of POST /api/cluster/shards, checked with the contract's own node schema
 * (the monitor parses the command with it too) rather than a second set of
 * class-validator rules that could drift from it; unknown fields are refused.
 */
const addShardBodySchema = z.strictObject({ nodes: z.array(adoptedNodeSchema.strict()).min(1).max(16).optional() });

/** The nodes of an add-shard request, or a 400 naming each bad field; an absent body is `{}`. */
export function parseAddShardBody(body: unknown): AdoptedNode[] | undefined {
  const parsed = addShardBodySchema.safeParse(body ?? {});
  if (!parsed.success) {
    const errors: FieldError[] = parsed.error.issues.map((issue) => ({ field: issue.path.join('.') || '(body)', message: issue.message }));
    throw new DomainError('validation', errors.map((error) => `${error.field}: ${error.message}`).join('; '), { errors });
  }
  const nodes = parsed.data.nodes;
  if (!nodes) return undefined;
  const errors: FieldError[] = [];
  const names = new Set<string>();
  const addresses = new Set<string>();
  nodes.forEach((node, index) => {
    if (names.has(node.name)) errors.push({ field: `nodes.${index}.name`, message: `"${node.name}" is named twice` });
    if (addresses.has(`${node.host}:${node.port}`)) errors.push({ field: `nodes.${index}`, message: `${node.host}:${node.port} is named twice` });
    names.add(node.name);
    addresses.add(`${node.host}:${node.port}`);
  });
  if (errors.length) throw new DomainError('validation', errors.map((error) => `${error.field}: ${error.message}`).join('; '), { errors });
  return nodes;
}

/** POST/DELETE /api/cluster/shards and GET /api/cluster/operations (docs/reference.md section 7): the admin's. */
@ApiTags('admin')
@ApiBearerAuth()
@UseGuards(AdminGuard)
@Controller('api/cluster')
export class ReshardingController {
  constructor(
    @Inject(TOPOLOGY_FOLLOWER) private readonly topologyFollower: TopologyFollower,
    @Inject(OPERATIONS_FOLLOWER) private readonly operations: OperationsFollower,
    private readonly requests: OperationRequests,
  ) {}

  @Post('shards')
  @HttpCode(202)
  @ApiOperation({
    summary: 'Add a shard (the next unused id): its nodes provisioned by node control, or the nodes named; slots move to it online',
  })
  @ApiBody({ type: AddShardDto, required: false, description: '`{}` (or no body): node control provisions the nodes' })
  @ApiResponse({ status: 202, type: OperationDocumentDto, description: 'The operation; Location: /api/cluster/operations/{id}' })
  @ApiResponse({ status: 400, type: ProblemDto, description: 'Unknown fields, bad or repeated nodes, or refused by the monitor as invalid' })
  @ApiResponse({ status: 401, type: ProblemDto })
  @ApiResponse({ status: 403, type: ProblemDto })
  @ApiResponse({ status: 409, type: ProblemDto, description: 'An operation runs (named in detail), or a node name is already in the topology' })
  @ApiResponse({ status: 503, type: ProblemDto, description: 'Kafka or the leading monitor did not answer; Retry-After' })
  async addShard(@Body() body: unknown, @Res({ passthrough: true }) reply: FastifyReply): Promise<OperationDocumentV1> {
    const nodes = parseAddShardBody(body);
    this.requests.refuseWhileRunning();
    if (nodes) {
      const known = new Set(this.topology().nodes.map((node) => node.name));
      const taken = nodes.filter((node) => known.has(node.name)).map((node) => node.name);
      if (taken.length) throw new DomainError('conflict', `already in the topology: ${taken.join(', ')}`);
    }
    return this.accepted(await this.requests.addShard(nodes), reply);
  }

  @Delete('shards/:id')
  @HttpCode(202)
  @ApiOperation({ summary: 'Drain a shard: its slots go evenly to the others online, then it leaves the topology and its nodes stop' })
  @ApiResponse({ status: 202, type: OperationDocumentDto, description: 'The operation; Location: /api/cluster/operations/{id}' })
  @ApiResponse({ status: 401, type: ProblemDto })
  @ApiResponse({ status: 403, type: ProblemDto })
  @ApiResponse({ status: 404, type: ProblemDto, description: 'No such shard' })
  @ApiResponse({ status: 409, type: ProblemDto, description: 'The last shard that owns slots, or an operation runs (named in detail)' })
  @ApiResponse({ status: 503, type: ProblemDto, description: 'Kafka or the leading monitor did not answer; Retry-After' })
  async drainShard(@Param('id', ParseIntPipe) id: number, @Res({ passthrough: true }) reply: FastifyReply): Promise<OperationDocumentV1> {
    const topology = this.topology();
    if (!topology.shards.some((shard) => shard.id === id)) throw new DomainError('not-found', `no shard ${id}`);
    if (!topology.ring.slots.some((owner) => owner !== id)) {
      throw new DomainError('conflict', `shard ${id} is the last shard that owns slots; the cluster needs one`);
    }
    this.requests.refuseWhileRunning();
    return this.accepted(await this.requests.drainShard(id), reply);
  }

  @Get('operations')
  @ApiOperation({ summary: 'Every resharding operation, the newest first' })
  @ApiResponse({ status: 200, type: [OperationDocumentDto] })
  @ApiResponse({ status: 401, type: ProblemDto })
  @ApiResponse({ status: 403, type: ProblemDto })
  list(): OperationDocumentV1[] {
    return this.operations.list().map((record) => record.document);
  }

  @Get('operations/:id')
  @ApiOperation({ summary: 'One resharding operation and its progress' })
  @ApiResponse({ status: 200, type: OperationDocumentDto })
  @ApiResponse({ status: 401, type: ProblemDto })
  @ApiResponse({ status: 403, type: ProblemDto })
  @ApiResponse({ status: 404, type: ProblemDto })
  operation(@Param('id') id: string): OperationDocumentV1 {
    const record = this.operations.get(id);
    // A refused request never became an operation.
    if (!record || record.refused) throw new DomainError('not-found', `no operation ${id}`);
    return record.document;
  }

  private accepted(document: OperationDocumentV1, reply: FastifyReply): OperationDocumentV1 {
    reply.header('location', `/api/cluster/operations/${encodeURIComponent(document.id)}`);
    return document;
  }

  /**
   * The topology as the follower last read it. Unlike the cluster document, no fallback
   * to the configured one: after a resharding that would name shards that no longer
   * exist, or miss added ones.
   */
  private topology(): Topology {
    const topology = this.topologyFollower.current;
    if (!topology) throw new DomainError('dependency-unavailable', 'the gateway has not read the topology yet', { retryAfterSeconds: 2 });
    return topology;
  }
}
