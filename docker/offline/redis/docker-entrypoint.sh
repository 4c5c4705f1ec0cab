#!/usr/bin/env bash
# The official redis image's entrypoint contract: `redis-server ...` runs as user redis.
set -e
if [ "${1#-}" != "$1" ]; then set -- redis-server "$@"; fi
if [ "$1" = "redis-server" ]; then
  shift
  # A configuration file must stay redis-server's first argument.
  if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
    conf=$1
    shift
    set -- redis-server "$conf" --protected-mode no "$@"
  else
    set -- redis-server --protected-mode no "$@"
  fi
  if [ "$(id -u)" = "0" ]; then
    chown -R redis:redis . 2>/dev/null || true
    exec gosu redis "$@"
  fi
fi
exec "$@"
