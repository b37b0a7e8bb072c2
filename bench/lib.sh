# shellcheck shell=bash
# bench/lib.sh: shared helpers of the `make bench` scripts (sourced, not run).
#
# Every process a script starts goes through bench_spawn, and bench_init
# installs a trap that stops them all (TERM, then KILL) and removes the
# script's temporary directory, whatever way the script ends.
#
# The names of the /status fields the bench reads are here and nowhere else:
# adjust TD_FIELD_* when the server's JSON changes.

# ---- settings ---------------------------------------------------------------

BENCH_QUICK=${BENCH_QUICK:-0}
if [ "$BENCH_QUICK" = 1 ]; then
  BENCH_RUNS=${BENCH_RUNS:-1}
  BENCH_DURATION=${BENCH_DURATION:-3}
  BENCH_TASKS=${BENCH_TASKS:-100000}
  BENCH_PUBLISH_N=${BENCH_PUBLISH_N:-200000}
else
  BENCH_RUNS=${BENCH_RUNS:-3}
  BENCH_DURATION=${BENCH_DURATION:-10}
  BENCH_TASKS=${BENCH_TASKS:-1000000}
  BENCH_PUBLISH_N=${BENCH_PUBLISH_N:-2000000}
fi
# wrk's shape for the HTTP comparisons: 2 threads, 64 keep-alive connections.
BENCH_WRK_THREADS=${BENCH_WRK_THREADS:-2}
BENCH_WRK_CONNS=${BENCH_WRK_CONNS:-64}
# Seconds a started server has to answer before the bench gives up on it.
BENCH_START_TIMEOUT=${BENCH_START_TIMEOUT:-10}
export BENCH_QUICK BENCH_RUNS BENCH_DURATION BENCH_TASKS BENCH_PUBLISH_N

# ---- /status fields (dotted paths into tickerd's GET /status JSON) ----------

TD_FIELD_TASKS_ACTIVE=${TD_FIELD_TASKS_ACTIVE:-tasks.active}
TD_FIELD_TASKS_RETAINED=${TD_FIELD_TASKS_RETAINED:-tasks.retained}
TD_FIELD_REDIS_PUBLISHED=${TD_FIELD_REDIS_PUBLISHED:-redis.publisher.published}
TD_FIELD_QUOTES_ACCEPTED=${TD_FIELD_QUOTES_ACCEPTED:-quotes.received.quotes}
TD_FIELD_REDIS_CONFLATED=${TD_FIELD_REDIS_CONFLATED:-redis.publisher.conflated}
TD_FIELD_REDIS_DROPPED=${TD_FIELD_REDIS_DROPPED:-redis.publisher.dropped}

# ---- logging ------------------------------------------------------------------

bench_log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
bench_die() { bench_log "error: $*"; exit 1; }

# ---- processes and cleanup ---------------------------------------------------

BENCH_PIDS=()
BENCH_TMP=""

# bench_init <name>: a private temp directory and the cleanup trap.
bench_init() {
  BENCH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/tickerd-bench-$1.XXXXXX")
  trap bench_cleanup EXIT
  trap 'bench_log "interrupted"; exit 130' INT TERM HUP
}

# Stops every process started with bench_spawn, newest first.
bench_cleanup() {
  local rc=$? i pid
  trap - EXIT INT TERM HUP
  for ((i = ${#BENCH_PIDS[@]} - 1; i >= 0; i--)); do
    bench_stop "${BENCH_PIDS[$i]}" "${BENCH_GRACE:-3}"
  done
  BENCH_PIDS=()
  [ -n "$BENCH_TMP" ] && rm -rf "$BENCH_TMP"
  exit "$rc"
}

# bench_stop <pid> [grace s]: TERM, up to <grace> (3) seconds to exit, then KILL.
bench_stop() {
  local pid=$1 grace=${2:-3} n
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((n = 0; n < grace * 10; n++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  return 0
}

# bench_spawn <logname> <cmd...>: starts cmd in the background, stdout and
# stderr to $BENCH_TMP/<logname>.log; sets BENCH_PID.
bench_spawn() {
  local name=$1; shift
  "$@" >"$BENCH_TMP/$name.log" 2>&1 &
  BENCH_PID=$!
  BENCH_PIDS+=("$BENCH_PID")
}

# bench_spawn_quiet: the same with stdout discarded (tickerd logs a JSON line
# per request on stdout; writing it would be part of what we measure).
bench_spawn_quiet() {
  local name=$1; shift
  "$@" >/dev/null 2>"$BENCH_TMP/$name.log" &
  BENCH_PID=$!
  BENCH_PIDS+=("$BENCH_PID")
}

# Forgets a pid already stopped with bench_stop.
bench_forget() {
  local pid=$1 keep=() p
  for p in "${BENCH_PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
  BENCH_PIDS=("${keep[@]}")
}

bench_alive_or_die() {
  kill -0 "$1" 2>/dev/null && return 0
  bench_log "$2 exited; its log:"
  tail -n 20 "$BENCH_TMP/$2.log" >&2 2>/dev/null
  exit 1
}

# ---- ports and readiness -----------------------------------------------------

# A TCP port nobody listens on now (the kernel picks it; small race accepted).
free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_tcp <port> <pid> <name>: until the port accepts, the process dies, or timeout.
wait_tcp() {
  local port=$1 pid=$2 name=$3 deadline=$((SECONDS + BENCH_START_TIMEOUT))
  while ((SECONDS < deadline)); do
    bench_alive_or_die "$pid" "$name"
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  bench_log "$name did not listen on port $port within ${BENCH_START_TIMEOUT}s"
  return 1
}

# wait_http <url> <pid> <name>: until the URL answers 2xx (0), or the
# process exits or the time runs out (1, logged).
wait_http() {
  local url=$1 pid=$2 name=$3 deadline=$((SECONDS + BENCH_START_TIMEOUT))
  while ((SECONDS < deadline)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      bench_log "$name exited; its log:"
      tail -n 20 "$BENCH_TMP/$name.log" >&2 2>/dev/null
      return 1
    fi
    curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null && return 0
    sleep 0.1
  done
  bench_log "$name did not answer $url within ${BENCH_START_TIMEOUT}s"
  return 1
}

# ---- servers ------------------------------------------------------------------

# start_redis: a private redis-server without persistence; sets REDIS_PORT, REDIS_PID.
start_redis() {
  REDIS_PORT=$(free_port)
  bench_spawn redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' \
    --appendonly no --dir "$BENCH_TMP" --protected-mode yes
  REDIS_PID=$BENCH_PID
  wait_tcp "$REDIS_PORT" "$REDIS_PID" redis || exit 1
  local n
  for ((n = 0; n < 50; n++)); do
    [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] && return 0
    sleep 0.1
  done
  bench_die "redis-server on port $REDIS_PORT does not answer PING"
}

# start_tickerd <logname> <extra args...>: on a free port, against $REDIS_PORT;
# sets TD_PORT, TD_PID, TD_URL. Returns 1 (and stops it) if /status does not answer.
start_tickerd() {
  local name=$1; shift
  TD_PORT=$(free_port)
  bench_spawn_quiet "$name" "$TICKERD" --host 127.0.0.1 --port "$TD_PORT" --log-file '' \
    --redis-url "redis://127.0.0.1:$REDIS_PORT" "$@"
  TD_PID=$BENCH_PID
  TD_URL="http://127.0.0.1:$TD_PORT"
  wait_http "$TD_URL/status" "$TD_PID" "$name" && return 0
  bench_stop "$TD_PID"; bench_forget "$TD_PID"
  return 1
}

# stop_tickerd: stops the tickerd of the last start_tickerd.
stop_tickerd() { bench_stop "$TD_PID"; bench_forget "$TD_PID"; }

# ---- the pipeline's load ------------------------------------------------------

# make_quote_body <n> <symbols> <file>: a JSON array of n Alpaca quotes,
# compact and in Alpaca's key order, over symbols B000, B001, ...
make_quote_body() {
  awk -v n="$1" -v syms="$2" 'BEGIN {
    printf "["
    for (i = 0; i < n; i++) {
      printf "%s{\"T\":\"q\",\"S\":\"B%03d\",\"bx\":\"V\",\"bp\":%.2f,\"bs\":%d,\"ax\":\"V\",\"ap\":%.2f,\"as\":%d,\"c\":[\"R\"],\"z\":\"C\",\"t\":\"2026-11-21T20:00:00.%09dZ\"}",
        (i ? "," : ""), i % syms, 100 + i / 100, 1 + i % 7, 100.01 + i / 100, 1 + i % 5, i
    }
    printf "]"
  }' >"$3"
}

# make_post_lua <body file> <lua file>: a wrk script that POSTs the body.
make_post_lua() {
  cat >"$2" <<EOF
local f = assert(io.open("$1", "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
EOF
}

# ---- measurements ---------------------------------------------------------------

# rss_kb <pid>: resident set size in KiB (VmRSS).
rss_kb() { awk '/^VmRSS:/ { print $2; exit }' "/proc/$1/status" 2>/dev/null || echo 0; }

# status_field <base url> <dotted path>: one number from GET /status; empty if absent.
status_field() {
  curl -fsS --max-time 5 "$1/status" 2>/dev/null | /usr/bin/python3 -c '
import json, sys
v = json.load(sys.stdin)
for k in sys.argv[1].split("."):
    v = v.get(k) if isinstance(v, dict) else None
print("" if v is None else (int(v) if isinstance(v, bool) else v))
' "$2" 2>/dev/null || true
}

# run_wrk <outfile> <duration s> <url> [wrk args...]: wrk with --latency,
# bounded by timeout. Keep-alive is wrk's default.
run_wrk() {
  local out=$1 dur=$2 url=$3 rc=0; shift 3
  # In the background and waited for, so that a signal to the script is
  # handled now (bash defers traps while a foreground child runs).
  timeout $((dur + 20)) wrk -t"$BENCH_WRK_THREADS" -c"$BENCH_WRK_CONNS" -d"${dur}s" --latency "$@" "$url" >"$out" 2>&1 &
  local pid=$!
  BENCH_PIDS+=("$pid")
  wait "$pid" || rc=$?
  bench_forget "$pid"
  ((rc == 0)) || bench_log "wrk on $url exited with status $rc"
}

# wrk_rps <wrk output>: requests per second.
wrk_rps() { awk '/^Requests\/sec:/ { print $2 }' "$1"; }
# wrk_p99_ms <wrk output>: 99th percentile latency in milliseconds.
wrk_p99_ms() {
  awk '$1 == "99%" { v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
         f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : 1;
         printf "%.3f\n", v * f }' "$1"
}
# wrk_requests <wrk output>: total completed requests.
wrk_requests() { awk '/requests in/ { print $1 }' "$1"; }
# wrk_errors <wrk output>: non-2xx/3xx responses plus socket errors.
wrk_errors() {
  awk '/Non-2xx or 3xx responses:/ { n += $NF }
       /Socket errors:/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 }
       END { print n + 0 }' "$1"
}

# median <numbers...>: the middle value (mean of the two middle ones when even).
median() {
  printf '%s\n' "$@" | grep -E '^-?[0-9.]+$' | sort -g | awk '
    { v[NR] = $1 } END { if (NR == 0) { print ""; exit }
      if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }' || true
}

# ratio <a> <b>: a/b with two decimals; "n/a" when either is missing or b is 0.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "n/a"; else printf "%.2f\n", a / b }'; }

# verdict <value> <op> <goal>: "met" / "NOT met" / "n/a".
verdict() {
  awk -v v="$1" -v op="$2" -v g="$3" 'BEGIN {
    if (v == "" || v == "n/a") { print "n/a"; exit }
    ok = (op == ">=") ? v + 0 >= g + 0 : (op == "<=") ? v + 0 <= g + 0 : (op == "<") ? v + 0 < g + 0 : v + 0 > g + 0
    print ok ? "met" : "NOT met" }'
}

# fmt_int <number>: rounded to an integer; "n/a" when empty.
fmt_int() { awk -v v="$1" 'BEGIN { if (v == "") print "n/a"; else printf "%.0f\n", v }'; }
fmt_mb() { [ -z "$1" ] && { echo "n/a"; return; }; awk -v k="$1" 'BEGIN { printf "%.1f MiB\n", k / 1024 }'; }

# now_s: wall-clock seconds with nanoseconds.
now_s() { date +%s.%N; }

# ---- report --------------------------------------------------------------------

# Each part writes its markdown section to $BENCH_SECTION (set by run.sh);
# run alone, a part prints it on stdout.
report() {
  if [ -n "${BENCH_SECTION:-}" ]; then printf '%s\n' "$*" >>"$BENCH_SECTION"; else printf '%s\n' "$*"; fi
}
