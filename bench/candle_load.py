"""POSTs Alpaca trades to tickerd at a steady rate across many symbols, for
bench/candles.sh: batches of --batch trades (one per symbol in turn), each
stamped with the wall clock when it is made, so that every trade is on time
for its bar, over --conns keep-alive connections (batch k on connection
k mod conns). Prints the trades accepted (the 202s' "accepted" summed) and
the seconds taken."""
import argparse
import http.client
import json
import threading
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
    a.add_argument("--conns", type=int, default=4,
                   help="connections: one waits for each 202 before its next batch, so one alone "
                        "caps the rate at batch / round trip, which a loaded machine stretches")
    a.add_argument("--seconds", type=float, default=10)
    o = a.parse_args()
    # Five prices per symbol, so bars have a range; chosen by batch number.
    heads = [[f'{{"T":"t","S":"B{s:04d}","i":1,"x":"V","p":{100 + s % 400 + v / 100:.2f},"s":{100 + v},"t":"'
              for v in range(5)] for s in range(o.symbols)]
    # A batch's body is a template with the time left out, made once per
    # (first symbol, first price) and joined with the batch's time: joining
    # a thousand items per batch took most of this script's CPU.
    templates = {}
    lock = threading.Lock()

    def template(first, variant):
        with lock:
            key = (first, variant)
            if key not in templates:
                templates[key] = ['[' + heads[first][variant]] + [
                    '"},' + heads[(first + i) % o.symbols][(variant + i) % 5] for i in range(1, o.batch)] + ['"}]']
            return templates[key]

    period = o.batch / o.rate
    start = time.monotonic()
    accepted = [0] * o.conns
    failed = []

    def run(j):
        conn = http.client.HTTPConnection("127.0.0.1", o.port, timeout=10)
        k = j
        while time.monotonic() - start < o.seconds and not failed:
            due = start + k * period
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            body = rfc3339(time.time_ns()).join(template(k * o.batch % o.symbols, k % 5)).encode()
            conn.request("POST", "/quotes", body, {"Content-Type": "application/json"})
            r = conn.getresponse()
            reply = r.read()
            if r.status != 202:
                failed.append(f"POST /quotes: {r.status} {reply[:200]!r}")
                return
            accepted[j] += json.loads(reply)["accepted"]
            k += o.conns

    threads = [threading.Thread(target=run, args=(j,)) for j in range(o.conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failed:
        raise SystemExit(failed[0])
    elapsed = time.monotonic() - start
    print(f"{sum(accepted)} {elapsed:.3f}")


if __name__ == "__main__":
    main()
