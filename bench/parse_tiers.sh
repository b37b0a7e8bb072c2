#!/usr/bin/env bash
# bench/parse_tiers.sh <tickerd>: which stream_msg parser tier reads the items
# of each real input (issue 13: keep only the tiers that carry traffic).
#
#   sim     --feed sim for SIM_SECONDS
#   post    POST /quotes of the batch `make bench` sends (make_quote_body), POSTS times
#   post-spaced  the same batch as Python's json.dumps writes it by default
#           (", " and ": " separators: what requests.post(json=...) sends), POSTS times
#   alpaca  --feed alpaca against test/support/fake_alpaca.py (mixed kinds), FAKE_SECONDS
#
# Prints one line per input with the /status quotes.parse_tiers counters:
#   input=sim compact=N scanned=N jansson=N fast_abandoned=N
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
TICKERD=${1:?usage: bench/parse_tiers.sh <path to tickerd>}
SIM_SECONDS=${SIM_SECONDS:-5}
POSTS=${POSTS:-20}
FAKE_SECONDS=${FAKE_SECONDS:-5}
PY=/usr/bin/python3

bench_init parse-tiers
start_redis

tiers() {
  curl -fsS "$TD_URL/status" | $PY -c 'import json,sys; t=json.load(sys.stdin)["quotes"]["parse_tiers"]; print(" ".join("%s=%d" % kv for kv in t.items()))'
}

start_tickerd sim --feed sim --symbols AAPL,MSFT,GOOGL,AAL,BTC/USD
sleep "$SIM_SECONDS"
echo "input=sim $(tiers)"
stop_tickerd

start_tickerd post --feed none
make_quote_body 1000 50 "$BENCH_TMP/quotes.json"
for _ in $(seq "$POSTS"); do
  curl -fsS -o /dev/null -H 'Content-Type: application/json' --data-binary "@$BENCH_TMP/quotes.json" "$TD_URL/quotes"
done
echo "input=post $(tiers)"
stop_tickerd

start_tickerd post-spaced --feed none
$PY -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))))' "$BENCH_TMP/quotes.json" >"$BENCH_TMP/quotes-spaced.json"
for _ in $(seq "$POSTS"); do
  curl -fsS -o /dev/null -H 'Content-Type: application/json' --data-binary "@$BENCH_TMP/quotes-spaced.json" "$TD_URL/quotes"
done
echo "input=post-spaced $(tiers)"
stop_tickerd

"$ROOT/test/support/testca.sh" "$BENCH_TMP/ca" >/dev/null
bench_spawn fake $PY "$ROOT/test/support/fake_alpaca.py" --cert "$BENCH_TMP/ca/server.pem" \
  --key "$BENCH_TMP/ca/server.key" --key-id bench-key --secret bench-secret --interval-ms 10
for _ in $(seq 50); do
  WS_PORT=$(awk '/^READY/ { print $2; exit }' "$BENCH_TMP/fake.log" 2>/dev/null || true)
  [ -n "$WS_PORT" ] && break
  sleep 0.1
done
[ -n "$WS_PORT" ] || bench_die "the fake Alpaca server did not start"
APCA_API_KEY_ID=bench-key APCA_API_SECRET_KEY=bench-secret start_tickerd alpaca --feed alpaca \
  --alpaca-url "wss://127.0.0.1:$WS_PORT/v2/test" --ca-file "$BENCH_TMP/ca/ca.pem" --symbols AAPL,MSFT \
  --alpaca-channels quotes,trades,bars
sleep "$FAKE_SECONDS"
echo "input=alpaca $(tiers)"
