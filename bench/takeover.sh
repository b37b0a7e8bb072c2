#!/usr/bin/env bash
# bench/takeover.sh <abs path to tickerd>: the takeover part of `make bench`
# (bench/takeover.py: median and worst of TAKEOVER_TRIES kill -9 takeovers).
set -euo pipefail
exec /usr/bin/python3 "$(dirname "$0")/takeover.py" "$1" --tries "${TAKEOVER_TRIES:-10}"
