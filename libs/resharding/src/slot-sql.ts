/**
 * The router's slot computed inside PostgreSQL (migration 6 creates it; the slot mover's
 * statements in libs/db slot-move.repository.ts select, checksum and delete by it).
 *
 * PostgreSQL 15 has no CRC-32 function (crc32(bytea) arrived in PostgreSQL 18), so the
 * slot comes from `shortener_slot(text)`, an IMMUTABLE PL/pgSQL CRC-32 (the reflected
 * 0xEDB88320 polynomial the `crc-32` package and zlib use) over the code's UTF-8 bytes,
 * top 10 bits: the same as slotOf() in libs/shard-router, checked against it on a real
 * server by libs/db's slot-move integration spec. Being immutable, it can back an expression index
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
