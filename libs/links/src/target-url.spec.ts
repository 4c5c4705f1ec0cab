import fc from 'fast-check';
import { addressClassOf, checkAlias, checkExpiresAt, normaliseTargetUrl, RESERVED_ALIASES, targetPolicyOf, type TargetPolicy } from './index';

const policy: TargetPolicy = targetPolicyOf({ publicBaseUrl: 'http://sho.rt:3000', allowPrivate: false, blockedHosts: ['evil.example', 'XN--N3H.NET.'] });
const permissive: TargetPolicy = { ...policy, allowPrivate: true };
const refusal = (url: string, with_: TargetPolicy = policy) => {
  const check = normaliseTargetUrl(url, with_);
  return check.ok ? null : check.problem;
};

describe('normaliseTargetUrl: the shortener itself under every spelling', () => {
  it.each([
    'http://localhost/abc',
    'http://LOCALHOST./abc',
    'http://localhost:3000/',
    'http://foo.localhost/',
    'http://a.b.LocalHost../',
    'http://127.0.0.1:3000/',
    'http://127.1/',
    'http://127.0.1/',
    'http://0x7f000001/',
    'http://0x7F.1/',
    'http://017700000001/',
    'http://2130706433/',
    'http://0177.0.0.01/',
    'http://127.255.255.254/',
    'http://0.0.0.0/',
    'http://0/',
    'http://[::1]/',
    'http://[0:0:0:0:0:0:0:1]:80/',
    'http://[::]/',
    'http://[::ffff:127.0.0.1]/',
    'http://[::ffff:7f00:1]/',
    'http://[::127.0.0.1]/',
    'http://[64:ff9b::127.0.0.1]/',
    'http://[2002:7f00:1::]/',
    'http://sho.rt/',
    'https://SHO.RT./x',
    'http://sho.rt:9999/x',
  ])('refuses %s even when private targets are allowed', (url) => {
    expect(refusal(url)).toMatch(/this shortener/);
    expect(refusal(url, permissive)).toMatch(/this shortener/);
  });
});

describe('normaliseTargetUrl: private, link-local and unique-local literals', () => {
  it.each([
    'http://10.0.0.1/',
    'http://172.16.5.4/',
    'http://192.168.1.1/',
    'http://169.254.169.254/latest/meta-data/',
    'http://0xa9fea9fe/',
    'http://100.64.0.1/',
    'http://[fe80::1]/',
    'http://[fc00::1]/',
    'http://[fd12:3456::1]/',
    'http://[::ffff:10.0.0.1]/',
    'http://[::ffff:169.254.169.254]/',
    'http://224.0.0.1/',
    'http://255.255.255.255/',
  ])('refuses %s unless ALLOW_PRIVATE_TARGETS', (url) => {
    expect(refusal(url)).toMatch(/private/);
    expect(refusal(url, permissive)).toBeNull();
  });

  it('accepts public literals', () => {
    expect(normaliseTargetUrl('http://8.8.8.8/', policy)).toEqual({ ok: true, url: 'http://8.8.8.8/' });
    expect(normaliseTargetUrl('http://[2606:4700::1111]/', policy)).toEqual({ ok: true, url: 'http://[2606:4700::1111]/' });
    expect(normaliseTargetUrl('http://[::ffff:8.8.8.8]/', policy)).toEqual({ ok: true, url: 'http://[::ffff:808:808]/' });
  });
});

describe('normaliseTargetUrl: blocked hosts, user info, shapes', () => {
  it.each(['https://evil.example/', 'https://www.EVIL.example./a', 'https://☃.net/', 'https://x.xn--n3h.net/'])('refuses the blocked %s', (url) =>
    expect(refusal(url)).toMatch(/blocked/),
  );
  it('does not take a suffix for a domain', () => expect(refusal('https://notevil.example/')).toBeNull());

  it.each(['https://example.com@evil.org/', 'https://user:pw@example.com/', 'https://:pw@example.com/'])('refuses user info in %s', (url) =>
    expect(refusal(url)).toMatch(/user information/),
  );

  it.each([
    ['http:/x', 'http://x/'],
    ['http:x', 'http://x/'],
    ['https:\\\\evil.org', 'https://evil.org/'],
    ['HTTPS://Example.COM:443/a', 'https://example.com/a'],
    ['https://example.org/€uro', 'https://example.org/%E2%82%ACuro'],
    ['https://bücher.example/', 'https://xn--bcher-kva.example/'],
    ['https://example.org/😀?q=ü#ä', 'https://example.org/%F0%9F%98%80?q=%C3%BC#%C3%A4'],
    ['https://ex%41mple.com/', 'https://example.com/'],
  ])('stores %j as the WHATWG serialisation %s', (input, url) => expect(normaliseTargetUrl(input, policy)).toEqual({ ok: true, url }));

  it.each(['http://1.2.3.4.5/', 'http://999.1.1.1/', 'http://xn--/', 'http://', 'https://exa%00mple.com/', 'http://[::1/'])(
    'refuses the unparsable %j',
    (url) => expect(refusal(url)).toMatch(/absolute URL/),
  );

  it.each(['https://example.org/\ud800', 'https://example.org/a\udfffb', 'https://\ud83d.example/'])(
    'refuses the lone surrogate in %j instead of storing U+FFFD',
    (url) => expect(refusal(url)).toMatch(/lone surrogate/),
  );

  it.each(['https://example..org/', `https://${'a'.repeat(64)}.example.org/`, `https://${'abcdefghi.'.repeat(26)}org/`, 'https://.example.org/'])(
    'refuses the host name DNS could not resolve in %s',
    (url) => expect(refusal(url)).toMatch(/DNS labels/),
  );

  it('accepts labels of 63 characters and a trailing dot', () => {
    expect(refusal(`https://${'a'.repeat(63)}.example.org./`)).toBeNull();
  });

  it('measures the normalised form too', () => {
    expect(refusal(`https://example.com/${'€'.repeat(1000)}`)).toMatch(/once normalised/);
  });
});

describe('addressClassOf', () => {
  it('leaves names alone', () => expect(addressClassOf('example.com')).toBeNull());
});

// --- properties ---------------------------------------------------------------------

/** Every IPv4 spelling the WHATWG host parser accepts for one address (parts in decimal, octal or hex; 1 to 4 parts). */
const ipv4Spelling = (bytes: number[]) =>
  fc
    .record({
      parts: fc.integer({ min: 1, max: 4 }),
      radix: fc.array(fc.constantFrom<'d' | 'o' | 'x' | 'X'>('d', 'o', 'x', 'X'), { minLength: 4, maxLength: 4 }),
      trailingDot: fc.boolean(),
    })
    .map(({ parts, radix, trailingDot }) => {
      const value = ((bytes[0] << 24) | (bytes[1] << 16) | (bytes[2] << 8) | bytes[3]) >>> 0;
      const numbers = parts === 1 ? [value] : parts === 2 ? [bytes[0], value & 0xffffff] : parts === 3 ? [bytes[0], bytes[1], value & 0xffff] : bytes;
      const spelled = numbers.map((n, i) => (radix[i] === 'd' ? String(n) : radix[i] === 'o' ? `0${n.toString(8)}` : `0${radix[i]}${n.toString(16)}`));
      return spelled.join('.') + (trailingDot ? '.' : '');
    });

const byte = fc.integer({ min: 0, max: 255 });

describe('properties (fast-check)', () => {
  it('every spelling of a 127.0.0.0/8 address is the shortener, with or without port', () => {
    fc.assert(
      fc.property(
        fc.tuple(byte, byte, byte).chain(([b, c, d]) => ipv4Spelling([127, b, c, d])),
        fc.option(fc.integer({ min: 1, max: 65535 })),
        (host, port) => {
          expect(refusal(`http://${host}${port === null ? '' : `:${port}`}/x`, permissive)).toMatch(/this shortener/);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('every spelling of a private or link-local address is refused, and accepted only with ALLOW_PRIVATE_TARGETS', () => {
    const privateAddress = fc.oneof(
      fc.tuple(byte, byte, byte).map(([b, c, d]) => [10, b, c, d]),
      fc.tuple(fc.integer({ min: 16, max: 31 }), byte, byte).map(([b, c, d]) => [172, b, c, d]),
      fc.tuple(byte, byte).map(([c, d]) => [192, 168, c, d]),
      fc.tuple(byte, byte).map(([c, d]) => [169, 254, c, d]),
    );
    fc.assert(
      fc.property(
        privateAddress.chain((bytes) => ipv4Spelling(bytes)),
        (host) => {
          expect(refusal(`https://${host}/`)).toMatch(/private/);
          expect(refusal(`https://${host}/`, permissive)).toBeNull();
        },
      ),
      { numRuns: 500 },
    );
  });

  it('an IPv4-mapped IPv6 literal is judged as the IPv4 address it maps', () => {
    fc.assert(
      fc.property(fc.tuple(byte, byte, byte, byte), (bytes) => {
        const v4 = normaliseTargetUrl(`http://${bytes.join('.')}/`, policy);
        const mapped = normaliseTargetUrl(`http://[::ffff:${bytes.join('.')}]/`, policy);
        expect(mapped.ok).toBe(v4.ok);
      }),
      { numRuns: 500 },
    );
  });

  it('an accepted URL normalises to an ASCII, header-safe URL that is its own normal form and parses to the same host', () => {
    fc.assert(
      fc.property(fc.webUrl({ validSchemes: ['http', 'https'], withQueryParameters: true, withFragments: true }), (url) => {
        const check = normaliseTargetUrl(url, permissive);
        if (!check.ok) return;
        expect(check.url).toMatch(/^[\x21-\x7e]+$/);
        expect(normaliseTargetUrl(check.url, permissive)).toEqual(check);
        expect(new URL(check.url).hostname).toBe(new URL(url).hostname);
      }),
      { numRuns: 1000 },
    );
  });

  it('arbitrary strings never throw and anything accepted is an absolute http(s) URL', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          fc.string({ unit: 'binary' }),
          fc.string().map((s) => `https://${s}`),
        ),
        (value) => {
          const check = normaliseTargetUrl(value, policy);
          if (check.ok) expect(new URL(check.url).protocol).toMatch(/^https?:$/);
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('aliases: accepted exactly when 3 to 32 of [A-Za-z0-9_-] and not reserved', () => {
    const aliasChar = fc.constantFrom(...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-'.split(''));
    fc.assert(
      fc.property(fc.string({ unit: aliasChar, minLength: 3, maxLength: 32 }), (alias) => {
        expect(checkAlias(alias) === null).toBe(!RESERVED_ALIASES.has(alias.toLowerCase()));
      }),
      { numRuns: 1000 },
    );
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }), (alias) => {
        if (!/^[A-Za-z0-9_-]{3,32}$/.test(alias)) expect(checkAlias(alias)).not.toBeNull();
      }),
      { numRuns: 1000 },
    );
  });

  const now = new Date('2030-06-15T12:00:00Z');
  const two = (n: number) => String(n).padStart(2, '0');

  it('expiry: a well-formed RFC 3339 time is accepted exactly when it is in the future', () => {
    fc.assert(
      fc.property(
        fc.date({ min: new Date('2000-01-01T00:00:00Z'), max: new Date('2100-01-01T00:00:00Z'), noInvalidDate: true }),
        fc.integer({ min: -23 * 60, max: 23 * 60 }),
        (date, offsetMinutes) => {
          const local = new Date(date.getTime() + offsetMinutes * 60_000);
          const sign = offsetMinutes < 0 ? '-' : '+';
          const abs = Math.abs(offsetMinutes);
          const text = `${local.toISOString().slice(0, 23)}${sign}${two(Math.floor(abs / 60))}:${two(abs % 60)}`;
          expect(Date.parse(text)).toBe(date.getTime());
          expect(checkExpiresAt(text, now) === null).toBe(date.getTime() > now.getTime());
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('expiry: hours over 23, minutes or seconds over 59, days past the month and bad offsets are refused', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.integer({ min: 24, max: 99 }).map((h) => `2031-01-01T${two(h)}:00:00Z`),
          fc.integer({ min: 60, max: 99 }).map((m) => `2031-01-01T10:${two(m)}:00Z`),
          fc.integer({ min: 60, max: 99 }).map((s) => `2031-01-01T10:00:${two(s)}Z`),
          fc.integer({ min: 13, max: 99 }).map((month) => `2031-${two(month)}-01T10:00:00Z`),
          fc.constantFrom('2031-02-29T10:00:00Z', '2031-04-31T10:00:00Z', '2031-00-10T10:00:00Z', '2031-01-00T10:00:00Z'),
          fc.integer({ min: 24, max: 99 }).map((h) => `2031-01-01T10:00:00+${two(h)}:00`),
        ),
        (text) => expect(checkExpiresAt(text, now)).not.toBeNull(),
      ),
      { numRuns: 500 },
    );
    expect(checkExpiresAt('2032-02-29T10:00:00Z', now)).toBeNull();
  });
});
