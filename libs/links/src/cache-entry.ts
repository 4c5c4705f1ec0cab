import type { RedirectType } from './link-rules';

/**
 * What the cache holds for a code, as one short string the gateway can parse without
 * JSON on the redirect path:
 *   L|<version>|<redirectType>|<expiresAtMs or 0>|<url>   a live link
 *   G|<version>                                           deleted (a tombstone)
 *   N|0                                                   unknown (negative cache)
 * <version> is the row's updated_at in ms; the cache only ever moves forward in version,
 * so a late event or a fill from a lagging replica cannot put back an older state.
 */
export type CacheEntry =
  | { kind: 'link'; version: number; redirectType: RedirectType; expiresAt: number | null; url: string }
  | { kind: 'gone'; version: number }
  | { kind: 'unknown' };

export function encodeCacheEntry(entry: CacheEntry): string {
  switch (entry.kind) {
    case 'link':
      return `L|${entry.version}|${entry.redirectType}|${entry.expiresAt ?? 0}|${entry.url}`;
    case 'gone':
      return `G|${entry.version}`;
    case 'unknown':
      return 'N|0';
  }
}

export function cacheEntryVersion(entry: CacheEntry): number {
  return entry.kind === 'unknown' ? 0 : entry.version;
}

export function decodeCacheEntry(value: string): CacheEntry | null {
  switch (value.charCodeAt(0)) {
    case 76: {
      // 'L'
      const a = value.indexOf('|', 2);
      const b = value.indexOf('|', a + 1);
      const c = value.indexOf('|', b + 1);
      if (a < 0 || b < 0 || c < 0) return null;
      const expiresAt = Number(value.slice(b + 1, c));
      return {
        kind: 'link',
        version: Number(value.slice(2, a)),
        redirectType: Number(value.slice(a + 1, b)) as RedirectType,
        expiresAt: expiresAt === 0 ? null : expiresAt,
        url: value.slice(c + 1),
      };
    }
    case 71: // 'G'
      return { kind: 'gone', version: Number(value.slice(2)) };
    case 78: // 'N'
      return { kind: 'unknown' };
    default:
      return null;
  }
}
