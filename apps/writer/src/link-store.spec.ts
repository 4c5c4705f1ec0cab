import { linkDetailsOf, type LinkRow } from '@shortener/db';
import { eventFor, hashToken, requestHashOf } from './link-store';

const row: LinkRow = {
  code: 'abc1234',
  url: 'https://example.com',
  redirectType: 301,
  createdAt: new Date('2030-01-01T00:00:00Z'),
  updatedAt: new Date('2030-01-02T00:00:00Z'),
  expiresAt: null,
  deletedAt: null,
  clicks: 7,
  version: 1893542400000,
};

describe('link store helpers', () => {
  it('hashes what a create asks for, not how the time is spelled', () => {
    const a = requestHashOf({ url: 'https://e.com', expiresAt: '2030-01-01T01:00:00+01:00' });
    const b = requestHashOf({ url: 'https://e.com', expiresAt: '2030-01-01T00:00:00Z' });
    expect(a.equals(b)).toBe(true);
    expect(requestHashOf({ url: 'https://e.com', alias: 'x1y' }).equals(requestHashOf({ url: 'https://e.com' }))).toBe(false);
    expect(requestHashOf({ url: 'https://e.com', redirectType: 301 }).equals(requestHashOf({ url: 'https://e.com' }))).toBe(false);
  });

  it("binds a create to its API key, so another key's replay of the same Idempotency-Key and body is a mismatch, not the first key's manage token", () => {
    const anonymous = requestHashOf({ url: 'https://e.com' });
    const first = requestHashOf({ url: 'https://e.com', owner: 'AAAAAAAAAA' });
    expect(first.equals(requestHashOf({ url: 'https://e.com', owner: 'AAAAAAAAAA' }))).toBe(true);
    expect(first.equals(requestHashOf({ url: 'https://e.com', owner: 'BBBBBBBBBB' }))).toBe(false);
    expect(first.equals(anonymous)).toBe(false);
  });

  it('stores a token as a SHA-256 digest only', () => {
    expect(hashToken('secret')).toHaveLength(32);
    expect(hashToken('secret').toString('utf8')).not.toContain('secret');
  });

  it('builds versioned events and the public details', () => {
    expect(eventFor('url.updated', row)).toMatchObject({
      type: 'url.updated',
      version: 1,
      code: 'abc1234',
      link: { url: 'https://example.com', redirectType: 301, expiresAt: null, version: row.version },
    });
    expect(eventFor('url.deleted', row)).toMatchObject({ type: 'url.deleted', link: { version: row.version } });
    expect(linkDetailsOf(row)).toEqual({
      code: 'abc1234',
      url: 'https://example.com',
      createdAt: '2030-01-01T00:00:00.000Z',
      updatedAt: '2030-01-02T00:00:00.000Z',
      expiresAt: null,
      redirectType: 301,
      clicks: 7,
    });
  });
});
