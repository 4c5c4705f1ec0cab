import Fastify from 'fastify';
import { register } from 'prom-client';
import { HTTP_REQUEST_DURATION_SECONDS, HTTP_REQUESTS_TOTAL, installRequestMetrics } from './request-metrics';

async function valuesOf(name: string) {
  const metric = register.getSingleMetric(name);
  return metric ? (await metric.get()).values : [];
}

// Generous: CI runs the unit suites beside builds and stacks on two cores.
jest.setTimeout(60_000);

describe('installRequestMetrics', () => {
  beforeEach(() => register.resetMetrics());

  it('counts API requests by route template, method and status, and times them; other paths are not counted', async () => {
    const fastify = Fastify();
    installRequestMetrics(fastify, ['/api/']);
    fastify.get('/api/urls/:code', async (request, reply) => reply.code(404).send({}));
    fastify.post('/api/urls', async (request, reply) => reply.code(201).send({}));
    fastify.get('/:code', async (request, reply) => reply.code(302).header('location', 'https://e.com').send());
    await fastify.inject({ method: 'GET', url: '/api/urls/abc' });
    await fastify.inject({ method: 'GET', url: '/api/urls/def' });
    await fastify.inject({ method: 'POST', url: '/api/urls', payload: {} });
    await fastify.inject({ method: 'GET', url: '/abc1234' });
    await fastify.close();

    const counts = (await valuesOf(HTTP_REQUESTS_TOTAL)).map(({ labels, value }) => ({ ...labels, value }));
    expect(counts).toEqual(
      expect.arrayContaining([
        { route: '/api/urls/:code', method: 'GET', status: '404', value: 2 },
        { route: '/api/urls', method: 'POST', status: '201', value: 1 },
      ]),
    );
    expect(counts.filter((entry) => entry.value > 0)).toHaveLength(2);
    const durations = await valuesOf(HTTP_REQUEST_DURATION_SECONDS);
    const countOf = (route: string) =>
      durations.find((sample) => (sample as { metricName?: string }).metricName === `${HTTP_REQUEST_DURATION_SECONDS}_count` && sample.labels.route === route)
        ?.value;
    expect(countOf('/api/urls/:code')).toBe(2);
    expect(countOf('/api/urls')).toBe(1);
    expect(countOf('/:code')).toBeUndefined();
  });

  it('counts errors with their status (a thrown error is a 500)', async () => {
    const fastify = Fastify();
    installRequestMetrics(fastify, ['/api/']);
    fastify.post('/api/keys', async () => {
      throw new Error('writer away');
    });
    await fastify.inject({ method: 'POST', url: '/api/keys', payload: {} });
    await fastify.close();
    const counts = (await valuesOf(HTTP_REQUESTS_TOTAL)).filter((entry) => entry.value > 0).map(({ labels, value }) => ({ ...labels, value }));
    expect(counts).toEqual([{ route: '/api/keys', method: 'POST', status: '500', value: 1 }]);
  });
});
