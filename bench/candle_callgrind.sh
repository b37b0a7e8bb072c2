#!/usr/bin/env bash
# bench/candle_callgrind.sh <tickerd>: instructions per trade with candles
# on and off (issue 17), counted by callgrind, which the machine's load
# does not change (the wall-clock figures of bench/candles.sh move by tens
# of percent between runs on a shared machine).
#
# tickerd --feed none under valgrind --tool=callgrind; bench/candle_load.py
# POSTs trades at CG_RATE (3,000) per second over CG_SYMBOLS (30) symbols:
# 100 trades per symbol per second, as in bench/candles.sh (100,000 over
# 1,000), so bars close and are published as often per trade. A warm-up of
# CG_WARMUP seconds, then the counters are zeroed (callgrind_control -z) and
# CG_SECONDS seconds counted. Prints, per trade: the whole process; the
# same without the replies from Redis (redisuv_on_poll), whose cost per
# trade moves by a tenth between runs of one binary (how many replies one
# read brings: a slower loop reads more at once); the pipeline
# (pipeline_batch: parse, publish, the candle engine per trade) and the
# candle timer (candle_tick: in-progress and closed bars published).
# CG_KEEP=<dir>: the counted dumps are copied there (cg.on, cg.off), for
# callgrind_annotate.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
TICKERD=${1:?usage: bench/candle_callgrind.sh <tickerd>}
RATE=${CG_RATE:-3000}
SYMBOLS=${CG_SYMBOLS:-30}
WARMUP=${CG_WARMUP:-2}
SECONDS_COUNTED=${CG_SECONDS:-5}
command -v valgrind >/dev/null || bench_die "valgrind is not installed"
bench_init candle-callgrind
start_redis

# count <on|off>: prints "<trades> <total> <redisuv_on_poll> <pipeline_batch> <candle_tick>"
# (instructions)
count() {
  local out="$BENCH_TMP/cg.$1" trades
  TD_PORT=$(free_port)
  bench_spawn_quiet "callgrind-$1" valgrind --tool=callgrind --callgrind-out-file="$out" "$TICKERD" \
    --host 127.0.0.1 --port "$TD_PORT" --log-file '' --redis-url "redis://127.0.0.1:$REDIS_PORT" \
    --feed none --candles "$([ "$1" = on ] && echo true || echo false)"
  TD_PID=$BENCH_PID
  BENCH_START_TIMEOUT=60 wait_http "http://127.0.0.1:$TD_PORT/status" "$TD_PID" "callgrind-$1" || exit 1
  /usr/bin/python3 "$HERE/candle_load.py" --port "$TD_PORT" --rate "$RATE" --symbols "$SYMBOLS" --seconds "$WARMUP" >/dev/null
  callgrind_control -z "$TD_PID" >/dev/null 2>&1
  trades=$(/usr/bin/python3 "$HERE/candle_load.py" --port "$TD_PORT" --rate "$RATE" --symbols "$SYMBOLS" \
    --seconds "$SECONDS_COUNTED")
  callgrind_control -d "$TD_PID" >/dev/null 2>&1
  bench_stop "$TD_PID" 10
  bench_forget "$TD_PID"
  # the dump of the counted window is the first numbered file
  [ -n "${CG_KEEP:-}" ] && mkdir -p "$CG_KEEP" && cp "$out.1" "$CG_KEEP/cg.$1"
  callgrind_annotate --inclusive=yes "$out.1" 2>/dev/null | awk -v n="${trades% *}" '
    function num(s) { gsub(",", "", s); return s + 0 }
    /PROGRAM TOTALS/ { total = num($1) }
    /:redisuv_on_poll \[/ { redis = num($1) }
    /:pipeline_batch \[/ { batch = num($1) }
    /:candle_tick \[/ { tick = num($1) }
    END { printf "%d %d %d %d %d\n", n, total, redis, batch, tick }'
}

read -r n_on tot_on rd_on pb_on tk_on < <(count on)
read -r n_off tot_off rd_off pb_off tk_off < <(count off)
awk -v a="$n_on" -v b="$tot_on" -v c="$pb_on" -v d="$tk_on" -v e="$n_off" -v f="$tot_off" -v g="$pb_off" \
  -v h="$rd_on" -v k="$rd_off" -v load="$(cut -d' ' -f1-3 /proc/loadavg)" 'BEGIN {
  printf "instructions per trade (callgrind; %d trades on, %d off; load average %s)\n", a, e, load
  printf "  whole process: on %.0f, off %.0f (%+.1f %%)\n", b / a, f / e, (b / a) / (f / e) * 100 - 100
  printf "  without Redis replies: on %.0f, off %.0f (%+.1f %%)\n", (b - h) / a, (f - k) / e,
    ((b - h) / a) / ((f - k) / e) * 100 - 100
  printf "  pipeline_batch: on %.0f, off %.0f (%+.0f)\n", c / a, g / e, c / a - g / e
  printf "  candle_tick: %.0f\n", d / a
  printf "  candles (pipeline difference + timer): %.0f, %+.1f %% of off\n", c / a - g / e + d / a, (c / a - g / e + d / a) / (f / e) * 100
}'
