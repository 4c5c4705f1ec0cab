import { createServer, type AddressInfo } from 'node:net';
import { LineReader } from './frames';
import { RpcClient, RpcTransportError } from './rpc-client';
import { LineRpcServer } from './rpc-server';

async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

async function startServer(port: number, handlers: Record<string, (data: any) => Promise<unknown>>): Promise<LineRpcServer> {
  const server = new LineRpcServer({ host: '127.0.0.1', port });
  for (const [pattern, handler] of Object.entries(handlers)) server.addHandler(pattern, handler);
  await new Promise<void>((resolve, reject) => server.listen((error?: unknown) => (error ? reject(error) : resolve())));
  return server;
}

describe('LineReader', () => {
  it('cuts a stream into lines, whatever the chunks', () => {
    const reader = new LineReader();
    expect(reader.push('{"a":1}\n{"b"')).toEqual(['{"a":1}']);
    expect(reader.push(':2}\n')).toEqual(['{"b":2}']);
    expect(reader.push('{"c":"x\\ny"}\n\n')).toEqual(['{"c":"x\\ny"}', '']);
  });

  it('refuses a line without end that outgrows the limit', () => {
    const reader = new LineReader(8);
    expect(() => reader.push('123456789')).toThrow(RangeError);
  });
});

describe('RpcClient and LineRpcServer', () => {
  let port: number;
  let server: LineRpcServer | null = null;
  let client: RpcClient;

  beforeEach(async () => {
    port = await freePort();
    client = new RpcClient({ host: '127.0.0.1', port });
  });

  afterEach(async () => {
    await client.close();
    server?.close();
    server = null;
  });

  it('answers many concurrent calls over one connection, each with its own reply', async () => {
    server = await startServer(port, {
      double: async (data: { n: number }) => ({ n: data.n * 2 }),
      slow: async (data: { n: number }) => new Promise((resolve) => setTimeout(() => resolve(data.n), 30 - data.n)),
    });
    const doubled = await Promise.all(Array.from({ length: 50 }, (_, n) => client.call<{ n: number }>('double', { n }, 1000)));
    expect(doubled.map((reply) => reply.n)).toEqual(Array.from({ length: 50 }, (_, n) => n * 2));
    // Replies that come back out of order still reach their callers.
    expect(await Promise.all([1, 10, 20].map((n) => client.call('slow', { n }, 1000)))).toEqual([1, 10, 20]);
  });

  it('fails fast when nothing listens, and connects once the server is there', async () => {
    const started = Date.now();
    await expect(client.call('double', { n: 1 }, 2000)).rejects.toBeInstanceOf(RpcTransportError);
    expect(Date.now() - started).toBeLessThan(1500);
    server = await startServer(port, { double: async (data: { n: number }) => data.n * 2 });
    expect(await client.call('double', { n: 4 }, 1000)).toBe(8);
  });

  it('gives up on a call at its deadline when the service does not answer', async () => {
    server = await startServer(port, { never: () => new Promise(() => undefined), echo: async (data) => data });
    await expect(client.call('never', {}, 100)).rejects.toThrow(/no answer within 100 ms/);
    // The connection is still good for the next call.
    expect(await client.call('echo', 'still here', 1000)).toBe('still here');
  });

  it('fails the calls in flight when the connection drops, and reconnects after', async () => {
    server = await startServer(port, { never: () => new Promise(() => undefined), echo: async (data) => data });
    const inFlight = client.call('never', {}, 5000);
    await new Promise((resolve) => setTimeout(resolve, 50));
    server.close();
    await expect(inFlight).rejects.toThrow(/connection closed/);
    server = await startServer(port, { echo: async (data) => data });
    expect(await client.call('echo', 7, 1000)).toBe(7);
  });

  it('reports an unknown pattern and a failing handler as errors of that call only', async () => {
    server = await startServer(port, {
      boom: async () => {
        throw new Error('handler broke');
      },
      echo: async (data) => data,
    });
    await expect(client.call('nope', {}, 1000)).rejects.toThrow(/no handler for nope/);
    await expect(client.call('boom', {}, 1000)).rejects.toThrow(/handler broke/);
    expect(await client.call('echo', null, 1000)).toBeNull();
  });
});
