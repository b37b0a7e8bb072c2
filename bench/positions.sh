#!/usr/bin/env bash
# bench/positions.sh <tickerd>: positions in Redis (issue 15, part 3).
#
#   1. Publishing through the Lua script with stream history: tickerd
#      --feed none, wrk POSTing batches of BENCH_BATCH quotes (50 symbols),
#      published/s from /status; against redis-benchmark running the SAME
#      script (EVALSHA, the sha tickerd reports) with the same arguments,
#      4 connections (tickerd's publishers) pipelined 64 deep, in the same
#      run. Next to it the PUBLISH-only figures (--memory-positions) and the
#      ceiling of PUBLISH. Redis CPU per quote from /proc/<redis>/stat
#      (utime + stime) before/after each measurement.
#   2. Resume of 1,000 messages from the stream (bench/resume.py): p99 time
#      from the subscribe to the recovery message after the last replayed one.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

TICKERD=${1:?usage: bench/positions.sh <path to tickerd>}
GOAL_RATIO=0.7
BENCH_BATCH=${BENCH_BATCH:-1000}
BENCH_SYMBOLS=50
BENCH_POST_CONNS=${BENCH_POST_CONNS:-4}
SCRIPT_N=${BENCH_SCRIPT_N:-200000}
CLK_TCK=$(getconf CLK_TCK)

bench_init positions
for tool in wrk redis-server redis-benchmark redis-cli curl; do
  command -v "$tool" >/dev/null || bench_die "$tool not installed (make deps)"
done
start_redis

redis_ticks() { awk '{ print $14 + $15 }' "/proc/$REDIS_PID/stat"; }
# us of Redis CPU per message: <ticks before> <ticks after> <messages>
cpu_us() { awk -v a="$1" -v b="$2" -v n="$3" -v hz="$CLK_TCK" 'BEGIN { if (n > 0) printf "%.2f\n", (b - a) * 1e6 / hz / n; else print "n/a" }'; }

BODY="$BENCH_TMP/quotes.json"
make_quote_body "$BENCH_BATCH" "$BENCH_SYMBOLS" "$BODY"
make_post_lua "$BODY" "$BENCH_TMP/post.lua"

# td_publish <name> <args...>: "published/s cpu_us_per_quote" of tickerd under wrk POSTs.
td_publish() {
  local name=$1; shift
  start_tickerd "$name" --feed none "$@" || { echo "n/a n/a"; return; }
  curl -sS -o /dev/null --max-time 10 -X POST -H 'Content-Type: application/json' --data-binary "@$BODY" "$TD_URL/quotes" || true
  bench_spawn wrk-"$name" wrk -t1 -c"$BENCH_POST_CONNS" -d"$((BENCH_DURATION + 2))s" --timeout 10s -s "$BENCH_TMP/post.lua" "$TD_URL/quotes"
  local wrk_pid=$BENCH_PID
  sleep 1
  local p0 c0 t0 p1 c1 t1
  p0=$(status_field "$TD_URL" redis.publisher.published); c0=$(redis_ticks); t0=$(now_s)
  sleep "$BENCH_DURATION"
  p1=$(status_field "$TD_URL" redis.publisher.published); c1=$(redis_ticks); t1=$(now_s)
  wait "$wrk_pid" || true; bench_forget "$wrk_pid"
  SHA=$(status_field "$TD_URL" quotes.script_sha)
  stop_tickerd
  echo "$(awk -v a="$p0" -v b="$p1" -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.0f\n", (b - a) / (t1 - t0) }') $(cpu_us "$c0" "$c1" "$((p1 - p0))")"
}

# rb <args...>: "requests/s cpu_us_per_request" of one redis-benchmark run of $SCRIPT_N.
rb() {
  local c0 c1 rps
  c0=$(redis_ticks)
  rps=$(timeout 300 redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -c 4 -P 64 -r "$BENCH_SYMBOLS" -n "$SCRIPT_N" -q "$@" 2>/dev/null \
    | tr '\r' '\n' | awk '/requests per second/ { v = $0 } END { sub(/ requests per second.*/, "", v); sub(/.*: /, "", v); print v }')
  c1=$(redis_ticks)
  echo "$rps $(cpu_us "$c0" "$c1" "$SCRIPT_N")"
}

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
bench_log "tickerd through the Lua script"
read -r TD_SCRIPT TD_SCRIPT_CPU < <(td_publish td-script)
start_tickerd td-sha --feed none >/dev/null && SHA=$(status_field "$TD_URL" quotes.script_sha) && stop_tickerd
PAYLOAD_BODY='{"T":"q","S":"B__rand_int__","bx":"V","bp":100.00,"bs":1,"ax":"V","ap":100.01,"as":1,"c":["R"],"z":"C","t":"2026-11-21T20:00:00.000000001Z"'
bench_log "redis-benchmark EVALSHA $SHA"
read -r RB_SCRIPT RB_SCRIPT_CPU < <(rb EVALSHA "$SHA" 2 'tickerd:{quotes:B__rand_int__}:pos' 'tickerd:{quotes:B__rand_int__}:hist' \
  'quotes:B__rand_int__' "$PAYLOAD_BODY" 0123456789abcdef 1000)
bench_log "tickerd PUBLISH only (--memory-positions)"
read -r TD_PUB TD_PUB_CPU < <(td_publish td-pub --memory-positions true)
bench_log "redis-benchmark PUBLISH"
read -r RB_PUB RB_PUB_CPU < <(rb PUBLISH 'quotes:B__rand_int__' "${PAYLOAD_BODY},\"seq\":42,\"epoch\":\"9f3a0c1d2e4b5a69\"}")

report "## Positions in Redis (Lua script + stream per channel)"
report ""
report "Load average before: $LOAD0. ${BENCH_DURATION}s per tickerd measurement, wrk -c$BENCH_POST_CONNS POSTing batches of $BENCH_BATCH quotes over $BENCH_SYMBOLS symbols; redis-benchmark -c 4 -P 64 -r $BENCH_SYMBOLS -n $SCRIPT_N."
report ""
report "| | tickerd published/s | redis-benchmark req/s | ratio (goal ≥ $GOAL_RATIO for the script) | Redis CPU µs/quote tickerd | Redis CPU µs/quote redis-benchmark |"
report "|---|---:|---:|---:|---:|---:|"
report "| Lua script + stream (EVALSHA) | $(fmt_int "$TD_SCRIPT") | $(fmt_int "$RB_SCRIPT") | $(ratio "$TD_SCRIPT" "$RB_SCRIPT") | $TD_SCRIPT_CPU | $RB_SCRIPT_CPU |"
report "| PUBLISH only (--memory-positions) | $(fmt_int "$TD_PUB") | $(fmt_int "$RB_PUB") | $(ratio "$TD_PUB" "$RB_PUB") | $TD_PUB_CPU | $RB_PUB_CPU |"
report ""

# ---- 2. resume of 1,000 messages from the stream ----------------------------------
start_tickerd td-a --feed none || bench_die "tickerd did not start"
A_PORT=$TD_PORT; A_PID=$TD_PID
start_tickerd td-b --feed none || bench_die "tickerd did not start"
B_PORT=$TD_PORT
bench_log "resume of 1000 messages from the stream, 50 tries"
RES=$(timeout 300 /usr/bin/python3 "$HERE/resume.py" --publisher "$A_PORT" --resumer "$B_PORT" --redis-port "$REDIS_PORT" \
        --messages 1000 --tries 50 2>"$BENCH_TMP/resume.err") || RES="n/a n/a n/a"
read -r R50 R99 RMAX <<<"$RES"
stop_tickerd; bench_stop "$A_PID"; bench_forget "$A_PID"
report "Resume of 1,000 messages from the Redis stream on an instance whose memory has none of them (bench/resume.py, 50 tries): p50 $R50 ms, **p99 $R99 ms**, max $RMAX ms (subscribe sent → recovery received after the 1,000th replayed quote)."
report ""
