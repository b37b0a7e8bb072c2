#!/usr/bin/env bash
# bench/pipeline.sh <tickerd>: the quote pipeline.
#
#   1. Ceiling: redis-benchmark PUBLISH of a typical quote payload, pipelined
#      64 deep, with its default 50 connections and with one connection (what
#      tickerd uses). redis-benchmark 7.0 has no "publish" test (-t publish
#      runs nothing), so the command is given explicitly.
#   2. Throughput: tickerd --feed none, wrk POSTing batches of
#      BENCH_BATCH quotes to /quotes; published/s from the /status counter
#      over the measured interval (replies from Redis, not requests sent).
#   3. Latency: tickerd --feed sim --sim-rate 10000 and build/bench/sub_latency
#      (PSUBSCRIBE quotes:*), now - t of every message.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

TICKERD=${1:?usage: bench/pipeline.sh <path to tickerd>}
SUB_LATENCY=${SUB_LATENCY:-$(dirname "$TICKERD")/bench/sub_latency}
GOAL_RATIO=0.7
GOAL_P99_US=1000
BENCH_BATCH=${BENCH_BATCH:-1000}
BENCH_SIM_RATE=${BENCH_SIM_RATE:-10000}
# Symbols of the POSTed batches: enough that per-symbol state is exercised.
BENCH_SYMBOLS=${BENCH_SYMBOLS:-50}
# Concurrent POSTs: enough to keep a batch queued while tickerd publishes the last.
BENCH_POST_CONNS=${BENCH_POST_CONNS:-4}
# The ceiling swings by a third between consecutive runs on this shared
# machine: five interleaved runs in a full run.
if [ "$BENCH_QUICK" = 1 ]; then PIPE_RUNS=${BENCH_RUNS:-1}; else PIPE_RUNS=${BENCH_PIPE_RUNS:-5}; fi
PAYLOAD='{"T":"q","S":"AAPL","bx":"V","bp":189.5,"bs":3,"ax":"V","ap":189.52,"as":1,"c":["R"],"z":"C","t":"2026-11-21T20:00:00.123456789Z","seq":42,"epoch":"9f3a0c1d2e4b5a69"}'

bench_init pipeline
for tool in wrk redis-server redis-benchmark redis-cli curl; do
  command -v "$tool" >/dev/null || bench_die "$tool not installed (make deps)"
done
start_redis

# ---- 1. ceiling ------------------------------------------------------------------

# redis_publish_rps <clients>: PUBLISH requests/s of one redis-benchmark run.
redis_publish_rps() {
  timeout 120 redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -c "$1" -P 64 -n "$BENCH_PUBLISH_N" -q \
      PUBLISH quotes:AAPL "$PAYLOAD" 2>/dev/null \
    | tr '\r' '\n' | awk '/requests per second/ { v = $0 } END {
        sub(/ requests per second.*/, "", v); sub(/.*: /, "", v); print v }'
}
CEIL50=(); CEIL1=()
# One ceiling measurement; the runs interleave with tickerd's, so that a
# change of the shared machine's load hits both sides of the ratio.
measure_ceiling() { # <run>
  bench_log "redis-benchmark PUBLISH -P 64 -n $BENCH_PUBLISH_N (run $1/$PIPE_RUNS)"
  CEIL50+=("$(redis_publish_rps 50)")
  CEIL1+=("$(redis_publish_rps 1)")
}
# ---- 2. throughput through tickerd --------------------------------------------------

BODY="$BENCH_TMP/quotes.json"
make_quote_body "$BENCH_BATCH" "$BENCH_SYMBOLS" "$BODY"
make_post_lua "$BODY" "$BENCH_TMP/post.lua"

report "## Quote pipeline"
report ""
report "Payload: a ${#PAYLOAD}-byte quote as tickerd publishes it."
report ""
report "### Throughput: POST /quotes → Redis"
report ""
TD_POST_STARTED=0
if ! start_tickerd tickerd-post --feed none; then
  report "Skipped: tickerd did not start."
  THROUGHPUT_OK=0
else
  TD_POST_STARTED=1
  THROUGHPUT_OK=1
  CODE=$(curl -sS -o "$BENCH_TMP/post-reply.json" -w '%{http_code}' --max-time 10 -X POST \
           -H 'Content-Type: application/json' --data-binary "@$BODY" "$TD_URL/quotes" || true)
  if [ "$CODE" != 202 ]; then
    report "Skipped: POST /quotes answered HTTP $CODE ($(head -c 200 "$BENCH_TMP/post-reply.json" 2>/dev/null)), not 202."
    THROUGHPUT_OK=0
  elif [ -z "$(status_field "$TD_URL" "$TD_FIELD_REDIS_PUBLISHED")" ]; then
    report "Skipped: /status has no \`$TD_FIELD_REDIS_PUBLISHED\` field (adjust TD_FIELD_REDIS_PUBLISHED in bench/lib.sh)."
    THROUGHPUT_OK=0
  fi
fi
PUB_RATES=(); ACC_RATES=()
if ! ((THROUGHPUT_OK)); then
  for ((run = 1; run <= PIPE_RUNS; run++)); do measure_ceiling "$run"; done
fi
CEIL=""; CEIL_1=""
report_ceiling() {
  CEIL=$(median "${CEIL50[@]}")
  CEIL_1=$(median "${CEIL1[@]}")
  report "| ceiling: redis-benchmark PUBLISH -P 64 -n $BENCH_PUBLISH_N | publishes/s (median of $PIPE_RUNS) | each run |"
  report "|---|---:|---|"
  report "| 50 connections (redis-benchmark default) | $(fmt_int "$CEIL") | ${CEIL50[*]} |"
  report "| 1 connection | $(fmt_int "$CEIL_1") | ${CEIL1[*]} |"
  report ""
}
if ((THROUGHPUT_OK)); then
  for ((run = 1; run <= PIPE_RUNS; run++)); do
    measure_ceiling "$run"
    bench_log "wrk POST /quotes x$BENCH_BATCH for ${BENCH_DURATION}s (run $run/$PIPE_RUNS)"
    # Warm up 1 s, count over BENCH_DURATION s while wrk still runs, so that
    # neither the ramp-up nor the drain after wrk stops is in the interval.
    bench_spawn wrk-post wrk -t1 -c"$BENCH_POST_CONNS" -d"$((BENCH_DURATION + 2))s" --timeout 10s -s "$BENCH_TMP/post.lua" "$TD_URL/quotes"
    WRK_PID=$BENCH_PID
    sleep 1
    P0=$(status_field "$TD_URL" "$TD_FIELD_REDIS_PUBLISHED"); A0=$(status_field "$TD_URL" "$TD_FIELD_QUOTES_ACCEPTED"); T0=$(now_s)
    sleep "$BENCH_DURATION"
    P1=$(status_field "$TD_URL" "$TD_FIELD_REDIS_PUBLISHED"); A1=$(status_field "$TD_URL" "$TD_FIELD_QUOTES_ACCEPTED"); T1=$(now_s)
    wait "$WRK_PID" || true; bench_forget "$WRK_PID"
    bench_alive_or_die "$TD_PID" tickerd-post
    PUB_RATES+=("$(awk -v a="$P0" -v b="$P1" -v t0="$T0" -v t1="$T1" 'BEGIN { printf "%.0f\n", (b - a) / (t1 - t0) }')")
    if [ -n "$A0" ] && [ -n "$A1" ]; then
      ACC_RATES+=("$(awk -v a="$A0" -v b="$A1" -v t0="$T0" -v t1="$T1" 'BEGIN { printf "%.0f\n", (b - a) / (t1 - t0) }')")
    fi
    cp "$BENCH_TMP/wrk-post.log" "$BENCH_TMP/wrk-post-$run.txt"
  done
  report_ceiling
  PUB=$(median "${PUB_RATES[@]}")
  ACC=$( ((${#ACC_RATES[@]})) && median "${ACC_RATES[@]}" || echo "")
  R=$(ratio "$PUB" "$CEIL")
  R1=$(ratio "$PUB" "$CEIL_1")
  TD_RSS=$(rss_kb "$TD_PID")
  report "wrk -t1 -c$BENCH_POST_CONNS POSTing $BENCH_BATCH quotes per request ($(wc -c <"$BODY") bytes, $BENCH_SYMBOLS symbols); rate = Δ\`$TD_FIELD_REDIS_PUBLISHED\` / Δt over ${BENCH_DURATION}s while wrk runs; median of $PIPE_RUNS, each run right after a ceiling run; published/s of each run: ${PUB_RATES[*]}."
  report ""
  report "| quotes accepted/s | published/s (Redis replies) | ÷ ceiling (50 conn) | ÷ ceiling (1 conn) | goal | | tickerd RSS |"
  report "|---:|---:|---:|---:|---:|---|---:|"
  report "| $(fmt_int "$ACC") | $(fmt_int "$PUB") | $R | $R1 | ≥ $GOAL_RATIO | $(verdict "$R" ">=" "$GOAL_RATIO") | $(fmt_mb "$TD_RSS") |"
  report ""
  report "Publisher totals at the end: conflated $(status_field "$TD_URL" "$TD_FIELD_REDIS_CONFLATED" | sed 's/^$/n\/a/'), dropped $(status_field "$TD_URL" "$TD_FIELD_REDIS_DROPPED" | sed 's/^$/n\/a/') (quotes accepted but replaced or dropped before Redis: published < accepted)."
  report ""
  report "wrk (last run): $(grep -E 'Requests/sec|Non-2xx|Socket errors' "$BENCH_TMP/wrk-post-$PIPE_RUNS.txt" | tr -s ' ' | paste -sd ';' -)"
  report ""
fi
((THROUGHPUT_OK)) || { report_ceiling; report ""; }
((TD_POST_STARTED)) && stop_tickerd

# ---- 3. latency ---------------------------------------------------------------------

report "### Latency: sim feed → Redis → subscriber"
report ""
if [ ! -x "$SUB_LATENCY" ]; then
  report "Skipped: $SUB_LATENCY not built (make build/bench/sub_latency)."
  exit 0
fi
if ! start_tickerd tickerd-sim --feed sim --sim-rate "$BENCH_SIM_RATE"; then
  report "Skipped: tickerd did not start."
  exit 0
fi
P50S=(); P99S=(); MAXS=(); COUNTS=(); RATES=()
for ((run = 1; run <= BENCH_RUNS; run++)); do
  bench_log "sub_latency for ${BENCH_DURATION}s at $BENCH_SIM_RATE quotes/s (run $run/$BENCH_RUNS)"
  LINE=$(timeout $((BENCH_DURATION + 10)) "$SUB_LATENCY" -p "$REDIS_PORT" -P 'quotes:*' -T "$BENCH_DURATION" || true)
  bench_log "sub_latency: $LINE"
  field() { printf '%s\n' "$LINE" | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k { print $2 }'; }
  COUNTS+=("$(field count)")
  P50S+=("$(field p50_us)"); P99S+=("$(field p99_us)"); MAXS+=("$(field max_us)")
  RATES+=("$(awk -v c="$(field count)" -v s="$(field seconds)" 'BEGIN { if (s > 0) printf "%.0f\n", c / s }')")
  LAST_LINE=$LINE
done
bench_alive_or_die "$TD_PID" tickerd-sim
P99=$(median "${P99S[@]}")
report "tickerd --feed sim --sim-rate $BENCH_SIM_RATE; sub_latency PSUBSCRIBE quotes:* for ${BENCH_DURATION}s; latency = receive time − payload \`t\` (CLOCK_REALTIME on both sides); median of $BENCH_RUNS."
report ""
if [ -z "$P99" ]; then
  report "**No message reached the subscriber** (does the sim feed publish to Redis yet?)."
else
  report "| messages/s received | p50 | p99 | max | goal p99 | |"
  report "|---:|---:|---:|---:|---:|---|"
  report "| $(fmt_int "$(median "${RATES[@]}")") | $(median "${P50S[@]}") µs | $P99 µs | $(median "${MAXS[@]}") µs | < $GOAL_P99_US µs | $(verdict "$P99" "<" "$GOAL_P99_US") |"
fi
report ""
report "sub_latency (last run): \`${LAST_LINE:-no output}\`"
report ""
