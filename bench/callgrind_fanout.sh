#!/usr/bin/env bash
# bench/callgrind_fanout.sh <tickerd A> [<tickerd B> ...]: instructions per
# fan-out delivery, counted by callgrind (repeatable whatever else the
# machine does). For each build and each N in CG_CLIENTS: a private
# redis-server, tickerd --feed none under valgrind --tool=callgrind
# --instr-atstart=no, N WebSocket clients of build/bench/fanout_client on
# CG_SYMBOLS symbols with its publisher POSTing CG_RATE messages/s; once all
# are connected, instrumentation on for CG_SECONDS, off; Ir divided by the
# change of /status streaming.deliveries over that window. The Ir include
# the POST /quotes and Redis work of each message, spread over its
# N / CG_SYMBOLS deliveries. Prints one line per (build, N):
#   build=<path> clients=N deliveries=D ir=I ir_per_delivery=X
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
[ $# -ge 1 ] || { echo "usage: bench/callgrind_fanout.sh <tickerd> [<tickerd> ...]" >&2; exit 2; }
CLIENT=${CG_CLIENT:-$(dirname "$1")/bench/fanout_client}
CG_CLIENTS=${CG_CLIENTS:-"1000 10000"}
CG_SYMBOLS=${CG_SYMBOLS:-10}
CG_RATE=${CG_RATE:-5}
CG_SECONDS=${CG_SECONDS:-10}
for tool in valgrind callgrind_control redis-server curl; do
  command -v "$tool" >/dev/null || bench_die "$tool not installed (apt-get install valgrind)"
done
[ -x "$CLIENT" ] || bench_die "$CLIENT is missing (make build/bench/fanout_client)"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
bench_init callgrind-fanout
start_redis

deliveries() {
  curl -fsS "http://127.0.0.1:$1/status" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["streaming"]["deliveries"])'
}

run=0
for N in $CG_CLIENTS; do
  for TD in "$@"; do
    run=$((run + 1))
    port=$(free_port)
    out="$BENCH_TMP/cg-$run.out"
    bench_spawn_quiet "tickerd-$run" valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" \
      "$TD" --host 127.0.0.1 --port "$port" --redis-url "redis://127.0.0.1:$REDIS_PORT" --feed none \
      --log-file '' --log-level warn --max-stream-clients 20000 --max-connections 30000
    td_pid=$BENCH_PID
    wait_http "http://127.0.0.1:$port/status" "$td_pid" tickerd || bench_die "tickerd under valgrind did not start"
    # Long enough windows that the client keeps publishing while we measure.
    bench_spawn "client-$run" "$CLIENT" --mode ws-tickerd --port "$port" --clients "$N" --symbols "$CG_SYMBOLS" \
      --prefix "CG${run}X" --rates "$CG_RATE" --runs 1 --warmup-ms 2000 --window-ms $(( (CG_SECONDS + 30) * 1000 )) \
      --stop-p99-ms 1000000 --deadline-s 600
    client_pid=$BENCH_PID
    for _ in $(seq 3000); do
      grep -q 'ready in' "$BENCH_TMP/client-$run.log" 2>/dev/null && break
      kill -0 "$client_pid" 2>/dev/null || bench_die "fanout_client exited: $(tail -n 5 "$BENCH_TMP/client-$run.log")"
      sleep 0.2
    done
    sleep 3   # past the client's warm-up
    d0=$(deliveries "$port")
    callgrind_control -i on "$td_pid" >/dev/null
    sleep "$CG_SECONDS"
    callgrind_control -i off "$td_pid" >/dev/null
    d1=$(deliveries "$port")
    bench_stop "$client_pid"; bench_forget "$client_pid"
    bench_stop "$td_pid" 30; bench_forget "$td_pid"
    ir=$(awk '/^(summary|totals):/ { v = $2 } END { print v + 0 }' "$out"*)
    d=$((d1 - d0))
    echo "build=$TD clients=$N deliveries=$d ir=$ir ir_per_delivery=$(awk -v i="$ir" -v d="$d" 'BEGIN { printf "%.0f", d ? i / d : 0 }')"
  done
done
