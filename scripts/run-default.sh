#!/usr/bin/env bash
# `make run`: tickerd on its embedded default. When no Redis answers at
# REDIS_URL (default redis://127.0.0.1:6379), start a local redis-server on
# that port for the life of tickerd, then run tickerd with the simulated feed.
set -euo pipefail
bin=$1; shift
url=${REDIS_URL:-redis://127.0.0.1:6379}
hostport=${url#redis://}; hostport=${hostport#*@}; hostport=${hostport%%/*}
host=${hostport%:*}; port=${hostport##*:}
[ "$host" = "$hostport" ] && port=6379
redis_pid=""
cleanup() {
  if [ -n "$redis_pid" ]; then
    kill "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
    echo "run: stopped the local redis-server"
  fi
}
trap cleanup EXIT
if ! redis-cli -h "$host" -p "$port" ping >/dev/null 2>&1; then
  case "$host" in
    127.0.0.1|localhost) ;;
    *) echo "run: no Redis answers at $url and it is not local; start one or set REDIS_URL" >&2; exit 1 ;;
  esac
  echo "run: no Redis at $url: starting a local redis-server on port $port"
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
    --logfile "$(pwd)/build/redis-run.log" &
  redis_pid=$!
  for _ in $(seq 50); do redis-cli -h "$host" -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
echo "run: tickerd on http://127.0.0.1:${TICKERD_PORT:-8000} (dashboard: /dashboard); try: redis-cli -p $port SUBSCRIBE quotes:AAPL"
# not exec: the trap must stop redis-server after tickerd exits
"$bin" --feed "${TICKERD_FEED:-sim}" "$@" &
td_pid=$!
trap 'kill -TERM $td_pid 2>/dev/null || true' INT TERM
wait $td_pid || true
wait $td_pid 2>/dev/null || true
