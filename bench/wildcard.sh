#!/usr/bin/env bash
# bench/wildcard.sh <absolute path to tickerd>: wildcard subscribers, a part
# of `make bench` (bench/run.sh).
#
# One `*` client, then 100 `*` clients (WebSocket, then SSE), each against
# a fresh tickerd and redis-server, with BENCH_WILD_RATE quotes/s published
# over 100 symbols through POST /quotes: every client is owed every quote.
# Per scenario: deliveries/s against what was offered, p99 latency, quotes
# lost to the client (a gap in a symbol's seq: conflated by the
# slow-consumer policy), clients the server closed for being slow, server
# CPU and RSS. A scenario is "sustained" when nothing was lost and every
# client stayed; otherwise the table says what the slow-consumer policy did
# (conflated: only the newest quote per symbol kept past --client-soft-bytes;
# closed: past --client-hard-bytes, or over the soft limit for
# --client-soft-ms). The server runs with its default output limits.
#
# Environment:
#   BENCH_QUICK=1            1 run, short windows
#   BENCH_RUNS=3             measurement windows per scenario (medians)
#   BENCH_WILD_RATE=50000    quotes/s in, over 100 symbols
#   BENCH_WILD_SCENARIOS     "ws:1 ws:100 sse:100" (transport:clients)
#   BENCH_WILD_TICKERD_ARGS  more tickerd options, e.g. "--memory-positions on" (a plain
#                            PUBLISH per quote instead of the positions script in Redis)
#   BENCH_REPORT             where the markdown section is appended
# Everything listens on 127.0.0.1 only.
set -euo pipefail

TICKERD=${1:?usage: bench/wildcard.sh <absolute path to tickerd>}
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
BUILD=$(dirname "$TICKERD")
CLIENT=$BUILD/bench/fanout_client
REPORT=${BENCH_REPORT:-$BUILD/bench/report.md}
SYMBOLS=100
RATE=${BENCH_WILD_RATE:-50000}
SCENARIOS=${BENCH_WILD_SCENARIOS:-ws:1 ws:100 sse:100}
read -r -a EXTRA <<<"${BENCH_WILD_TICKERD_ARGS:-}"
if [ "$BENCH_QUICK" = 1 ]; then WARMUP_MS=500; WINDOW_MS=1500; else WARMUP_MS=2000; WINDOW_MS=5000; fi

[ -x "$CLIENT" ] || bench_die "$CLIENT is missing (make $CLIENT)"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
bench_init wildcard

RESULTS=$BENCH_TMP/results.jsonl
: >"$RESULTS"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for sc in $SCENARIOS; do
  transport=${sc%%:*} clients=${sc##*:}
  start_redis
  start_tickerd "tickerd-$transport-$clients" --feed none --log-level warn "${EXTRA[@]}" || bench_die "tickerd did not start"
  bench_log "wildcard: $clients '*' client(s) over $transport, $RATE quotes/s in over $SYMBOLS symbols"
  "$CLIENT" --mode "$transport-tickerd" --port "$TD_PORT" --clients "$clients" --symbols "$SYMBOLS" \
    --wildcard '*' --prefix WC --rates "$RATE" --runs "$BENCH_RUNS" --warmup-ms "$WARMUP_MS" \
    --window-ms "$WINDOW_MS" --stop-p99-ms 1000000 --server-pid "$TD_PID" --aux-pid "$REDIS_PID" \
    --label "$transport:$clients" \
    2>"$BENCH_TMP/client.err" | grep '"summary"' >"$BENCH_TMP/summary.json" ||
    { tail -n 5 "$BENCH_TMP/client.err" >&2; bench_die "fanout_client failed"; }
  # What the slow-consumer policy did, from the server's side.
  curl -fsS --max-time 5 "$TD_URL/status" | /usr/bin/python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
status = json.load(sys.stdin)
st = status["streaming"]
s.update(slow_closes=st["slow_closes"], conflated=st["conflated"], pattern_deliveries=st["pattern_deliveries"],
         gaps=st["gaps"], sub_reconnects=status["redis"]["subscriber"]["reconnects"],
         overload_conflated=st.get("overload", {}).get("conflated", 0), overloads=st.get("overload", {}).get("episodes", 0))
print(json.dumps(s))' "$BENCH_TMP/summary.json" >>"$RESULTS"
  stop_tickerd
  bench_stop "$REDIS_PID"; bench_forget "$REDIS_PID"
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

mkdir -p "$(dirname "$REPORT")"
/usr/bin/python3 - "$RESULTS" "$RATE" "$BENCH_RUNS" "$(nproc)" "$LOAD_BEFORE" "$LOAD_AFTER" \
  "${BENCH_WILD_TICKERD_ARGS:-}" >>"$REPORT" <<'PY'
import json, sys, time
path, rate, runs, cores, load0, load1, extra = sys.argv[1:8]
print("\n## Wildcard subscribers%s (%s)\n" % (" (tickerd %s)" % extra if extra else "",
                                            time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())))
print("Every client subscribed to `*` alone; %s quotes/s published over 100 symbols (POST /quotes), so each"
      " client is owed all of them. Fresh tickerd and redis-server per row, default output limits"
      " (--client-soft-bytes 256 KiB, --client-hard-bytes 1 MiB, --client-soft-ms 10 s); medians of %s"
      " window(s). %s cores shared with other work; load average %s before, %s after. Lost: quotes a"
      " client never got (conflated by the slow-consumer policy); closed: clients the server cut off; not"
      " sent: quotes the load generator skipped while POST /quotes answers were outstanding (its"
      " in-flight limit), so not offered; Redis cut tickerd: reconnects of tickerd's subscriber connection"
      " (Redis closes a subscriber whose output buffer passes client-output-buffer-limit pubsub, 32 MB),"
      " whose missed quotes are lost to every client (counted as gaps); conflated: quotes dropped for a newer one"
      " of the same symbol, for a client whose queue passed --client-soft-bytes / for every client while"
      " tickerd's subscriber read behind Redis (--overload-behind-ms).\n"
      % (rate, runs, cores, load0, load1))
print("| clients | offered deliveries/s | delivered/s | p99 ms | lost | conflated (slow client / tickerd overloaded) | closed | not sent"
      " | Redis cut tickerd (gaps) | server CPU (cores) | Redis CPU | load generator CPU | server RSS | result |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for line in open(path):
    r = json.loads(line)
    closed = r["slow_closes"]
    ok = (not r["lost"] and not r["errors"] and not closed and not r["skipped"]
          and r["deliveries_per_s"] >= 0.95 * r["offered_dps"])
    why = []
    if closed:
        why.append("%d closed" % closed)
    if r["conflated"]:
        why.append("conflated")
    if r.get("overload_conflated"):
        why.append("conflated while tickerd was behind (%d episode%s)" % (r["overloads"], "" if r["overloads"] == 1 else "s"))
    if r["sub_reconnects"]:
        why.append("Redis cut tickerd's subscriber")
    result = "sustained, nothing lost" if ok else ", ".join(why) if why else "fell behind"
    print("| %s `*` (%s) | %.0f | %.0f | %.1f | %d | %d / %d | %d | %d | %d (%d) | %.2f | %.2f | %.2f | %.0f MiB | %s |" % (
        r["clients"], r["label"].split(":")[0].upper(), r["offered_dps"], r["deliveries_per_s"], r["p99_us"] / 1000,
        r["lost"], r["conflated"], r.get("overload_conflated", 0), closed, r["skipped"], r["sub_reconnects"], r["gaps"], r["server_cpu"],
        r["aux_cpu"], r["client_cpu"], r["server_rss_kb"] / 1024, result))
print()
PY
bench_log "wildcard: section appended to $REPORT"
