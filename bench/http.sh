#!/usr/bin/env bash
# bench/http.sh <tickerd>: the HTTP core against a single-worker nginx, and
# the memory one background task costs.
#
#   1. wrk -t2 -c64 --latency (keep-alive) on tickerd /status, nginx /status,
#      tickerd /hello (starts a task per request, default phases 5000,3000 so
#      tasks accumulate as in real use) and nginx /hello; the nginx bodies are
#      padded to the length of tickerd's answers. Runs are interleaved
#      (tickerd, nginx, tickerd, ...) so that a change of machine load hits
#      both sides; the report gives medians over BENCH_RUNS runs.
#   2. A fresh tickerd with 10-minute task phases: wrk on /hello until
#      BENCH_TASKS tasks are active; RSS before and after, bytes per task.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

TICKERD=${1:?usage: bench/http.sh <path to tickerd>}
GOAL_STATUS=0.9
GOAL_HELLO=0.7
GOAL_TASK_BYTES=256
# Body lengths used when tickerd does not answer (nginx still gets measured).
DEFAULT_STATUS_LEN=600
DEFAULT_HELLO_LEN=120

bench_init http
for tool in wrk nginx redis-server curl; do
  command -v "$tool" >/dev/null || bench_die "$tool not installed (make deps)"
done

# pad_json <length>: {"status":"ok","pad":"xxx..."} of exactly <length> bytes
# (at least the unpadded object), safe inside nginx's single quotes.
pad_json() {
  local len=$1 head='{"status":"ok","pad":"' tail='"}'
  local n=$((len - ${#head} - ${#tail}))
  ((n < 0)) && n=0
  printf '%s%s%s' "$head" "$(head -c "$n" /dev/zero | tr '\0' x)" "$tail"
}

start_nginx() {
  local status_len=$1 hello_len=$2 prefix="$BENCH_TMP/nginx"
  mkdir -p "$prefix/tmp"
  NGINX_PORT=$(free_port)
  sed -e "s|@PREFIX@|$prefix|g" -e "s|@PORT@|$NGINX_PORT|g" \
      -e "s|@STATUS_BODY@|$(pad_json "$status_len")|" -e "s|@HELLO_BODY@|$(pad_json "$hello_len")|" \
      "$HERE/nginx-http.conf" >"$prefix/nginx.conf"
  # -e: the compiled-in error log path may not be writable; ours is in the prefix.
  bench_spawn nginx nginx -e "$prefix/error.log" -p "$prefix" -c "$prefix/nginx.conf"
  NGINX_PID=$BENCH_PID
  wait_http "http://127.0.0.1:$NGINX_PORT/status" "$NGINX_PID" nginx || exit 1
  NGINX_WORKER=$(pgrep -P "$NGINX_PID" | head -n 1)
  [ -n "$NGINX_WORKER" ] || bench_die "nginx started no worker"
}

# ---- 1. tickerd vs nginx ---------------------------------------------------------

start_redis
# The cost of sharing finished tasks through Redis (issue 15, part 5): the
# same binary with --share-tasks false, its /hello measured in the same
# interleaved loop as the default (shared) one.
NS_OK=0
if start_tickerd tickerd-noshare --feed none --share-tasks false; then
  NS_OK=1; NS_PID=$TD_PID; NS_URL=$TD_URL
fi
TD_OK=0
STATUS_LEN=$DEFAULT_STATUS_LEN
HELLO_LEN=$DEFAULT_HELLO_LEN
if start_tickerd tickerd-http --feed none; then
  TD_OK=1
  TD_HTTP_PID=$TD_PID
  STATUS_LEN=$(curl -fsS "$TD_URL/status" | wc -c)
  HELLO_LEN=$(curl -fsS "$TD_URL/hello" | wc -c || echo "$DEFAULT_HELLO_LEN")
  TD_RSS_START=$(rss_kb "$TD_PID")
else
  bench_log "tickerd did not start: measuring nginx only"
fi
start_nginx "$STATUS_LEN" "$HELLO_LEN"
NG_RSS_START=$(rss_kb "$NGINX_WORKER")

declare -A RPS P99 ERRS
measure() { # measure <key> <url> <run>
  local out="$BENCH_TMP/wrk-$1-$3.txt"
  bench_log "wrk ${BENCH_DURATION}s $2 (run $3/$BENCH_RUNS)"
  run_wrk "$out" "$BENCH_DURATION" "$2"
  RPS[$1]+="$(wrk_rps "$out") "
  P99[$1]+="$(wrk_p99_ms "$out") "
  ERRS[$1]=$(( ${ERRS[$1]:-0} + $(wrk_errors "$out") ))
}

for ((run = 1; run <= BENCH_RUNS; run++)); do
  ((TD_OK)) && measure td_status "$TD_URL/status" "$run"
  measure ng_status "http://127.0.0.1:$NGINX_PORT/status" "$run"
done
TD_RSS_STATUS=$( ((TD_OK)) && rss_kb "$TD_HTTP_PID" || echo "")
TD_RSS_HELLO="" TD_TASKS_AFTER="" TD_RETAINED_AFTER=""
for ((run = 1; run <= BENCH_RUNS; run++)); do
  if ((TD_OK)); then
    measure td_hello "$TD_URL/hello" "$run"
    ((NS_OK)) && measure td_hello_noshare "$NS_URL/hello" "$run"
    # Right after the run: tasks live 8 s by default, gone by the next one.
    TD_RSS_HELLO=$(rss_kb "$TD_HTTP_PID")
    TD_TASKS_AFTER=$(status_field "$TD_URL" "$TD_FIELD_TASKS_ACTIVE")
    TD_RETAINED_AFTER=$(status_field "$TD_URL" "$TD_FIELD_TASKS_RETAINED")
  fi
  measure ng_hello "http://127.0.0.1:$NGINX_PORT/hello" "$run"
done
NG_RSS_END=$(rss_kb "$NGINX_WORKER")

# med <"v1 v2 ...">: the median of a space-separated list (split on purpose).
# shellcheck disable=SC2086
med() { median ${1:-}; }
TD_S_RPS=$(med "${RPS[td_status]:-}"); NG_S_RPS=$(med "${RPS[ng_status]:-}")
TD_H_RPS=$(med "${RPS[td_hello]:-}"); NG_H_RPS=$(med "${RPS[ng_hello]:-}")
R_STATUS=$(ratio "$TD_S_RPS" "$NG_S_RPS")
R_HELLO=$(ratio "$TD_H_RPS" "$NG_H_RPS")
NS_H_RPS=$(med "${RPS[td_hello_noshare]:-}")
R_HELLO_NS=$(ratio "$NS_H_RPS" "$NG_H_RPS")

report "## HTTP core: tickerd vs nginx (1 worker)"
report ""
report "wrk -t$BENCH_WRK_THREADS -c$BENCH_WRK_CONNS -d${BENCH_DURATION}s --latency, keep-alive; median of $BENCH_RUNS run(s), runs interleaved."
report "Response bodies: /status $STATUS_LEN bytes, /hello $HELLO_LEN bytes (nginx returns fixed bodies padded to the same lengths)."
report ""
report "| target | req/s | p99 latency | errors (non-2xx + socket) | RSS |"
report "|---|---:|---:|---:|---:|"
if ((TD_OK)); then
  report "| tickerd /status | $(fmt_int "$TD_S_RPS") | $(med "${P99[td_status]}") ms | ${ERRS[td_status]} | $(fmt_mb "$TD_RSS_STATUS") |"
fi
report "| nginx /status | $(fmt_int "$NG_S_RPS") | $(med "${P99[ng_status]}") ms | ${ERRS[ng_status]} | $(fmt_mb "$NG_RSS_END") |"
if ((TD_OK)); then
  report "| tickerd /hello | $(fmt_int "$TD_H_RPS") | $(med "${P99[td_hello]}") ms | ${ERRS[td_hello]} | $(fmt_mb "$TD_RSS_HELLO") |"
fi
if ((NS_OK)); then
  report "| tickerd /hello, --share-tasks false | $(fmt_int "$NS_H_RPS") | $(med "${P99[td_hello_noshare]}") ms | ${ERRS[td_hello_noshare]} | |"
fi
report "| nginx /hello | $(fmt_int "$NG_H_RPS") | $(med "${P99[ng_hello]}") ms | ${ERRS[ng_hello]} | $(fmt_mb "$NG_RSS_END") |"
report ""
report "| ratio tickerd/nginx | measured | goal | |"
report "|---|---:|---:|---|"
report "| /status req/s | $R_STATUS | ≥ $GOAL_STATUS | $(verdict "$R_STATUS" ">=" "$GOAL_STATUS") |"
report "| /hello req/s | $R_HELLO | ≥ $GOAL_HELLO | $(verdict "$R_HELLO" ">=" "$GOAL_HELLO") |"
if ((NS_OK)); then
  # Sharing finished tasks may cost at most 10 % of the /hello ratio.
  R_SHARE=$(ratio "$TD_H_RPS" "$NS_H_RPS")
  report "| /hello req/s, --share-tasks false | $R_HELLO_NS | | |"
  report "| /hello ratio shared / not shared | $R_SHARE | ≥ 0.9 | $(verdict "$R_SHARE" ">=" "0.9") |"
fi
report ""
if ((TD_OK)); then
  report "tickerd RSS: $(fmt_mb "$TD_RSS_START") at start, $(fmt_mb "$TD_RSS_STATUS") after /status, $(fmt_mb "$TD_RSS_HELLO") right after the last /hello run, with ${TD_TASKS_AFTER:-n/a} tasks active and ${TD_RETAINED_AFTER:-n/a} finished ones retained (\`--task-retention-ms\`, \`--max-finished-tasks\`). nginx worker RSS: $(fmt_mb "$NG_RSS_START") at start."
else
  report "**tickerd did not start** (see the bench log): nginx figures only."
fi
report ""

# Free the CPU and memory before the next measurement.
((TD_OK)) && stop_tickerd
((NS_OK)) && { bench_stop "$NS_PID"; bench_forget "$NS_PID"; }
bench_stop "$NGINX_PID"; bench_forget "$NGINX_PID"

# ---- 2. memory per task ------------------------------------------------------------

report "## Memory per background task"
report ""
if ! ((TD_OK)); then
  report "Skipped: tickerd did not start."
  exit 0
fi
# Tasks that live 20 minutes: none finishes while we count.
start_tickerd tickerd-tasks --feed none --task-phases-ms 600000,600000 --max-tasks 1000000 \
  || bench_die "tickerd did not start for the task memory run"
if [ -z "$(status_field "$TD_URL" "$TD_FIELD_TASKS_ACTIVE")" ]; then
  report "Skipped: /status has no \`$TD_FIELD_TASKS_ACTIVE\` field (adjust TD_FIELD_TASKS_ACTIVE in bench/lib.sh)."
  exit 0
fi
RSS_BEFORE=$(rss_kb "$TD_PID")
FILL_LIMIT_S=$([ "$BENCH_QUICK" = 1 ] && echo 60 || echo 300)
bench_log "creating $BENCH_TASKS tasks (at most ${FILL_LIMIT_S}s)"
T0=$(now_s)
bench_spawn wrk-tasks wrk -t"$BENCH_WRK_THREADS" -c"$BENCH_WRK_CONNS" -d"${FILL_LIMIT_S}s" "$TD_URL/hello"
WRK_PID=$BENCH_PID
ACTIVE=0
while kill -0 "$WRK_PID" 2>/dev/null; do
  ACTIVE=$(status_field "$TD_URL" "$TD_FIELD_TASKS_ACTIVE"); ACTIVE=${ACTIVE:-0}
  ((ACTIVE >= BENCH_TASKS)) && break
  sleep 0.5
done
T1=$(now_s)
bench_stop "$WRK_PID"; bench_forget "$WRK_PID"
bench_alive_or_die "$TD_PID" tickerd-tasks
sleep 0.5
ACTIVE=$(status_field "$TD_URL" "$TD_FIELD_TASKS_ACTIVE")
RSS_AFTER=$(rss_kb "$TD_PID")
PER_TASK=$(awk -v a="$RSS_AFTER" -v b="$RSS_BEFORE" -v n="$ACTIVE" 'BEGIN { if (n + 0 > 0) printf "%.0f\n", (a - b) * 1024 / n; else print "n/a" }')
FILL_RATE=$(awk -v n="$ACTIVE" -v t0="$T0" -v t1="$T1" 'BEGIN { printf "%.0f\n", n / (t1 - t0) }')

report "tickerd --task-phases-ms 600000,600000 --max-tasks 1000000; wrk on /hello until $BENCH_TASKS tasks are active."
report ""
report "| active tasks | created in | RSS before | RSS after | bytes per task | goal | |"
report "|---:|---:|---:|---:|---:|---:|---|"
report "| ${ACTIVE:-n/a} | $(awk -v a="$T0" -v b="$T1" 'BEGIN { printf "%.1f s", b - a }') ($FILL_RATE/s) | $(fmt_mb "$RSS_BEFORE") | $(fmt_mb "$RSS_AFTER") | $PER_TASK | ≤ $GOAL_TASK_BYTES | $(verdict "$PER_TASK" "<=" "$GOAL_TASK_BYTES") |"
report ""
report "Bytes per task = (RSS after − RSS before) / active tasks; it includes the connections' buffers and allocator slack."
report ""
