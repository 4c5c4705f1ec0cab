import type { GatewayEnvironment } from '@shortener/config';
import { DomainError, type LinkCreated } from '@shortener/contracts';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { RateLimiterMemory } from 'rate-limiter-flexible';
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

function controllerWith(settings: Partial<GatewayEnvironment>) {
  const writes: unknown[] = [];
  const writer = { call: async (_pattern: string, payload: unknown) => (writes.push(payload), created) } as unknown as RpcChannel;
  const config = { publicBaseUrl: 'http://sho.rt', ANONYMOUS_CREATE: true, ANONYMOUS_RATE_LIMIT_PER_MINUTE: 0, ...settings } as GatewayEnvironment & {
    publicBaseUrl: string;
  };
  const quota = new CreateQuota((points, keyPrefix) => new RateLimiterMemory({ points, duration: 60, keyPrefix }));
  return { controller: new UrlsController(config, writer, {} as ReaderPool, quota), writes };
}

function exchange(ip: string) {
  const headers: Record<string, string> = {};
  const reply = {
    header: (name: string, value: string) => ((headers[name] = value), reply),
    headers: (values: Record<string, string>) => (Object.assign(headers, values), reply),
  } as unknown as FastifyReply;
  return { reply, headers, request: { ip } as FastifyRequest };
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
