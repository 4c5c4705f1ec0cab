import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { APP_PIPE } from '@nestjs/core';
import { Test } from '@nestjs/testing';
import type { GatewayEnvironment } from '@shortener/config';
import { Topics, type ClusterCommand, type OperationRecord } from '@shortener/contracts';
import type { KeyedEvent } from '@shortener/events';
import { createServiceLogger, ObservabilityModule } from '@shortener/observability';
import { initialTopology, type Topology } from '@shortener/topology';
import { AdminGuard } from './auth';
import { EVENT_PRODUCER, GATEWAY_CONFIG, OPERATIONS_FOLLOWER, TOPOLOGY_FOLLOWER } from './gateway.constants';
import { validationPipe } from './gateway.module';
import { OperationRequests } from './operation-requests';
import { parseAddShardBody, ReshardingController } from './resharding.controller';

const ADMIN_TOKEN = 'admin-token-0123456789abcdef';
const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };

const twoShards: Topology = {
  ...initialTopology(
    [0, 1].map((id) => ({ id, nodes: [0, 1].map((index) => ({ name: `s${id}n${index}`, host: '127.0.0.1', port: 16400 + id * 8 + index })) })),
    'quorum',
  ),
  epoch: 5,
  term: 1,
};

const recordOf = (id: string, extra: Partial<OperationRecord['document']> = {}, refused?: OperationRecord['refused']): OperationRecord => ({
  version: 1,
  document: {
    id,
    type: 'add-shard',
    shard: 2,
    state: 'running',
    phase: 'provision',
    slots: { total: 341, moved: 0 },
    rows: { copied: 0, verified: 0 },
    maxWritePauseMs: 0,
    startedAt: new Date().toISOString(),
    finishedAt: null,
    ...extra,
  },
  record: { secret: 'the monitor state' },
  ...(refused ? { refused } : {}),
  at: new Date().toISOString(),
});

/** The operations follower in memory (`answer` below decides what the monitor publishes for each command sent). */
class FakeOperations {
  readonly records = new Map<string, OperationRecord>();
  get(id: string) {
    return this.records.get(id);
  }
  list() {
    return [...this.records.values()].filter((record) => !record.refused).reverse();
  }
  running() {
    return this.list().find((record) => record.document.state === 'running');
  }
  async waitFor(id: string) {
    return this.records.get(id) ?? null;
  }
}

describe('ReshardingController', () => {
  let app: NestFastifyApplication;
  let topology: Topology | null;
  const operations = new FakeOperations();
  let sent: ClusterCommand[];
  let answer: (command: ClusterCommand) => OperationRecord | null;
  let kafkaDown: boolean;

  beforeAll(async () => {
    const producer = {
      send: async (events: KeyedEvent[]) => {
        if (kafkaDown) throw new Error('kafka send timed out');
        for (const event of events) {
          expect(event.topic).toBe(Topics.clusterCommands);
          const command = JSON.parse(event.value) as ClusterCommand;
          sent.push(command);
          const record = answer(command);
          if (record && 'operationId' in command)
            operations.records.set(command.operationId, { ...record, document: { ...record.document, id: command.operationId } });
        }
      },
    };
    const moduleRef = await Test.createTestingModule({
      // The real problem+json filter, as the gateway has it.
      imports: [ObservabilityModule.forService({ service: 'gateway', logger: createServiceLogger({ service: 'gateway', level: 'silent' }) })],
      controllers: [ReshardingController],
      providers: [
        // The gateway's global pipe, which must let the raw body through to the contract's schema.
        { provide: APP_PIPE, useValue: validationPipe },
        { provide: GATEWAY_CONFIG, useValue: { ADMIN_TOKEN } as GatewayEnvironment },
        {
          provide: TOPOLOGY_FOLLOWER,
          useValue: {
            get current() {
              return topology;
            },
          },
        },
        { provide: OPERATIONS_FOLLOWER, useValue: operations },
        { provide: EVENT_PRODUCER, useValue: producer },
        OperationRequests,
        AdminGuard,
      ],
    }).compile();
    app = moduleRef.createNestApplication<NestFastifyApplication>(new FastifyAdapter());
    await app.init();
    await app.getHttpAdapter().getInstance().ready();
  });

  beforeEach(() => {
    topology = twoShards;
    operations.records.clear();
    sent = [];
    answer = (command) => recordOf('pending', command.type === 'drain-shard' ? { type: 'drain-shard', shard: command.shard } : {});
    kafkaDown = false;
  });

  afterAll(async () => {
    await app.close();
  });

  const inject = (method: 'GET' | 'POST' | 'DELETE', url: string, payload?: unknown, headers: Record<string, string> = admin) =>
    app.inject({ method, url, headers: { ...headers, ...(payload === undefined ? {} : { 'content-type': 'application/json' }) }, payload: payload as object });

  it('refuses every route without the admin token, 401 or 403 as problem+json', async () => {
    for (const [method, url] of [
      ['POST', '/api/cluster/shards'],
      ['DELETE', '/api/cluster/shards/1'],
      ['GET', '/api/cluster/operations'],
      ['GET', '/api/cluster/operations/x'],
    ] as const) {
      const anonymous = await inject(method, url, undefined, {});
      expect(anonymous.statusCode).toBe(401);
      expect(anonymous.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect((await inject(method, url, undefined, { authorization: 'Bearer not-the-token' })).statusCode).toBe(403);
    }
    expect(sent).toEqual([]);
  });

  it('adds a shard: sends add-shard with a fresh operation id and answers 202 with the operation and its Location', async () => {
    for (const payload of [undefined, {}]) {
      const response = await inject('POST', '/api/cluster/shards', payload);
      expect(response.statusCode).toBe(202);
      const document = response.json();
      expect(response.headers.location).toBe(`/api/cluster/operations/${document.id}`);
      expect(document).toMatchObject({ type: 'add-shard', shard: 2, state: 'running', slots: { total: 341, moved: 0 } });
      expect(document).not.toHaveProperty('record');
      operations.records.clear();
    }
    expect(sent).toHaveLength(2);
    expect(sent[0]).toMatchObject({ type: 'add-shard', version: 1 });
    expect(sent[0]).not.toHaveProperty('nodes');
    expect((sent[0] as { operationId: string }).operationId).not.toBe((sent[1] as { operationId: string }).operationId);

    const nodes = [
      { name: 's2n0', host: 'pg-a.internal', port: 5432 },
      { name: 's2n1', host: 'pg-b.internal', port: 5432 },
    ];
    expect((await inject('POST', '/api/cluster/shards', { nodes })).statusCode).toBe(202);
    expect(sent[2]).toMatchObject({ type: 'add-shard', nodes });
  });

  it('refuses bad bodies with 400 naming the field, and node names already in the topology with 409, sending nothing', async () => {
    const bad: unknown[] = [
      { shards: 1 },
      { nodes: [] },
      { nodes: [{ name: 's2n0', host: 'h', port: 0 }] },
      { nodes: [{ name: 'S2N0', host: 'h', port: 5432 }] },
      { nodes: [{ name: 's2n0', host: 'h', port: 5432, role: 'primary' }] },
      {
        nodes: [
          { name: 's2n0', host: 'h', port: 5432 },
          { name: 's2n0', host: 'i', port: 5432 },
        ],
      },
      {
        nodes: [
          { name: 's2n0', host: 'h', port: 5432 },
          { name: 's2n1', host: 'h', port: 5432 },
        ],
      },
      [],
    ];
    for (const payload of bad) {
      const response = await inject('POST', '/api/cluster/shards', payload);
      expect({ payload, status: response.statusCode }).toEqual({ payload, status: 400 });
      expect(response.json().errors.length).toBeGreaterThan(0);
    }
    const taken = await inject('POST', '/api/cluster/shards', { nodes: [{ name: 's1n0', host: 'h', port: 5432 }] });
    expect(taken.statusCode).toBe(409);
    expect(taken.json().detail).toContain('s1n0');
    expect(sent).toEqual([]);
  });

  it('answers 409 naming the running operation, before sending anything', async () => {
    operations.records.set('op-7', recordOf('op-7', { type: 'drain-shard', shard: 1, phase: 'copy' }));
    for (const [method, url] of [
      ['POST', '/api/cluster/shards'],
      ['DELETE', '/api/cluster/shards/0'],
    ] as const) {
      const response = await inject(method, url, method === 'POST' ? {} : undefined);
      expect(response.statusCode).toBe(409);
      expect(response.json().detail).toContain('op-7 (drain-shard of shard 1)');
    }
    expect(sent).toEqual([]);
  });

  it("maps the monitor's refusals: conflict, last shard and existing shard 409, not a shard 404, invalid 400", async () => {
    const cases = [
      ['conflict', 409],
      ['last-shard', 409],
      ['shard-exists', 409],
      ['not-a-shard', 404],
      ['bad-request', 400],
      ['no-slots', 400],
      ['unsupported', 400],
    ] as const;
    for (const [reason, status] of cases) {
      answer = () => recordOf('refused', { state: 'failed' }, { reason, message: `refused: ${reason}` });
      const response = await inject('POST', '/api/cluster/shards', {});
      expect({ reason, status: response.statusCode }).toEqual({ reason, status });
      expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(response.json().detail).toBe(`refused: ${reason}`);
    }
    // A refusal is no operation: not listed, not found.
    expect((await inject('GET', '/api/cluster/operations')).json()).toEqual([]);
    const refusedId = (sent[0] as { operationId: string }).operationId;
    expect((await inject('GET', `/api/cluster/operations/${refusedId}`)).statusCode).toBe(404);
  });

  it('answers 503 with Retry-After when Kafka refuses the command or no monitor answers', async () => {
    kafkaDown = true;
    const unsent = await inject('POST', '/api/cluster/shards', {});
    expect(unsent.statusCode).toBe(503);
    expect(unsent.headers['retry-after']).toBe('5');
    kafkaDown = false;

    answer = () => null;
    const unanswered = await inject('DELETE', '/api/cluster/shards/1');
    expect(unanswered.statusCode).toBe(503);
    expect(unanswered.headers['retry-after']).toBe('5');
    expect(unanswered.json().detail).toContain('no leading monitor answered');
  });

  it('drains a shard: 404 for an unknown one, 409 for the last that owns slots, else 202 with the operation', async () => {
    expect((await inject('DELETE', '/api/cluster/shards/9')).statusCode).toBe(404);
    topology = { ...twoShards, ring: { ...twoShards.ring, slots: twoShards.ring.slots.map(() => 0) } };
    const last = await inject('DELETE', '/api/cluster/shards/0');
    expect(last.statusCode).toBe(409);
    expect(last.json().detail).toContain('last shard');
    expect(sent).toEqual([]);

    // Shard 1 owns no slot any more: draining it just retires it.
    const drained = await inject('DELETE', '/api/cluster/shards/1');
    expect(drained.statusCode).toBe(202);
    expect(sent).toEqual([expect.objectContaining({ type: 'drain-shard', version: 1, shard: 1 })]);
    expect(drained.json()).toMatchObject({ type: 'drain-shard', shard: 1 });
    expect(drained.headers.location).toBe(`/api/cluster/operations/${drained.json().id}`);

    topology = null;
    expect((await inject('DELETE', '/api/cluster/shards/1')).statusCode).toBe(503);
  });

  it('lists the operations newest first and shows one by id, without the monitor state; 404 for an unknown id', async () => {
    operations.records.set('old', recordOf('old', { state: 'done', phase: 'done', finishedAt: '2030-01-01T00:00:00.000Z' }));
    operations.records.set('new', recordOf('new', { state: 'failed', phase: 'failed', error: 'verify: checksums differ' }));
    const list = await inject('GET', '/api/cluster/operations');
    expect(list.statusCode).toBe(200);
    expect(list.json().map((document: { id: string }) => document.id)).toEqual(['new', 'old']);
    expect(list.json()[0]).not.toHaveProperty('record');

    const one = await inject('GET', '/api/cluster/operations/new');
    expect(one.statusCode).toBe(200);
    expect(one.json()).toEqual(
      recordOf('new', { state: 'failed', phase: 'failed', error: 'verify: checksums differ', startedAt: one.json().startedAt }).document,
    );
    const unknown = await inject('GET', '/api/cluster/operations/nope');
    expect(unknown.statusCode).toBe(404);
    expect(unknown.headers['content-type']).toMatch(/^application\/problem\+json/);
  });
});

describe('parseAddShardBody', () => {
  it('takes an absent body as {} and keeps the nodes in their order (the first is the primary)', () => {
    expect(parseAddShardBody(undefined)).toBeUndefined();
    expect(parseAddShardBody(null)).toBeUndefined();
    expect(parseAddShardBody({})).toBeUndefined();
    const nodes = [
      { name: 'b', host: 'h', port: 1 },
      { name: 'a', host: 'h', port: 2 },
    ];
    expect(parseAddShardBody({ nodes })).toEqual(nodes);
  });

  it('names every bad field', () => {
    try {
      parseAddShardBody({ nodes: [{ name: 'a', host: '', port: 70000 }], extra: true });
      throw new Error('accepted');
    } catch (error) {
      const fields = (error as { details: { errors: { field: string }[] } }).details.errors.map((entry) => entry.field).sort();
      expect(fields).toEqual(['(body)', 'nodes.0.host', 'nodes.0.port']);
    }
  });
});
