import { Body, Controller, Delete, Get, Headers, HttpCode, Inject, Param, Patch, Post, Req, Res, UseGuards } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiConsumes, ApiHeader, ApiOperation, ApiResponse, ApiTags } from '@nestjs/swagger';
import { DomainError, OutcomeUnknown, RpcPatterns, type LinkCreated, type LinkDetails } from '@shortener/contracts';
import type { GatewayEnvironment } from '@shortener/config';
import { couldBeCode } from '@shortener/links';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { credentialOf, ManageAuthGuard } from './auth';
import { CreatedUrlDto, CreateUrlDto, ProblemDto, UpdateUrlDto, UrlDetailsDto } from './create-url.dto';
import type { CreateQuota } from './create-quota';
import { CREATE_QUOTA, GATEWAY_CONFIG, READER_POOL, REQUEST_TIMEOUTS, WRITER_CHANNEL } from './gateway.constants';
import type { ReaderPool, RpcChannel } from './rpc-channel';
import { TransportError } from './rpc-channel';
import { normalisedTarget } from './link-validators';

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

function assertCode(code: string): void {
  if (!couldBeCode(code)) throw new DomainError('not-found', `no link with code "${code}"`);
}

@ApiTags('urls')
@Controller('api/urls')
export class UrlsController {
  constructor(
    @Inject(GATEWAY_CONFIG) private readonly config: GatewayEnvironment & { publicBaseUrl: string },
    @Inject(WRITER_CHANNEL) private readonly writer: RpcChannel,
    @Inject(READER_POOL) private readonly readers: ReaderPool,
    @Inject(CREATE_QUOTA) private readonly quota: CreateQuota,
  ) {}

  @Post()
  @HttpCode(201)
  @ApiOperation({ summary: 'Create a short link' })
  @ApiConsumes('application/json')
  @ApiBody({ type: CreateUrlDto })
  @ApiHeader({ name: 'Idempotency-Key', required: false, description: 'Same key and body within 24 h: the first response again' })
  @ApiResponse({ status: 201, type: CreatedUrlDto, description: 'Created; Location: /api/urls/{code}' })
  @ApiResponse({ status: 400, type: ProblemDto, description: 'A rule broken, malformed JSON or unknown fields' })
  @ApiResponse({ status: 409, type: ProblemDto, description: 'Alias taken (codes are never reused)' })
  @ApiResponse({ status: 413, type: ProblemDto, description: 'Body over 16 KiB' })
  @ApiResponse({ status: 415, type: ProblemDto, description: 'Not application/json' })
  @ApiResponse({ status: 422, type: ProblemDto, description: 'Idempotency-Key reused with another body' })
  @ApiResponse({ status: 401, type: ProblemDto, description: 'Anonymous creates are turned off (ANONYMOUS_CREATE=false)' })
  @ApiResponse({ status: 429, type: ProblemDto, description: 'Over the per-address create quota; Retry-After, RateLimit-Policy and RateLimit headers' })
  @ApiResponse({ status: 503, type: ProblemDto, description: 'The owning shard has no writable primary; Retry-After; nothing was written' })
  @ApiResponse({ status: 504, type: ProblemDto, description: 'The outcome is unknown; a retry with the same Idempotency-Key is safe' })
  async create(
    @Body() body: CreateUrlDto,
    @Headers('idempotency-key') idempotencyKey: string | undefined,
    @Res({ passthrough: true }) reply: FastifyReply,
    @Req() request: FastifyRequest,
  ): Promise<CreatedUrlDto> {
    await this.admitAnonymousCreate(request, reply);
    if (idempotencyKey !== undefined && !IDEMPOTENCY_KEY.test(idempotencyKey)) {
      throw new DomainError('validation', 'Idempotency-Key must be 1 to 255 visible ASCII characters', {
        errors: [{ field: 'Idempotency-Key', message: 'must be 1 to 255 visible ASCII characters' }],
      });
    }
    const created = await this.write<LinkCreated>(RpcPatterns.createLink, { ...body, url: normalisedTarget(body.url), idempotencyKey });
    reply.header('location', `/api/urls/${created.code}`);
    return {
      code: created.code,
      shortUrl: `${this.config.publicBaseUrl}/${created.code}`,
      url: created.url,
      createdAt: created.createdAt,
      expiresAt: created.expiresAt,
      redirectType: created.redirectType,
      manageToken: created.manageToken,
    };
  }

  @Get(':code')
  @ApiOperation({ summary: 'A link and its click count' })
  @ApiResponse({ status: 200, type: UrlDetailsDto })
  @ApiResponse({ status: 404, type: ProblemDto })
  @ApiResponse({ status: 410, type: ProblemDto, description: 'Expired or deleted' })
  async details(@Param('code') code: string): Promise<LinkDetails> {
    assertCode(code);
    return this.readers.call<LinkDetails>(RpcPatterns.getLink, { code }, REQUEST_TIMEOUTS.detailsMs);
  }

  @Patch(':code')
  @UseGuards(ManageAuthGuard)
  @ApiBearerAuth()
  @ApiOperation({ summary: 'Change a link (manage token or admin token)' })
  @ApiBody({ type: UpdateUrlDto })
  @ApiResponse({ status: 200, type: UrlDetailsDto })
  @ApiResponse({ status: 401, type: ProblemDto })
  @ApiResponse({ status: 403, type: ProblemDto })
  @ApiResponse({ status: 404, type: ProblemDto })
  @ApiResponse({ status: 410, type: ProblemDto })
  async update(@Param('code') code: string, @Body() body: UpdateUrlDto, @Req() request: FastifyRequest): Promise<LinkDetails> {
    assertCode(code);
    const change = body.url === undefined ? body : { ...body, url: normalisedTarget(body.url) };
    return this.write<LinkDetails>(RpcPatterns.updateLink, { code, credential: credentialOf(request), ...change });
  }

  @Delete(':code')
  @HttpCode(204)
  @UseGuards(ManageAuthGuard)
  @ApiBearerAuth()
  @ApiOperation({ summary: 'Delete a link; its code is never reused' })
  @ApiResponse({ status: 204 })
  @ApiResponse({ status: 401, type: ProblemDto })
  @ApiResponse({ status: 403, type: ProblemDto })
  @ApiResponse({ status: 404, type: ProblemDto })
  @ApiResponse({ status: 410, type: ProblemDto })
  async remove(@Param('code') code: string, @Req() request: FastifyRequest): Promise<void> {
    assertCode(code);
    await this.write<null>(RpcPatterns.deleteLink, { code, credential: credentialOf(request) });
  }

  /**
   * Anonymous creates: refused when turned off, else counted per client address (request.ip:
   * the socket's, or X-Forwarded-For's when TRUST_PROXY says the proxy is trusted) in the
   * quota every gateway shares through Redis. The quota's headers go on every answer.
   */
  private async admitAnonymousCreate(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    if (!this.config.ANONYMOUS_CREATE) throw new DomainError('unauthorized', 'anonymous creates are turned off on this shortener (ANONYMOUS_CREATE=false)');
    const limit = this.config.ANONYMOUS_RATE_LIMIT_PER_MINUTE;
    if (limit === 0) return;
    const decision = await this.quota.take('anonymous', request.ip, limit);
    void reply.headers(decision.headers);
    if (!decision.allowed) {
      throw new DomainError('rate-limited', `more than ${limit} creates a minute from this address; retry after the Retry-After seconds`, {
        retryAfterSeconds: Number(decision.headers['retry-after']),
      });
    }
  }

  private async write<T>(pattern: string, payload: unknown): Promise<T> {
    try {
      return await this.writer.call<T>(pattern, payload, REQUEST_TIMEOUTS.writeMs);
    } catch (error) {
      if (error instanceof TransportError) {
        // 503 promises that nothing was written: only when the call never reached the writer.
        if (!error.sent) throw new DomainError('dependency-unavailable', 'the writer is not answering', { retryAfterSeconds: 2 });
        throw OutcomeUnknown();
      }
      throw error;
    }
  }
}
