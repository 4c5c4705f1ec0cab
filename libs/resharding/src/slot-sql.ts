/**
 * SQL the slot mover will run, as constants with parameters (no builder): the slot of a
 * code computed inside PostgreSQL, a keyset page of a batch's rows, the upsert of a page
 * on the target, and the per-slot count + checksum both sides are compared with (VDiff).
 *
 * PostgreSQL 15 has no CRC-32 function (crc32(bytea) arrived in PostgreSQL 18), so the
 * slot comes from `shortener_slot(text)`, an IMMUTABLE PL/pgSQL CRC-32 (the reflected
 * 0xEDB88320 polynomial the `crc-32` package and zlib use) over the code's UTF-8 bytes,
 * top 10 bits: the same as slotOf() in libs/shard-router, checked against it on a real
 * server by the spec. Being immutable, it can back an expression index
 * `(shortener_slot(code), code)`, created CONCURRENTLY without rewriting `urls` and
 * without any change to the writer's INSERT (a stored generated column would rewrite the
 * table under an ACCESS EXCLUSIVE lock).
 */

function crcTable(): number[] {
  const table: number[] = [];
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table.push(c >>> 0);
  }
  return table;
}

export const SLOT_FUNCTION_SQL = `
CREATE OR REPLACE FUNCTION shortener_slot(code text) RETURNS smallint
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
DECLARE
  t CONSTANT bigint[] := '{${crcTable().join(',')}}';
  b bytea := convert_to(code, 'UTF8');
  crc bigint := 4294967295;
BEGIN
  FOR i IN 0 .. length(b) - 1 LOOP
    crc := (crc >> 8) # t[((crc # get_byte(b, i)) & 255) + 1];
  END LOOP;
  RETURN ((crc # 4294967295) >> 22)::smallint;
END
$fn$`;

/** Lets the copy, the checksum and the cleanup read one slot's rows in code order. */
export const SLOT_INDEX_SQL = {
  urls: 'CREATE INDEX CONCURRENTLY IF NOT EXISTS urls_slot_code ON urls (shortener_slot(code), code)',
  idempotencyKeys: 'CREATE INDEX CONCURRENTLY IF NOT EXISTS idempotency_keys_slot_key ON idempotency_keys (shortener_slot(key), key)',
};

/**
 * One page of a batch's `urls` rows after the keyset cursor ($2 slot, $3 code; start
 * with -1, ''), in (slot, code) order. $1: the batch's slots, $4: page size. Tombstones
 * (deleted_at), expiry, redirect type, manage-token hash and clicks travel with the row.
 * Timestamps leave as integer microseconds since the epoch: a JavaScript Date keeps only
 * milliseconds, and a copy through it would differ from the source in the checksum (the
 * spec caught exactly that).
 */
export const COPY_URLS_PAGE_SQL = `/* monitor:reshard.copy */
SELECT shortener_slot(code) AS slot, code, url, redirect_type,
       (extract(epoch FROM created_at) * 1000000)::bigint AS created_us,
       (extract(epoch FROM updated_at) * 1000000)::bigint AS updated_us,
       (extract(epoch FROM expires_at) * 1000000)::bigint AS expires_us,
       (extract(epoch FROM deleted_at) * 1000000)::bigint AS deleted_us,
       manage_token_hash, clicks
  FROM urls
 WHERE shortener_slot(code) = ANY($1::smallint[])
   AND (shortener_slot(code), code) > ($2::smallint, $3::text)
 ORDER BY shortener_slot(code), code
 LIMIT $4`;

/**
 * Writes a copied page on the target: a row already there (copied before, or re-read by
 * catch-up) takes the source's values, so applying a page twice is harmless. The
 * parameters are the page's columns as arrays, in COPY_URLS_PAGE_SQL's order after slot
 * (bigints as the strings pg returns them).
 */
export const UPSERT_URLS_SQL = `/* monitor:reshard.upsert */
INSERT INTO urls (code, url, redirect_type, created_at, updated_at, expires_at, deleted_at, manage_token_hash, clicks)
SELECT code, url, redirect_type,
       timestamptz 'epoch' + created_us * interval '1 microsecond', timestamptz 'epoch' + updated_us * interval '1 microsecond',
       timestamptz 'epoch' + expires_us * interval '1 microsecond', timestamptz 'epoch' + deleted_us * interval '1 microsecond',
       manage_token_hash, clicks
  FROM unnest($1::text[], $2::text[], $3::smallint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bytea[], $9::bigint[])
       AS page(code, url, redirect_type, created_us, updated_us, expires_us, deleted_us, manage_token_hash, clicks)
ON CONFLICT (code) DO UPDATE SET
  url = excluded.url, redirect_type = excluded.redirect_type, created_at = excluded.created_at, updated_at = excluded.updated_at,
  expires_at = excluded.expires_at, deleted_at = excluded.deleted_at, manage_token_hash = excluded.manage_token_hash, clicks = excluded.clicks`;

/**
 * Count and checksum per slot of the slots in $1 (VDiff). The checksum is the md5 of the
 * rows' md5s in code order; each row is hashed as its ROW(...) text, which quotes any
 * field holding a delimiter and tells NULL from '' (a plain `a|b` join would let two
 * different rows hash alike). Timestamps go in as integer microseconds, so the session's
 * TimeZone and DateStyle cannot make equal rows differ. Slots without rows are absent
 * (the caller counts them as 0 rows on both sides).
 */
export const CHECKSUM_URLS_SQL = `/* monitor:reshard.verify */
SELECT shortener_slot(code) AS slot, count(*)::int AS count,
       md5(string_agg(md5(ROW(code, url, redirect_type,
                              (extract(epoch FROM created_at) * 1000000)::bigint,
                              (extract(epoch FROM updated_at) * 1000000)::bigint,
                              (extract(epoch FROM expires_at) * 1000000)::bigint,
                              (extract(epoch FROM deleted_at) * 1000000)::bigint,
                              encode(manage_token_hash, 'hex'), clicks)::text), '' ORDER BY code)) AS checksum
  FROM urls
 WHERE shortener_slot(code) = ANY($1::smallint[])
 GROUP BY 1
 ORDER BY 1`;

/** The same for idempotency records, which live on the shard of their key's slot. */
export const CHECKSUM_IDEMPOTENCY_SQL = `/* monitor:reshard.verify */
SELECT shortener_slot(key) AS slot, count(*)::int AS count,
       md5(string_agg(md5(ROW(key, encode(request_hash, 'hex'), response::text,
                              (extract(epoch FROM created_at) * 1000000)::bigint)::text), '' ORDER BY key)) AS checksum
  FROM idempotency_keys
 WHERE shortener_slot(key) = ANY($1::smallint[])
 GROUP BY 1
 ORDER BY 1`;

/** Deletes up to $2 rows of the slots in $1 (the old copies, after every service follows the new epoch). */
export const DELETE_URLS_PAGE_SQL = `/* monitor:reshard.cleanup */
DELETE FROM urls WHERE code IN (
  SELECT code FROM urls WHERE shortener_slot(code) = ANY($1::smallint[]) ORDER BY shortener_slot(code), code LIMIT $2)`;
