#!/usr/bin/env bash
# bench/candles.sh <tickerd>: the cost of candles (issue 17), in one run.
#
# CPU per trade: tickerd --feed none, POST /quotes at BENCH_CANDLE_RATE
# (100,000) trades/s over BENCH_CANDLE_SYMBOLS (1,000) symbols for
# BENCH_DURATION seconds, once with --candles true (all six default
# timeframes) and once with --candles false, alternating, BENCH_RUNS times;
# tickerd's CPU time over the trades accepted: /proc/<pid>/schedstat's
# nanoseconds on a CPU (stat's clock ticks are 10 ms: over a 6 s run at
# ~12 % of a core, a tick is 1.4 % of the figure, a sixth of the goal).
# Goal: candles on costs at most 10 % more per trade. The verdict is the
# median of the on/off pairs' ratios with its 95 % interval
# (bench/pair_stats.py): met only when the whole interval is under the goal.
# BENCH_CANDLE_PAIRED=1: each run starts both servers, each with its own
# redis-server, and loads them at the same time, so that both see the same
# machine: on a shared machine the CPU per trade of one binary moves by
# tens of percent between runs a minute apart, more than the goal.
# Memory per symbol: build/bench/candle_mem (every default timeframe full
# with 300 bars, 1,000 symbols). Then, when valgrind is installed (and
# BENCH_CANDLE_CALLGRIND is not 0), the instructions per trade
# (bench/candle_callgrind.sh).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
TICKERD=${1:?usage: bench/candles.sh <tickerd>}
RATE=${BENCH_CANDLE_RATE:-100000}
SYMBOLS=${BENCH_CANDLE_SYMBOLS:-1000}
GOAL_PCT=10
PAIRED=${BENCH_CANDLE_PAIRED:-0}
bench_init candles
start_redis
if [ "$PAIRED" = 1 ]; then
  REDIS_ON_PORT=$REDIS_PORT
  start_redis
  REDIS_OFF_PORT=$REDIS_PORT
fi

cpu_ns() { awk '{ print $1 }' "/proc/$1/schedstat"; }

# measure <on|off>: prints "<µs per trade> <trades/s achieved>"
measure() {
  start_tickerd "tickerd-candles-$1" --feed none --candles "$([ "$1" = on ] && echo true || echo false)" || exit 1
  # a short warm-up: symbols interned, buffers pooled
  /usr/bin/python3 "$HERE/candle_load.py" --port "$TD_PORT" --rate "$RATE" --symbols "$SYMBOLS" --seconds 1 >/dev/null
  local c0 c1 out
  c0=$(cpu_ns "$TD_PID")
  out=$(/usr/bin/python3 "$HERE/candle_load.py" --port "$TD_PORT" --rate "$RATE" --symbols "$SYMBOLS" --seconds "$BENCH_DURATION")
  c1=$(cpu_ns "$TD_PID")
  stop_tickerd
  awk -v c=$((c1 - c0)) -v n="${out% *}" -v s="${out#* }" \
    'BEGIN { printf "%.3f %.0f\n", c / 1e3 / n, n / s }'
}

# measure_pair: both at once, each on its own Redis; prints
# "<on µs per trade> <on trades/s> <off µs per trade> <off trades/s>"
measure_pair() {
  REDIS_PORT=$REDIS_ON_PORT start_tickerd tickerd-candles-on --feed none --candles true || exit 1
  local on_pid=$TD_PID on_port=$TD_PORT
  REDIS_PORT=$REDIS_OFF_PORT start_tickerd tickerd-candles-off --feed none --candles false || exit 1
  local off_pid=$TD_PID off_port=$TD_PORT c0n c0f c1n c1f
  local load=(/usr/bin/python3 "$HERE/candle_load.py" --rate "$RATE" --symbols "$SYMBOLS")
  # (wait for the generators by pid: a bare wait would wait for the servers)
  local g1 g2
  "${load[@]}" --port "$on_port" --seconds 1 >/dev/null &
  g1=$!
  "${load[@]}" --port "$off_port" --seconds 1 >/dev/null &
  g2=$!
  wait "$g1" "$g2"
  c0n=$(cpu_ns "$on_pid"); c0f=$(cpu_ns "$off_pid")
  "${load[@]}" --port "$on_port" --seconds "$BENCH_DURATION" >"$BENCH_TMP/load.on" &
  g1=$!
  "${load[@]}" --port "$off_port" --seconds "$BENCH_DURATION" >"$BENCH_TMP/load.off" &
  g2=$!
  wait "$g1" "$g2"
  c1n=$(cpu_ns "$on_pid"); c1f=$(cpu_ns "$off_pid")
  bench_stop "$on_pid"; bench_forget "$on_pid"
  bench_stop "$off_pid"; bench_forget "$off_pid"
  read -r nn sn <"$BENCH_TMP/load.on"
  read -r nf sf <"$BENCH_TMP/load.off"
  awk -v cn=$((c1n - c0n)) -v cf=$((c1f - c0f)) -v nn="$nn" -v sn="$sn" -v nf="$nf" -v sf="$sf" \
    'BEGIN { printf "%.3f %.0f %.3f %.0f\n", cn / 1e3 / nn, nn / sn, cf / 1e3 / nf, nf / sf }'
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
ON=(); OFF=(); RATES=()
for ((run = 1; run <= BENCH_RUNS; run++)); do
  if [ "$PAIRED" = 1 ]; then
    bench_log "candles on and off at once, ${BENCH_DURATION}s at $RATE trades/s each over $SYMBOLS symbols (run $run/$BENCH_RUNS)"
    read -r us_on got_on us_off got_off < <(measure_pair)
    ON+=("$us_on"); OFF+=("$us_off"); RATES+=("$got_on" "$got_off")
    continue
  fi
  for mode in on off; do
    bench_log "candles $mode, ${BENCH_DURATION}s at $RATE trades/s over $SYMBOLS symbols (run $run/$BENCH_RUNS)"
    read -r us got < <(measure "$mode")
    if [ "$mode" = on ]; then ON+=("$us"); else OFF+=("$us"); fi
    RATES+=("$got")
  done
done
MON=$(median "${ON[@]}"); MOFF=$(median "${OFF[@]}")
PCT=$(awk -v a="$MON" -v b="$MOFF" 'BEGIN { printf "%.1f\n", (a / b - 1) * 100 }')
# The verdict is the pairs' (bench/pair_stats.py): their median and its 95 %
# interval, which says whether the runs can tell the goal at all.
read -r PAIR_MED PAIR_LOW PAIR_HIGH PAIR_N PAIR_VERDICT < <(IFS=,; /usr/bin/python3 "$HERE/pair_stats.py" \
  "$GOAL_PCT" "${ON[*]}" "${OFF[*]}")
MEM=$("$(dirname "$TICKERD")/bench/candle_mem" "$SYMBOLS")
# Instructions per trade (bench/candle_callgrind.sh), which the machine's
# load does not move: on a shared machine the wall clock above moves by more
# than the goal between runs.
CG="valgrind is not installed: not counted"
if [ "${BENCH_CANDLE_CALLGRIND:-1}" = 0 ]; then
  CG="not counted (BENCH_CANDLE_CALLGRIND=0)"
elif command -v valgrind >/dev/null; then
  bench_log "instructions per trade under callgrind (bench/candle_callgrind.sh)"
  CG=$("$HERE/candle_callgrind.sh" "$TICKERD" 2>/dev/null) || CG="bench/candle_callgrind.sh failed"
fi

{
  echo "## Candles (issue 17)"
  echo ""
  echo "tickerd \`--feed none\`, POST /quotes of trades at $RATE/s over $SYMBOLS symbols (bench/candle_load.py), ${BENCH_DURATION}s per run, candles on (all six default timeframes) and off $([ "$PAIRED" = 1 ] && echo "at the same time, each with its own redis-server (trades/s: on, off per run)" || echo alternating), median of $BENCH_RUNS; trades/s achieved: $(printf '%s ' "${RATES[@]}"); load average at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg). Candles cost more per trade at lower rates (bars are published per second): compare runs at the rate asked."
  echo ""
  echo "| | tickerd CPU µs per trade |"
  echo "|---|---|"
  echo "| candles on | $MON (runs: ${ON[*]}) |"
  echo "| candles off | $MOFF (runs: ${OFF[*]}) |"
  echo ""
  echo "The medians above: on costs ${PCT} % more than off. Each \"on\" over the \"off\" measured $([ "$PAIRED" = 1 ] && echo "at the same time" || echo "right after it"): **candles cost ${PAIR_MED} % more CPU per trade** (median of $PAIR_N pairs; 95 % interval ${PAIR_LOW} to ${PAIR_HIGH} %, bench/pair_stats.py). Goal ≤ ${GOAL_PCT} %: **$PAIR_VERDICT**$(case "$PAIR_VERDICT" in "at the goal") echo " (the interval holds it: more runs, BENCH_RUNS, would tell)" ;; "too few pairs") echo " (BENCH_RUNS of 6 or more give an interval)" ;; esac)."
  echo ""
  echo "Instructions (bench/candle_callgrind.sh, 3,000 trades/s over 30 symbols: the same trades per symbol per second):"
  echo ""
  echo '```'
  echo "$CG"
  echo '```'
  echo ""
  echo "Memory: $MEM"
} >"${BENCH_SECTION:-/dev/stdout}"   # alone: to the terminal
