#!/usr/bin/env bash
# bench/failover.sh <abs path to tickerd>: the failover part of `make bench`
# (bench/failover.py: median and worst of FAILOVER_TRIES kill -9 of the
# Redis primary under Sentinel).
set -euo pipefail
exec /usr/bin/python3 "$(dirname "$0")/failover.py" "$1" --tries "${FAILOVER_TRIES:-10}"
