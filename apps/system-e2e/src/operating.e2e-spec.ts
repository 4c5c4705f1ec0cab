/**
 * docs/reference.md section 9 from outside: the metrics each service exports (request metrics of
 * the API routes by route template, the redirect counter, the monitor's node and topology
 * gauges, the writer's outbox backlog, the Node.js defaults everywhere) and the admin event
 * stream GET /api/cluster/events.
 */
import { eventually, reachableHost, stackFromEnv } from './support';
import { gateway, request, uniqueTarget } from './support/http';

const stack = stackFromEnv();
const { inventory } = stack;
const gw = gateway(stack);

jest.setTimeout(120_000);

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The samples of a Prometheus text exposition. */
export function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)/.exec(line);
    if (!match) continue;
    const labels: Record<string, string> = {};
    for (const pair of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:\\.|[^"\\])*)"/g)) labels[pair[1]] = pair[2];
    samples.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return samples;
}

/**
 * A service's /metrics: locally every service listens on 127.0.0.1; under compose
 * (tools/docker/test.mjs) on its container's address, `service` being its compose service.
 */
async function metricsOf(service: string, port: number): Promise<Sample[]> {
  const host = inventory.target === 'compose' ? await reachableHost(stack, service) : '127.0.0.1';
  const answer = await request(`http://${host}:${port}`, '/metrics');
  expect(answer.status).toBe(200);
  return parseMetrics(answer.text);
}

const valueOf = (samples: Sample[], name: string, labels: Record<string, string> = {}) =>
  samples
    .filter((sample) => sample.name === name && Object.entries(labels).every(([key, value]) => sample.labels[key] === value))
    .reduce((sum, sample) => sum + sample.value, 0);

describe('metrics (docs/reference.md section 9)', () => {
  it('the gateway counts and times API requests by route template, method and status, and redirects by status and source', async () => {
    const before = await metricsOf('gateway', inventory.services.gateway.port);
    const created = await gw.create({ url: uniqueTarget('metrics') });
    expect(created.status).toBe(201);
    const code = created.json.code;
    expect((await gw.details(code)).status).toBe(200);
    expect((await gw.details('zzzzzzzzzzzzzzzz')).status).toBe(404);
    // Twice: the first may fill the cache, the second is a hit.
    expect((await gw.redirect(code)).status).toBe(302);
    expect((await gw.redirect(code)).status).toBe(302);
    const after = await metricsOf('gateway', inventory.services.gateway.port);

    const delta = (name: string, labels: Record<string, string>) => valueOf(after, name, labels) - valueOf(before, name, labels);
    expect(delta('shortener_http_requests_total', { route: '/api/urls', method: 'POST', status: '201' })).toBeGreaterThanOrEqual(1);
    expect(delta('shortener_http_requests_total', { route: '/api/urls/:code', method: 'GET', status: '200' })).toBeGreaterThanOrEqual(1);
    expect(delta('shortener_http_requests_total', { route: '/api/urls/:code', method: 'GET', status: '404' })).toBeGreaterThanOrEqual(1);
    expect(delta('shortener_http_request_duration_seconds_count', { route: '/api/urls', method: 'POST' })).toBeGreaterThanOrEqual(1);
    expect(after.some((sample) => sample.name === 'shortener_http_request_duration_seconds_bucket' && sample.labels.le === '+Inf')).toBe(true);
    expect(delta('shortener_redirects_total', { status: 'redirect' })).toBeGreaterThanOrEqual(2);
    expect(delta('shortener_redirects_total', { status: 'redirect', source: 'cache' })).toBeGreaterThanOrEqual(1);

    // Route templates only: no raw path or code ever becomes a label value.
    const routes = new Set(after.filter((sample) => sample.name === 'shortener_http_requests_total').map((sample) => sample.labels.route));
    for (const route of routes) expect({ route, template: !route.includes(code) && !route.includes('zzzzzzzz') }).toEqual({ route, template: true });
    // The redirect path is counted by shortener_redirects_total, not as an API route.
    expect(routes.has('/:code')).toBe(false);
  });

  it('the writer exports the outbox backlog per shard', async () => {
    const samples = await eventually(
      async () => {
        const all = await metricsOf('writer', inventory.services.writer.httpPort);
        if (all.filter((sample) => sample.name === 'shortener_outbox_pending').length < inventory.shards.length)
          throw new Error('no backlog of every shard yet');
        return all;
      },
      { timeoutMs: 20_000, intervalMs: 500 },
    );
    const shards = samples.filter((sample) => sample.name === 'shortener_outbox_pending').map((sample) => Number(sample.labels.shard));
    expect(shards.sort()).toEqual(inventory.shards.map((shard) => shard.id).sort());
    for (const sample of samples.filter((s) => s.name === 'shortener_outbox_pending')) expect(sample.value).toBeGreaterThanOrEqual(0);
  });

  it('the leading monitor exports shortener_node_up for every node, the topology epoch and the failover histogram', async () => {
    const leader = await eventually(
      async () => {
        for (const monitor of inventory.services.monitors) {
          const samples = await metricsOf(monitor.name, monitor.httpPort);
          if (valueOf(samples, 'shortener_monitor_leader') === 1 && samples.some((sample) => sample.name === 'shortener_node_up')) return samples;
        }
        throw new Error('no leading monitor exports shortener_node_up yet');
      },
      { timeoutMs: 30_000, intervalMs: 500 },
    );
    const up = leader.filter((sample) => sample.name === 'shortener_node_up');
    const nodes = inventory.shards.flatMap((shard) => shard.nodes.map((node) => node.name)).sort();
    expect(up.map((sample) => sample.labels.node).sort()).toEqual(nodes);
    for (const sample of up) {
      expect(['primary', 'replica']).toContain(sample.labels.role);
      expect(sample.labels.shard).toMatch(/^\d+$/);
    }
    expect(up.filter((sample) => sample.labels.role === 'primary')).toHaveLength(inventory.shards.length);
    expect(valueOf(leader, 'shortener_topology_epoch')).toBeGreaterThanOrEqual(1);
    expect(leader.some((sample) => sample.name.startsWith('shortener_failover_duration_seconds'))).toBe(true);
  });

  const services: [string, number][] = [
    ['gateway', inventory.services.gateway.port],
    ['writer', inventory.services.writer.httpPort],
    ...inventory.services.readers.map((reader): [string, number] => [reader.name, reader.httpPort]),
    ...inventory.services.monitors.map((monitor): [string, number] => [monitor.name, monitor.httpPort]),
  ];

  it.each(services)('%s keeps the Node.js default metrics', async (service, port) => {
    const names = new Set((await metricsOf(service, port)).map((sample) => sample.name));
    for (const name of ['process_cpu_user_seconds_total', 'process_resident_memory_bytes', 'nodejs_heap_size_used_bytes', 'nodejs_eventloop_lag_seconds']) {
      expect({ name, present: names.has(name) }).toEqual({ name, present: true });
    }
  });
});
