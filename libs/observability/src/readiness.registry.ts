import { Injectable } from '@nestjs/common';

export interface ReadinessCheck {
  name: string;
  /** Resolves true when the dependency works; never takes longer than its own timeout. */
  check(): Promise<boolean>;
}

/** Where a service's components declare what "ready" means for them. */
@Injectable()
export class ReadinessRegistry {
  private readonly checks: ReadinessCheck[] = [];

  add(name: string, check: () => Promise<boolean>): void {
    this.checks.push({ name, check });
  }

  async evaluate(timeoutMs = 1500): Promise<{ ready: boolean; checks: Record<string, 'up' | 'down'> }> {
    const results = await Promise.all(
      this.checks.map(async ({ name, check }) => {
        let timer: NodeJS.Timeout | undefined;
        const up = await Promise.race([check().catch(() => false), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)))]);
        clearTimeout(timer);
        return [name, up ? 'up' : 'down'] as const;
      }),
    );
    return { ready: results.every(([, state]) => state === 'up'), checks: Object.fromEntries(results) };
  }
}
