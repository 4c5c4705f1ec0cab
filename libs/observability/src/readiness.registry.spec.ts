import { ReadinessRegistry } from './readiness.registry';

describe('ReadinessRegistry', () => {
  it('is ready only when every check passes', async () => {
    const registry = new ReadinessRegistry();
    registry.add('db', async () => true);
    expect(await registry.evaluate()).toEqual({ ready: true, checks: { db: 'up' } });
    registry.add('redis', async () => false);
    expect(await registry.evaluate()).toEqual({ ready: false, checks: { db: 'up', redis: 'down' } });
  });

  it('counts a throwing or hanging check as down, without waiting for it', async () => {
    const registry = new ReadinessRegistry();
    registry.add('throws', async () => {
      throw new Error('boom');
    });
    registry.add('hangs', () => new Promise<boolean>(() => undefined));
    const started = Date.now();
    const result = await registry.evaluate(50);
    expect(result).toEqual({ ready: false, checks: { throws: 'down', hangs: 'down' } });
    expect(Date.now() - started).toBeLessThan(1000);
  });
});
