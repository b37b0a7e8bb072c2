#!/usr/bin/env bash
# bench/deflate.sh <absolute path to tickerd>: permessage-deflate on /ws,
# a part of `make bench` (bench/run.sh).
#
# One tickerd and one redis-server; the same fan-out load with and without
# permessage-deflate, the two alternated BENCH_RUNS times in one run so that
# the machine's load falls on both alike. Per variant: bytes on the wire per
# delivery (what the subscribers read, frame headers included), server CPU
# per delivery (tickerd's CPU time / deliveries, redis-server not counted),
# p99 latency; medians over the runs. Also the share of compressed frames
# built to frames sent (/status streaming.ws_deflate), which shows the one
# compression per message shared by every client.
#
# Environment:
#   BENCH_QUICK=1           100 clients, 1 run, short windows
#   BENCH_RUNS=3            alternations (each one window per variant)
#   BENCH_DEFLATE_CLIENTS=1000  subscribers; each watches 20 of 100 symbols
#   BENCH_DEFLATE_DPS=30000     offered deliveries/s over all clients (both variants must sustain it,
#                               the load generator inflating every message in one thread)
#   BENCH_REPORT            where the markdown section is appended
# Everything listens on 127.0.0.1 only.
set -euo pipefail

TICKERD=${1:?usage: bench/deflate.sh <absolute path to tickerd>}
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
BUILD=$(dirname "$TICKERD")
CLIENT=$BUILD/bench/fanout_client
REPORT=${BENCH_REPORT:-$BUILD/bench/report.md}
SYMBOLS=100
PER_CLIENT=20
if [ "$BENCH_QUICK" = 1 ]; then
  CLIENTS=${BENCH_DEFLATE_CLIENTS:-100}; WARMUP_MS=500; WINDOW_MS=1500
else
  CLIENTS=${BENCH_DEFLATE_CLIENTS:-1000}; WARMUP_MS=1000; WINDOW_MS=5000
fi
DPS=${BENCH_DEFLATE_DPS:-30000}
# Every message reaches CLIENTS * PER_CLIENT / SYMBOLS clients.
RATE=$(( DPS * SYMBOLS / (CLIENTS * PER_CLIENT) )); [ "$RATE" -ge 1 ] || RATE=1

for f in "$CLIENT" "$BUILD/bench/deflate_cost"; do [ -x "$f" ] || bench_die "$f is missing (make $f)"; done
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
bench_init deflate

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() {
  local i
  for i in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  bench_die "$2 did not listen on 127.0.0.1:$1"
}

REDIS_PORT=$(port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --logfile "$BENCH_TMP/redis.log" \
  >/dev/null 2>&1 &
BENCH_PIDS+=("$!")
wait_port "$REDIS_PORT" redis-server
TD_PORT=$(port)
"$TICKERD" --host 127.0.0.1 --port "$TD_PORT" --redis-url "redis://127.0.0.1:$REDIS_PORT" --feed none \
  --log-file '' --log-level warn --max-stream-clients 20000 --max-connections 30000 >/dev/null 2>"$BENCH_TMP/tickerd.err" &
TD_PID=$!
BENCH_PIDS+=("$TD_PID")
wait_port "$TD_PORT" tickerd

deflate_counters() {
  python3 -c 'import json, sys, urllib.request
z = json.load(urllib.request.urlopen(sys.argv[1]))["streaming"]["ws_deflate"]
print(z["frames_compressed"], z["sent_compressed"], z["bytes_saved"])' "http://127.0.0.1:$TD_PORT/status"
}

RESULTS=$BENCH_TMP/results.jsonl
: >"$RESULTS"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
read -r c0 s0 _ <<<"$(deflate_counters)"
for run in $(seq 1 "$BENCH_RUNS"); do
  for variant in plain deflate; do
    bench_log "deflate: run $run, $variant, $CLIENTS clients x $PER_CLIENT of $SYMBOLS symbols, $RATE msgs/s"
    "$CLIENT" --mode ws-tickerd --port "$TD_PORT" --clients "$CLIENTS" --symbols "$SYMBOLS" \
      --per-client "$PER_CLIENT" --prefix "DF${run}${variant^^}X" --rates "$RATE" --runs 1 \
      --warmup-ms "$WARMUP_MS" --window-ms "$WINDOW_MS" --stop-p99-ms 1000000 --server-pid "$TD_PID" \
      --label "$variant" $([ "$variant" = deflate ] && echo --deflate) 2>"$BENCH_TMP/client.err" |
      grep '"summary"' >>"$RESULTS" || { tail -n 5 "$BENCH_TMP/client.err" >&2; bench_die "fanout_client failed"; }
  done
done
read -r c1 s1 _ <<<"$(deflate_counters)"
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

mkdir -p "$(dirname "$REPORT")"
python3 - "$RESULTS" "$CLIENTS" "$RATE" "$BENCH_RUNS" "$(nproc)" "$LOAD_BEFORE" "$LOAD_AFTER" \
  "$((c1 - c0))" "$((s1 - s0))" >>"$REPORT" <<'PY'
import json, statistics, sys, time
path, clients, rate, runs, cores, load0, load1, built, sent = sys.argv[1:10]
rows = {}
for line in open(path):
    r = json.loads(line)
    rows.setdefault(r["label"], []).append(r)
med = lambda v: statistics.median(v)
print("\n## permessage-deflate on /ws (%s)\n" % time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
print("%s clients, each watching 20 of 100 symbols, %s msgs/s published (offered %d deliveries/s);"
      " plain and deflate alternated %s time(s) in one run, medians shown. %s cores shared with other work;"
      " load average %s before, %s after. Bytes: what the subscribers read per delivery, frame headers"
      " included. Server CPU: tickerd's alone (redis-server not counted), per delivery.\n"
      % (clients, rate, int(rate) * int(clients) * 20 // 100, runs, cores, load0, load1))
print("| variant | deliveries/s | bytes per delivery | server CPU (cores) | server CPU per delivery (µs) | p99 ms | lost |")
print("|---|---:|---:|---:|---:|---:|---:|")
for label in ("plain", "deflate"):
    rs = rows.get(label, [])
    if not rs:
        continue
    dps = med([r["deliveries_per_s"] for r in rs])
    cpu = med([r["server_cpu"] for r in rs])
    per = med([r["server_cpu"] / r["deliveries_per_s"] * 1e6 for r in rs if r["deliveries_per_s"]])
    print("| %s | %.0f | %.1f | %.2f | %.2f | %.1f | %d |" % (
        label, dps, med([r["bytes_per_delivery"] for r in rs]), cpu, per,
        med([r["p99_us"] for r in rs]) / 1000, sum(r["lost"] for r in rs)))
print("\nCompressed frames built: %s; compressed frames sent: %s (one compression shared by %.1f clients on"
      " average).\n" % (built, sent, int(sent) / max(int(built), 1)))
PY
{
  echo "What one compression costs (bench/deflate_cost.c: CPU time per message, zlib settings compared;"
  echo "the last two rows are tickerd's own path, frame encoding included):"
  echo ""
  "$BUILD/bench/deflate_cost"
  echo ""
} >>"$REPORT"
bench_log "deflate: section appended to $REPORT"
