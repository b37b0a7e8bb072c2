"""POSTs Alpaca trades to tickerd at a steady rate across many symbols, for
bench/candles.sh: batches of --batch trades (one per symbol in turn), each
stamped with the wall clock when it is made, so that every trade is on time
for its bar. Prints the trades accepted (the 202s' "accepted" summed)."""
import argparse
import http.client
import json
import time


def rfc3339(ns):
    s, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + f".{frac:09d}Z"


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--port", type=int, required=True)
    a.add_argument("--rate", type=int, default=100_000, help="trades per second")
    a.add_argument("--symbols", type=int, default=1000)
    a.add_argument("--batch", type=int, default=1000)
    a.add_argument("--seconds", type=float, default=10)
    o = a.parse_args()
    # Five prices per symbol, so bars have a range; chosen by batch number.
    heads = [[f'{{"T":"t","S":"B{s:04d}","i":1,"x":"V","p":{100 + s % 400 + v / 100:.2f},"s":{100 + v},"t":"'
              for v in range(5)] for s in range(o.symbols)]
    conn = http.client.HTTPConnection("127.0.0.1", o.port, timeout=10)
    period = o.batch / o.rate
    start = time.monotonic()
    sent = accepted = k = 0
    while time.monotonic() - start < o.seconds:
        due = start + k * period
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        t = rfc3339(time.time_ns()) + '"}'
        body = "[" + ",".join(heads[(sent + i) % o.symbols][(k + i) % 5] + t for i in range(o.batch)) + "]"
        conn.request("POST", "/quotes", body, {"Content-Type": "application/json"})
        r = conn.getresponse()
        reply = r.read()
        if r.status != 202:
            raise SystemExit(f"POST /quotes: {r.status} {reply[:200]!r}")
        accepted += json.loads(reply)["accepted"]
        sent += o.batch
        k += 1
    elapsed = time.monotonic() - start
    print(f"{accepted} {elapsed:.3f}")


if __name__ == "__main__":
    main()
