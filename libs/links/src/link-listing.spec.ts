import fc from 'fast-check';
import { compareNewestFirst, decodeCursor, encodeCursor, ListingError, mergeShardPages, parseListingLimit, type ListingPosition } from './link-listing';

type Link = ListingPosition;

/** What one shard answers: the newest limit + 1 of its links strictly after the cursor (as its index would). */
function shardPage(links: Link[], after: ListingPosition | null, limit: number): Link[] {
  return links
    .filter((link) => after === null || compareNewestFirst(link, after) > 0)
    .sort(compareNewestFirst)
    .slice(0, limit + 1);
}

/** Pages through every shard the way the gateway does, with a cursor round-tripped through its encoding. */
function listAll(shards: Link[][], limit: number, between: (page: number) => void = () => undefined): string[] {
  const codes: string[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < 10_000; page++) {
    const after = cursor === null ? null : decodeCursor(cursor, 'key1');
    const { items, next } = mergeShardPages(
      shards.map((links) => shardPage(links, after, limit)),
      limit,
    );
    expect(items.length).toBeLessThanOrEqual(limit);
    codes.push(...items.map((item) => item.code));
    if (next === null) return codes;
    cursor = encodeCursor({ scope: 'key1', ...next });
    between(page);
  }
  throw new Error('the listing did not end');
}

const link = (createdMicros: number, code: string): Link => ({ createdMicros: BigInt(createdMicros), code });

describe('listing links across shards', () => {
  it('lists newest first, ties broken by code, and ends with no cursor', () => {
    const shards = [[link(5, 'aaa'), link(1, 'bbb')], [link(5, 'ccc'), link(3, 'ddd')], []];
    expect(listAll(shards, 2)).toEqual(['ccc', 'aaa', 'ddd', 'bbb']);
    expect(mergeShardPages([[link(1, 'x')]], 5).next).toBeNull();
  });

  it('pages through any spread of links over shards: every link once, in order, none skipped (property)', () => {
    const links = fc.uniqueArray(fc.record({ t: fc.integer({ min: 0, max: 40 }), code: fc.stringMatching(/^[a-z]{3}$/) }), {
      selector: (item) => item.code,
      maxLength: 60,
    });
    fc.assert(
      fc.property(links, fc.integer({ min: 1, max: 7 }), fc.array(fc.integer({ min: 0, max: 3 })), (items, limit, placement) => {
        const shards: Link[][] = [[], [], [], []];
        items.forEach((item, i) => {
          const home = placement[i % Math.max(1, placement.length)] ?? 0;
          shards[home].push(link(item.t, item.code));
          // Every fifth link is mid-move: a copy on the next shard too.
          if (i % 5 === 0) shards[(home + 1) % 4].push(link(item.t, item.code));
        });
        const expected = items
          .map((item) => link(item.t, item.code))
          .sort(compareNewestFirst)
          .map((item) => item.code);
        expect(listAll(shards, limit)).toEqual(expected);
      }),
      { numRuns: 300 },
    );
  });

  it('stays correct while links are created and deleted between pages', () => {
    const shards: Link[][] = [[], []];
    for (let i = 0; i < 30; i++) shards[i % 2].push(link(100 + i, `c${String(i).padStart(2, '0')}`));
    const listed = listAll(shards, 4, (page) => {
      // A newer link arrives (it sorts before the cursor: not listed in this pass), and an older one not yet listed is deleted.
      shards[page % 2].push(link(1000 + page, `new${page}`));
      const victim = shards[1].findIndex((item) => item.code === 'c01');
      if (victim >= 0) shards[1].splice(victim, 1);
    });
    const expected = Array.from({ length: 30 }, (_, i) => `c${String(29 - i).padStart(2, '0')}`).filter((code) => code !== 'c01');
    expect(listed).toEqual(expected);
  });

  it('refuses a cursor that is malformed, tampered with or made for another listing', () => {
    const cursor = encodeCursor({ scope: 'key1', createdMicros: 1_764_000_000_000_000n, code: 'abc1234' });
    expect(decodeCursor(cursor, 'key1')).toEqual({ scope: 'key1', createdMicros: 1_764_000_000_000_000n, code: 'abc1234' });
    expect(() => decodeCursor(cursor, 'key2')).toThrow(ListingError);
    expect(() => decodeCursor(cursor, '*')).toThrow('another listing');
    for (const bad of ['', 'not a cursor!', Buffer.from('{"v":2}').toString('base64url'), Buffer.from('[]').toString('base64url'), 'x'.repeat(500)]) {
      expect(() => decodeCursor(bad, 'key1')).toThrow('cursor is not one this API gave out');
    }
    const forged = Buffer.from(JSON.stringify({ v: 1, s: 'key1', t: '-5', c: 'abc' })).toString('base64url');
    expect(() => decodeCursor(forged, 'key1')).toThrow(ListingError);
  });

  it('takes a limit of 1 to 100, 20 when absent', () => {
    expect(parseListingLimit(undefined)).toBe(20);
    expect(parseListingLimit('1')).toBe(1);
    expect(parseListingLimit('100')).toBe(100);
    for (const bad of ['0', '101', '-1', '1.5', 'ten', '1e2', ' 5']) expect(() => parseListingLimit(bad)).toThrow(ListingError);
  });
});
