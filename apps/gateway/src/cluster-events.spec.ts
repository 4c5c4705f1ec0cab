import { request as httpRequest, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import type { GatewayEnvironment } from '@shortener/config';
import type { NodeHealth } from '@shortener/contracts';
import { createServiceLogger, ObservabilityModule } from '@shortener/observability';
import type { Topology } from '@shortener/topology';
import { AdminGuard } from './auth';
import { ClusterEventHub, serverSentEvent, type EventStream } from './cluster-events';
import { ClusterController, clusterDocument, configuredTopology } from './cluster.controller';
import { CLUSTER_EVENTS, GATEWAY_CONFIG, READER_POOL, TOPOLOGY_FOLLOWER } from './gateway.constants';
import { SwitchoverRequests } from './switchover-requests';

const ADMIN_TOKEN = 'admin-token-0123456789abcdef';
const config = {
  ADMIN_TOKEN,
  REPLICATION_MODE: 'quorum',
  REDIS_URL: 'redis://127.0.0.1:6390',
  KAFKA_BROKERS: [{ host: '127.0.0.1', port: 9092 }],
  SHARD_NODES: [0, 1].map((id) => ({
    id,
    nodes: [0, 1].map((index) => ({ name: `s${id}n${index}`, host: '127.0.0.1', port: 16400 + id * 8 + index })),
  })),
} as unknown as GatewayEnvironment;

const healthOf = (lagBytes: number, checkedAt = 't0'): NodeHealth[] =>
  ['s0n0', 's0n1', 's1n0', 's1n1'].map((name) => ({ name, healthy: true, inRecovery: name.endsWith('n1'), lagBytes, lagSeconds: 0, checkedAt }));

interface Frame {
  event: string;
  id?: string;
  data: unknown;
}

/** The events in a server-sent stream's text (comments and the retry line left out). */
function framesOf(text: string): Frame[] {
  return text
    .split('\n\n')
    .filter((block) => block.includes('event: '))
    .map((block) => {
      const field = (name: string) =>
        block
          .split('\n')
          .find((line) => line.startsWith(`${name}: `))
          ?.slice(name.length + 2);
      return { event: field('event') as string, id: field('id'), data: JSON.parse(field('data') as string) };
    });
}

class RecordingStream implements EventStream {
  text = '';
  ended = false;
  write(chunk: string): void {
    this.text += chunk;
  }
  end(): void {
    this.ended = true;
  }
  get frames(): Frame[] {
    return framesOf(this.text);
  }
}

function hubWith(health: () => Promise<NodeHealth[]>, operations: () => unknown[] = () => []) {
  return new ClusterEventHub(
    {
      configuredTopology: () => configuredTopology(config),
      health,
      document: (topology, nodes) => clusterDocument(topology, nodes, config),
      operations,
    },
    { healthIntervalMs: 3_600_000, keepAliveMs: 3_600_000, retryMs: 1500 },
  );
}

const epoch = (n: number): Topology => ({ ...configuredTopology(config), epoch: n, term: 1 });

describe('ClusterEventHub', () => {
  it('sends the retry delay, the cluster document and the operations at once, then every new epoch to every stream', async () => {
    const hub = hubWith(async () => []);
    const first = new RecordingStream();
    const second = new RecordingStream();
    hub.subscribe(first);
    expect(first.text.startsWith('retry: 1500\n\n')).toBe(true);
    expect(first.frames.map((frame) => [frame.event, frame.id])).toEqual([
      ['topology', '0'],
      ['operations', undefined],
    ]);
    expect(first.frames[0].data).toMatchObject({ epoch: 0, shards: [{ id: 0 }, { id: 1 }] });

    hub.subscribe(second);
    hub.topologyChanged(epoch(2));
    hub.topologyChanged(epoch(3));
    for (const stream of [first, second]) {
      expect(stream.frames.filter((frame) => frame.event === 'topology').map((frame) => frame.id)).toEqual(['0', '2', '3']);
    }
    expect((second.frames.at(-1)?.data as { epoch: number }).epoch).toBe(3);
    hub.close();
  });

  it('sends node health when state or lag changed, not when only the probe time did, and puts it in later documents', async () => {
    let health = healthOf(0, 't0');
    const hub = hubWith(async () => health);
    const stream = new RecordingStream();
    hub.subscribe(stream);
    await hub.pollHealth();
    health = healthOf(0, 't1');
    await hub.pollHealth();
    health = healthOf(4096, 't2');
    await hub.pollHealth();

    const healthFrames = stream.frames.filter((frame) => frame.event === 'health');
    expect(healthFrames).toHaveLength(2);
    const replicaLag = (frame: Frame) => (frame.data as { shards: { replicas: { lagBytes: number }[] }[] }).shards[0].replicas[0].lagBytes;
    expect(replicaLag(healthFrames[1])).toBe(4096);

    hub.topologyChanged(epoch(4));
    expect(replicaLag(stream.frames.at(-1) as Frame)).toBe(4096);
    hub.close();
  });

  it('stops polling when the last stream closes, and ends every stream when the gateway shuts down', async () => {
    let polls = 0;
    const hub = hubWith(async () => (polls++, []));
    const a = new RecordingStream();
    const b = new RecordingStream();
    const closeA = hub.subscribe(a);
    hub.subscribe(b);
    expect(hub.listeners).toBe(2);
    closeA();
    hub.topologyChanged(epoch(2));
    expect(a.frames.filter((frame) => frame.event === 'topology')).toHaveLength(1);
    expect(b.frames.filter((frame) => frame.event === 'topology')).toHaveLength(2);

    hub.close();
    expect(b.ended).toBe(true);
    expect(a.ended).toBe(false);
    expect(hub.listeners).toBe(0);
    expect(polls).toBeGreaterThan(0);
  });

  it('sends the operations again whenever the follower reports a change that alters the list', () => {
    let operations: { id: string; state: string }[] = [];
    const hub = hubWith(
      async () => [],
      () => operations,
    );
    const stream = new RecordingStream();
    hub.subscribe(stream);
    hub.operationsChanged(); // nothing new since the stream opened
    operations = [{ id: 'op-1', state: 'running' }];
    hub.operationsChanged();
    hub.operationsChanged(); // a record that changed nothing the list shows
    operations = [{ id: 'op-1', state: 'done' }];
    hub.operationsChanged();

    const sent = stream.frames.filter((frame) => frame.event === 'operations').map((frame) => frame.data);
    expect(sent).toEqual([[], [{ id: 'op-1', state: 'running' }], [{ id: 'op-1', state: 'done' }]]);
    hub.close();
  });

  it('writes one event per frame with its data on one line', () => {
    expect(serverSentEvent('topology', { a: 'x\ny' }, 7)).toBe('id: 7\nevent: topology\ndata: {"a":"x\\ny"}\n\n');
  });
});

describe('GET /api/cluster/events', () => {
  let app: NestFastifyApplication;
  let hub: ClusterEventHub;
  let port: number;

  beforeAll(async () => {
    hub = hubWith(async () => healthOf(0));
    const moduleRef = await Test.createTestingModule({
      // The real problem+json filter and logger, as the gateway has them.
      imports: [ObservabilityModule.forService({ service: 'gateway', logger: createServiceLogger({ service: 'gateway', level: 'silent' }) })],
      controllers: [ClusterController],
      providers: [
        { provide: GATEWAY_CONFIG, useValue: config },
        { provide: TOPOLOGY_FOLLOWER, useValue: { current: null } },
        { provide: READER_POOL, useValue: { call: async () => healthOf(0) } },
        { provide: CLUSTER_EVENTS, useValue: hub },
        { provide: SwitchoverRequests, useValue: {} },
        AdminGuard,
      ],
    }).compile();
    app = moduleRef.createNestApplication<NestFastifyApplication>(new FastifyAdapter());
    await app.listen(0, '127.0.0.1');
    port = (app.getHttpServer().address() as AddressInfo).port;
  });

  afterAll(async () => {
    hub.close();
    await app.close();
  });

  function open(authorization?: string): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      const request = httpRequest({ host: '127.0.0.1', port, path: '/api/cluster/events', headers: authorization ? { authorization } : {} }, resolve);
      request.on('error', reject);
      request.end();
    });
  }

  async function body(response: IncomingMessage): Promise<string> {
    let text = '';
    for await (const chunk of response) text += chunk;
    return text;
  }

  it('answers 401 without a token and 403 with another, as problem+json', async () => {
    const anonymous = await open();
    expect(anonymous.statusCode).toBe(401);
    expect(anonymous.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(JSON.parse(await body(anonymous))).toMatchObject({ status: 401 });
    const stranger = await open(`Bearer ${ADMIN_TOKEN}0`);
    expect(stranger.statusCode).toBe(403);
    await body(stranger);
    expect(hub.listeners).toBe(0);
  });

  it('streams the topology at once and every new epoch as it is applied, and forgets a client that left', async () => {
    const response = await open(`Bearer ${ADMIN_TOKEN}`);
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-type']).toBe('text/event-stream; charset=utf-8');
    expect(response.headers['cache-control']).toBe('no-cache, no-transform');

    let text = '';
    const received = (predicate: (frames: Frame[]) => boolean) =>
      new Promise<void>((resolve) => {
        const check = () => predicate(framesOf(text)) && resolve();
        response.on('data', (chunk: Buffer) => {
          text += chunk.toString();
          check();
        });
        check();
      });
    await received((frames) => frames.some((frame) => frame.event === 'topology'));
    expect(framesOf(text)[0]).toMatchObject({ event: 'topology', id: '0' });
    expect(hub.listeners).toBe(1);

    hub.topologyChanged(epoch(6));
    await received((frames) => frames.some((frame) => frame.event === 'topology' && frame.id === '6'));

    response.destroy();
    const deadline = Date.now() + 5000;
    while (hub.listeners > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(hub.listeners).toBe(0);
  });
});

describe('clusterDocument', () => {
  const topology = configuredTopology(config);
  it('names the Redis server of REDIS_URL', () => {
    expect(clusterDocument(topology, [], config).redis).toEqual({ host: '127.0.0.1', port: 6390 });
  });
  it('names a Redis Cluster by its seed nodes, the first as host and port', () => {
    const clustered = {
      ...config,
      REDIS_URL: undefined,
      REDIS_CLUSTER_NODES: [
        { host: 'redis-0', port: 6379 },
        { host: 'redis-1', port: 6380 },
      ],
    };
    expect(clusterDocument(topology, [], clustered).redis).toEqual({ host: 'redis-0', port: 6379, cluster: { nodes: ['redis-0:6379', 'redis-1:6380'] } });
  });
});
