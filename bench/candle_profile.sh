#!/usr/bin/env bash
# bench/candle_profile.sh <tickerd> [rounds]: where the candles' CPU per
# trade goes natively, function by function (issue 17).
#
# Over 1,000 symbols the candles cost more than their instructions say
# (bench/candle_callgrind.sh): a trade's candle state, and the pipeline's
# own data that the candles push out of cache, are misses. No hardware
# counters are exposed on our machines (`perf stat`: not supported), but
# perf's software clock samples still say where the time goes. For each
# round: tickerd --candles false, then --candles true, each loaded by
# bench/candle_load.py at BENCH_CANDLE_RATE (100,000) trades/s over
# BENCH_CANDLE_SYMBOLS (1,000) symbols, `perf record -e cpu-clock` on
# tickerd for BENCH_PROFILE_SECONDS (7) of the load's 8 seconds; then the
# nanoseconds per trade of each function, on and off, and the functions
# whose time changed most. A development tool, not part of `make bench`;
# needs perf (Debian: linux-perf).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
TICKERD=${1:?usage: bench/candle_profile.sh <tickerd> [rounds]}
ROUNDS=${2:-1}
RATE=${BENCH_CANDLE_RATE:-100000}
SYMBOLS=${BENCH_CANDLE_SYMBOLS:-1000}
SECONDS_PROFILED=${BENCH_PROFILE_SECONDS:-7}
LOAD_SECONDS=$((SECONDS_PROFILED + 1))
HZ=10000   # samples per second of CPU: 0.1 ms each
TOP=${BENCH_PROFILE_TOP:-25}
command -v perf >/dev/null || { echo "perf is not installed (Debian: apt-get install linux-perf)" >&2; exit 1; }
bench_init candle_profile
start_redis

# profile <on|off> <out>: writes <out>.data (perf) and <out>.load ("trades seconds")
profile() {
  start_tickerd "tickerd-profile-$1" --feed none --candles "$([ "$1" = on ] && echo true || echo false)" || exit 1
  /usr/bin/python3 "$HERE/candle_load.py" --port "$TD_PORT" --rate "$RATE" --symbols "$SYMBOLS" --seconds 1 >/dev/null
  perf record -q -e cpu-clock -F "$HZ" -p "$TD_PID" -o "$2.data" -- sleep "$SECONDS_PROFILED" >/dev/null 2>&1 &
  local rec=$!
  /usr/bin/python3 "$HERE/candle_load.py" --port "$TD_PORT" --rate "$RATE" --symbols "$SYMBOLS" \
    --seconds "$LOAD_SECONDS" >"$2.load"
  wait "$rec" || true
  stop_tickerd
}

for ((r = 1; r <= ROUNDS; r++)); do
  bench_log "round $r/$ROUNDS: candles off, then on, ${LOAD_SECONDS}s each at $RATE trades/s over $SYMBOLS symbols"
  profile off "$BENCH_TMP/off"
  profile on "$BENCH_TMP/on"
  echo "## round $r (load average $(cut -d' ' -f1-3 /proc/loadavg))"
  for m in on off; do
    perf report -i "$BENCH_TMP/$m.data" --no-children --sort symbol -g none -n --percent-limit 0 2>/dev/null \
      >"$BENCH_TMP/$m.txt"
  done
  # the trades in the profiled window: the load's rate times the window
  /usr/bin/python3 - "$BENCH_TMP" "$HZ" "$SECONDS_PROFILED" "$TOP" <<'EOF'
import collections, re, sys
tmp, hz, window, top = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
def side(m):
    n, s = open(f"{tmp}/{m}.load").read().split()
    trades = float(n) / float(s) * window
    samples = collections.Counter()
    for line in open(f"{tmp}/{m}.txt"):
        f = re.match(r"\s*[\d.]+%\s+(\d+)\s+\[.\]\s+(\S+)", line)
        if f:
            samples[f.group(2)] += int(f.group(1))
    return {k: v / hz / trades * 1e9 for k, v in samples.items()}, float(n) / float(s)
on, on_rate = side("on")
off, off_rate = side("off")
ton, toff = sum(on.values()), sum(off.values())
print(f"ns of tickerd CPU per trade: on {ton:.0f} ({on_rate:.0f} trades/s), off {toff:.0f} ({off_rate:.0f} trades/s): {(ton / toff - 1) * 100:+.1f} %")
print(f"{'function':40s} {'on':>7s} {'off':>7s} {'change':>7s}")
for k in sorted(set(on) | set(off), key=lambda k: -(on.get(k, 0) - off.get(k, 0)))[:top]:
    print(f"{k[:40]:40s} {on.get(k, 0):7.1f} {off.get(k, 0):7.1f} {on.get(k, 0) - off.get(k, 0):+7.1f}")
EOF
done
