import { cacheEntryOf, targetOf, type LinkRow } from '@shortener/db';
import { resolutionOf } from './link-reader';

const live: LinkRow = {
  code: 'abc1234',
  url: 'https://example.com',
  redirectType: 307,
  createdAt: new Date(0),
  updatedAt: new Date(5),
  expiresAt: null,
  deletedAt: null,
  clicks: 0,
  version: 5,
};

describe('resolutionOf / cacheEntryOf', () => {
  it('follows a live link with its redirect type', () => {
    expect(resolutionOf(targetOf(live))).toEqual({ status: 'found', url: 'https://example.com', redirectType: 307, expiresAt: null });
    expect(cacheEntryOf(targetOf(live))).toEqual({ kind: 'link', version: 5, redirectType: 307, expiresAt: null, url: 'https://example.com' });
  });

  it('answers gone for deleted and expired links, unknown for none', () => {
    expect(resolutionOf(targetOf({ ...live, deletedAt: new Date() }))).toEqual({ status: 'gone' });
    expect(resolutionOf(targetOf({ ...live, expiresAt: new Date(1000) }), 2000)).toEqual({ status: 'gone' });
    expect(resolutionOf(targetOf({ ...live, expiresAt: new Date(3000) }), 2000)).toMatchObject({ status: 'found', expiresAt: 3000 });
    expect(resolutionOf(null)).toEqual({ status: 'unknown' });
    expect(cacheEntryOf(targetOf({ ...live, deletedAt: new Date() }))).toEqual({ kind: 'gone', version: 5 });
    expect(cacheEntryOf(null)).toEqual({ kind: 'unknown' });
  });
});
