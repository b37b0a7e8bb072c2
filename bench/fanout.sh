#!/usr/bin/env bash
# bench/fanout.sh <absolute path to tickerd>
#
# The fan-out benchmark: tickerd's SSE and WebSocket delivery against
# nginx + nchan (one worker, its own EventSource subscribers) on the same
# load. For N = 100, 1,000, 10,000 clients on BENCH_SYMBOLS symbols it steps
# the offered delivery rate up until p99 passes BENCH_STOP_P99_MS or a
# message is lost, per target, and appends a markdown section to
# build/bench/report.md. See docs/fanout-bench.md.
#
# Environment:
#   BENCH_QUICK=1          about a minute: one run per rate, short windows
#   BENCH_RUNS=3           windows per rate; the report shows their median
#   BENCH_SYMBOLS=10       M symbols
#   BENCH_PER_CLIENT=1     K symbols per client (bench/watchlist.sh: 20 of 100)
#   BENCH_TITLE="Fan-out"  the report section's title
#   BENCH_CLIENTS="100 1000 10000"
#   BENCH_TARGETS="sse-nchan sse-tickerd ws-tickerd"
#   BENCH_STEPS="50000 100000 ..."  offered deliveries/s (all clients), stepped
#   BENCH_STOP_P99_MS=100  a rate whose median p99 passes this is not sustained
#   BENCH_RETRIES=1        a rate that was not sustained is measured again this often (quick: 0)
#   BENCH_BUDGET_S=600     stepping stops once the script has run this long
#   BENCH_REPORT=build/bench/report.md
# Everything listens on 127.0.0.1 only.
set -euo pipefail

TICKERD=${1:?usage: bench/fanout.sh <absolute path to tickerd>}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
BUILD=$(dirname "$TICKERD")
CLIENT=$BUILD/bench/fanout_client
REPORT=${BENCH_REPORT:-$BUILD/bench/report.md}
QUICK=${BENCH_QUICK:-0}
SYMBOLS=${BENCH_SYMBOLS:-10}
PER_CLIENT=${BENCH_PER_CLIENT:-1}
TITLE=${BENCH_TITLE:-Fan-out}
CLIENT_COUNTS=${BENCH_CLIENTS:-"100 1000 10000"}
TARGETS=${BENCH_TARGETS:-"sse-nchan sse-tickerd ws-tickerd"}
STOP_P99_MS=${BENCH_STOP_P99_MS:-100}
NGINX=${NGINX:-nginx}
NCHAN_MODULE=/usr/lib/nginx/modules/ngx_nchan_module.so

if [ "$QUICK" = 1 ]; then
  RUNS=${BENCH_RUNS:-1}; WARMUP_MS=1000; WINDOW_MS=1500; BUDGET_S=${BENCH_BUDGET_S:-50}
  # Offered deliveries/s (all clients together), stepped.
  STEPS="50000 200000"
else
  RUNS=${BENCH_RUNS:-3}; WARMUP_MS=1000; WINDOW_MS=2000; BUDGET_S=${BENCH_BUDGET_S:-600}
  STEPS="25000 50000 75000 100000 125000 150000 200000 300000 400000 600000 800000"
fi
STEPS=${BENCH_STEPS:-$STEPS}
# Quick mode keeps to its minute: no second attempt.
if [ "$QUICK" = 1 ]; then RETRIES=${BENCH_RETRIES:-0}; else RETRIES=${BENCH_RETRIES:-1}; fi

for f in "$TICKERD" "$CLIENT"; do
  [ -x "$f" ] || { echo "fanout.sh: $f is missing (make all build/bench/fanout_client)" >&2; exit 2; }
done
[ -f "$NCHAN_MODULE" ] || { echo "fanout.sh: $NCHAN_MODULE missing (apt-get install libnginx-mod-nchan)" >&2; exit 2; }
command -v "$NGINX" >/dev/null || { echo "fanout.sh: nginx missing (apt-get install nginx-light)" >&2; exit 2; }
command -v redis-server >/dev/null || { echo "fanout.sh: redis-server missing" >&2; exit 2; }

# 10,000 clients need 10,000 descriptors in the client and in each server.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 10100 ]; then
  echo "fanout.sh: ulimit -n is $(ulimit -n); 10,000 clients need more" >&2
fi

TMP=$(mktemp -d /tmp/fanout-bench.XXXXXX)
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$TMP/nginx/nginx.pid" ] && kill "$(cat "$TMP/nginx/nginx.pid")" 2>/dev/null || true
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() { # port, what
  local i
  for i in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "fanout.sh: $2 did not listen on 127.0.0.1:$1" >&2
  return 1
}

# ---- servers ----------------------------------------------------------------

REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
  --logfile "$TMP/redis.log" >/dev/null 2>&1 &
REDIS_PID=$!; PIDS+=("$REDIS_PID")
wait_port "$REDIS_PORT" redis-server

TICKERD_PORT=$(free_port)
# --feed none: the benchmark's publisher POSTs every quote to /quotes, the
# same way and at the same rate as it POSTs to nchan's /pub.
"$TICKERD" --host 127.0.0.1 --port "$TICKERD_PORT" --redis-url "redis://127.0.0.1:$REDIS_PORT" \
  --feed none --log-file '' --log-level warn --max-stream-clients 20000 --max-connections 30000 \
  >/dev/null 2>"$TMP/tickerd.err" &
TICKERD_PID=$!; PIDS+=("$TICKERD_PID")
# A tickerd that does not come up still leaves the nchan figures worth having.
if ! wait_port "$TICKERD_PORT" tickerd; then
  tail -n 20 "$TMP/tickerd.err" >&2
  TARGETS=$(echo "$TARGETS" | tr ' ' '\n' | grep nchan | tr '\n' ' ' || true)
fi

NCHAN_PORT=$(free_port)
mkdir -p "$TMP/nginx/logs" "$TMP/nginx/tmp"
chmod 755 "$TMP"; chmod 777 "$TMP/nginx/tmp"
sed "s/@PORT@/$NCHAN_PORT/" "$HERE/nchan.conf" >"$TMP/nginx/nginx.conf"
"$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -g "daemon off; pid $TMP/nginx/nginx.pid;" \
  2>"$TMP/nginx/stderr" &
PIDS+=("$!")
wait_port "$NCHAN_PORT" nginx
NCHAN_WORKER=$(pgrep -P "$(cat "$TMP/nginx/nginx.pid")" | head -n1)

# tickerd's stream counters (/status) before and after a run, as a line of
# the results: the report shows sends per delivery over the run from them.
status_line() { # before|after, target, clients
  python3 - "$TICKERD_PORT" "$@" >>"$RESULTS" <<'EOF' || true
import json, sys, urllib.request
port, when, mode, clients = sys.argv[1:5]
s = json.load(urllib.request.urlopen("http://127.0.0.1:%s/status" % port, timeout=10))["streaming"]
print(json.dumps({"status": when, "mode": mode, "clients": int(clients),
                  "sends": s["sends"], "deliveries": s["deliveries"]}))
EOF
}

# ---- runs -------------------------------------------------------------------

START=$(date +%s)
RESULTS=$TMP/results.jsonl
: >"$RESULTS"
n_runs=0
for _ in $CLIENT_COUNTS; do for _ in $TARGETS; do n_runs=$((n_runs + 1)); done; done
done_runs=0
run_id=0

for N in $CLIENT_COUNTS; do
  # Messages/s over all symbols for each offered delivery rate: every
  # message reaches N*K/M clients.
  RATES=""
  for d in $STEPS; do
    r=$(( d * SYMBOLS / (N * PER_CLIENT) )); [ "$r" -ge 1 ] || r=1
    RATES="${RATES:+$RATES,}$r"
  done
  for T in $TARGETS; do
    case $T in
      *-nchan) PORT=$NCHAN_PORT; SPID=$NCHAN_WORKER; APID=0 ;;
      *) PORT=$TICKERD_PORT; SPID=$TICKERD_PID; APID=$REDIS_PID ;;
    esac
    # What is left of the time budget, shared among the runs still to do.
    elapsed=$(( $(date +%s) - START ))
    left=$(( (BUDGET_S - elapsed) / (n_runs - done_runs) ))
    [ "$left" -ge 5 ] || left=5
    # Fresh channel names per run: nchan replays its buffer to a new
    # subscriber, and tickerd's history must not carry over either.
    run_id=$((run_id + 1))
    echo "fanout.sh: $T, $N clients, rates $RATES msgs/s (budget ${left}s)" >&2
    [ "$APID" = 0 ] || status_line before "$T" "$N"
    "$CLIENT" --mode "$T" --port "$PORT" --clients "$N" --symbols "$SYMBOLS" --per-client "$PER_CLIENT" --prefix "FB${run_id}X" \
      --rates "$RATES" --runs "$RUNS" --warmup-ms "$WARMUP_MS" --window-ms "$WINDOW_MS" \
      --stop-p99-ms "$STOP_P99_MS" --retries "$RETRIES" --deadline-s "$left" --server-pid "$SPID" --aux-pid "$APID" \
      --label "$T" 2>"$TMP/client.err" | tee -a "$RESULTS" | grep '"summary"' >&2 || true
    grep -v '^fanout_client: .* ready in' "$TMP/client.err" | head -n 5 >&2 || true
    [ "$APID" = 0 ] || status_line after "$T" "$N"
    done_runs=$((done_runs + 1))
    if ! kill -0 "$TICKERD_PID" 2>/dev/null; then
      echo "fanout.sh: tickerd exited; its stderr:" >&2; tail -n 20 "$TMP/tickerd.err" >&2
      TARGETS=$(echo "$TARGETS" | tr ' ' '\n' | grep nchan | tr '\n' ' ')
    fi
  done
done

# ---- report -----------------------------------------------------------------

mkdir -p "$(dirname "$REPORT")"
python3 - "$RESULTS" "$STOP_P99_MS" "$QUICK" "$RUNS" "$SYMBOLS" "$(nproc)" "$PER_CLIENT" "$TITLE" >>"$REPORT" <<'EOF'
import json, sys, time
path, stop_ms, quick, runs, symbols, cores, per_client, title = sys.argv[1:9]
stop_us = float(stop_ms) * 1000
# A retried rate keeps its last attempt, in the place of the first.
last = {}
counters = {}   # (clients, mode) -> {"before": ..., "after": ...}
for l in open(path):
    if l.startswith('{"status"'):
        r = json.loads(l)
        counters.setdefault((r["clients"], r["mode"]), {})[r["status"]] = r
    if l.startswith('{"summary"'):
        r = json.loads(l)
        last[(r["clients"], r["mode"], r["rate"])] = r
rows = list(last.values())

def sustained(r):
    return (r["lost"] == 0 and r["errors"] == 0 and r["skipped"] == 0 and r["p99_us"] <= stop_us
            and r["connected"] == r["clients"] and r["deliveries_per_s"] >= 0.95 * r["offered_dps"])

def ms(us):
    return "%.1f" % (us / 1000.0)

print("\n## %s: tickerd vs nginx + nchan (%s)\n" % (title, time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())))
print("%s run%s per rate (median shown), %s symbols, %s per client, %s cores shared with other work%s."
      % (runs, "" if runs == "1" else "s", symbols, "one symbol" if per_client == "1" else per_client + " symbols",
         cores, "; BENCH_QUICK" if quick == "1" else ""))
print("Sustained: nothing lost, no error, all clients connected, p99 <= %s ms, >= 95 %% of the offered"
      " deliveries delivered. CPU: cores used by the server (tickerd: + its redis-server), by the"
      " load generator (subscribers + publisher) and left idle on the machine during the windows;"
      " deliveries per server core-second = deliveries/s / server CPU.\n" % stop_ms)
print("| clients | msgs/s | offered deliveries/s | target | deliveries/s | p50 ms | p99 ms | max ms | lost | errors | server CPU | client CPU | idle CPU | deliveries per server core-s | sustained |")
print("|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|")
for r in rows:
    cpu = r["server_cpu"] + r["aux_cpu"]
    print("| %d | %.0f | %.0f | %s | %.0f | %s | %s | %s | %d | %d | %.2f | %.2f | %.2f | %s | %s |" % (
        r["clients"], r["rate"], r["offered_dps"], r["mode"], r["deliveries_per_s"], ms(r["p50_us"]),
        ms(r["p99_us"]), ms(r["max_us"]), r["lost"], r["errors"], cpu, r["client_cpu"], r["idle_cpu"],
        "%.0f" % (r["deliveries_per_s"] / cpu) if cpu > 0.05 else "", "yes" if sustained(r) else "no"))

print("\n| clients | target | highest sustained deliveries/s | its p99 ms | vs sse-nchan |")
print("|---:|---|---:|---:|---:|")
notes = []
for n in sorted({r["clients"] for r in rows}):
    best = {}
    for r in rows:
        if r["clients"] == n and sustained(r) and r["deliveries_per_s"] > best.get(r["mode"], {}).get("deliveries_per_s", -1):
            best[r["mode"]] = r
    base = best.get("sse-nchan")
    for mode in sorted({r["mode"] for r in rows if r["clients"] == n}):
        b = best.get(mode)
        if not b:
            print("| %d | %s | none | | |" % (n, mode)); continue
        ratio = "%.2fx" % (b["deliveries_per_s"] / base["deliveries_per_s"]) if base and mode != "sse-nchan" else ""
        print("| %d | %s | %.0f | %s | %s |" % (n, mode, b["deliveries_per_s"], ms(b["p99_us"]), ratio))
    # At the highest offered rate that every target sustained, deliveries/s
    # are equal by construction; the comparison there is latency.
    modes = {r["mode"] for r in rows if r["clients"] == n}
    common = [rate for rate in sorted({r["rate"] for r in rows if r["clients"] == n})
              if all(any(r["clients"] == n and r["mode"] == m and r["rate"] == rate and sustained(r) for r in rows) for m in modes)]
    if common and len(modes) > 1:
        rate = common[-1]
        at = {r["mode"]: r for r in rows if r["clients"] == n and r["rate"] == rate}
        def per_core(r):
            cpu = r["server_cpu"] + r["aux_cpu"]
            return r["deliveries_per_s"] / cpu if cpu > 0.05 else 0
        base_pc = per_core(at["sse-nchan"]) if "sse-nchan" in at else 0
        notes.append("%d clients, highest rate every target sustains: %.0f msgs/s (%.0f deliveries/s offered). %s." % (
            n, rate, at[sorted(at)[0]]["offered_dps"],
            "; ".join("%s: p99 %s ms, %s deliveries per server core-s%s" % (
                m, ms(at[m]["p99_us"]), "%.0f" % per_core(at[m]) if per_core(at[m]) else "n/a",
                " (%.2fx nchan)" % (per_core(at[m]) / base_pc) if base_pc and m != "sse-nchan" else "")
                for m in sorted(at))))

for line in notes:
    print("\n" + line)

# tickerd's /status counters over each whole run (every rate stepped, warm-up
# included): write system calls to stream clients per message delivered.
spd = []
for (n, mode), c in sorted(counters.items()):
    if "before" in c and "after" in c:
        d = c["after"]["deliveries"] - c["before"]["deliveries"]
        s = c["after"]["sends"] - c["before"]["sends"]
        if d > 0:
            spd.append("%d clients %s: %.3f (%d sends, %d deliveries)" % (n, mode, s / d, s, d))
if spd:
    print("\nSends per delivery (tickerd /status `streaming.sends` / `streaming.deliveries` over the run): "
          + "; ".join(spd) + ".")

rss = {}
for r in rows:
    if r["clients"] >= 10000 and r["connected"] >= 10000:
        rss[r["mode"]] = max(rss.get(r["mode"], 0), r["server_rss_kb"])
if rss:
    print("\nServer RSS with 10,000 clients connected (max over the windows; nginx's counts nchan's shared memory"
          " pages it touched): " + ", ".join("%s %.0f MB" % (m, kb / 1024.0) for m, kb in sorted(rss.items())) + ".")
EOF
# The kernel's own cost per delivery at 10,000 clients, with no server code:
# the floor the 10,000-client rows stand on (docs/perf-fan.md).
FLOOR=$BUILD/bench/loopback_floor
FLOOR_CONNS=9000   # both ends in one process: 18,000 descriptors of the 20,000 here
if [ "$QUICK" != 1 ] && [ -x "$FLOOR" ] && [[ " $CLIENT_COUNTS " == *" 10000 "* ]]; then
  {
    echo
    echo "Kernel floor (\`build/bench/loopback_floor $FLOOR_CONNS 100000 3\`, no server: one 300-byte send to each of $FLOOR_CONNS loopback connections in turn, a reader draining them):"
    echo
    for how in send uring; do
      echo "- $how: $(timeout 60 "$FLOOR" "$FLOOR_CONNS" 100000 3 "$how" 2>&1 | paste -sd ';' -)"
    done
  } >>"$REPORT"
fi
echo "fanout.sh: report appended to $REPORT" >&2
