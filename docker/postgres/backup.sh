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
stanza="${PGBACKREST_STANZA:?PGBACKREST_STANZA is not set: is this a PostgreSQL node of the shortener?}"

if [ "$(psql -h /var/run/postgresql -U postgres -d postgres -XtAc 'SELECT pg_is_in_recovery()')" != "f" ]; then
  echo "backup.sh: $(hostname) is not the primary of $stanza" >&2
  exit 3
fi
pgbackrest stanza-create >/dev/null
started=$SECONDS
pgbackrest --type="$type" backup
pgbackrest verify
pgbackrest --output=json info | head -c 4096 >/dev/null
echo "$stanza: $type backup done in $((SECONDS - started)) s, verified"
