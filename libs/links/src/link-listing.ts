/**
 * GET /api/urls across shards: every shard answers "the newest `limit + 1` links of this
 * scope strictly older than the cursor" from an index on (owner, created_at DESC, code
 * DESC), and the gateway merges those pages. The order is a total order on
 * (createdAt in microseconds, code), both fixed for the life of a link, so a cursor (the
 * last item's position) stays correct while links are created (newer ones never come
 * after it), deleted (they simply drop out) or moved between shards (a code found on two
 * shards during a move is listed once).
 */

export const LISTING_MAX_LIMIT = 100;
export const LISTING_DEFAULT_LIMIT = 20;
const CURSOR_VERSION = 1;

/** Where a link sits in the listing order. */
export interface ListingPosition {
  /** Creation time in microseconds since the epoch (PostgreSQL's timestamptz precision). */
  createdMicros: bigint;
  code: string;
}

export interface ListingCursor extends ListingPosition {
  /** Whose links: a key id, or '*' for the admin's view of all. A cursor is valid only for its scope. */
  scope: string;
}

export class ListingError extends Error {}

/** Newest first: a later creation time first, and among equal times the greater code first. */
export function compareNewestFirst(a: ListingPosition, b: ListingPosition): number {
  if (a.createdMicros !== b.createdMicros) return a.createdMicros > b.createdMicros ? -1 : 1;
  return a.code === b.code ? 0 : a.code > b.code ? -1 : 1;
}

export function parseListingLimit(raw: string | undefined): number {
  if (raw === undefined || raw === '') return LISTING_DEFAULT_LIMIT;
  if (!/^\d{1,3}$/.test(raw)) throw new ListingError(`limit must be an integer from 1 to ${LISTING_MAX_LIMIT}`);
  const limit = Number(raw);
  if (limit < 1 || limit > LISTING_MAX_LIMIT) throw new ListingError(`limit must be an integer from 1 to ${LISTING_MAX_LIMIT}`);
  return limit;
}

/** An opaque cursor: base64url of a small versioned JSON document. */
export function encodeCursor(cursor: ListingCursor): string {
  const document = { v: CURSOR_VERSION, s: cursor.scope, t: cursor.createdMicros.toString(), c: cursor.code };
  return Buffer.from(JSON.stringify(document)).toString('base64url');
}

/** Reads a cursor given back by a client; refuses one that is malformed or was made for another scope. */
export function decodeCursor(raw: string, scope: string): ListingCursor {
  let document: unknown;
  try {
    if (!/^[A-Za-z0-9_-]{1,400}$/.test(raw)) throw new Error('not base64url');
    document = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8'));
  } catch {
    throw new ListingError('cursor is not one this API gave out');
  }
  const { v, s, t, c } = (document ?? {}) as Record<string, unknown>;
  if (v !== CURSOR_VERSION || typeof s !== 'string' || typeof t !== 'string' || !/^\d{1,19}$/.test(t) || typeof c !== 'string' || c.length === 0) {
    throw new ListingError('cursor is not one this API gave out');
  }
  if (s !== scope) throw new ListingError('cursor belongs to another listing (another key or filter)');
  return { scope: s, createdMicros: BigInt(t), code: c };
}

export interface ListingPage<T> {
  items: T[];
  /** The position to continue after, or null when every shard is exhausted. */
  next: ListingPosition | null;
}

/**
 * Merges the shards' pages. Each shard page holds at most `limit + 1` items after the
 * cursor, newest first: an extra item on any shard means more may follow. A code present
 * on two shards (a slot moving) is kept once.
 */
export function mergeShardPages<T extends ListingPosition>(pages: T[][], limit: number): ListingPage<T> {
  const seen = new Set<string>();
  const merged = pages
    .flat()
    .sort(compareNewestFirst)
    .filter((item) => !seen.has(item.code) && seen.add(item.code));
  const items = merged.slice(0, limit);
  const more = merged.length > limit || pages.some((page) => page.length > limit);
  const last = items.at(-1);
  return { items, next: more && last ? { createdMicros: last.createdMicros, code: last.code } : null };
}
