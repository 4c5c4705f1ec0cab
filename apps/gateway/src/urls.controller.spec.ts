import type { GatewayEnvironment } from '@shortener/config';
import { DomainError, RpcPatterns, type ApiKeyCredential, type LinkCreated, type LinkPage, type ListLinksRequest } from '@shortener/contracts';
import { issueApiKey, type IssuedApiKey } from '@shortener/links';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { RateLimiterMemory } from 'rate-limiter-flexible';
import { ApiKeyVerifier } from './api-keys';
import { CreateQuota } from './create-quota';
import type { CreateUrlDto } from './create-url.dto';
import type { ReaderPool, RpcChannel } from './rpc-channel';
import { UrlsController } from './urls.controller';

const created: LinkCreated = {
  code: 'abc1234',
  url: 'https://example.com/',
  createdAt: '2030-01-01T00:00:00.000Z',
  expiresAt: null,
  manageToken: 'mt',
  redirectType: 302,
} as unknown as LinkCreated;

const ADMIN_TOKEN = 'admin-token-0123456789abcdef';

/** The readers' side, in memory: key rows by id (keys.get) and what each listing asked for. */
function readersWith(rows: Map<string, ApiKeyCredential>) {
  const listings: ListLinksRequest[] = [];
  const readers = {
    call: async (pattern: string, payload: unknown) => {
      if (pattern === RpcPatterns.getKey) {
        const row = rows.get((payload as { id: string }).id);
        if (!row) throw new DomainError('not-found', 'no such key');
        return row;
      }
      if (pattern === RpcPatterns.listLinks) {
        listings.push(payload as ListLinksRequest);
        const page: LinkPage = { items: [], next: { createdMicros: '1700000000000000', code: 'last1' } };
        return page;
      }
      throw new Error(`unexpected ${pattern}`);
    },
  } as unknown as ReaderPool;
  return { readers, listings };
}

function keyRow(issued: IssuedApiKey, rateLimitPerMinute: number | null = null, revoked = false): ApiKeyCredential {
  return { id: issued.id, secretHash: issued.secretHash.toString('base64'), rateLimitPerMinute, revoked };
}

function controllerWith(settings: Partial<GatewayEnvironment>, rows = new Map<string, ApiKeyCredential>()) {
  const writes: unknown[] = [];
  const writer = { call: async (_pattern: string, payload: unknown) => (writes.push(payload), created) } as unknown as RpcChannel;
  const config = {
    publicBaseUrl: 'http://sho.rt',
    ADMIN_TOKEN,
    ANONYMOUS_CREATE: true,
    ANONYMOUS_RATE_LIMIT_PER_MINUTE: 0,
    KEY_RATE_LIMIT_PER_MINUTE: 600,
    ...settings,
  } as GatewayEnvironment & { publicBaseUrl: string };
  const quota = new CreateQuota((points, keyPrefix) => new RateLimiterMemory({ points, duration: 60, keyPrefix }));
  const { readers, listings } = readersWith(rows);
  return { controller: new UrlsController(config, writer, readers, quota, new ApiKeyVerifier(readers)), writes, listings };
}

function exchange(ip: string, requestHeaders: Record<string, string> = {}) {
  const headers: Record<string, string> = {};
  const reply = {
    header: (name: string, value: string) => ((headers[name] = value), reply),
    headers: (values: Record<string, string>) => (Object.assign(headers, values), reply),
  } as unknown as FastifyReply;
  return { reply, headers, request: { ip, headers: requestHeaders } as unknown as FastifyRequest };
}

async function refusal(run: () => Promise<unknown>): Promise<DomainError> {
  try {
    await run();
  } catch (error) {
    if (error instanceof DomainError) return error;
    throw error;
  }
  throw new Error('the create was let through');
}

const body = { url: 'https://example.com/' } as CreateUrlDto;

describe('anonymous creates (POST /api/urls)', () => {
  it('refuses them with 401 when ANONYMOUS_CREATE is false, before anything reaches the writer', async () => {
    const { controller, writes } = controllerWith({ ANONYMOUS_CREATE: false });
    const { reply, request } = exchange('192.0.2.1');
    const error = await refusal(() => controller.create(body, undefined, reply, request));
    expect(error.kind).toBe('unauthorized');
    expect(writes).toHaveLength(0);
  });

  it('counts them per client address and answers 429 with Retry-After and the rate-limit headers over the limit', async () => {
    const { controller, writes } = controllerWith({ ANONYMOUS_RATE_LIMIT_PER_MINUTE: 2 });
    for (let i = 0; i < 2; i++) {
      const { reply, request, headers } = exchange('192.0.2.2');
      await controller.create(body, undefined, reply, request);
      expect(headers['ratelimit-policy']).toBe('"anonymous";q=2;w=60');
      expect(headers.ratelimit).toMatch(new RegExp(`^"anonymous";r=${1 - i};t=\\d+$`));
    }
    const over = exchange('192.0.2.2');
    const error = await refusal(() => controller.create(body, undefined, over.reply, over.request));
    expect(error.kind).toBe('rate-limited');
    expect(error.details.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    expect(over.headers.ratelimit).toMatch(/^"anonymous";r=0;t=\d+$/);
    expect(writes).toHaveLength(2);

    const other = exchange('192.0.2.3');
    await controller.create(body, undefined, other.reply, other.request);
    expect(writes).toHaveLength(3);
  });

  it('applies no limit and sends no quota headers when the limit is 0 (the local default)', async () => {
    const { controller, writes } = controllerWith({ ANONYMOUS_RATE_LIMIT_PER_MINUTE: 0 });
    for (let i = 0; i < 5; i++) {
      const { reply, request, headers } = exchange('192.0.2.4');
      await controller.create(body, undefined, reply, request);
      expect(headers['ratelimit-policy']).toBeUndefined();
    }
    expect(writes).toHaveLength(5);
  });
});

describe('creates with an API key (POST /api/urls)', () => {
  it("make the link the key's and count against the key's own limit, not the address's", async () => {
    const issued = issueApiKey();
    const { controller, writes } = controllerWith({ ANONYMOUS_RATE_LIMIT_PER_MINUTE: 1 }, new Map([[issued.id, keyRow(issued, 3)]]));
    for (let i = 0; i < 3; i++) {
      const { reply, request, headers } = exchange('192.0.2.10', { 'x-api-key': issued.key });
      await controller.create(body, undefined, reply, request);
      expect(headers['ratelimit-policy']).toBe('"key";q=3;w=60');
    }
    expect(writes).toEqual(Array.from({ length: 3 }, () => expect.objectContaining({ owner: issued.id })));
    const over = exchange('192.0.2.10', { authorization: `Bearer ${issued.key}` });
    expect((await refusal(() => controller.create(body, undefined, over.reply, over.request))).kind).toBe('rate-limited');
    // The address's own quota was never touched by the key's creates.
    const anonymous = exchange('192.0.2.10');
    await controller.create(body, undefined, anonymous.reply, anonymous.request);
    expect(writes.at(-1)).toEqual(expect.objectContaining({ owner: undefined }));
  });

  it('use KEY_RATE_LIMIT_PER_MINUTE for a key without its own limit', async () => {
    const issued = issueApiKey();
    const { controller } = controllerWith({ KEY_RATE_LIMIT_PER_MINUTE: 7 }, new Map([[issued.id, keyRow(issued)]]));
    const { reply, request, headers } = exchange('192.0.2.11', { 'x-api-key': issued.key });
    await controller.create(body, undefined, reply, request);
    expect(headers['ratelimit-policy']).toBe('"key";q=7;w=60');
  });

  it('are refused with 401, writing nothing, for an unknown, revoked, malformed or wrong-secret key, even when anonymous creates are allowed', async () => {
    const live = issueApiKey();
    const revoked = issueApiKey();
    const { controller, writes } = controllerWith(
      {},
      new Map([
        [live.id, keyRow(live)],
        [revoked.id, keyRow(revoked, null, true)],
      ]),
    );
    const wrongSecret = `${live.key.slice(0, -1)}${live.key.endsWith('A') ? 'B' : 'A'}`;
    for (const presented of [issueApiKey().key, revoked.key, 'shk_short', wrongSecret, '']) {
      const { reply, request } = exchange('192.0.2.12', { 'x-api-key': presented });
      expect((await refusal(() => controller.create(body, undefined, reply, request))).kind).toBe('unauthorized');
    }
    expect(writes).toHaveLength(0);
  });

  it("turn 401 once the key is revoked, after the gateway's cache (not before the next read)", async () => {
    const issued = issueApiKey();
    const rows = new Map([[issued.id, keyRow(issued)]]);
    let now = 1_000_000;
    const { readers } = readersWith(rows);
    const verifier = new ApiKeyVerifier(readers, () => now);
    const request = exchange('192.0.2.13', { 'x-api-key': issued.key }).request;
    expect(await verifier.verify(request)).toEqual({ id: issued.id, rateLimitPerMinute: null });
    rows.set(issued.id, keyRow(issued, null, true));
    now += 1000;
    expect(await verifier.verify(request)).not.toBeNull(); // still cached
    now += 1500;
    expect((await refusal(() => verifier.verify(request))).kind).toBe('unauthorized');
  });
});

describe('listing (GET /api/urls)', () => {
  it("lists a key's own links, and refuses it another key's (403)", async () => {
    const issued = issueApiKey();
    const { controller, listings } = controllerWith({}, new Map([[issued.id, keyRow(issued)]]));
    const { request } = exchange('192.0.2.20', { authorization: `Bearer ${issued.key}` });
    const page = await controller.list(request, '5', undefined, undefined);
    expect(listings[0]).toEqual({ owner: issued.id, limit: 5, after: null });
    expect(page.nextCursor).toEqual(expect.any(String));
    // The cursor given out continues the same listing, and only that one.
    await controller.list(request, undefined, page.nextCursor, undefined);
    expect(listings[1]).toEqual({ owner: issued.id, limit: 20, after: { createdMicros: '1700000000000000', code: 'last1' } });
    expect((await refusal(() => controller.list(request, undefined, undefined, issueApiKey().id))).kind).toBe('forbidden');
  });

  it("lists all links for the admin, or one key's, and a cursor of one scope is a 400 in another", async () => {
    const { controller, listings } = controllerWith({});
    const { request } = exchange('192.0.2.21', { authorization: `Bearer ${ADMIN_TOKEN}` });
    const all = await controller.list(request, undefined, undefined, undefined);
    const someKey = issueApiKey().id;
    await controller.list(request, '100', undefined, someKey);
    expect(listings).toEqual([
      { owner: null, limit: 20, after: null },
      { owner: someKey, limit: 100, after: null },
    ]);
    expect((await refusal(() => controller.list(request, undefined, all.nextCursor, someKey))).kind).toBe('validation');
  });

  it('answers 401 without a credential, 403 for a token that is neither, 400 for a bad limit, cursor or key', async () => {
    const { controller, listings } = controllerWith({});
    expect((await refusal(() => controller.list(exchange('192.0.2.22').request, undefined, undefined, undefined))).kind).toBe('unauthorized');
    const stranger = exchange('192.0.2.22', { authorization: 'Bearer some-manage-token' }).request;
    expect((await refusal(() => controller.list(stranger, undefined, undefined, undefined))).kind).toBe('forbidden');
    const admin = exchange('192.0.2.22', { authorization: `Bearer ${ADMIN_TOKEN}` }).request;
    for (const [limit, cursor, key] of [
      ['0', undefined, undefined],
      ['101', undefined, undefined],
      ['ten', undefined, undefined],
      [['1', '2'], undefined, undefined],
      [undefined, 'not-a-cursor!', undefined],
      [undefined, undefined, 'not a key id'],
    ] as const) {
      expect((await refusal(() => controller.list(admin, limit, cursor, key))).kind).toBe('validation');
    }
    expect(listings).toHaveLength(0);
  });
});
