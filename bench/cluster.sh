#!/usr/bin/env bash
# bench/cluster.sh <abs path to tickerd>: the Redis Cluster part of `make
# bench` (bench/cluster.py: quotes/s, deliveries/s and Redis CPU per quote
# with 1 and 3 shards; failover median and worst of CLUSTER_TRIES kills).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
DURATION=${BENCH_DURATION:-10}
TRIES=${CLUSTER_TRIES:-10}
if [ "${BENCH_QUICK:-0}" = 1 ]; then DURATION=3; TRIES=2; fi
for tool in redis-server redis-cli wrk; do
  command -v "$tool" >/dev/null || { echo "bench/cluster.sh: $tool not installed (make deps)" >&2; exit 1; }
done
exec /usr/bin/python3 "$HERE/cluster.py" "$1" "$DURATION" "$TRIES"
