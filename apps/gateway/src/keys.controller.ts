import { Body, Controller, Delete, Get, HttpCode, Inject, Param, Post, Res, UseGuards } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiOperation, ApiProperty, ApiPropertyOptional, ApiResponse, ApiTags } from '@nestjs/swagger';
import { IsInt, IsOptional, IsString, Length, Max, Min } from 'class-validator';
import { apiKeyId, DomainError, RpcPatterns, type ApiKeyCreated, type ApiKeyInfo } from '@shortener/contracts';
import type { GatewayEnvironment } from '@shortener/config';
import type { FastifyReply } from 'fastify';
import type { ApiKeyVerifier } from './api-keys';
import { AdminGuard } from './auth';
import { ProblemDto } from './create-url.dto';
import { API_KEYS, GATEWAY_CONFIG, READER_POOL, REQUEST_TIMEOUTS, WRITER_CHANNEL } from './gateway.constants';
import type { ReaderPool, RpcChannel } from './rpc-channel';
import { writeThrough } from './rpc-channel';

export class CreateKeyDto {
  @ApiProperty({ example: 'billing service', minLength: 1, maxLength: 200 })
  @IsString()
  @Length(1, 200)
  name!: string;

  @ApiPropertyOptional({ minimum: 1, maximum: 100_000, description: 'Creates a minute; KEY_RATE_LIMIT_PER_MINUTE when absent' })
  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(100_000)
  rateLimitPerMinute?: number;
}

export class ApiKeyDto {
  @ApiProperty({ example: 'Q3k9ZpLm2x' }) id!: string;
  @ApiProperty() name!: string;
  @ApiProperty({ description: 'Creates a minute allowed to this key' }) rateLimitPerMinute!: number;
  @ApiProperty({ format: 'date-time' }) createdAt!: string;
}

export class CreatedApiKeyDto extends ApiKeyDto {
  @ApiProperty({ description: 'Shown once; send it as Authorization: Bearer <key> or X-Api-Key. Only a hash is stored.' })
  key!: string;
}

/** POST/GET/DELETE /api/keys (docs/reference.md section 8): the admin's. */
@ApiTags('keys')
@ApiBearerAuth()
@UseGuards(AdminGuard)
@Controller('api/keys')
export class KeysController {
  constructor(
    @Inject(GATEWAY_CONFIG) private readonly config: GatewayEnvironment,
    @Inject(WRITER_CHANNEL) private readonly writer: RpcChannel,
    @Inject(READER_POOL) private readonly readers: ReaderPool,
    @Inject(API_KEYS) private readonly verifier: ApiKeyVerifier,
  ) {}

  @Post()
  @HttpCode(201)
  @ApiOperation({ summary: 'Issue an API key (shown once)' })
  @ApiBody({ type: CreateKeyDto })
  @ApiResponse({ status: 201, type: CreatedApiKeyDto, description: 'Location: /api/keys/{id}' })
  @ApiResponse({ status: 400, type: ProblemDto })
  @ApiResponse({ status: 401, type: ProblemDto })
  @ApiResponse({ status: 403, type: ProblemDto })
  async create(@Body() body: CreateKeyDto, @Res({ passthrough: true }) reply: FastifyReply): Promise<CreatedApiKeyDto> {
    const created = await this.write<ApiKeyCreated>(RpcPatterns.createKey, { name: body.name, rateLimitPerMinute: body.rateLimitPerMinute ?? null });
    reply.header('location', `/api/keys/${created.id}`);
    // Never cached by anything between here and the admin: the body holds the key.
    reply.header('cache-control', 'no-store');
    return { ...this.shown(created), key: created.key };
  }

  @Get()
  @ApiOperation({ summary: 'The live API keys, oldest first, without secrets' })
  @ApiResponse({ status: 200, type: [ApiKeyDto] })
  async list(): Promise<ApiKeyDto[]> {
    const keys = await this.readers.call<ApiKeyInfo[]>(RpcPatterns.listKeys, {}, REQUEST_TIMEOUTS.detailsMs);
    return keys.map((key) => this.shown(key));
  }

  @Delete(':id')
  @HttpCode(204)
  @ApiOperation({ summary: 'Revoke an API key: refused (401) by every gateway within 5 s' })
  @ApiResponse({ status: 204 })
  @ApiResponse({ status: 404, type: ProblemDto, description: 'No live key with this id' })
  async revoke(@Param('id') id: string): Promise<void> {
    if (!apiKeyId.safeParse(id).success) throw new DomainError('not-found', 'no API key with this id');
    await this.write<null>(RpcPatterns.revokeKey, { id });
    this.verifier.forget(id);
  }

  private shown(key: ApiKeyInfo): ApiKeyDto {
    return { id: key.id, name: key.name, rateLimitPerMinute: key.rateLimitPerMinute ?? this.config.KEY_RATE_LIMIT_PER_MINUTE, createdAt: key.createdAt };
  }

  private write<T>(pattern: string, payload: unknown): Promise<T> {
    return writeThrough<T>(this.writer, pattern, payload, REQUEST_TIMEOUTS.writeMs);
  }
}
