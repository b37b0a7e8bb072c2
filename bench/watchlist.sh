#!/usr/bin/env bash
# bench/watchlist.sh <absolute path to tickerd>
#
# The watchlist fan-out benchmark (issue 16): 1,000 and 10,000 clients, each
# subscribed to 20 of 100 symbols, tickerd SSE and WebSocket against
# nginx + nchan subscribing the same clients to the same 20 channels through
# its multiplexed channels (GET /sub/A,B,...). It is bench/fanout.sh with
# other settings: the offered delivery rate is stepped up until p99 passes
# 100 ms or a message is lost, per target; the report adds tickerd's sends per
# delivery from /status. Everything listens on 127.0.0.1 only.
#
# Environment: as bench/fanout.sh (BENCH_QUICK, BENCH_RUNS, BENCH_CLIENTS,
# BENCH_TARGETS, BENCH_STEPS, BENCH_BUDGET_S, BENCH_REPORT).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)

export BENCH_CLIENTS=${BENCH_CLIENTS:-"1000 10000"} BENCH_SYMBOLS=100 BENCH_PER_CLIENT=20 BENCH_TITLE="Watchlist fan-out (20 of 100 symbols per client)"
# Offered deliveries/s over all clients. A client owed 20 symbols gets many
# messages per loop turn, so tickerd goes well past the one-symbol steps;
# the goals are 20x nchan's rate at 1,000 clients and 6x at 10,000.
if [ "${BENCH_QUICK:-0}" = 1 ]; then
  export BENCH_STEPS=${BENCH_STEPS:-"50000 400000"}
else
  export BENCH_STEPS=${BENCH_STEPS:-"25000 50000 75000 100000 200000 300000 400000 600000 800000 1000000 1200000 1600000"}
  export BENCH_BUDGET_S=${BENCH_BUDGET_S:-900}
fi
exec bash "$HERE/fanout.sh" "$@"
