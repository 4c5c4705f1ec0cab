import { clickEventSchema, DomainError, problemFor, urlEventSchema } from './index';

describe('events', () => {
  it('accepts a created event and rejects a misspelled one', () => {
    const created = {
      type: 'url.created',
      version: 1,
      code: 'abc1234',
      at: '2030-01-01T00:00:00.000Z',
      link: { url: 'https://e.com', redirectType: 302, expiresAt: null, version: 10 },
    };
    expect(urlEventSchema.parse(created)).toEqual(created);
    expect(urlEventSchema.safeParse({ ...created, type: 'url.create' }).success).toBe(false);
    expect(urlEventSchema.safeParse({ ...created, link: { ...created.link, redirectType: 303 } }).success).toBe(false);
  });

  it('requires a positive click count', () => {
    const click = { type: 'url.clicked', version: 1, code: 'abc', count: 3, at: 'x' };
    expect(clickEventSchema.parse(click).count).toBe(3);
    expect(clickEventSchema.safeParse({ ...click, count: 0 }).success).toBe(false);
  });
});

describe('DomainError', () => {
  it('maps a rate limit to 429 problem+json', () => {
    expect(problemFor('rate-limited', 'slow down')).toMatchObject({
      status: 429,
      title: 'Too many requests',
      type: 'https://shortener.dev/problems/rate-limited',
    });
  });

  it('survives the trip through an RPC payload', () => {
    const error = new DomainError('shard-unavailable', 'no primary', { retryAfterSeconds: 2 });
    const back = DomainError.fromPayload(JSON.parse(JSON.stringify(error.toPayload())));
    expect(back.kind).toBe('shard-unavailable');
    expect(back.details.retryAfterSeconds).toBe(2);
    expect(DomainError.isPayload({ kind: 'gone', message: 'x' })).toBe(true);
    expect(DomainError.isPayload('gone')).toBe(false);
  });

  it('maps kinds to problem documents with the right status', () => {
    expect(problemFor('conflict', 'taken').status).toBe(409);
    expect(problemFor('gone', 'deleted').status).toBe(410);
    expect(problemFor('shard-unavailable', 'x').status).toBe(503);
    const invalid = problemFor('validation', 'bad', [{ field: 'url', message: 'must use http' }]);
    expect(invalid).toMatchObject({ status: 400, title: 'Invalid request', errors: [{ field: 'url' }] });
  });
});
