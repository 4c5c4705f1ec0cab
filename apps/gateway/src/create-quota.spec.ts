import { register } from 'prom-client';
import { RateLimiterMemory, type RateLimiterAbstract } from 'rate-limiter-flexible';
import { CreateQuota } from './create-quota';

async function metric(name: string, scope: string): Promise<number> {
  const values = (await register.getSingleMetric(name)?.get())?.values ?? [];
  return values.find((value) => value.labels.scope === scope)?.value ?? 0;
}

describe('CreateQuota', () => {
  it('lets the limit through, then refuses with Retry-After and the draft headers', async () => {
    const quota = new CreateQuota((points, keyPrefix) => new RateLimiterMemory({ points, duration: 60, keyPrefix }));
    for (let i = 0; i < 3; i++) {
      const decision = await quota.take('anonymous', '192.0.2.7', 3);
      expect(decision.allowed).toBe(true);
      expect(decision.headers['ratelimit-policy']).toBe('"anonymous";q=3;w=60');
      expect(decision.headers.ratelimit).toMatch(new RegExp(`^"anonymous";r=${2 - i};t=(59|60)$`));
    }
    const before = await metric('shortener_rate_limited_total', 'anonymous');
    const refused = await quota.take('anonymous', '192.0.2.7', 3);
    expect(refused.allowed).toBe(false);
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(Number(refused.headers['retry-after'])).toBeLessThanOrEqual(60);
    expect(refused.headers.ratelimit).toMatch(/^"anonymous";r=0;t=\d+$/);
    expect(await metric('shortener_rate_limited_total', 'anonymous')).toBe(before + 1);
    // Another address has its own budget.
    expect((await quota.take('anonymous', '192.0.2.8', 3)).allowed).toBe(true);
  });

  it('keeps one budget per limit, so keys with different limits do not share counters', async () => {
    const quota = new CreateQuota((points, keyPrefix) => new RateLimiterMemory({ points, duration: 60, keyPrefix }));
    expect((await quota.take('key', 'k1', 1)).allowed).toBe(true);
    expect((await quota.take('key', 'k1', 1)).allowed).toBe(false);
    expect((await quota.take('key', 'k2', 5)).allowed).toBe(true);
  });

  it('fails open, counted, when the store does not answer', async () => {
    const broken = {
      consume: async () => {
        throw new Error('Redis connection is not ready');
      },
    } as unknown as RateLimiterAbstract;
    const quota = new CreateQuota(() => broken);
    const before = await metric('shortener_rate_limit_fail_open_total', 'key');
    const decision = await quota.take('key', 'k1', 1);
    expect(decision.allowed).toBe(true);
    expect(await metric('shortener_rate_limit_fail_open_total', 'key')).toBe(before + 1);
  });
});
