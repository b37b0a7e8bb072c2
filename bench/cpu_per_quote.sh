#!/usr/bin/env bash
# bench/cpu_per_quote.sh <tickerd A> [<tickerd B>]: tickerd's CPU time per
# published quote under the pipeline part's load (wrk -t1 -c4 POSTing
# 1,000-quote batches over 50 symbols), for one build or two alternating
# (A B A B ...). On this shared machine wall-clock rates drift by tens of
# percent between minutes; CPU per quote of two builds measured back to back
# is how a change to the quote path is told apart from that drift. Not part
# of `make bench`: a tool for working on the pipeline (docs/perf-pipe.md).
#
#   BENCH_AB_ROUNDS=4  runs of each build
#   BENCH_DURATION=4   seconds measured per run, after 1.5 s of warm-up
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

A=${1:?usage: bench/cpu_per_quote.sh <tickerd A> [<tickerd B>]}
B=${2:-}
ROUNDS=${BENCH_AB_ROUNDS:-4}
DURATION=${BENCH_DURATION_AB:-${BENCH_DURATION:-4}}
WARMUP_S=1.5

bench_init cpu-per-quote
for tool in wrk redis-server redis-cli curl; do
  command -v "$tool" >/dev/null || bench_die "$tool not installed (make deps)"
done
start_redis
make_quote_body 1000 50 "$BENCH_TMP/quotes.json"
make_post_lua "$BENCH_TMP/quotes.json" "$BENCH_TMP/post.lua"

# utime stime (clock ticks) of a process
cpu_ticks() { awk '{ print $14, $15 }' "/proc/$1/stat"; }

# one_run <label> <tickerd>: prints "<label> rate user_us sys_us redis_us"
one_run() {
  local label=$1
  TICKERD=$2
  start_tickerd "tickerd-$label" --feed none || bench_die "$2 did not start"
  bench_spawn wrk-ab wrk -t1 -c4 -d"$(awk -v d="$DURATION" -v w="$WARMUP_S" 'BEGIN { printf "%d", d + 2 * w + 1 }')s" \
    --timeout 10s -s "$BENCH_TMP/post.lua" "$TD_URL/quotes"
  local wrk_pid=$BENCH_PID
  sleep "$WARMUP_S"
  local p0 t0 r0 s0 p1 t1 r1 s1
  p0=$(status_field "$TD_URL" "$TD_FIELD_REDIS_PUBLISHED"); t0=$(cpu_ticks "$TD_PID"); r0=$(cpu_ticks "$REDIS_PID"); s0=$(now_s)
  sleep "$DURATION"
  p1=$(status_field "$TD_URL" "$TD_FIELD_REDIS_PUBLISHED"); t1=$(cpu_ticks "$TD_PID"); r1=$(cpu_ticks "$REDIS_PID"); s1=$(now_s)
  bench_stop "$wrk_pid"; bench_forget "$wrk_pid"
  stop_tickerd
  awk -v l="$label" -v p0="$p0" -v p1="$p1" -v s0="$s0" -v s1="$s1" -v hz="$(getconf CLK_TCK)" \
      -v t0="$t0" -v t1="$t1" -v r0="$r0" -v r1="$r1" 'BEGIN {
    split(t0, a, " "); split(t1, b, " "); split(r0, c, " "); split(r1, d, " ")
    n = p1 - p0; if (n <= 0) { print l, 0, 0, 0, 0; exit }
    us = 1e6 / hz / n
    printf "%s %.0f %.3f %.3f %.3f\n", l, n / (s1 - s0), (b[1] - a[1]) * us, (b[2] - a[2]) * us, (d[1] + d[2] - c[1] - c[2]) * us
  }'
}

RESULTS=()
for ((i = 1; i <= ROUNDS; i++)); do
  bench_log "round $i/$ROUNDS"
  RESULTS+=("$(one_run A "$A")")
  [ -n "$B" ] && RESULTS+=("$(one_run B "$B")")
done

echo "build  published/s  tickerd user us/quote  sys us/quote  redis-server us/PUBLISH"
printf '%s\n' "${RESULTS[@]}" | awk '{ printf "%-5s  %11s  %21s  %12s  %23s\n", $1, $2, $3, $4, $5 }'
for l in A B; do
  [ "$l" = B ] && [ -z "$B" ] && break
  printf '%s\n' "${RESULTS[@]}" | awk -v l="$l" '$1 == l { r[n] = $2; u[n] = $3; s[n] = $4; d[n] = $5; n++ }
    function med(v, n,   i, j, t) { for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
      return n % 2 ? v[(n - 1) / 2] : (v[n / 2 - 1] + v[n / 2]) / 2 }
    END { printf "median %s: %.0f published/s, user %.3f + sys %.3f us/quote, redis %.3f us/PUBLISH\n", l, med(r, n), med(u, n), med(s, n), med(d, n) }'
done
