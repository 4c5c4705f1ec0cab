// One PostgreSQL role per service, holding only the rights that service's SQL uses, so that
// no service connects as the superuser (docs/reference.md, "Security of the inside").
//
// Roles, their attributes, role memberships and GRANT ... ON PARAMETER live in the
// cluster's shared catalogs: they may already exist (another database of the same cluster
// was migrated, or an operator made them), so every statement here is safe to repeat.
// Object grants (tables, functions) are per database. Passwords are not set here: the
// deployment sets them after migrating (migrate.cli.ts, PG_<ROLE>_PASSWORD), so none is
// ever part of the schema's history. Until then the roles cannot log in with a password.
//
// What each role runs, and therefore holds:
//  - shortener_writer (apps/writer: link, idempotency, outbox and click repositories):
//    reads and writes the four tables, draws outbox ids; no DDL, no TRUNCATE.
//  - shortener_reader (apps/reader: lookups, node probes): SELECT on urls. Its probe's
//    functions (pg_is_in_recovery, pg_last_wal_*_lsn, pg_last_xact_replay_timestamp) are
//    PUBLIC; pg_stat_wal_receiver shows it no status, which the reader does not use.
//  - shortener_monitor (apps/failover-monitor: node-probe.ts, node-admin.ts, node controls):
//    pg_monitor (pg_stat_replication and pg_stat_wal_receiver in full, SHOW primary_conninfo),
//    pg_promote, pg_reload_conf, ALTER SYSTEM on exactly the four settings node-admin.ts
//    changes, REPLICATION (pg_create_physical_replication_slot; pg_basebackup of a node that
//    rejoins), and the four file functions pg_rewind's --source-server needs. No table rights.
export default `
DO $roles$
DECLARE
  role_name text;
BEGIN
  FOREACH role_name IN ARRAY ARRAY['shortener_writer', 'shortener_reader', 'shortener_monitor'] LOOP
    BEGIN
      EXECUTE format('CREATE ROLE %I', role_name);
    EXCEPTION WHEN duplicate_object THEN
      NULL; -- made by an earlier run in another database of this cluster
    END;
  END LOOP;
  -- Whatever an earlier run or an operator left, the attributes end up exactly these.
  ALTER ROLE shortener_writer LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT;
  ALTER ROLE shortener_reader LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT;
  ALTER ROLE shortener_monitor LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE REPLICATION NOBYPASSRLS INHERIT;

  -- Only these roles (and superusers) may connect to the service database; no temporary tables.
  EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database());
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO shortener_writer, shortener_reader, shortener_monitor', current_database());
END
$roles$;

GRANT USAGE ON SCHEMA public TO shortener_writer, shortener_reader;

GRANT SELECT, INSERT, UPDATE ON urls TO shortener_writer;
GRANT SELECT, INSERT, DELETE ON outbox TO shortener_writer;
GRANT USAGE ON SEQUENCE outbox_id_seq TO shortener_writer;
GRANT SELECT, INSERT, UPDATE, DELETE ON idempotency_keys TO shortener_writer;
GRANT SELECT, INSERT, UPDATE ON click_offsets TO shortener_writer;

GRANT SELECT ON urls TO shortener_reader;

-- Tables of later migrations: the writer may read and change rows, the reader read them.
-- A migration that adds a table narrows these where its service uses less.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO shortener_writer;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE ON SEQUENCES TO shortener_writer;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO shortener_reader;

GRANT pg_monitor TO shortener_monitor;
GRANT EXECUTE ON FUNCTION pg_catalog.pg_promote(boolean, integer) TO shortener_monitor;
GRANT EXECUTE ON FUNCTION pg_catalog.pg_reload_conf() TO shortener_monitor;
GRANT ALTER SYSTEM ON PARAMETER synchronous_standby_names, default_transaction_read_only, primary_conninfo, primary_slot_name TO shortener_monitor;
-- pg_rewind --source-server (docs: "a role with these rights instead of a superuser")
GRANT EXECUTE ON FUNCTION pg_catalog.pg_ls_dir(text, boolean, boolean) TO shortener_monitor;
GRANT EXECUTE ON FUNCTION pg_catalog.pg_stat_file(text, boolean) TO shortener_monitor;
GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_binary_file(text) TO shortener_monitor;
GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean) TO shortener_monitor;
`;
