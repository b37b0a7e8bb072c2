"""bench/cluster.py <tickerd> <duration s> <failover tries>: Redis Cluster
with sharded pub/sub (issue 18, part 2). Prints a markdown section.

1. Publishing and fan-out with 1 and 3 shards (primaries, no replicas):
   tickerd --feed none on redis+cluster://, wrk POSTing batches of 1,000
   quotes over 100 symbols, WS_CLIENTS WebSocket clients subscribed to all
   of them (drained by threads). Published quotes/s and deliveries/s from
   /status; each redis-server's CPU (utime + stime from /proc/<pid>/stat)
   per quote that its shard carried (quotes are spread evenly over the
   symbols, so a shard carries its symbols' share).
2. Failover: 3 primaries with a replica each, tickerd --feed sim (12
   symbols), one WebSocket client. Per try a primary is killed with
   SIGKILL; the time is from the kill to the client's first quote of that
   shard's symbol made after the kill (the quote's "t"). The killed node is
   started again (it rejoins as a replica) before the next try."""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "test", "integration"))
from rcluster import RedisCluster  # noqa: E402
from wsclient import WS  # noqa: E402

TICKERD, DURATION, TRIES = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
SYMBOLS = [f"B{i:03d}" for i in range(100)]
BATCH = 1000
WS_CLIENTS = 20
POST_CONNS = 4
SIM = [f"F{chr(65 + i)}X" for i in range(12)]
SIM_RATE = 1200
CLK_TCK = os.sysconf("SC_CLK_TCK")
# A failover that takes longer than this is reported as such, not waited for.
FAILOVER_LIMIT_S = 30


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as r:
        return json.load(r)


def start_tickerd(url, *args):
    port = free_port()
    # No candles: the figures were measured when a Cluster had none, and
    # their cost is bench/candles.sh's to measure.
    p = subprocess.Popen([TICKERD, "--port", str(port), "--log-file", "", "--redis-url", url, "--candles", "false",
                          *args],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1).status == 200:
                return p, port
        except Exception:
            time.sleep(0.1)
    p.kill()
    raise RuntimeError("tickerd did not get ready")


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)


def drain(ws, stop_flag):
    ws.sock.settimeout(0.5)
    while not stop_flag.is_set():
        try:
            if not ws.sock.recv(1 << 20):
                return
        except (TimeoutError, OSError):
            continue


def quote_body(path):
    items = [f'{{"T":"q","S":"{SYMBOLS[i % len(SYMBOLS)]}","bx":"V","bp":{100 + i / 100:.2f},"bs":1,"ax":"V",'
             f'"ap":{100.01 + i / 100:.2f},"as":1,"c":["R"],"z":"C","t":"2026-11-21T20:00:00.{i:09d}Z"}}'
             for i in range(BATCH)]
    with open(path, "w") as f:
        f.write("[" + ",".join(items) + "]")


def throughput(shards, tmp):
    c = RedisCluster(shards, 0)
    td = None
    stop_flag = threading.Event()
    threads = []
    try:
        td, port = start_tickerd(c.url, "--feed", "none", "--ping-interval-ms", "600000")
        for _ in range(WS_CLIENTS):
            ws = WS(port)
            ws.send_json({"action": "subscribe", "symbols": SYMBOLS})
            th = threading.Thread(target=drain, args=(ws, stop_flag), daemon=True)
            th.start()
            threads.append((ws, th))
        time.sleep(1)
        share = {p: 0 for p in c.primaries()}
        for s in SYMBOLS:
            share[c.owner(f"quotes:{s}")[0]] += 1 / len(SYMBOLS)
        lua = os.path.join(tmp, "post.lua")
        with open(lua, "w") as f:
            f.write(f'local f = assert(io.open("{tmp}/quotes.json", "rb"))\nwrk.method = "POST"\n'
                    f'wrk.body = f:read("*a")\nf:close()\nwrk.headers["Content-Type"] = "application/json"\n')
        wrk = subprocess.Popen(["wrk", "-t1", f"-c{POST_CONNS}", f"-d{int(DURATION) + 3}s", "--timeout", "10s",
                                "-s", lua, f"http://127.0.0.1:{port}/quotes"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.5)
        s0, c0, t0, d0 = status(port), {p: ticks(c.pid(p)) for p in share}, time.monotonic(), ticks(td.pid)
        time.sleep(DURATION)
        s1, c1, t1, d1 = status(port), {p: ticks(c.pid(p)) for p in share}, time.monotonic(), ticks(td.pid)
        wrk.wait()
        pub = s1["redis"]["publisher"]["published"] - s0["redis"]["publisher"]["published"]
        del_ = s1["streaming"]["deliveries"] - s0["streaming"]["deliveries"]
        per_shard = {p: (c1[p] - c0[p]) * 1e6 / CLK_TCK / max(1, pub * share[p]) for p in share}
        busy = {p: (c1[p] - c0[p]) / CLK_TCK / (t1 - t0) for p in share}
        td_us = (d1 - d0) * 1e6 / CLK_TCK / max(1, pub)
        return pub / (t1 - t0), del_ / (t1 - t0), per_shard, busy, td_us
    finally:
        stop_flag.set()
        for ws, th in threads:
            th.join(1)
            ws.close()
        if td:
            stop(td)
        c.cleanup()


def t_wall(ts):
    base, _, frac = ts.rstrip("Z").partition(".")
    import calendar
    return calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S")) + float("0." + (frac or "0"))


def failover():
    c = RedisCluster(3, 1)
    td = None
    out = []
    try:
        td, port = start_tickerd(c.url, "--feed", "sim", "--symbols", ",".join(SIM), "--sim-rate", str(SIM_RATE),
                                 "--ping-interval-ms", "600000")
        ws = WS(port)
        ws.send_json({"action": "subscribe", "symbols": SIM})
        ws.sock.settimeout(FAILOVER_LIMIT_S)
        for i in range(TRIES):
            sym = SIM[i % len(SIM)]
            victim, _ = c.owner(f"quotes:{sym}")
            wall, mono = time.time(), time.monotonic()
            c.kill(victim)
            took = None
            while time.monotonic() - mono < FAILOVER_LIMIT_S:
                try:
                    m = ws.recv_json()
                except (TimeoutError, OSError):
                    break
                if m.get("type") == "quote" and m["symbol"] == sym and t_wall(m["data"]["t"]) > wall:
                    took = time.monotonic() - mono
                    break
            out.append(took)
            c._start(victim)  # rejoins as a replica of the promoted one
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not (c._all_ok() and c._replicas_synced()):
                time.sleep(0.2)
            # what came meanwhile is not this try's
            ws.sock.settimeout(0.05)
            try:
                while True:
                    ws.recv_json()
            except (TimeoutError, OSError):
                pass
            ws.sock.settimeout(FAILOVER_LIMIT_S)
        ws.close()
        return out
    finally:
        if td:
            stop(td)
        c.cleanup()


def main():
    load = open("/proc/loadavg").read().split()[:3]
    tmp = tempfile.mkdtemp(prefix="bench-cluster-")
    quote_body(os.path.join(tmp, "quotes.json"))
    print("### Redis Cluster: sharded pub/sub (issue 18, part 2)\n")
    print(f"Load average at the start: {' '.join(load)}; {os.cpu_count()} CPUs. tickerd --feed none, wrk "
          f"POSTing batches of {BATCH} quotes over {len(SYMBOLS)} symbols ({POST_CONNS} connections), "
          f"{WS_CLIENTS} WebSocket clients subscribed to every symbol, {DURATION:.0f} s per figure.\n")
    print("| shards | published quotes/s | deliveries/s | Redis CPU µs per quote, per shard | each shard's CPU busy "
          "| tickerd CPU µs per quote (with its fan-out) |")
    print("|---|---|---|---|---|---|")
    for shards in (1, 3):
        try:
            pub, dl, per, busy, td_us = throughput(shards, tmp)
            print(f"| {shards} | {pub:,.0f} | {dl:,.0f} | {' / '.join(f'{v:.2f}' for v in per.values())} | "
                  f"{' / '.join(f'{v * 100:.0f} %' for v in busy.values())} | {td_us:.2f} |")
        except Exception as e:  # a failed part still leaves the others
            print(f"| {shards} | failed: {e} | | | | |")
    print()
    try:
        times = failover()
        ok = sorted(t for t in times if t is not None)
        failed = len(times) - len(ok)
        if ok:
            med = ok[len(ok) // 2] if len(ok) % 2 else (ok[len(ok) // 2 - 1] + ok[len(ok) // 2]) / 2
            print(f"Failover (3 primaries + 3 replicas, cluster-node-timeout 1000 ms, SIGKILL of the primary, "
                  f"{len(times)} tries): from the kill to the first new quote of that shard at the client, "
                  f"median **{med:.2f} s**, worst **{ok[-1]:.2f} s**" +
                  (f", {failed} tries over {FAILOVER_LIMIT_S} s" if failed else "") + ".")
            print(f"\nAll tries (s): {', '.join(f'{t:.2f}' if t is not None else 'none' for t in times)}")
        else:
            print("Failover: no try saw quotes again within the limit.")
    except Exception as e:
        print(f"Failover: failed: {e}")
    print(f"\nLoad average at the end: {' '.join(open('/proc/loadavg').read().split()[:3])}.")


main()
