#!/usr/bin/env bash
# The part of the official postgres image's entrypoint that images built on it rely on:
# as root, own PGDATA and drop to postgres (gosu); on an empty PGDATA, initdb with
# POSTGRES_USER/POSTGRES_PASSWORD (scram-sha-256 for every host), create POSTGRES_DB,
# run /docker-entrypoint-initdb.d/* (*.sh executed, or sourced when not executable;
# *.sql and *.sql.gz through psql) against a server listening on the socket only, stop
# it, then exec the command (postgres).
set -Eeo pipefail

if [ "${1:0:1}" = '-' ]; then set -- postgres "$@"; fi

if [ "$1" = 'postgres' ]; then
  if [ "$(id -u)" = '0' ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown -R postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA"
    exec gosu postgres "${BASH_SOURCE[0]}" "$@"
  fi
  if [ ! -s "$PGDATA/PG_VERSION" ]; then
    : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set (as for the official image)}"
    export POSTGRES_USER="${POSTGRES_USER:-postgres}"
    export POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
    # shellcheck disable=SC2086
    initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") ${POSTGRES_INITDB_ARGS:-}
    printf '\nhost all all all %s\n' "${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}" >>"$PGDATA/pg_hba.conf"
    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w start
    export PGPASSWORD="$POSTGRES_PASSWORD"
    psql=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc)
    if [ "$POSTGRES_DB" != 'postgres' ]; then
      "${psql[@]}" --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
    fi
    psql+=(--dbname "$POSTGRES_DB")
    for f in /docker-entrypoint-initdb.d/*; do
      case "$f" in
        *.sh)
          if [ -x "$f" ]; then "$f"; else
            # shellcheck disable=SC1090
            . "$f"
          fi
          ;;
        *.sql) "${psql[@]}" -f "$f" ;;
        *.sql.gz) gunzip -c "$f" | "${psql[@]}" ;;
        *) ;;
      esac
    done
    pg_ctl -D "$PGDATA" -m fast -w stop
    unset PGPASSWORD
  fi
fi

exec "$@"
