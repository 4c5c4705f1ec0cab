#!/bin/sh
# Makes the compose topology's Redis Cluster once: the masters given as arguments
# (host:port), the 16384 slots split evenly, no replicas (the cache is rebuilt from the
# databases, so a dead master costs cache hits, never data). Later starts find the
# cluster made and only wait for it to be healthy. Redis 7's CLUSTER MEET takes IP
# addresses, so the service names are resolved here; clients are told host names
# (cluster-preferred-endpoint-type hostname), which survive a container's new address.
set -eu

host_of() { echo "${1%:*}"; }
port_of() { echo "${1##*:}"; }
info() { redis-cli -h "$(host_of "$1")" -p "$(port_of "$1")" cluster info 2>/dev/null | tr -d '\r'; }

for node in "$@"; do
  tries=0
  until [ "$(redis-cli -h "$(host_of "$node")" -p "$(port_of "$node")" ping 2>/dev/null | tr -d '\r')" = "PONG" ]; do
    tries=$((tries + 1))
    [ "$tries" -lt 120 ] || { echo "redis-cluster-init: $node does not answer" >&2; exit 1; }
    sleep 0.5
  done
done

assigned=$(info "$1" | sed -n 's/^cluster_slots_assigned://p')
if [ "${assigned:-0}" = "0" ]; then
  addresses=""
  for node in "$@"; do
    ip=$(getent hosts "$(host_of "$node")" | awk '{ print $1; exit }')
    [ -n "$ip" ] || { echo "redis-cluster-init: cannot resolve $(host_of "$node")" >&2; exit 1; }
    addresses="$addresses $ip:$(port_of "$node")"
  done
  echo "redis-cluster-init: creating the cluster of$addresses"
  # shellcheck disable=SC2086
  redis-cli --cluster create $addresses --cluster-yes
else
  echo "redis-cluster-init: the cluster exists ($assigned slots assigned)"
fi

tries=0
until info "$1" | grep -q '^cluster_state:ok' && [ "$(info "$1" | sed -n 's/^cluster_known_nodes://p')" = "$#" ]; do
  tries=$((tries + 1))
  [ "$tries" -lt 120 ] || { echo "redis-cluster-init: the cluster did not become healthy" >&2; exit 1; }
  sleep 0.5
done
echo "redis-cluster-init: cluster_state:ok, $# masters"
