#!/usr/bin/env bash
# One shard's backup with pgBackRest, run inside a PostgreSQL node of that shard, as the
# postgres user (compose: docker compose exec -u postgres s<shard>n<i> bash /opt/shortener/backup.sh full;
# Kubernetes: the pg-backup CronJob of k8s/base/backup.yaml). pgBackRest reads its settings from
# the PGBACKREST_* environment the node runs with; the stanza is shard-<shard>.
#
# Usage: backup.sh [full|diff|incr]   (default incr; pgBackRest makes it full when there is none)
# Exit: 0 backed up and verified; 3 this node is not the primary (try the next node); else failed.
# Backups run on the primary here: a backup from a standby would need pgBackRest on the
# repository host to reach both nodes (TLS server); the local stack does that (npm run stack -- backup).
set -Eeuo pipefail

type="${1:-incr}"
case "$type" in full | diff | incr) ;; *) echo "backup.sh: type must be full, diff or incr; got '$type'" >&2; exit 64 ;; esac
# `docker exec` / `kubectl exec` do not see what node-entrypoint.sh exported: the stanza
# comes from the host name the same way (s<shard>n<index>, pg-s<shard>-<ordinal>).
host_name="${PG_HOSTNAME:-$(hostname)}"
if [ -z "${PGBACKREST_STANZA:-}" ]; then
  if [[ "$host_name" =~ ^s([0-9]+)n[0-9]+$ || "$host_name" =~ ^pg-s([0-9]+)-[0-9]+$ ]]; then
    export PGBACKREST_STANZA="shard-${BASH_REMATCH[1]}"
  else
    echo "backup.sh: cannot tell the shard from host name '$host_name'" >&2
    exit 64
  fi
fi
stanza="$PGBACKREST_STANZA"

if [ "$(psql -h /var/run/postgresql -U postgres -d postgres -XtAc 'SELECT pg_is_in_recovery()')" != "f" ]; then
  echo "backup.sh: $(hostname) is not the primary of $stanza" >&2
  exit 3
fi
# A running async archive-push may hold the stanza's archive lock for a moment (error 50).
for attempt in 1 2 3 4 5 6 7 8 9 10; do
  pgbackrest stanza-create >/dev/null 2>&1 && break
  [ "$attempt" = 10 ] && { echo "backup.sh: pgbackrest stanza-create of $stanza kept failing" >&2; exit 1; }
  sleep 1
done
started=$SECONDS
pgbackrest --type="$type" backup
pgbackrest verify
echo "$stanza: $type backup done in $((SECONDS - started)) s, verified"
