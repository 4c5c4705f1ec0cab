import { connect, createServer, type AddressInfo } from 'node:net';
import { authProof, isValidProof, LineReader } from './frames';
import { RpcClient, RpcTransportError } from './rpc-client';
import { LineRpcContext, LineRpcServer, type LineRpcServerOptions } from './rpc-server';

const SECRET = 'test-secret-of-the-rpc-channel-0123456789';

async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

async function startServer(
  port: number,
  handlers: Record<string, (data: any, context: LineRpcContext) => Promise<unknown>>,
  options: Partial<LineRpcServerOptions> = {},
): Promise<LineRpcServer> {
  const server = new LineRpcServer({ host: '127.0.0.1', port, secret: SECRET, ...options });
  for (const [pattern, handler] of Object.entries(handlers)) server.addHandler(pattern, handler as never);
  await new Promise<void>((resolve, reject) => server.listen((error?: unknown) => (error ? reject(error) : resolve())));
  return server;
}

/** A raw TCP peer: what any process that reaches the port can send. */
async function rawExchange(port: number, lines: (challenge: string) => string[], waitMs = 300): Promise<{ received: string[]; closed: boolean }> {
  const socket = connect({ host: '127.0.0.1', port });
  socket.setEncoding('utf8');
  const received: string[] = [];
  let closed = false;
  const reader = new LineReader();
  socket.on('close', () => (closed = true));
  socket.on('error', () => undefined);
  await new Promise<void>((resolve) => {
    socket.on('data', (chunk: string) => {
      for (const line of reader.push(chunk)) {
        if (!line) continue;
        if (received.length === 0) for (const out of lines(JSON.parse(line).challenge)) socket.write(out + '\n');
        received.push(line);
      }
      resolve();
    });
  });
  await new Promise((resolve) => setTimeout(resolve, waitMs));
  socket.destroy();
  return { received, closed };
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

describe('authentication proof', () => {
  it('is bound to the secret and to the challenge', () => {
    const proof = authProof(SECRET, 'challenge-1');
    expect(isValidProof(SECRET, 'challenge-1', proof)).toBe(true);
    expect(isValidProof(SECRET, 'challenge-2', proof)).toBe(false);
    expect(isValidProof('another-secret', 'challenge-1', proof)).toBe(false);
    expect(isValidProof(SECRET, 'challenge-1', undefined)).toBe(false);
    expect(proof).not.toContain(SECRET);
  });
});

describe('RpcClient and LineRpcServer', () => {
  let port: number;
  let server: LineRpcServer | null = null;
  let client: RpcClient;

  beforeEach(async () => {
    port = await freePort();
    client = new RpcClient({ host: '127.0.0.1', port }, { secret: SECRET });
  });

  afterEach(async () => {
    await client.close();
    await server?.close();
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

  it('fails fast when nothing listens (not sent), and connects once the server is there', async () => {
    const started = Date.now();
    const error = await client.call('double', { n: 1 }, 2000).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RpcTransportError);
    expect((error as RpcTransportError).sent).toBe(false);
    expect(Date.now() - started).toBeLessThan(1500);
    server = await startServer(port, { double: async (data: { n: number }) => data.n * 2 });
    expect(await client.call('double', { n: 4 }, 1000)).toBe(8);
  });

  it('gives up on a call at its deadline (sent: the outcome is unknown) and the deadline reaches the handler', async () => {
    let seen = 0;
    server = await startServer(port, {
      never: () => new Promise(() => undefined),
      deadline: async (_data, context) => (seen = context.deadline - Date.now()),
      echo: async (data) => data,
    });
    const error = await client.call('never', {}, 100).catch((e: unknown) => e);
    expect((error as Error).message).toMatch(/no answer within 100 ms/);
    expect((error as RpcTransportError).sent).toBe(true);
    await client.call('deadline', {}, 800);
    expect(seen).toBeGreaterThan(600);
    expect(seen).toBeLessThanOrEqual(800);
    // The connection is still good for the next call.
    expect(await client.call('echo', 'still here', 1000)).toBe('still here');
  });

  it('drops a peer that keeps timing out, and reconnects for the next call', async () => {
    let connections = 0;
    server = await startServer(port, { never: () => new Promise(() => undefined), echo: async (data) => data });
    (server.unwrap<import('node:net').Server>() as import('node:net').Server).on('connection', () => connections++);
    // Connected and authenticated first, so that the short deadlines below time out the calls, not the connect.
    expect(await client.call('echo', 0, 5000)).toBe(0);
    for (let i = 0; i < 3; i++) await expect(client.call('never', {}, 200)).rejects.toThrow(/no answer/);
    expect(await client.call('echo', 1, 1000)).toBe(1);
    expect(connections).toBe(2);
  });

  it('fails the calls in flight when the connection drops, and reconnects after', async () => {
    server = await startServer(port, { never: () => new Promise(() => undefined), echo: async (data) => data }, { drainTimeoutMs: 10 });
    const inFlight = client.call('never', {}, 5000);
    await new Promise((resolve) => setTimeout(resolve, 50));
    await server.close();
    await expect(inFlight).rejects.toThrow(/connection closed/);
    server = await startServer(port, { echo: async (data) => data });
    expect(await client.call('echo', 7, 1000)).toBe(7);
  });

  it('reports an unknown pattern (not handled) and a failing handler as errors of that call only', async () => {
    server = await startServer(port, {
      boom: async () => {
        throw new Error('handler broke');
      },
      echo: async (data) => data,
    });
    const unknown = await client.call('nope', {}, 1000).catch((e: unknown) => e);
    expect((unknown as Error).message).toMatch(/no handler for nope/);
    expect((unknown as RpcTransportError).sent).toBe(false);
    await expect(client.call('boom', {}, 1000)).rejects.toThrow(/handler broke/);
    expect(await client.call('echo', null, 1000)).toBeNull();
  });

  it('refuses a caller without the secret: no handler runs, whatever it claims', async () => {
    const ran: unknown[] = [];
    server = await startServer(port, { 'links.update': async (data) => ran.push(data) });
    const frame = JSON.stringify({ id: 1, pattern: 'links.update', data: { code: 'abc', credential: { admin: true }, url: 'https://evil' } });
    const unauthenticated = await rawExchange(port, () => [frame]);
    expect(unauthenticated.closed).toBe(true);
    expect(unauthenticated.received.slice(1)).toEqual([JSON.stringify({ id: 0, err: 'unauthenticated' })]);
    const wrongSecret = await rawExchange(port, (challenge) => [JSON.stringify({ auth: authProof('not-the-secret', challenge) }), frame]);
    expect(wrongSecret.closed).toBe(true);
    // A proof recorded on another connection is worth nothing on this one.
    const replayed = await rawExchange(port, () => [JSON.stringify({ auth: authProof(SECRET, 'an-old-challenge') }), frame]);
    expect(replayed.closed).toBe(true);
    expect(ran).toEqual([]);
    expect(server.refusedConnections).toBe(3);
    const wrongClient = new RpcClient({ host: '127.0.0.1', port }, { secret: 'not-the-secret' });
    const error = await wrongClient.call('links.update', {}, 1000).catch((e: unknown) => e);
    await wrongClient.close();
    expect((error as Error).message).toMatch(/unauthenticated/);
    expect((error as RpcTransportError).sent).toBe(false);
    expect(ran).toEqual([]);
  });

  it('closes a connection that does not authenticate in time', async () => {
    server = await startServer(port, {}, { authTimeoutMs: 50 });
    const silent = await rawExchange(port, () => [], 200);
    expect(silent.closed).toBe(true);
  });

  it('runs at most maxInFlightPerConnection handlers of one connection at once; the rest wait', async () => {
    let running = 0;
    let peak = 0;
    server = await startServer(
      port,
      {
        work: async (n: number) => {
          peak = Math.max(peak, ++running);
          await new Promise((resolve) => setTimeout(resolve, 5));
          running--;
          return n;
        },
      },
      { maxInFlightPerConnection: 4 },
    );
    const answers = await Promise.all(Array.from({ length: 40 }, (_, n) => client.call('work', n, 5000)));
    expect(answers).toEqual(Array.from({ length: 40 }, (_, n) => n));
    expect(peak).toBe(4);
  });

  it('on close, lets the calls in flight finish and answers them before the connection goes', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    server = await startServer(port, { slow: async () => gate.then(() => 'finished'), echo: async (data) => data });
    const inFlight = client.call('slow', {}, 5000);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const closing = server.close();
    await new Promise((resolve) => setTimeout(resolve, 50));
    // Told to go away, the client does not send new calls on the draining connection.
    const refused = await client.call('echo', 1, 500).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(RpcTransportError);
    expect((refused as RpcTransportError).sent).toBe(false);
    release();
    expect(await inFlight).toBe('finished');
    await closing;
    server = null;
  });
});
