import Fastify from 'fastify';
import { PinoLogger } from 'nestjs-pino';
import pino from 'pino';
import { Writable } from 'node:stream';
import { installAccessLog } from './access-log';

describe('installAccessLog', () => {
  const lines: Record<string, unknown>[] = [];
  const root = PinoLogger.root;

  beforeAll(() => {
    const sink = new Writable({
      write(chunk, _encoding, callback) {
        lines.push(JSON.parse(chunk.toString()));
        callback();
      },
    });
    // With the serializers the service's logger has (they would blank nested req/res objects).
    (PinoLogger as unknown as { root: pino.Logger }).root = pino({ base: null, serializers: pino.stdSerializers }, sink);
  });

  afterAll(() => {
    (PinoLogger as unknown as { root: pino.Logger }).root = root;
  });

  it('writes one line per request under a prefix, with its status, and none for other paths', async () => {
    const fastify = Fastify();
    installAccessLog(fastify, ['/api/']);
    fastify.get('/api/urls/:code', async (request, reply) => reply.code(404).send({}));
    fastify.post('/api/urls', async () => {
      throw new Error('writer away');
    });
    fastify.get('/:code', async (request, reply) => reply.code(302).header('location', 'https://e.com').send());
    await fastify.inject({ method: 'GET', url: '/api/urls/abc' });
    await fastify.inject({ method: 'POST', url: '/api/urls', payload: {} });
    await fastify.inject({ method: 'GET', url: '/abc1234' });
    await fastify.close();
    expect(lines).toEqual([
      expect.objectContaining({ level: 30, msg: 'request completed', method: 'GET', url: '/api/urls/abc', statusCode: 404 }),
      expect.objectContaining({ level: 50, msg: 'request failed', method: 'POST', url: '/api/urls', statusCode: 500 }),
    ]);
    expect(typeof lines[0].responseTime).toBe('number');
  });
});
