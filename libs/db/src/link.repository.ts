import type { Pool, PoolClient } from 'pg';
import type { LinkDetails } from '@shortener/contracts';
import type { CacheEntry } from '@shortener/links';

type Queryable = Pool | PoolClient;

export interface LinkRow {
  code: string;
  url: string;
  redirectType: 301 | 302 | 307 | 308;
  createdAt: Date;
  updatedAt: Date;
  expiresAt: Date | null;
  deletedAt: Date | null;
  clicks: number;
  /** updated_at in ms, the version the cache orders states by. */
  version: number;
}

/**
 * What a redirect needs of a row. Times are epoch milliseconds computed by the server,
 * so no timestamp is formatted on the node or parsed here: this is the cache-miss path.
 */
export interface LinkTarget {
  code: string;
  url: string;
  redirectType: 301 | 302 | 307 | 308;
  expiresAt: number | null;
  deleted: boolean;
  version: number;
}

export interface NewLink {
  code: string;
  url: string;
  redirectType: 301 | 302 | 307 | 308;
  expiresAt: Date | null;
  manageTokenHash: Buffer;
  /** The id of the API key it was created with; null for an anonymous create. */
  owner: string | null;
}

/** A row in the listing order (libs/links link-listing.ts): creation time in microseconds, as text. */
export interface ListedLink extends LinkRow {
  createdMicros: string;
}

export interface LinkChange {
  url?: string;
  expiresAt?: Date | null;
  redirectType?: 301 | 302 | 307 | 308;
}

const COLUMNS = `code, url, redirect_type, created_at, updated_at, expires_at, deleted_at, clicks,
  floor(extract(epoch FROM updated_at) * 1000)::float8 AS version`;

interface RawLink {
  code: string;
  url: string;
  redirect_type: number;
  created_at: Date;
  updated_at: Date;
  expires_at: Date | null;
  deleted_at: Date | null;
  clicks: string;
  version: number;
}

function toLink(row: RawLink): LinkRow {
  return {
    code: row.code,
    url: row.url,
    redirectType: row.redirect_type as LinkRow['redirectType'],
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    expiresAt: row.expires_at,
    deletedAt: row.deleted_at,
    clicks: Number(row.clicks),
    version: row.version,
  };
}

const LISTED = `${COLUMNS}, (extract(epoch FROM created_at) * 1000000)::bigint::text AS created_micros`;
const BEFORE = (createdMicros: string, code: string) =>
  `(created_at, code) < (timestamptz 'epoch' + ${createdMicros}::bigint * interval '1 microsecond', ${code}::text)`;
const NEWEST_FIRST = 'ORDER BY created_at DESC, code DESC';

/** GET /api/urls on one shard: served by urls_listing_by_owner and urls_listing_all (migration 4); exported for the spec of their plans. */
export const LISTING_STATEMENTS = {
  owner: {
    first: {
      name: 'links-list-owner-first',
      text: `/* links.list-owner */ SELECT ${LISTED} FROM urls WHERE deleted_at IS NULL AND owner = $1 ${NEWEST_FIRST} LIMIT $2`,
    },
    next: {
      name: 'links-list-owner-next',
      text: `/* links.list-owner */ SELECT ${LISTED} FROM urls WHERE deleted_at IS NULL AND owner = $1 AND ${BEFORE('$2', '$3')} ${NEWEST_FIRST} LIMIT $4`,
    },
  },
  all: {
    first: { name: 'links-list-all-first', text: `/* links.list-all */ SELECT ${LISTED} FROM urls WHERE deleted_at IS NULL ${NEWEST_FIRST} LIMIT $1` },
    next: {
      name: 'links-list-all-next',
      text: `/* links.list-all */ SELECT ${LISTED} FROM urls WHERE deleted_at IS NULL AND ${BEFORE('$1', '$2')} ${NEWEST_FIRST} LIMIT $3`,
    },
  },
} as const;

// updated_at only moves forward, by at least 1 ms, so every change has a larger version.
const NEXT_VERSION = `greatest(now(), updated_at + interval '1 millisecond')`;

/** Every method names the node it runs on through its first argument. */
export class LinkRepository {
  /**
   * Inserts links and their outbox events in one statement: one round trip and one
   * commit for many creates (group commit). Each event is written with its committed
   * row's version in `link.version` (it does not exist before the insert). Codes must be
   * distinct. Answers by position: null where the code exists (also as a tombstone),
   * and then nothing is written for it.
   */
  async insertManyWithEvents(node: Queryable, links: NewLink[], events: { topic: string; payload: object }[]): Promise<(LinkRow | null)[]> {
    const { rows } = await node.query<RawLink>({
      name: 'links-insert-many-with-events',
      text: `/* writer:links.insert-many-with-events */ WITH input AS (
               SELECT * FROM unnest($1::text[], $2::text[], $3::smallint[], $4::timestamptz[], $5::bytea[], $6::text[], $7::text[], $8::text[])
                 AS t(code, url, redirect_type, expires_at, manage_token_hash, topic, event, owner)
             ), inserted AS (
               INSERT INTO urls (code, url, redirect_type, expires_at, manage_token_hash, owner)
               SELECT code, url, redirect_type, expires_at, manage_token_hash, owner FROM input
               ON CONFLICT (code) DO NOTHING RETURNING ${COLUMNS}
             ), queued AS (
               INSERT INTO outbox (topic, key, payload)
               SELECT input.topic, inserted.code, jsonb_set(input.event::jsonb, '{link,version}', to_jsonb(inserted.version))::text
               FROM inserted JOIN input USING (code)
             )
             SELECT * FROM inserted`,
      values: [
        links.map((link) => link.code),
        links.map((link) => link.url),
        links.map((link) => link.redirectType),
        links.map((link) => link.expiresAt),
        links.map((link) => link.manageTokenHash),
        events.map((event) => event.topic),
        events.map((event) => JSON.stringify(event.payload)),
        links.map((link) => link.owner),
      ],
    });
    const byCode = new Map(rows.map((row) => [row.code, toLink(row)]));
    return links.map((link) => byCode.get(link.code) ?? null);
  }

  /** The redirect targets of many codes in one statement; answers by position. */
  async findTargets(node: Queryable, codes: string[]): Promise<(LinkTarget | null)[]> {
    const { rows } = await node.query<{
      code: string;
      url: string;
      redirect_type: number;
      expires_at: number | null;
      deleted: boolean;
      version: number;
    }>({
      name: 'links-find-targets',
      text: `/* links.find-targets */ SELECT code, url, redirect_type,
               floor(extract(epoch FROM expires_at) * 1000)::float8 AS expires_at,
               deleted_at IS NOT NULL AS deleted,
               floor(extract(epoch FROM updated_at) * 1000)::float8 AS version
             FROM urls WHERE code = ANY($1::text[])`,
      values: [codes],
    });
    const byCode = new Map(
      rows.map((row) => [
        row.code,
        {
          code: row.code,
          url: row.url,
          redirectType: row.redirect_type as LinkTarget['redirectType'],
          expiresAt: row.expires_at,
          deleted: row.deleted,
          version: row.version,
        },
      ]),
    );
    return codes.map((code) => byCode.get(code) ?? null);
  }

  /** Many primary-key lookups in one statement; answers by position. */
  async findManyByCode(node: Queryable, codes: string[]): Promise<(LinkRow | null)[]> {
    const { rows } = await node.query<RawLink>({
      name: 'links-find-many',
      text: `/* links.find-many */ SELECT ${COLUMNS} FROM urls WHERE code = ANY($1::text[])`,
      values: [codes],
    });
    const byCode = new Map(rows.map((row) => [row.code, toLink(row)]));
    return codes.map((code) => byCode.get(code) ?? null);
  }

  /**
   * One shard's part of a listing page: the newest `limit` live links of `owner` (null:
   * everyone's) strictly before `after` in the order (created_at, code) descending. The
   * row comparison is a range on the partial index, read backwards: `limit` index
   * entries and heap fetches, whatever the table's size. Each case has its own statement,
   * and none is prepared: a generic plan would estimate every key at the average share of
   * links, and could read a rare key's page from the everyone index through a filter; a
   * plan for the actual key takes its own index. Listing is not the hot path; planning a
   * statement this small costs well under a millisecond.
   */
  async listPage(node: Queryable, owner: string | null, after: { createdMicros: string; code: string } | null, limit: number): Promise<ListedLink[]> {
    const statement = LISTING_STATEMENTS[owner === null ? 'all' : 'owner'][after === null ? 'first' : 'next'];
    const values: unknown[] = owner === null ? [] : [owner];
    if (after) values.push(after.createdMicros, after.code);
    values.push(limit);
    const { rows } = await node.query<RawLink & { created_micros: string }>({ text: statement.text, values });
    return rows.map((row) => ({ ...toLink(row), createdMicros: row.created_micros }));
  }

  /** Locks the row for a change and returns what the credential check needs. */
  async lockForChange(client: PoolClient, code: string): Promise<{ manageTokenHash: Buffer; owner: string | null; deleted: boolean } | null> {
    const { rows } = await client.query<{ manage_token_hash: Buffer; owner: string | null; deleted: boolean }>({
      name: 'links-lock',
      text: `/* writer:links.lock */ SELECT manage_token_hash, owner, deleted_at IS NOT NULL AS deleted
             FROM urls WHERE code = $1 FOR UPDATE`,
      values: [code],
    });
    return rows.length ? { manageTokenHash: rows[0].manage_token_hash, owner: rows[0].owner, deleted: rows[0].deleted } : null;
  }

  async update(client: PoolClient, code: string, change: LinkChange): Promise<LinkRow> {
    const { rows } = await client.query<RawLink>({
      name: 'links-update',
      text: `/* writer:links.update */ UPDATE urls SET
               url = CASE WHEN $2::boolean THEN $3 ELSE url END,
               expires_at = CASE WHEN $4::boolean THEN $5::timestamptz ELSE expires_at END,
               redirect_type = coalesce($6, redirect_type),
               updated_at = ${NEXT_VERSION}
             WHERE code = $1 RETURNING ${COLUMNS}`,
      values: [code, change.url !== undefined, change.url ?? null, change.expiresAt !== undefined, change.expiresAt ?? null, change.redirectType ?? null],
    });
    return toLink(rows[0]);
  }

  /** Keeps the row as a tombstone so that the code is never handed out again. */
  async markDeleted(client: PoolClient, code: string): Promise<LinkRow> {
    const { rows } = await client.query<RawLink>({
      name: 'links-delete',
      text: `/* writer:links.delete */ UPDATE urls SET deleted_at = now(), updated_at = ${NEXT_VERSION}
             WHERE code = $1 RETURNING ${COLUMNS}`,
      values: [code],
    });
    return toLink(rows[0]);
  }
}

/** The public view of a row (GET /api/urls/{code}). */
export function linkDetailsOf(row: LinkRow): LinkDetails {
  return {
    code: row.code,
    url: row.url,
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
    expiresAt: row.expiresAt?.toISOString() ?? null,
    redirectType: row.redirectType,
    clicks: row.clicks,
  };
}

/** A full row seen as a redirect target. */
export function targetOf(row: LinkRow): LinkTarget {
  return {
    code: row.code,
    url: row.url,
    redirectType: row.redirectType,
    expiresAt: row.expiresAt?.getTime() ?? null,
    deleted: row.deletedAt !== null,
    version: row.version,
  };
}

/** What the cache holds for a link, or for a code with no row at all. */
export function cacheEntryOf(link: LinkTarget | null): CacheEntry {
  if (!link) return { kind: 'unknown' };
  if (link.deleted) return { kind: 'gone', version: link.version };
  return { kind: 'link', version: link.version, redirectType: link.redirectType, expiresAt: link.expiresAt, url: link.url };
}
