#!/usr/bin/env bash
# bench/redis_tls.sh <tickerd>: published quotes/s over rediss:// against
# plain redis:// in the same run.
#
# One redis-server listens on a plain port and a TLS port (a CA and a server
# certificate made here with openssl). tickerd --feed none is loaded as in the
# pipeline part (wrk -t1 -c4 POSTing 1,000-quote batches over 50 symbols),
# alternately over redis:// and rediss:// (plain, TLS, plain, TLS, ...), so a
# change of the shared machine's load hits both. Per run: published/s
# (Δ /status counter), tickerd's CPU per published quote (user + sys, from
# /proc), redis-server's CPU per PUBLISH. The TLS path is tickerd's relay
# (redis/redis_tls.c): hiredis -> unix socket -> OpenSSL -> TCP.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

TICKERD=${1:?usage: bench/redis_tls.sh <path to tickerd>}
if [ "$BENCH_QUICK" = 1 ]; then TLS_RUNS=1; else TLS_RUNS=${BENCH_TLS_RUNS:-${BENCH_RUNS:-3}}; fi
WARMUP_S=1

bench_init redis-tls
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for tool in wrk redis-server redis-cli curl openssl; do
  command -v "$tool" >/dev/null || bench_die "$tool not installed (make deps)"
done

# ---- certificates and the server ----------------------------------------------

PKI="$BENCH_TMP/pki"
mkdir -p "$PKI"
printf '[server]\nsubjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$PKI/ext.cnf"
(
  cd "$PKI"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 1 -subj "/CN=tickerd bench CA"
  openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost
  openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 1 \
    -extfile ext.cnf -extensions server
) >/dev/null 2>&1 || bench_die "openssl could not make the certificates"

REDIS_PORT=$(free_port)
REDIS_TLS_PORT=$(free_port)
bench_spawn redis redis-server --port "$REDIS_PORT" --tls-port "$REDIS_TLS_PORT" --bind 127.0.0.1 \
  --tls-cert-file "$PKI/server.crt" --tls-key-file "$PKI/server.key" --tls-ca-cert-file "$PKI/ca.crt" \
  --tls-auth-clients no --save '' --appendonly no --dir "$BENCH_TMP" --protected-mode yes
REDIS_PID=$BENCH_PID
wait_tcp "$REDIS_PORT" "$REDIS_PID" redis || exit 1
wait_tcp "$REDIS_TLS_PORT" "$REDIS_PID" redis || exit 1
[ "$(redis-cli --tls --cacert "$PKI/ca.crt" -p "$REDIS_TLS_PORT" ping 2>/dev/null)" = PONG ] ||
  bench_die "redis-server does not answer over TLS"

make_quote_body 1000 50 "$BENCH_TMP/quotes.json"
make_post_lua "$BENCH_TMP/quotes.json" "$BENCH_TMP/post.lua"

# utime stime (clock ticks) of a process
cpu_ticks() { awk '{ print $14, $15 }' "/proc/$1/stat"; }

# one_run <label> <redis url> [args]: prints "<label> rate tickerd_us_per_quote redis_us_per_publish"
one_run() {
  local label=$1 url=$2; shift 2
  start_tickerd "tickerd-$label" --feed none --redis-url "$url" "$@" || bench_die "tickerd ($label) did not start"
  wait_http "$TD_URL/readyz" "$TD_PID" "tickerd-$label" || bench_die "tickerd ($label) never ready"
  bench_spawn wrk-tls wrk -t1 -c4 -d"$((BENCH_DURATION + 2 * WARMUP_S + 1))s" --timeout 10s \
    -s "$BENCH_TMP/post.lua" "$TD_URL/quotes"
  local wrk_pid=$BENCH_PID p0 p1 t0 t1 r0 r1 s0 s1
  sleep "$WARMUP_S"
  p0=$(status_field "$TD_URL" "$TD_FIELD_REDIS_PUBLISHED"); t0=$(cpu_ticks "$TD_PID"); r0=$(cpu_ticks "$REDIS_PID"); s0=$(now_s)
  sleep "$BENCH_DURATION"
  p1=$(status_field "$TD_URL" "$TD_FIELD_REDIS_PUBLISHED"); t1=$(cpu_ticks "$TD_PID"); r1=$(cpu_ticks "$REDIS_PID"); s1=$(now_s)
  bench_stop "$wrk_pid"; bench_forget "$wrk_pid"
  bench_alive_or_die "$TD_PID" "tickerd-$label"
  stop_tickerd
  awk -v l="$label" -v p0="$p0" -v p1="$p1" -v s0="$s0" -v s1="$s1" -v hz="$(getconf CLK_TCK)" \
      -v t0="$t0" -v t1="$t1" -v r0="$r0" -v r1="$r1" 'BEGIN {
    split(t0, a, " "); split(t1, b, " "); split(r0, c, " "); split(r1, d, " ")
    n = p1 - p0; if (n <= 0) { print l, 0, 0, 0; exit }
    us = 1e6 / hz / n
    printf "%s %.0f %.3f %.3f\n", l, n / (s1 - s0), (b[1] + b[2] - a[1] - a[2]) * us, (d[1] + d[2] - c[1] - c[2]) * us
  }'
}

RESULTS=()
for ((run = 1; run <= TLS_RUNS; run++)); do
  bench_log "redis:// then rediss://, ${BENCH_DURATION}s each (run $run/$TLS_RUNS)"
  RESULTS+=("$(one_run plain "redis://127.0.0.1:$REDIS_PORT")")
  RESULTS+=("$(one_run tls "rediss://127.0.0.1:$REDIS_TLS_PORT" --redis-ca-file "$PKI/ca.crt")")
done

col() { printf '%s\n' "${RESULTS[@]}" | awk -v l="$1" -v c="$2" '$1 == l { print $c }'; }
med() { median $(col "$1" "$2"); }
PLAIN=$(med plain 2); TLS=$(med tls 2)

report "## rediss:// against redis://"
report ""
report "One redis-server $(redis-server --version | awk '{ print $3 }' | tr -d 'v=') with a plain and a TLS port; tickerd --feed none, wrk -t1 -c4 POSTing 1,000-quote batches (50 symbols); published/s = Δ\`$TD_FIELD_REDIS_PUBLISHED\` / Δt over ${BENCH_DURATION}s after ${WARMUP_S}s of warm-up; CPU from /proc over the same interval; runs alternate plain and TLS; medians of $TLS_RUNS. Load average before the part: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg)."
report ""
report "| URL | published/s | each run | tickerd CPU µs/quote | redis-server CPU µs/PUBLISH |"
report "|---|---:|---|---:|---:|"
report "| redis:// | $(fmt_int "$PLAIN") | $(col plain 2 | paste -sd' ' -) | $(med plain 3) | $(med plain 4) |"
report "| rediss:// (TLS relay) | $(fmt_int "$TLS") | $(col tls 2 | paste -sd' ' -) | $(med tls 3) | $(med tls 4) |"
report ""
report "rediss:// ÷ redis:// published/s: $(ratio "$TLS" "$PLAIN")."
report ""
