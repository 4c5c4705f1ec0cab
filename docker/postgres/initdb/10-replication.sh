#!/usr/bin/env bash
# Runs once, on the shard's first primary, from the official image's entrypoint right
# after initdb (database `shortener` already created from POSTGRES_DB). Replicas copy
# all of it with pg_basebackup, so every node can become a primary.
set -Eeuo pipefail

case "${REPLICATION_MODE:-quorum}" in
  quorum) sync_names="ANY 1 (${PG_STANDBY_NAMES:?set by node-entrypoint.sh})" ;;
  async) sync_names="" ;;
  *) echo "REPLICATION_MODE must be quorum or async" >&2; exit 64 ;;
esac

psql -v ON_ERROR_STOP=1 --username postgres --dbname postgres <<SQL
ALTER SYSTEM SET listen_addresses = '*';
ALTER SYSTEM SET wal_level = 'replica';
ALTER SYSTEM SET hot_standby = 'on';
ALTER SYSTEM SET hot_standby_feedback = 'on';
ALTER SYSTEM SET wal_log_hints = 'on';
ALTER SYSTEM SET max_wal_senders = 10;
ALTER SYSTEM SET max_replication_slots = 10;
ALTER SYSTEM SET wal_keep_size = '256MB';
ALTER SYSTEM SET cluster_name = '${PG_NODE_NAME}';
ALTER SYSTEM SET synchronous_commit = 'on';
ALTER SYSTEM SET synchronous_standby_names = '${sync_names}';
SQL

# Streaming replication and pg_rewind from any address of the private network, with a password.
echo "host replication all all scram-sha-256" >>"$PGDATA/pg_hba.conf"

# The shard's pgBackRest stanza, so that archiving works from the first segment (the node
# runs with a repository configured: node-entrypoint.sh). Idempotent; a failure here only
# delays archiving until the first backup (backup.sh creates it too).
if [ -n "${PGBACKREST_REPO1_PATH:-}${PGBACKREST_REPO1_TYPE:-}" ]; then
  pgbackrest --pg1-socket-path=/var/run/postgresql stanza-create || echo "10-replication.sh: pgbackrest stanza-create failed; backup.sh will retry" >&2
fi
