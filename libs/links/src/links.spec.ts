import {
  checkAlias,
  checkExpiresAt,
  checkTargetUrl,
  CODE_ALPHABET,
  couldBeCode,
  decodeCacheEntry,
  encodeCacheEntry,
  generateCode,
  isRedirectType,
  targetPolicyOf,
  type CacheEntry,
} from './index';

const shortener = targetPolicyOf({ publicBaseUrl: 'https://sho.rt', allowPrivate: false, blockedHosts: [] });

describe('generateCode', () => {
  it('makes 7 base62 characters', () => {
    for (let i = 0; i < 1000; i++) expect(generateCode()).toMatch(/^[0-9A-Za-z]{7}$/);
  });

  it('uses every symbol about equally (no modulo bias)', () => {
    const counts = new Map<string, number>();
    const draws = 62 * 2000;
    for (let i = 0; i < draws / 7; i++) {
      for (const ch of generateCode()) counts.set(ch, (counts.get(ch) ?? 0) + 1);
    }
    expect(counts.size).toBe(CODE_ALPHABET.length);
    for (const count of counts.values()) {
      expect(count).toBeGreaterThan(2000 * 0.8);
      expect(count).toBeLessThan(2000 * 1.2);
    }
  });

  it('does not repeat in 100,000 draws', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 100_000; i++) seen.add(generateCode());
    expect(seen.size).toBe(100_000);
  });
});

describe('checkTargetUrl', () => {
  it.each(['https://example.com', 'http://example.com:8080/a?b=c#d', 'https://xn--bcher-kva.example/ü'])('accepts %s', (url) =>
    expect(checkTargetUrl(url, shortener)).toBeNull(),
  );

  it.each([
    ['', /empty/],
    ['example.com', /absolute/],
    ['ftp://example.com/file', /http or https/],
    ['javascript:alert(1)', /http or https/],
    ['https://exa mple.com', /whitespace/],
    ['https://example.com/\n', /whitespace/],
    ['https://example.com/\u0007', /control/],
    ['https://sho.rt/abc', /this shortener/],
    ['HTTPS://SHO.RT/abc', /this shortener/],
    [`https://example.com/${'a'.repeat(2048)}`, /2048/],
  ])('rejects %j', (url, message) => expect(checkTargetUrl(url, shortener)).toMatch(message));

  it('allows exactly 2048 characters', () => {
    const url = `https://example.com/${'a'.repeat(2048 - 20)}`;
    expect(url).toHaveLength(2048);
    expect(checkTargetUrl(url)).toBeNull();
  });
});

describe('checkAlias', () => {
  it.each(['abc', 'my-link_2', 'A'.repeat(32)])('accepts %s', (alias) => expect(checkAlias(alias)).toBeNull());
  it.each(['ab', 'A'.repeat(33), 'has space', 'dot.ted', 'ünï'])('rejects the shape of %s', (alias) => expect(checkAlias(alias)).toMatch(/3 to 32/));
  it.each(['api', 'health', 'metrics', 'docs', 'admin', 'static', 'assets', 'API'])('rejects the reserved word %s', (alias) =>
    expect(checkAlias(alias)).toMatch(/reserved/),
  );
});

describe('checkExpiresAt', () => {
  const now = new Date('2030-01-01T00:00:00Z');
  it('accepts a future RFC 3339 time', () => {
    expect(checkExpiresAt('2030-01-01T00:00:01Z', now)).toBeNull();
    expect(checkExpiresAt('2030-01-01T02:00:00.123+01:00', now)).toBeNull();
  });
  it('rejects past, malformed and offset-less times', () => {
    expect(checkExpiresAt('2029-12-31T23:59:59Z', now)).toMatch(/future/);
    expect(checkExpiresAt('2030-01-01T00:00:00Z', now)).toMatch(/future/);
    expect(checkExpiresAt('tomorrow', now)).toMatch(/RFC 3339/);
    expect(checkExpiresAt('2030-02-01T00:00:00', now)).toMatch(/RFC 3339/);
    expect(checkExpiresAt('2030-02-31T00:00:00Z', now)).not.toBeNull();
  });
});

describe('couldBeCode / isRedirectType', () => {
  it('tells paths that can be codes', () => {
    expect(couldBeCode('aB3xY9z')).toBe(true);
    expect(couldBeCode('promo_1')).toBe(true);
    expect(couldBeCode('ab')).toBe(false);
    expect(couldBeCode('a.b.c')).toBe(false);
    expect(couldBeCode('x'.repeat(33))).toBe(false);
  });
  it('knows the four redirect types', () => {
    expect([301, 302, 307, 308].every(isRedirectType)).toBe(true);
    expect(isRedirectType(303)).toBe(false);
    expect(isRedirectType('302')).toBe(false);
  });
});

describe('cache entries', () => {
  it.each<CacheEntry>([
    { kind: 'link', version: 1700000000123, redirectType: 301, expiresAt: null, url: 'https://e.com/a|b' },
    { kind: 'link', version: 5, redirectType: 308, expiresAt: 1900000000000, url: 'http://x.y' },
    { kind: 'gone', version: 42 },
    { kind: 'unknown' },
  ])('round-trips %j', (entry) => expect(decodeCacheEntry(encodeCacheEntry(entry))).toEqual(entry));

  it('returns null for garbage', () => {
    expect(decodeCacheEntry('')).toBeNull();
    expect(decodeCacheEntry('X|1')).toBeNull();
    expect(decodeCacheEntry('L|1')).toBeNull();
  });
});
