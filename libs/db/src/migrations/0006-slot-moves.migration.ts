import { SLOT_FUNCTION_SQL } from '@shortener/resharding';

// Online resharding (docs/reference.md section 7): what lets the leading monitor move a
// slot's rows to another shard while the writers keep writing.
//
// shortener_slot(text) is the router's slot (CRC-32, top 10 bits) computed inside
// PostgreSQL, so the mover can select, checksum and delete a slot's rows, and the guard
// below can tell which slot a written row belongs to.
//
// slot_guard holds, per slot this shard is giving away or receiving, what writes may do:
//   capture   the slot is being copied away: writes go on, and every written key is
//             logged in slot_changes so the mover can copy it again (its catch-up);
//   fenced    the slot is about to switch: writes are refused (SQLSTATE SR001) for the
//             at most one second the final catch-up, the comparison and the switch take;
//   moved     the slot belongs to another shard now: writes are refused for good
//             (SR002), so a service still routing by an older topology epoch cannot
//             write on the old owner (the same fencing a demoted primary gets);
//   incoming  (on the receiving shard) copies are arriving; only the mover writes.
// A shard that never took part in a move has no guard row, and the trigger returns after
// one look at the empty table. The mover itself writes with shortener.mover = on.
//
// click_slot_offsets: the highest url.clicks offset applied per (partition, slot), so
// that the exactly-once record of click counting moves with the slot's rows; a slot
// without a row here counts from the shard's click_offsets row of that partition.
export default `
${SLOT_FUNCTION_SQL};

CREATE TABLE slot_guard (
  slot      smallint PRIMARY KEY CHECK (slot BETWEEN 0 AND 1023),
  state     text NOT NULL CHECK (state IN ('capture', 'fenced', 'moved', 'incoming')),
  operation text NOT NULL,
  since     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE slot_changes (
  id         bigserial PRIMARY KEY,
  slot       smallint NOT NULL,
  table_name text NOT NULL,
  key        text COLLATE "C" NOT NULL
);

CREATE TABLE click_slot_offsets (
  kafka_partition int NOT NULL,
  slot            smallint NOT NULL CHECK (slot BETWEEN 0 AND 1023),
  last_offset     bigint NOT NULL,
  PRIMARY KEY (kafka_partition, slot)
);

-- The slot map as of the last switch, kept on every primary: a stack restored from backups
-- (which has no Kafka history) starts from the map its databases were written under.
CREATE TABLE cluster_slot_map (
  id     smallint PRIMARY KEY CHECK (id = 1),
  epoch  bigint NOT NULL,
  slots  smallint[] NOT NULL CHECK (cardinality(slots) = 1024),
  at     timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION shortener_slot_guard() RETURNS trigger
LANGUAGE plpgsql AS $guard$
DECLARE
  row_key text;
  row_slot smallint;
  guard text;
BEGIN
  IF current_setting('shortener.mover', true) = 'on' THEN
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
  END IF;
  PERFORM 1 FROM slot_guard LIMIT 1;
  IF NOT FOUND THEN
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
  END IF;
  IF TG_TABLE_NAME = 'urls' THEN
    row_key := CASE WHEN TG_OP = 'DELETE' THEN OLD.code ELSE NEW.code END;
  ELSIF TG_TABLE_NAME = 'idempotency_keys' THEN
    row_key := CASE WHEN TG_OP = 'DELETE' THEN OLD.key ELSE NEW.key END;
  ELSE
    row_key := CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END;
  END IF;
  row_slot := shortener_slot(row_key);
  SELECT state INTO guard FROM slot_guard WHERE slot = row_slot;
  IF guard IS NULL THEN
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
  ELSIF guard = 'capture' THEN
    INSERT INTO slot_changes (slot, table_name, key) VALUES (row_slot, TG_TABLE_NAME, row_key);
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
  ELSIF guard = 'moved' THEN
    RAISE EXCEPTION 'slot % has moved to another shard', row_slot USING ERRCODE = 'SR002';
  ELSE
    RAISE EXCEPTION 'slot % is being switched to another shard', row_slot USING ERRCODE = 'SR001';
  END IF;
END
$guard$;

CREATE TRIGGER urls_slot_guard BEFORE INSERT OR UPDATE OR DELETE ON urls
  FOR EACH ROW EXECUTE FUNCTION shortener_slot_guard();
CREATE TRIGGER idempotency_keys_slot_guard BEFORE INSERT OR UPDATE OR DELETE ON idempotency_keys
  FOR EACH ROW EXECUTE FUNCTION shortener_slot_guard();
CREATE TRIGGER api_keys_slot_guard BEFORE INSERT OR UPDATE OR DELETE ON api_keys
  FOR EACH ROW EXECUTE FUNCTION shortener_slot_guard();

-- Read a slot's rows in key order for the copy, the comparison and the clean-up.
CREATE INDEX urls_slot_code ON urls (shortener_slot(code), code);
CREATE INDEX idempotency_keys_slot_key ON idempotency_keys (shortener_slot(key), key);
CREATE INDEX api_keys_slot_id ON api_keys (shortener_slot(id), id);

-- The writer logs changes through the trigger and counts clicks per slot; the reader
-- needs none of it; the mover (the monitor's role) copies, compares and deletes rows.
REVOKE ALL ON slot_guard, slot_changes, cluster_slot_map FROM shortener_writer, shortener_reader;
GRANT SELECT ON slot_guard TO shortener_writer;
GRANT INSERT ON slot_changes TO shortener_writer;
GRANT USAGE ON SEQUENCE slot_changes_id_seq TO shortener_writer;
REVOKE ALL ON click_slot_offsets FROM shortener_reader;
GRANT SELECT, INSERT, UPDATE ON click_slot_offsets TO shortener_writer;
GRANT SELECT, INSERT, UPDATE, DELETE ON urls, idempotency_keys, api_keys, slot_guard, slot_changes, click_slot_offsets TO shortener_monitor;
GRANT SELECT, INSERT, UPDATE ON cluster_slot_map TO shortener_monitor;
-- outbox: a drained shard leaves the topology only once its outbox is relayed (the writer relays only listed shards).
GRANT SELECT ON click_offsets, schema_migrations, outbox TO shortener_monitor;
GRANT USAGE ON SCHEMA public TO shortener_monitor;
GRANT USAGE ON SEQUENCE slot_changes_id_seq TO shortener_monitor;
`;
