import { counter } from '@shortener/observability';
import { RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';

const limited = counter('shortener_rate_limited_total', 'Creates refused with 429 by a rate limit', ['scope']);
const failedOpen = counter('shortener_rate_limit_fail_open_total', 'Rate-limit checks let through because the shared store (Redis) did not answer', ['scope']);

export const QUOTA_WINDOW_SECONDS = 60;

export type QuotaScope = 'key' | 'anonymous';

/** What one check decided, with the headers of the IETF httpapi rate-limit draft. */
export interface QuotaDecision {
  allowed: boolean;
  headers: Record<string, string>;
}

/** Makes the limiter of one limit (points per window); the gateway gives a Redis-backed one. */
export type LimiterFactory = (pointsPerWindow: number, keyPrefix: string) => RateLimiterAbstract;

/**
 * Quotas on creates, per key and per anonymous client address, counted by
 * rate-limiter-flexible in a store every gateway shares. When the store does not answer
 * the check fails open (creates keep working, docs/reference.md section 5) and says so in
 * `shortener_rate_limit_fail_open_total`.
 */
export class CreateQuota {
  private readonly limiters = new Map<string, RateLimiterAbstract>();

  constructor(
    private readonly factory: LimiterFactory,
    /** Closes the shared store's client (the gateway shuts down). */
    private readonly closeStore: () => Promise<unknown> = async () => undefined,
  ) {}

  async close(): Promise<void> {
    await this.closeStore();
  }

  async take(scope: QuotaScope, subject: string, pointsPerWindow: number): Promise<QuotaDecision> {
    const policy = `"${scope}";q=${pointsPerWindow};w=${QUOTA_WINDOW_SECONDS}`;
    const limiter = this.limiterFor(scope, pointsPerWindow);
    try {
      const result = await limiter.consume(subject, 1);
      return { allowed: true, headers: this.headers(policy, scope, result) };
    } catch (outcome) {
      if (outcome instanceof RateLimiterRes) {
        limited.inc({ scope });
        const retryAfter = Math.max(1, Math.ceil(outcome.msBeforeNext / 1000));
        return { allowed: false, headers: { ...this.headers(policy, scope, outcome), 'retry-after': String(retryAfter) } };
      }
      failedOpen.inc({ scope });
      return { allowed: true, headers: { 'ratelimit-policy': policy } };
    }
  }

  private headers(policy: string, scope: QuotaScope, result: RateLimiterRes): Record<string, string> {
    const reset = Math.max(0, Math.ceil(result.msBeforeNext / 1000));
    return { 'ratelimit-policy': policy, ratelimit: `"${scope}";r=${Math.max(0, result.remainingPoints)};t=${reset}` };
  }

  private limiterFor(scope: QuotaScope, points: number): RateLimiterAbstract {
    const id = `${scope}:${points}`;
    let limiter = this.limiters.get(id);
    if (!limiter) {
      limiter = this.factory(points, `quota:${id}`);
      this.limiters.set(id, limiter);
    }
    return limiter;
  }
}
