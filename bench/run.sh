#!/usr/bin/env bash
# bench/run.sh <abs path to build/tickerd>: entry point of `make bench`.
#
# Runs every part (http, pipeline, and fanout / alpaca when their scripts
# exist) as its own process under a time limit, so that one failing part
# still leaves a report of the others. Each part writes its markdown section
# to the file named by $BENCH_SECTION (also given as $BENCH_REPORT, the name
# bench/fanout.sh appends to); a part that writes neither has its stdout
# taken as its section. The report goes to
# <dir of tickerd>/bench/report.md and is printed at the end.
#
# Environment: BENCH_RUNS (3), BENCH_DURATION (10 s), BENCH_QUICK=1 (1 run of
# 3 s, 100k tasks: a smoke test of the harness), BENCH_PARTS (default
# "http pipeline fanout watchlist alpaca takeover positions candles deflate failover wildcard throttle cluster redis_tls").
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

TICKERD=${1:?usage: bench/run.sh <abs path to tickerd>}
[ -x "$TICKERD" ] || bench_die "$TICKERD is not an executable"
OUT_DIR="$(cd "$(dirname "$TICKERD")" && pwd)/bench"
REPORT="$OUT_DIR/report.md"
BENCH_PARTS=${BENCH_PARTS:-http pipeline fanout watchlist alpaca takeover positions candles deflate failover wildcard throttle cluster redis_tls}
# Time limit of one part, generous: a full http part is about 3 minutes.
PART_LIMIT_S=$([ "$BENCH_QUICK" = 1 ] && echo 180 || echo 1200)
mkdir -p "$OUT_DIR"

bench_init run
# A part's own cleanup stops up to four servers, 3 s each at worst.
BENCH_GRACE=15

machine() {
  local cpu mem
  cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  mem=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
  echo "| | |"
  echo "|---|---|"
  echo "| date | $(date -u +%Y-%m-%dT%H:%M:%SZ) |"
  echo "| tickerd | $("$TICKERD" --version 2>/dev/null || echo '?') ($(git -C "$HERE/.." rev-parse --short HEAD 2>/dev/null || echo 'no git')) |"
  echo "| CPUs (nproc) | $(nproc) |"
  echo "| CPU | ${cpu:-unknown} |"
  echo "| memory | $mem |"
  echo "| kernel | $(uname -sr) |"
  echo "| load average before the run | $(cut -d' ' -f1-3 /proc/loadavg) |"
  echo "| tools | $(nginx -v 2>&1 | sed 's/.*: //'), $(redis-server --version | awk '{ print $3 }' | tr -d 'v='), $(wrk -v 2>&1 | head -n 1 | awk '{ print $1, $2 }') |"
  echo "| settings | BENCH_RUNS=$BENCH_RUNS BENCH_DURATION=${BENCH_DURATION}s BENCH_QUICK=$BENCH_QUICK |"
}

{
  echo "# tickerd benchmark report"
  echo ""
  machine
  echo ""
  echo "Figures are medians of BENCH_RUNS runs on this machine at this time: on a shared or"
  echo "loaded machine (see the load average) they are noisy; compare ratios, not absolutes."
  echo ""
} >"$BENCH_TMP/report.md"

# run_part <name> <script>: the part's section, or a note saying why there is none.
run_part() {
  local name=$1 script=$2 section="$BENCH_TMP/$1.md" out="$BENCH_TMP/$1.out" rc=0
  : >"$section"
  bench_log "== $name ($script)"
  # In the background and waited for: a signal to run.sh is handled at once,
  # and its cleanup TERMs the part, whose own trap stops what it started.
  BENCH_SECTION="$section" BENCH_REPORT="$section" BENCH_OUT_DIR="$OUT_DIR" timeout --kill-after=10 "$PART_LIMIT_S" \
    bash "$script" "$TICKERD" >"$out" &
  local pid=$!
  BENCH_PIDS+=("$pid")
  wait "$pid" || rc=$?
  bench_forget "$pid"
  [ -s "$section" ] || cp "$out" "$section"
  {
    cat "$section"
    if ((rc == 124)); then
      echo "**$name: stopped after ${PART_LIMIT_S}s** (time limit); figures above may be partial."
    elif ((rc != 0)); then
      echo "**$name: failed with status $rc**; see the log above the report."
    fi
    echo ""
  } >>"$BENCH_TMP/report.md"
}

for part in $BENCH_PARTS; do
  script="$HERE/$part.sh"
  if [ -f "$script" ]; then
    run_part "$part" "$script"
  elif [ "$part" = http ] || [ "$part" = pipeline ]; then
    bench_die "missing $script"
  else
    bench_log "== $part: no bench/$part.sh on this branch, skipped"
  fi
done

cp "$BENCH_TMP/report.md" "$REPORT"
echo ""
cat "$REPORT"
bench_log "report written to $REPORT"
