#!/usr/bin/env bash
# bench/alpaca.sh <tickerd>: the upstream path against the sim path (issue 5).
#
#   1. Upstream: test/support/fake_alpaca.py --mode flood over TLS (a
#      throwaway CA from test/support/testca.sh), tickerd --feed alpaca
#      against it. Over BENCH_DURATION s after a warm-up: quotes received/s
#      (Δ quotes.received.quotes of /status) and tickerd's CPU time
#      (utime + stime of /proc/<pid>/stat), hence CPU µs per quote.
#   2. Sim: tickerd --feed sim --sim-rate R --symbols <the flood's symbol>,
#      R = the quotes/s the upstream run just measured (same load), measured
#      the same way.
#   3. Ratio upstream / sim of CPU µs per quote; goal ≤ GOAL_RATIO.
#
# Each run does 1 then 2, so the two paths see the machine in the same state;
# the figures are medians over BENCH_RUNS runs. Everything is on 127.0.0.1.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

TICKERD=${1:?usage: bench/alpaca.sh <path to tickerd>}
FAKE="$HERE/../test/support/fake_alpaca.py"
TESTCA="$HERE/../test/support/testca.sh"
# The issue's goal: the upstream path costs at most 1.3x the sim path per quote.
GOAL_RATIO=1.3
# Quotes per WebSocket message of the flood (the fake's default).
BENCH_FLOOD_BATCH=${BENCH_FLOOD_BATCH:-100}
# The flood streams quotes of the first subscribed symbol only: one symbol
# on both paths keeps the per-symbol work (sequence, store, channel) equal.
BENCH_SYMBOL=${BENCH_SYMBOL:-AAPL}
# Seconds of streaming before the interval starts: TLS handshake, auth,
# subscribe and the first allocations are not what is measured.
BENCH_WARMUP=${BENCH_WARMUP:-$([ "$BENCH_QUICK" = 1 ] && echo 1 || echo 2)}
# Below this share of a core a process is taken as not being the bottleneck.
SATURATED_PCT=90
APCA_KEY=testkey
APCA_SECRET=testsecret

bench_init alpaca
for tool in redis-server redis-cli curl openssl getconf; do
  command -v "$tool" >/dev/null || bench_die "$tool not installed (make deps)"
done
[ -x /usr/bin/python3 ] || bench_die "/usr/bin/python3 not installed"
/usr/bin/python3 -c 'import websockets' 2>/dev/null || bench_die "python3-websockets not installed (make deps)"
[ -f "$FAKE" ] || bench_die "missing $FAKE"
CLK_TCK=$(getconf CLK_TCK)

sh "$TESTCA" "$BENCH_TMP/ca" || bench_die "testca.sh failed"
start_redis

# ---- helpers ---------------------------------------------------------------------

# cpu_ticks <pid>: utime + stime in clock ticks. The fields are counted after
# the last ") ", since the command name may hold spaces or parentheses.
cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo ""; }

# status_fields <base url> <dotted path...>: the values from one GET /status,
# one per line, empty where absent.
status_fields() {
  curl -fsS --max-time 5 "$1/status" 2>/dev/null | /usr/bin/python3 -c '
import json, sys
try:
    doc = json.load(sys.stdin)
except ValueError:
    doc = {}
for path in sys.argv[1:]:
    v = doc
    for k in path.split("."):
        v = v.get(k) if isinstance(v, dict) else None
    print("" if v is None or isinstance(v, (dict, list)) else v)
' "${@:2}" 2>/dev/null || true
}

# pause <seconds>: sleep in the background and wait for it, so that a signal
# to this script is handled at once (bash defers traps for a foreground child).
pause() { sleep "$1" & wait $!; }

# start_fake <logname>: the fake server in flood mode over TLS; sets
# FAKE_PID and FAKE_PORT. No --exit-on-stdin-eof: a background job's stdin
# is /dev/null, and the traps stop the fake.
start_fake() {
  local name=$1 deadline=$((SECONDS + BENCH_START_TIMEOUT))
  bench_spawn "$name" /usr/bin/python3 "$FAKE" --cert "$BENCH_TMP/ca/server.pem" --key "$BENCH_TMP/ca/server.key" \
    --key-id "$APCA_KEY" --secret "$APCA_SECRET" --mode flood --flood-batch "$BENCH_FLOOD_BATCH"
  FAKE_PID=$BENCH_PID
  FAKE_PORT=""
  while ((SECONDS < deadline)); do
    bench_alive_or_die "$FAKE_PID" "$name"
    # The background job may not have created its log yet: not an error.
    FAKE_PORT=$(awk '$1 == "READY" { print $2; exit }' "$BENCH_TMP/$name.log" 2>/dev/null || true)
    [ -n "$FAKE_PORT" ] && return 0
    sleep 0.05
  done
  bench_die "$name printed no READY line within ${BENCH_START_TIMEOUT}s"
}

# wait_quotes <logname>: until tickerd has received a quote (upstream
# streaming, or the sim ticking); 1 if none within BENCH_START_TIMEOUT.
wait_quotes() {
  local name=$1 deadline=$((SECONDS + BENCH_START_TIMEOUT)) n
  while ((SECONDS < deadline)); do
    bench_alive_or_die "$TD_PID" "$name"
    n=$(status_field "$TD_URL" "$TD_FIELD_QUOTES_ACCEPTED")
    [ -n "$n" ] && ((n > 0)) && return 0
    sleep 0.1
  done
  bench_log "$name received no quote within ${BENCH_START_TIMEOUT}s; its log:"
  tail -n 20 "$BENCH_TMP/$name.log" >&2 2>/dev/null
  return 1
}

# measure <other pid or ""> : over BENCH_DURATION s, of the tickerd of the
# last start_tickerd. Sets M_QPS (quotes received/s), M_PUB (published/s),
# M_CPU (tickerd % of one core), M_US (tickerd CPU µs per quote), M_OTHER
# (% of one core of the other process), M_REDIS (redis-server's %).
measure() {
  local other=$1 s0 s1 t0 t1 c0 c1 o0=0 o1=0 r0 r1
  c0=$(cpu_ticks "$TD_PID"); r0=$(cpu_ticks "$REDIS_PID")
  [ -n "$other" ] && o0=$(cpu_ticks "$other")
  t0=$(now_s)
  mapfile -t s0 < <(status_fields "$TD_URL" "$TD_FIELD_QUOTES_ACCEPTED" "$TD_FIELD_REDIS_PUBLISHED")
  pause "$BENCH_DURATION"
  mapfile -t s1 < <(status_fields "$TD_URL" "$TD_FIELD_QUOTES_ACCEPTED" "$TD_FIELD_REDIS_PUBLISHED")
  t1=$(now_s)
  c1=$(cpu_ticks "$TD_PID"); r1=$(cpu_ticks "$REDIS_PID")
  [ -n "$other" ] && o1=$(cpu_ticks "$other")
  read -r M_QPS M_PUB M_CPU M_US M_OTHER M_REDIS < <(awk \
    -v q0="${s0[0]:-}" -v q1="${s1[0]:-}" -v p0="${s0[1]:-}" -v p1="${s1[1]:-}" \
    -v c0="$c0" -v c1="$c1" -v o0="$o0" -v o1="$o1" -v r0="$r0" -v r1="$r1" \
    -v t0="$t0" -v t1="$t1" -v hz="$CLK_TCK" 'BEGIN {
      dt = t1 - t0; dq = q1 - q0
      if (q0 == "" || q1 == "" || c0 == "" || c1 == "" || dt <= 0) { print "- - - - - -"; exit }
      pub = "-"; if (p0 != "" && p1 != "") pub = sprintf("%.0f", (p1 - p0) / dt)
      us = "-"; if (dq > 0) us = sprintf("%.3f", 1e6 * (c1 - c0) / hz / dq)
      printf "%.0f %s %.1f %s %.1f %.1f\n", dq / dt, pub, 100 * (c1 - c0) / hz / dt, us,
        100 * (o1 - o0) / hz / dt, 100 * (r1 - r0) / hz / dt }')
}

# keep <value>: the value, or nothing for "-" (median skips those).
keep() { [ "$1" = - ] || printf '%s\n' "$1"; }

# ---- runs ------------------------------------------------------------------------

UP_QPS=(); UP_PUB=(); UP_CPU=(); UP_US=(); UP_FAKE=(); UP_REDIS=()
SIM_QPS=(); SIM_PUB=(); SIM_CPU=(); SIM_US=(); SIM_REDIS=(); SIM_RATES=(); RATIOS=()
FAILED=""
for ((run = 1; run <= BENCH_RUNS; run++)); do
  # -- 1. upstream
  start_fake "fake-$run"
  bench_log "upstream: fake flood (batch $BENCH_FLOOD_BATCH) on port $FAKE_PORT, tickerd --feed alpaca, ${BENCH_DURATION}s (run $run/$BENCH_RUNS)"
  if ! APCA_API_KEY_ID=$APCA_KEY APCA_API_SECRET_KEY=$APCA_SECRET start_tickerd "tickerd-alpaca-$run" \
         --feed alpaca --alpaca-url "wss://127.0.0.1:$FAKE_PORT/v2/test" --ca-file "$BENCH_TMP/ca/ca.pem" \
         --symbols "$BENCH_SYMBOL" --alpaca-channels quotes; then
    FAILED="tickerd --feed alpaca did not start (run $run)"
    break
  fi
  if ! wait_quotes "tickerd-alpaca-$run"; then
    FAILED="tickerd --feed alpaca received no quote from the fake server (run $run); its log: $(tail -n 3 "$BENCH_TMP/tickerd-alpaca-$run.log" | tr '\n' ' ')"
    break
  fi
  pause "$BENCH_WARMUP"
  measure "$FAKE_PID"
  bench_alive_or_die "$TD_PID" "tickerd-alpaca-$run"
  bench_log "upstream: $M_QPS quotes/s, published $M_PUB/s, tickerd ${M_CPU}% CPU, $M_US µs/quote, fake ${M_OTHER}% CPU, redis ${M_REDIS}%"
  UP_STATE=$(status_field "$TD_URL" upstream.data.state)
  stop_tickerd
  bench_stop "$FAKE_PID"; bench_forget "$FAKE_PID"
  UP_QPS+=("$M_QPS"); UP_PUB+=("$M_PUB"); UP_CPU+=("$M_CPU"); UP_US+=("$M_US"); UP_FAKE+=("$M_OTHER"); UP_REDIS+=("$M_REDIS")
  RUN_US_UP=$M_US
  RATE=$M_QPS
  if [ "$RATE" = - ] || ((RATE <= 0)); then
    FAILED="the upstream path measured no quotes (run $run, upstream state ${UP_STATE:-?})"
    break
  fi

  # -- 2. sim at the same rate
  bench_log "sim: tickerd --feed sim --sim-rate $RATE --symbols $BENCH_SYMBOL, ${BENCH_DURATION}s (run $run/$BENCH_RUNS)"
  if ! start_tickerd "tickerd-sim-$run" --feed sim --sim-rate "$RATE" --symbols "$BENCH_SYMBOL"; then
    FAILED="tickerd --feed sim did not start (run $run)"
    break
  fi
  if ! wait_quotes "tickerd-sim-$run"; then
    FAILED="tickerd --feed sim produced no quote (run $run)"
    break
  fi
  pause "$BENCH_WARMUP"
  measure ""
  bench_alive_or_die "$TD_PID" "tickerd-sim-$run"
  SHED=$(status_field "$TD_URL" quotes.sim.shed)
  bench_log "sim: $M_QPS quotes/s (asked $RATE, shed ${SHED:-?}), published $M_PUB/s, tickerd ${M_CPU}% CPU, $M_US µs/quote, redis ${M_REDIS}%"
  stop_tickerd
  SIM_QPS+=("$M_QPS"); SIM_PUB+=("$M_PUB"); SIM_CPU+=("$M_CPU"); SIM_US+=("$M_US"); SIM_REDIS+=("$M_REDIS"); SIM_RATES+=("$RATE")
  if [ "$M_US" = - ] || [ "$RUN_US_UP" = - ]; then RATIOS+=(-); else RATIOS+=("$(ratio "$RUN_US_UP" "$M_US")"); fi
done

# ---- report ----------------------------------------------------------------------

med() { median "$@" | sed 's/^$/n\/a/'; }
# medof <values...>: the median of those that are numbers.
medof() {
  local v=() x
  for x in "$@"; do v+=("$(keep "$x")"); done
  med "${v[@]}"
}

report "## Upstream path: fake Alpaca → tickerd (TLS + WebSocket + parse + publish) vs the sim feed"
report ""
report "Upstream: \`test/support/fake_alpaca.py --mode flood --flood-batch $BENCH_FLOOD_BATCH\` over TLS (test CA) streaming quotes of $BENCH_SYMBOL as fast as tickerd reads, tickerd \`--feed alpaca --symbols $BENCH_SYMBOL\`."
report "Sim: tickerd \`--feed sim --symbols $BENCH_SYMBOL --sim-rate R\`, R = the quotes/s the upstream run just before it measured."
report "Each over ${BENCH_DURATION}s after ${BENCH_WARMUP}s of warm-up; quotes/s = Δ\`$TD_FIELD_QUOTES_ACCEPTED\` / Δt, CPU = Δ(utime + stime) of /proc/<pid>/stat (CLK_TCK $CLK_TCK); CPU % is of one core; median of ${#RATIOS[@]} run(s), the two paths interleaved."
report ""
if ((${#RATIOS[@]} == 0)); then
  report "**No complete run**: ${FAILED:-unknown reason}."
  report ""
  exit 1
fi
[ -n "$FAILED" ] && { report "**Stopped early**: $FAILED. Figures are from the runs before."; report ""; }

US_UP=$(medof "${UP_US[@]}")
US_SIM=$(medof "${SIM_US[@]}")
R=$(ratio "$US_UP" "$US_SIM")
CPU_UP=$(medof "${UP_CPU[@]}")
FAKE_CPU=$(medof "${UP_FAKE[@]}")
report "| path | quotes/s | published/s | tickerd CPU % | CPU µs per quote | fake server CPU % | redis-server CPU % |"
report "|---|---:|---:|---:|---:|---:|---:|"
report "| upstream (TLS + WebSocket + parse + publish) | $(fmt_int "$(medof "${UP_QPS[@]}")") | $(fmt_int "$(medof "${UP_PUB[@]}")") | $CPU_UP | $US_UP | $FAKE_CPU | $(medof "${UP_REDIS[@]}") |"
report "| sim (generate + parse + publish) at the same rate | $(fmt_int "$(medof "${SIM_QPS[@]}")") | $(fmt_int "$(medof "${SIM_PUB[@]}")") | $(medof "${SIM_CPU[@]}") | $US_SIM | — | $(medof "${SIM_REDIS[@]}") |"
report ""
report "**Upstream / sim, CPU µs per quote: ${R}×** (goal ≤ ${GOAL_RATIO}×: $(verdict "$R" "<=" "$GOAL_RATIO")). Per run: $(printf '%s× ' "${RATIOS[@]}")(sim rates asked: $(printf '%s ' "${SIM_RATES[@]}")quotes/s)."
report ""
# Who limited the upstream quotes/s: the per-quote cost of tickerd holds
# whatever the answer, the quotes/s figure does not.
BOTTLENECK=$(awk -v td="$CPU_UP" -v fk="$FAKE_CPU" -v sat="$SATURATED_PCT" -v n="$(nproc)" 'BEGIN {
  if (td == "n/a") { print "n/a"; exit }
  if (td + 0 >= sat) print "tickerd used " td "% of a core: it was the bottleneck, so the upstream quotes/s is its own ceiling on this machine."
  else if (fk + 0 >= sat) print "tickerd used " td "% of a core, the Python fake server " fk "%: the fake was the bottleneck, so the upstream quotes/s is the fake server'"'"'s limit, not tickerd'"'"'s. tickerd'"'"'s CPU µs per quote is still valid."
  else print "Neither tickerd (" td "%) nor the fake server (" fk "%) used a full core: with redis-server they shared the machine'"'"'s " n " CPU(s) (and other load, see the load average), so the upstream quotes/s is a limit of this setup, not tickerd'"'"'s ceiling. tickerd'"'"'s CPU µs per quote is still valid."
}')
report "$BOTTLENECK"
report ""
SIM_QPS_MED=$(medof "${SIM_QPS[@]}")
SIM_ASKED_MED=$(med "${SIM_RATES[@]}")
if [ "$(verdict "$SIM_QPS_MED" "<" "$(awk -v r="$SIM_ASKED_MED" 'BEGIN { print 0.95 * r }')")" = met ]; then
  report "The sim feed delivered $(fmt_int "$SIM_QPS_MED") of the $(fmt_int "$SIM_ASKED_MED") quotes/s asked (median): tickerd could not generate that rate (\`quotes.sim.shed\` counts only what a single tick sheds, not the time the loop was too busy to tick), so the sim path ran at a lower load than the upstream path."
  report ""
fi
report "Published/s below quotes/s means the publisher conflated (kept the newest quote per channel while its Redis pipeline was full): with one symbol that happens in bursts. A path that publishes fewer messages does less work per quote, so conflation on the sim path makes the ratio above larger, not smaller."
report ""
report "The sim path's cost includes generating the quotes (random walk + JSON), which the upstream path leaves to the fake server; the upstream path's includes TLS decryption and WebSocket framing. Both parse the same Alpaca JSON arrays and publish one message per quote."
report ""
[ -z "$FAILED" ] || exit 1
