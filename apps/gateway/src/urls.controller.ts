import { Body, Controller, Delete, Get, Headers, HttpCode, Inject, Param, Patch, Post, Query, Req, Res, UseGuards } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiConsumes, ApiHeader, ApiOperation, ApiQuery, ApiResponse, ApiTags } from '@nestjs/swagger';
import { apiKeyId, DomainError, RpcPatterns, type LinkCreated, type LinkDetails, type LinkPage } from '@shortener/contracts';
import type { GatewayEnvironment } from '@shortener/config';
import { couldBeCode, decodeCursor, encodeCursor, ListingError, parseListingLimit } from '@shortener/links';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ApiKeyVerifier, VerifiedKey } from './api-keys';
import { bearerToken, credentialOf, ManageAuthGuard, sameSecret } from './auth';
import { CreatedUrlDto, CreateUrlDto, ProblemDto, UpdateUrlDto, UrlDetailsDto, UrlPageDto } from './create-url.dto';
import type { CreateQuota } from './create-quota';
import { API_KEYS, CREATE_QUOTA, GATEWAY_CONFIG, READER_POOL, REQUEST_TIMEOUTS, WRITER_CHANNEL } from './gateway.constants';
import type { ReaderPool, RpcChannel } from './rpc-channel';
import { writeThrough } from './rpc-channel';
import { normalisedTarget } from './link-validators';

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

function assertCode(code: string): void {
  if (!couldBeCode(code)) throw new DomainError('not-found', `no link with code "${code}"`);
}

/** A query parameter given once; `?limit=1&limit=2` is a 400, not whichever one the parser kept. */
function singleQueryValue(name: string, value: unknown): string {
  if (typeof value !== 'string')
    throw new DomainError('validation', `${name} must be given once`, { errors: [{ field: name, message: 'must be given once' }] });
  return value;
}

@ApiTags('urls')
@Controller('api/urls')
export class UrlsController {
  constructor(
    @Inject(GATEWAY_CONFIG) private readonly config: GatewayEnvironment & { publicBaseUrl: string },
    @Inject(WRITER_CHANNEL) private readonly writer: RpcChannel,
    @Inject(READER_POOL) private readonly readers: ReaderPool,
    @Inject(CREATE_QUOTA) private readonly quota: CreateQuota,
    @Inject(API_KEYS) private readonly keys: ApiKeyVerifier,
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
  @ApiResponse({ status: 401, type: ProblemDto, description: 'An API key that is not a live one, or anonymous creates turned off (ANONYMOUS_CREATE=false)' })
  @ApiResponse({
    status: 429,
    type: ProblemDto,
    description: "Over the key's or the address's create quota; Retry-After, RateLimit-Policy and RateLimit headers",
  })
  @ApiResponse({ status: 503, type: ProblemDto, description: 'The owning shard has no writable primary; Retry-After; nothing was written' })
  @ApiResponse({ status: 504, type: ProblemDto, description: 'The outcome is unknown; a retry with the same Idempotency-Key is safe' })
  async create(
    @Body() body: CreateUrlDto,
    @Headers('idempotency-key') idempotencyKey: string | undefined,
    @Res({ passthrough: true }) reply: FastifyReply,
    @Req() request: FastifyRequest,
  ): Promise<CreatedUrlDto> {
    const key = await this.keys.verify(request);
    if (key) await this.admitKeyCreate(key, reply);
    else await this.admitAnonymousCreate(request, reply);
    if (idempotencyKey !== undefined && !IDEMPOTENCY_KEY.test(idempotencyKey)) {
      throw new DomainError('validation', 'Idempotency-Key must be 1 to 255 visible ASCII characters', {
        errors: [{ field: 'Idempotency-Key', message: 'must be 1 to 255 visible ASCII characters' }],
      });
    }
    const created = await this.write<LinkCreated>(RpcPatterns.createLink, {
      ...body,
      url: normalisedTarget(body.url),
      idempotencyKey,
      owner: key?.id,
    });
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

  @Get()
  @ApiBearerAuth()
  @ApiOperation({ summary: "Links newest first, merged across every shard: an API key's own, or (admin token) all or one key's" })
  @ApiQuery({ name: 'limit', required: false, description: '1 to 100, default 20' })
  @ApiQuery({ name: 'cursor', required: false, description: 'nextCursor of the page before' })
  @ApiQuery({ name: 'key', required: false, description: "Admin only: one key's links" })
  @ApiResponse({ status: 200, type: UrlPageDto })
  @ApiResponse({ status: 400, type: ProblemDto, description: 'A limit out of range or a cursor this listing did not give out' })
  @ApiResponse({ status: 401, type: ProblemDto, description: 'Neither an API key nor the admin token' })
  @ApiResponse({ status: 403, type: ProblemDto, description: "A key asking for another key's links" })
  @ApiResponse({ status: 503, type: ProblemDto, description: 'A shard cannot be read right now; Retry-After' })
  async list(
    @Req() request: FastifyRequest,
    @Query('limit') limit: unknown,
    @Query('cursor') cursor: unknown,
    @Query('key') keyFilter: unknown,
  ): Promise<UrlPageDto> {
    const owner = await this.listingOwner(request, keyFilter);
    const scope = owner ?? '*';
    let page: LinkPage;
    try {
      const after = cursor === undefined || cursor === '' ? null : decodeCursor(singleQueryValue('cursor', cursor), scope);
      page = await this.readers.call<LinkPage>(
        RpcPatterns.listLinks,
        {
          owner,
          limit: parseListingLimit(limit === undefined ? undefined : singleQueryValue('limit', limit)),
          after: after && { createdMicros: after.createdMicros.toString(), code: after.code },
        },
        REQUEST_TIMEOUTS.detailsMs,
      );
    } catch (error) {
      if (error instanceof ListingError) throw new DomainError('validation', error.message, { errors: [{ field: 'query', message: error.message }] });
      throw error;
    }
    const next = page.next && encodeCursor({ scope, createdMicros: BigInt(page.next.createdMicros), code: page.next.code });
    return { items: page.items, nextCursor: next };
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

  /** Whose links a listing shows: the key's own; the admin's: all (null) or the one key of `key`. */
  private async listingOwner(request: FastifyRequest, keyFilter: unknown): Promise<string | null> {
    const filter = keyFilter === undefined ? undefined : singleQueryValue('key', keyFilter);
    if (filter !== undefined && !apiKeyId.safeParse(filter).success) {
      throw new DomainError('validation', 'key must be an API key id', { errors: [{ field: 'key', message: 'must be an API key id' }] });
    }
    const key = await this.keys.verify(request);
    if (key) {
      if (filter !== undefined && filter !== key.id) throw new DomainError('forbidden', 'an API key lists only its own links');
      return key.id;
    }
    const token = bearerToken(request);
    if (token === null) throw new DomainError('unauthorized', 'listing links needs an API key or the admin token');
    if (!token || !sameSecret(token, this.config.ADMIN_TOKEN)) throw new DomainError('forbidden', 'the token is neither an API key nor the admin token');
    return filter ?? null;
  }

  /** Creates with a key count against its own quota (its rateLimitPerMinute, else KEY_RATE_LIMIT_PER_MINUTE), shared by every gateway. */
  private async admitKeyCreate(key: VerifiedKey, reply: FastifyReply): Promise<void> {
    const limit = key.rateLimitPerMinute ?? this.config.KEY_RATE_LIMIT_PER_MINUTE;
    const decision = await this.quota.take('key', key.id, limit);
    void reply.headers(decision.headers);
    if (!decision.allowed) {
      throw new DomainError('rate-limited', `more than ${limit} creates a minute with this API key; retry after the Retry-After seconds`, {
        retryAfterSeconds: Number(decision.headers['retry-after']),
      });
    }
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

  private write<T>(pattern: string, payload: unknown): Promise<T> {
    return writeThrough<T>(this.writer, pattern, payload, REQUEST_TIMEOUTS.writeMs);
  }
}
