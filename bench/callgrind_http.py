#!/usr/bin/python3
"""Instructions per HTTP request, counted by callgrind (repeatable whatever
else the machine does, unlike req/s on a shared machine).

    /usr/bin/python3 bench/callgrind_http.py TICKERD [TICKERD ...] [--path /status] [--requests 5000]

Starts a redis-server on a free loopback port; for each build, tickerd
--feed none under valgrind --tool=callgrind --instr-atstart=no, one
keep-alive connection, WARMUP requests, then instrumentation on for
--requests requests sent one at a time (each answer read whole before the
next), off. Prints one line per build:
    build=<path> path=<path> requests=N ir=I ir_per_request=X
Every process it starts is stopped on exit.
"""
import argparse
import glob
import os
import socket
import subprocess
import tempfile
import urllib.request

from takeover import free_port, wait_for  # same folder: the bench's helpers

WARMUP = 200
START_TIMEOUT_S = 60
READ_CHUNK = 65536


def answers(url):
    try:
        urllib.request.urlopen(url, timeout=1).read()
        return True
    except OSError:
        return False


def one_request(sock, request):
    sock.sendall(request)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(READ_CHUNK)
        if not chunk:
            raise RuntimeError("connection closed")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += sock.recv(READ_CHUNK)


def measure(tickerd, redis_port, path, requests, tmp):
    port = free_port()
    out = os.path.join(tmp, f"cg-{port}.out")
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}", tickerd,
         "--host", "127.0.0.1", "--port", str(port), "--redis-url", f"redis://127.0.0.1:{redis_port}",
         "--feed", "none", "--log-file", "", "--log-level", "warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: proc.poll() is None and answers(f"http://127.0.0.1:{port}/healthz"), START_TIMEOUT_S,
                 f"{tickerd} under valgrind")
        request = f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
        with socket.create_connection(("127.0.0.1", port)) as sock:
            for _ in range(WARMUP):
                one_request(sock, request)
            subprocess.run(["callgrind_control", "-i", "on", str(proc.pid)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=True)
            for _ in range(requests):
                one_request(sock, request)
            subprocess.run(["callgrind_control", "-i", "off", str(proc.pid)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=True)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    ir = 0
    for name in glob.glob(out + "*"):
        with open(name) as f:
            for line in f:
                if line.startswith(("summary:", "totals:")):
                    ir = max(ir, int(line.split()[1]))
    return ir


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tickerd", nargs="+")
    ap.add_argument("--path", default="/status")
    ap.add_argument("--requests", type=int, default=5000)
    args = ap.parse_args()
    redis_port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with tempfile.TemporaryDirectory(prefix="tickerd-cg-http.") as tmp:
            for tickerd in args.tickerd:
                ir = measure(tickerd, redis_port, args.path, args.requests, tmp)
                print(f"build={tickerd} path={args.path} requests={args.requests} ir={ir} "
                      f"ir_per_request={ir / args.requests:.0f}", flush=True)
    finally:
        redis.terminate()
        redis.wait(timeout=30)


if __name__ == "__main__":
    main()
