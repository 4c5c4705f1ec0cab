import { BadRequestException, NotFoundException, ServiceUnavailableException, type ArgumentsHost } from '@nestjs/common';
import { DomainError, OutcomeUnknown, ShardUnavailable } from '@shortener/contracts';
import type { PinoLogger } from 'nestjs-pino';
import { PROBLEM_CONTENT_TYPE, ProblemFilter } from './problem';

/** What the filter writes on a Fastify reply. */
class FakeReply {
  status = 0;
  headerValues: Record<string, string> = {};
  contentType = '';
  body = '';
  code(status: number) {
    this.status = status;
    return this;
  }
  headers(values: Record<string, string>) {
    Object.assign(this.headerValues, values);
    return this;
  }
  type(contentType: string) {
    this.contentType = contentType;
    return this;
  }
  send(body: string) {
    this.body = body;
    return this;
  }
}

function answer(error: unknown) {
  const reply = new FakeReply();
  const logged: { extra: Record<string, unknown>; message: string }[] = [];
  const logger = { error: (extra: Record<string, unknown>, message: string) => logged.push({ extra, message }) } as unknown as PinoLogger;
  const host = { switchToHttp: () => ({ getResponse: () => reply }) } as unknown as ArgumentsHost;
  new ProblemFilter(logger).catch(error, host);
  expect(reply.contentType).toBe(PROBLEM_CONTENT_TYPE);
  return { status: reply.status, headers: reply.headerValues, body: JSON.parse(reply.body) as Record<string, unknown>, logged };
}

describe('ProblemFilter (every service answers errors as problem+json)', () => {
  it('maps domain errors by kind, with their field errors', () => {
    const { status, body } = answer(
      new DomainError('validation', 'url: must be an absolute URL', { errors: [{ field: 'url', message: 'must be an absolute URL' }] }),
    );
    expect(status).toBe(400);
    expect(body).toEqual({
      type: 'https://shortener.dev/problems/validation',
      title: 'Invalid request',
      status: 400,
      detail: 'url: must be an absolute URL',
      errors: [{ field: 'url', message: 'must be an absolute URL' }],
    });
  });

  it('503 carries Retry-After; an unknown outcome is a 504 that says a retry with the Idempotency-Key is safe', () => {
    const unavailable = answer(ShardUnavailable(2, 3));
    expect(unavailable.status).toBe(503);
    expect(unavailable.headers).toEqual({ 'retry-after': '3' });
    const unknown = answer(OutcomeUnknown('the create'));
    expect(unknown.status).toBe(504);
    expect(unknown.body.detail).toMatch(/may or may not have been applied.*Idempotency-Key/);
    expect(unknown.headers).toEqual({});
  });

  it('asks for a bearer token on 401', () => {
    expect(answer(new DomainError('unauthorized', 'no token')).headers).toEqual({ 'www-authenticate': 'Bearer' });
  });

  it("maps the framework's own exceptions by status", () => {
    expect(answer(new NotFoundException('Cannot GET /nope'))).toMatchObject({ status: 404, body: { title: 'Not found', detail: 'Cannot GET /nope' } });
    expect(answer(new BadRequestException(['a', 'b'])).body).toMatchObject({ status: 400, detail: 'a; b' });
    expect(answer(new ServiceUnavailableException()).status).toBe(503);
    expect(answer(Object.assign(new Error('body too large'), { statusCode: 413 })).body).toMatchObject({ status: 413, title: 'Payload too large' });
  });

  it('answers anything unexpected with a 500 that names only an error id, which the log line carries with the error', () => {
    const { status, body, logged } = answer(new Error('connect ECONNREFUSED 10.0.0.7:5432'));
    expect(status).toBe(500);
    expect(body.detail).toMatch(/^internal error [0-9a-f-]{36}$/);
    expect(JSON.stringify(body)).not.toMatch(/10\.0\.0\.7|5432/);
    expect(logged).toHaveLength(1);
    expect(body.detail).toContain(logged[0].extra.errorId as string);
  });
});
