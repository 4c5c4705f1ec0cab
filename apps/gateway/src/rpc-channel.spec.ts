import { DomainError } from '@shortener/contracts';
import { ReaderPool, TransportError, type RpcChannel } from './rpc-channel';

function channel(name: string, behaviour: () => Promise<unknown>) {
  const calls: string[] = [];
  return {
    calls,
    channel: {
      address: { host: name, port: 1 },
      call: async () => {
        calls.push(name);
        return behaviour();
      },
      close: async () => undefined,
    } as unknown as RpcChannel,
  };
}

describe('ReaderPool', () => {
  it('balances calls over the readers', async () => {
    const a = channel('a', async () => 'a');
    const b = channel('b', async () => 'b');
    const pool = new ReaderPool([a.channel, b.channel]);
    const answers = await Promise.all([1, 2, 3, 4].map(() => pool.call('p', {}, 100)));
    expect(answers.sort()).toEqual(['a', 'a', 'b', 'b']);
  });

  it('moves a request to the next reader when one does not answer, and skips it for a while', async () => {
    const dead = channel('dead', async () => {
      throw new TransportError('ECONNREFUSED');
    });
    const alive = channel('alive', async () => 'ok');
    const pool = new ReaderPool([dead.channel, alive.channel], 60_000);
    expect(await pool.call('p', {}, 100)).toBe('ok');
    expect(await pool.call('p', {}, 100)).toBe('ok');
    expect(await pool.call('p', {}, 100)).toBe('ok');
    expect(dead.calls).toHaveLength(1);
    expect(pool.healthyCount).toBe(1);
  });

  it('passes over a reader that cannot read right now, but not a final answer', async () => {
    const unavailable = channel('u', async () => {
      throw new DomainError('dependency-unavailable', 'replicas away');
    });
    const notFound = channel('n', async () => {
      throw new DomainError('not-found', 'no such link');
    });
    await expect(new ReaderPool([unavailable.channel, notFound.channel]).call('p', {}, 100)).rejects.toMatchObject({
      kind: 'not-found',
    });
    await expect(new ReaderPool([notFound.channel, unavailable.channel]).call('p', {}, 100)).rejects.toMatchObject({
      kind: 'not-found',
    });
  });

  it('answers 503-kind when no reader answers, without naming any reader address', async () => {
    const dead = channel('reader-7.internal', async () => {
      throw new TransportError('reader-7.internal:4200 links.resolve: no answer within 100 ms');
    });
    const error = await new ReaderPool([dead.channel]).call('p', {}, 100).catch((e: unknown) => e);
    expect(error).toMatchObject({ kind: 'dependency-unavailable' });
    expect((error as Error).message).not.toMatch(/reader-7|4200|internal/);
  });
});
