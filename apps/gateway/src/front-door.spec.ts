import Fastify from 'fastify';
import { connect } from 'node:net';
import type { AddressInfo } from 'node:net';
import { clientErrorHandler, frameworkErrors, installJsonBodyParser, jsonDepth, MAX_JSON_DEPTH } from './front-door';
import { cacheControlByStatus } from './redirect.route';

function app() {
  const fastify = Fastify({ maxParamLength: 200, frameworkErrors, clientErrorHandler, bodyLimit: 16 * 1024 });
  installJsonBodyParser(fastify);
  fastify.setErrorHandler((error: Error & { statusCode?: number }, _request, reply) =>
    reply
      .code(error.statusCode ?? 500)
      .type('application/problem+json')
      .send({ status: error.statusCode, detail: error.message }),
  );
  fastify.post('/echo', async (request) => request.body);
  fastify.get('/:code', async (request) => request.params);
  return fastify;
}

describe('jsonDepth', () => {
  it.each([
    ['{}', 1],
    ['[[1],[2,[3]]]', 3],
    ['{"a":"[[[[["}', 1],
    ['{"a":"\\"[[[["}', 1],
    ['"x"', 0],
  ])('%s nests %i deep', (text, depth) => expect(jsonDepth(text)).toBe(depth));

  it('stops counting past the limit', () => expect(jsonDepth('['.repeat(100_000), 16)).toBe(17));
});

describe('the JSON body parser', () => {
  const fastify = app();
  afterAll(() => fastify.close());
  const post = (payload: string) => fastify.inject({ method: 'POST', url: '/echo', headers: { 'content-type': 'application/json' }, payload });

  it('parses ordinary bodies', async () => {
    const reply = await post('{"url":"https://example.com","nested":{"a":[1,2]}}');
    expect(reply.statusCode).toBe(200);
    expect(reply.json()).toEqual({ url: 'https://example.com', nested: { a: [1, 2] } });
  });

  it('refuses deep nesting as a 400 before parsing it', async () => {
    const deep = `{"url":${'['.repeat(5000)}${']'.repeat(5000)}}`;
    const reply = await post(deep);
    expect(reply.statusCode).toBe(400);
    expect(reply.json().detail).toMatch(/deeper than 16/);
    expect((await post(`${'['.repeat(MAX_JSON_DEPTH)}${']'.repeat(MAX_JSON_DEPTH)}`)).statusCode).toBe(200);
  });

  it.each(['constructor', 'prototype', 'toString', 'valueOf', 'hasOwnProperty', '__defineGetter__'])('refuses a field named %s, also nested', async (name) => {
    expect((await post(`{"url":"https://e.com","${name}":1}`)).statusCode).toBe(400);
    const nested = await post(`{"url":"https://e.com","x":{"${name}":{}}}`);
    expect(nested.statusCode).toBe(400);
    expect(nested.json().detail).toContain(`x.${name}`);
  });

  it('refuses __proto__', async () => {
    expect((await post('{"__proto__":{"admin":true}}')).statusCode).toBe(400);
  });
});

describe('errors before the router', () => {
  const fastify = app();
  let port = 0;
  beforeAll(async () => {
    await fastify.listen({ port: 0, host: '127.0.0.1' });
    port = (fastify.server.address() as AddressInfo).port;
  });
  afterAll(() => fastify.close());

  it.each(['/%ZZ', '/%E2%82', `/${'a'.repeat(250)}`])('answers %s with a problem+json 404', async (url) => {
    const reply = await fastify.inject({ method: 'GET', url });
    expect(reply.statusCode).toBe(404);
    expect(reply.headers['content-type']).toMatch(/^application\/problem\+json/);
  });

  const raw = (request: string) =>
    new Promise<string>((resolve, reject) => {
      const socket = connect(port, '127.0.0.1');
      let data = '';
      socket.on('data', (chunk) => (data += chunk));
      socket.on('end', () => resolve(data));
      socket.on('error', reject);
      socket.write(request);
    });

  it('answers a malformed request line with a problem+json 400', async () => {
    const answer = await raw('GET /abc HTTP/9.9 nonsense\r\n\r\n');
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expect(answer).toMatch(/content-type: application\/problem\+json/i);
    expect(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)).status).toBe(400);
  });

  it('answers conflicting lengths with a problem+json 400', async () => {
    const answer = await raw('POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n');
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expect(answer).toMatch(/problem\+json/);
  });

  it('answers oversized headers with a problem+json 431', async () => {
    const answer = await raw(`GET /abc HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(40_000)}\r\n\r\n`);
    expect(answer).toMatch(/^HTTP\/1\.1 431 /);
    expect(answer).toMatch(/problem\+json/);
  });
});

describe('cacheControlByStatus', () => {
  it('bounds permanent redirects and revalidates temporary ones', () => {
    const table = cacheControlByStatus(300);
    expect(table[301]).toBe('max-age=300');
    expect(table[308]).toBe('max-age=300');
    expect(table[302]).toBe('private, no-cache');
    expect(table[307]).toBe('private, no-cache');
  });
});
