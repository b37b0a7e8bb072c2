#!/usr/bin/env bash
# bench/throttle.sh <absolute path to tickerd>: throttled clients, a part of
# `make bench` (bench/run.sh).
#
# 10,000 clients subscribed with interval_ms=250 (per-client rate), one of
# 100 symbols each, 10,000 quotes/s in: every symbol gets 100 quotes/s and
# each client one update per interval, the newest. Per transport: server CPU
# (tickerd, and its redis-server apart), deliveries/s, and the staleness of
# what clients get: p50/p99 of each delivered quote's age when it reached
# the client (now - the publisher's stamp, so Redis's round trip is in it).
# A quote that was never delivered was replaced by a newer one within the
# same interval, sooner than the replacing quote's own delivery. Goal: p99
# <= interval + 50 ms. Also the interval group's frames encoded per second
# (/status streaming.rate): one per symbol and tick, however many clients.
#
# Environment:
#   BENCH_QUICK=1                   1,000 clients, 1 run, short windows
#   BENCH_RUNS=3                    windows per transport; medians shown
#   BENCH_THROTTLE_CLIENTS=10000
#   BENCH_THROTTLE_INTERVAL_MS=250
#   BENCH_THROTTLE_RATES="10000 400"  quotes/s over the 100 symbols, one measurement each: at 10,000
#                                   a symbol's newest quote is never older than ~10 ms at a tick; at
#                                   400 (one per symbol per interval) a quote waits up to the whole
#                                   interval for its tick, which shows the trailing-edge bound
#   BENCH_THROTTLE_TARGETS="ws-tickerd sse-tickerd"
#   BENCH_REPORT                    where the markdown section is appended
# Everything listens on 127.0.0.1 only.
set -euo pipefail

TICKERD=${1:?usage: bench/throttle.sh <absolute path to tickerd>}
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
BUILD=$(dirname "$TICKERD")
CLIENT=$BUILD/bench/fanout_client
REPORT=${BENCH_REPORT:-$BUILD/bench/report.md}
SYMBOLS=100
INTERVAL_MS=${BENCH_THROTTLE_INTERVAL_MS:-250}
RATES=${BENCH_THROTTLE_RATES:-"10000 400"}
TARGETS=${BENCH_THROTTLE_TARGETS:-"ws-tickerd sse-tickerd"}
if [ "$BENCH_QUICK" = 1 ]; then
  CLIENTS=${BENCH_THROTTLE_CLIENTS:-1000}; WARMUP_MS=1000; WINDOW_MS=2000
else
  CLIENTS=${BENCH_THROTTLE_CLIENTS:-10000}; WARMUP_MS=2000; WINDOW_MS=5000
fi
GOAL_MS=$((INTERVAL_MS + 50))

[ -x "$CLIENT" ] || bench_die "$CLIENT is missing (make $CLIENT)"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
bench_init throttle

start_redis
start_tickerd tickerd --feed none --log-level warn --max-stream-clients 20000 --max-connections 30000 ||
  bench_die "tickerd did not start"

# The interval group's frames encoded so far (0 when it has closed).
frames_encoded() {
  /usr/bin/python3 -c 'import json, sys, urllib.request
r = json.load(urllib.request.urlopen(sys.argv[1]))["streaming"]["rate"]
print(r["frames_encoded"])' "$TD_URL/status"
}

RESULTS=$BENCH_TMP/results.jsonl
: >"$RESULTS"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
run_id=0
for T in $TARGETS; do for RATE in $RATES; do
  run_id=$((run_id + 1))   # fresh symbols per measurement: no history carried over
  bench_log "throttle: $T, $CLIENTS clients at interval_ms=$INTERVAL_MS on $SYMBOLS symbols, $RATE quotes/s"
  f0=$(frames_encoded)
  t0=$(now_s)
  "$CLIENT" --mode "$T" --port "$TD_PORT" --clients "$CLIENTS" --symbols "$SYMBOLS" --prefix "TH${run_id}X" \
    --interval-ms "$INTERVAL_MS" --rates "$RATE" --runs "$BENCH_RUNS" --warmup-ms "$WARMUP_MS" \
    --window-ms "$WINDOW_MS" --stop-p99-ms 1000000 --server-pid "$TD_PID" --aux-pid "$REDIS_PID" --label "$T" \
    2>"$BENCH_TMP/client.err" | grep '"summary"' >"$BENCH_TMP/summary.json" ||
    { tail -n 5 "$BENCH_TMP/client.err" >&2; bench_die "fanout_client failed"; }
  # Encodes per second over the client's whole run (warm-up included): the
  # group lives as long as its clients, then closes (and the count with it
  # stays in the total).
  f1=$(frames_encoded)
  t1=$(now_s)
  /usr/bin/python3 -c 'import json, sys
r = json.load(open(sys.argv[1])); r["encodes_per_s"] = (int(sys.argv[2]) - int(sys.argv[3])) / (float(sys.argv[4]) - float(sys.argv[5]))
print(json.dumps(r))' "$BENCH_TMP/summary.json" "$f1" "$f0" "$t1" "$t0" >>"$RESULTS"
  bench_alive_or_die "$TD_PID" tickerd
done; done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

mkdir -p "$(dirname "$REPORT")"
/usr/bin/python3 - "$RESULTS" "$INTERVAL_MS" "$GOAL_MS" "$BENCH_RUNS" "$(nproc)" "$LOAD_BEFORE" "$LOAD_AFTER" \
  "$WINDOW_MS" >>"$REPORT" <<'PY'
import json, sys, time
path, interval, goal, runs, cores, load0, load1, window_ms = sys.argv[1:9]
rows = [json.loads(l) for l in open(path)]
print("\n## Throttled clients: interval_ms=%s (%s)\n" % (interval, time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())))
if rows:
    r = rows[0]
    print("%d clients, one of %d symbols each, every one subscribed with interval_ms=%s. %s window(s) per row, medians shown; %s cores shared with other work, load"
          " average %s before, %s after. Staleness: a delivered quote's age when the client read it (publisher's"
          " stamp to read, Redis round trip included); goal p99 <= %s ms. Server CPU: cores used by tickerd, and by"
          " its redis-server apart; the load generator (one thread: every subscriber and the publisher) and the"
          " machine's idle cores show whether the server or the machine set the pace.\n" % (r["clients"], r["symbols"], interval, runs, cores, load0, load1, goal))
print("| transport | quotes/s in | clients connected | deliveries/s (offered) | updates throttled/s | frames encoded/s | p50 staleness ms | p99 staleness ms | max ms | tickerd CPU | redis CPU | load generator CPU | machine idle | errors | p99 goal met |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|")
for r in rows:
    secs = r["runs"] * int(window_ms) / 1000.0   # the measured windows, summed
    print("| %s | %.0f | %d | %.0f (%.0f) | %.0f | %.0f | %.1f | %.1f | %.1f | %.2f | %.2f | %.2f | %.2f | %d | %s |" % (
        r["mode"], r["pub_rate"], r["connected"], r["deliveries_per_s"], r["offered_dps"],
        r["throttled"] / secs,
        r["encodes_per_s"], r["p50_us"] / 1000, r["p99_us"] / 1000, r["max_us"] / 1000, r["server_cpu"],
        r["aux_cpu"], r["client_cpu"], r["idle_cpu"], r["errors"], "yes" if r["p99_us"] <= int(goal) * 1000 and r["errors"] == 0 else "no"))
PY
bench_log "throttle: section appended to $REPORT"
