#!/usr/bin/env bash
# Entrypoint of one PostgreSQL 15 node of a shard (official postgres:15 image), shared
# by docker/compose.yaml and the k8s StatefulSets (k8s/base/postgres/ holds a copy that
# the deploy checks keep identical).
#
# The node learns who it is from its host name:
#   compose     s<shard>n<index>   (hostname: s0n1)   peers s<shard>n0..n<N-1>
#   Kubernetes  pg-s<shard>-<ordinal>                 peers pg-s<shard>-<i>.pg-s<shard>
# Its PostgreSQL name (application_name, replication slot, synchronous_standby_names)
# is always s<shard>n<index>, the node names of SHARD_NODES in docs/runtime.md.
#
# Start-up:
#   empty data dir, a peer is a primary   -> pg_basebackup -R -C -S <name> from it (replica)
#   empty data dir, no primary, index 0   -> initdb through the image's entrypoint; the
#                                            scripts in /docker-entrypoint-initdb.d set up
#                                            replication (first primary of the shard)
#   empty data dir, no primary, index > 0 -> wait for the primary
#   data dir without standby.signal while another peer is the primary (this node was the
#   primary and was failed over)          -> pg_rewind from the new primary, rejoin as replica
#                                            (if the peers are still standbys, it first waits
#                                            PG_PROMOTION_WAIT_SECONDS for a promotion)
#   otherwise                             -> start as it was
# WAL archiving (docs/reference.md section 11): when the node runs with a pgBackRest
# repository (PGBACKREST_REPO1_PATH or PGBACKREST_REPO1_TYPE in its environment), the stanza
# is shard-<shard> and postgres starts with archive_mode on and `pgbackrest archive-push`:
# every node the same, so whichever is primary archives, also after a failover.
# Environment: POSTGRES_PASSWORD (superuser `postgres`, also the replication password),
# PG_NODES_PER_SHARD (3), REPLICATION_MODE (quorum|async), PG_SERVICE_SUFFIX (Kubernetes:
# appended to the peers' host names, e.g. ".shortener.svc.cluster.local").
set -Eeuo pipefail

export PGDATA="${PGDATA:-/var/lib/postgresql/data}"
nodes_per_shard="${PG_NODES_PER_SHARD:-3}"
host_name="${PG_HOSTNAME:-$(hostname)}"

log() { echo "node-entrypoint[$host_name]: $*" >&2; }

if [[ "$host_name" =~ ^s([0-9]+)n([0-9]+)$ ]]; then
  shard="${BASH_REMATCH[1]}"; index="${BASH_REMATCH[2]}"
  peer_host() { echo "s${shard}n$1"; }
elif [[ "$host_name" =~ ^pg-s([0-9]+)-([0-9]+)$ ]]; then
  shard="${BASH_REMATCH[1]}"; index="${BASH_REMATCH[2]}"
  peer_host() { echo "pg-s${shard}-$1.pg-s${shard}${PG_SERVICE_SUFFIX:-}"; }
else
  log "cannot tell shard and index from host name '$host_name' (expected s<shard>n<index> or pg-s<shard>-<ordinal>)"
  exit 64
fi
node_name="s${shard}n${index}"
export PG_NODE_NAME="$node_name"
standby_names=""
for ((i = 0; i < nodes_per_shard; i++)); do standby_names+="${standby_names:+, }s${shard}n${i}"; done
export PG_STANDBY_NAMES="$standby_names"
export PGBACKREST_STANZA="shard-${shard}"

# The image's entrypoint starts as root and drops to `postgres`; so does this script.
if [ "$(id -u)" = "0" ]; then
  mkdir -p "$PGDATA"
  chown -R postgres:postgres "$PGDATA"
  chmod 700 "$PGDATA"
  exec gosu postgres bash "${BASH_SOURCE[0]}" "$@"
fi

export PGPASSWORD="${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}"
export PGCONNECT_TIMEOUT=3

# Prints the host of the peer that is a primary right now (not in recovery), if any.
find_primary() {
  local i host
  for ((i = 0; i < nodes_per_shard; i++)); do
    [ "$i" = "$index" ] && continue
    host="$(peer_host "$i")"
    if [ "$(psql -h "$host" -U postgres -d postgres -XtAc 'SELECT pg_is_in_recovery()' 2>/dev/null)" = "f" ]; then
      echo "$host"
      return 0
    fi
  done
  return 1
}

# True when some peer answers as a standby (so a failover may be about to promote it).
standby_peer_answers() {
  local i
  for ((i = 0; i < nodes_per_shard; i++)); do
    [ "$i" = "$index" ] && continue
    if [ "$(psql -h "$(peer_host "$i")" -U postgres -d postgres -XtAc 'SELECT pg_is_in_recovery()' 2>/dev/null)" = "t" ]; then
      return 0
    fi
  done
  return 1
}

# A former primary coming back: prints the peer that is primary now. If the peers still
# answer as standbys, a failover may be under way (the monitor fences the old primary,
# e.g. by deleting its pod, before it promotes a replica): wait for it up to
# PG_PROMOTION_WAIT_SECONDS (30) before starting as the primary again.
await_promotion() {
  local deadline=$((SECONDS + ${PG_PROMOTION_WAIT_SECONDS:-30}))
  while true; do
    find_primary && return 0
    standby_peer_answers || return 1
    [ "$SECONDS" -ge "$deadline" ] && return 1
    log "peers are standbys: waiting for a promotion before starting as the primary"
    sleep 2
  done
}

conninfo() { echo "host=$1 port=5432 user=postgres password=$POSTGRES_PASSWORD application_name=$node_name"; }

ensure_slot() {
  psql -h "$1" -U postgres -d postgres -XtAc \
    "SELECT pg_create_physical_replication_slot('$node_name', true) WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = '$node_name')" >/dev/null
}

follow() {
  # pg_basebackup/pg_rewind copied the source's postgresql.auto.conf: drop the settings
  # that belong to one node, then name this node, its primary and its slot.
  sed -i -E '/^(primary_conninfo|primary_slot_name|cluster_name|default_transaction_read_only)[[:space:]]*=/d' \
    "$PGDATA/postgresql.auto.conf"
  {
    echo "primary_conninfo = '$(conninfo "$1")'"
    echo "primary_slot_name = '$node_name'"
    echo "cluster_name = '$node_name'"
  } >>"$PGDATA/postgresql.auto.conf"
  touch "$PGDATA/standby.signal"
}

basebackup_from() {
  log "cloning from primary $1 (pg_basebackup -R -C -S $node_name)"
  rm -rf "${PGDATA:?}"/* "${PGDATA:?}"/.[!.]* 2>/dev/null || true
  psql -h "$1" -U postgres -d postgres -XtAc "SELECT pg_drop_replication_slot('$node_name') FROM pg_replication_slots WHERE slot_name = '$node_name' AND NOT active" >/dev/null || true
  pg_basebackup -D "$PGDATA" -X stream -R -C -S "$node_name" -c fast \
    -d "$(conninfo "$1")"
  follow "$1"
}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  while true; do
    if primary="$(find_primary)"; then
      basebackup_from "$primary"
      break
    elif [ "$index" = "0" ]; then
      log "no primary among the peers: initialising the shard's first primary"
      break
    fi
    log "waiting for the primary of shard $shard"
    sleep 2
  done
elif [ ! -e "$PGDATA/standby.signal" ] && primary="$(await_promotion)"; then
  log "this node was a primary and $primary is the primary now: rejoining as its replica"
  # pg_rewind needs a cleanly shut down target: finish crash recovery in single-user mode.
  postgres --single -D "$PGDATA" -c archive_mode=off postgres </dev/null >/dev/null 2>&1 || true
  # pg_rewind reads the source's timeline from its control file, which a promotion updates
  # only at its next checkpoint: without this, a fresh primary looks like the same timeline
  # ("no rewind required") and this node would follow it with a diverged history.
  psql -h "$primary" -U postgres -d postgres -XtAc 'CHECKPOINT' >/dev/null || true
  if pg_rewind -D "$PGDATA" -R --source-server="$(conninfo "$primary") dbname=postgres" --progress; then
    ensure_slot "$primary"
    follow "$primary"
  else
    log "pg_rewind failed: taking a fresh base backup instead"
    basebackup_from "$primary"
  fi
elif [ -e "$PGDATA/standby.signal" ] && primary="$(find_primary)"; then
  ensure_slot "$primary" || true
fi

# The current timeline of a peer that is a primary (8 hex digits), empty for a standby or no answer.
peer_primary_timeline() {
  "$psql_bin" -h "$1" -U postgres -d postgres -XtAc \
    "SELECT CASE WHEN pg_is_in_recovery() THEN '' ELSE substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) END" 2>/dev/null || true
}

# This node's timeline, read from its WAL directory: the newest history file names it
# (timeline 1 has none). No connection, so the watch costs nothing on a standby.
own_timeline() {
  local newest
  newest="$(ls "$PGDATA/pg_wal" 2>/dev/null | grep -E '^[0-9A-F]{8}\.history$' | sort | tail -n 1)"
  echo "${newest:-00000001.history}" | cut -c1-8
}

# Self-fencing while it runs: a primary that finds a peer primary on a later timeline was
# failed over while it was frozen or cut off (docker pause, a network partition), so it
# stops itself; the container's restart policy starts it again and the start-up above
# rewinds it into a standby of the new primary. The monitor cannot restart a container
# (NODE_CONTROL=sql), and in quorum mode such a node acknowledged nothing meanwhile: its
# standbys follow the new primary. Only a primary asks its peers (no standby.signal).
demoted_primary_watch() {
  sleep "${PG_DEMOTION_WATCH_START_SECONDS:-20}"
  local i mine theirs
  while sleep "${PG_DEMOTION_WATCH_SECONDS:-5}"; do
    [ -e "$PGDATA/standby.signal" ] && continue
    mine="$(own_timeline)"
    for ((i = 0; i < nodes_per_shard; i++)); do
      [ "$i" = "$index" ] && continue
      theirs="$(peer_primary_timeline "$(peer_host "$i")")"
      if [ -n "$theirs" ] && [[ "$theirs" > "$mine" ]]; then
        log "$(peer_host "$i") is a primary on timeline $theirs, after this node's $mine: stopping, to rejoin as its replica"
        pg_ctl -D "$PGDATA" stop -m fast -w >/dev/null 2>&1 || true
        return 0
      fi
    done
  done
}
# The server's own psql, not Debian's Perl wrapper of it: the watch runs every few seconds.
psql_bin="$(command -v pg_config >/dev/null && echo "$(pg_config --bindir)/psql")"
[ -x "${psql_bin:-}" ] || psql_bin="$(ls /usr/lib/postgresql/*/bin/psql 2>/dev/null | tail -n 1)"
[ -x "${psql_bin:-}" ] || psql_bin=psql
[ "${PG_DEMOTION_WATCH:-on}" = off ] || demoted_primary_watch &

if [ -n "${PGBACKREST_REPO1_PATH:-}${PGBACKREST_REPO1_TYPE:-}" ]; then
  set -- "$@" -c archive_mode=on -c "archive_command=pgbackrest archive-push %p" -c "archive_timeout=${PG_ARCHIVE_TIMEOUT:-60s}"
fi
exec docker-entrypoint.sh "$@"
