"""make test-docker, the fleet: WebSocket and SSE clients of the lease holder
resume through the load balancer after the holder is killed.

  fleet_resume.py DOCKER LB_PORT HOLDER_CONTAINER HOLDER_ID

One WebSocket and one SSE client subscribe to AAPL through the LB until each
lands on the holder (its /status counts it, read inside its container: the
instances are not published on the host). Then `docker kill` (SIGKILL) of the
holder; once another instance holds the lease and published a few quotes, both
reconnect through the LB from their last positions (`since`, Last-Event-ID) and must get
`recovered: true` and every quote in between, up to live ones: the check of
test_fleet.py's test_clients_of_killed_holder_resume_anywhere, with its
helpers, against the compose fleet. Prints the kill time (seconds since the
epoch) on its first line, a summary on the second; exits non-zero with the
failed assertion otherwise."""
import json
import os
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from test_fleet import Via, check_resumed, on_instance, seq_of, sse_drain, sse_resume, ws_drain, ws_resume  # noqa: E402
from test_streaming import sse_events, sse_open  # noqa: E402
from wsclient import WS  # noqa: E402

STATUS_TIMEOUT_S = 5     # one docker exec ... curl /status
TAKEOVER_WAIT_S = 20     # the compose fleet's lease TTL (5 s), a new round, a loaded machine
LIVE_QUOTES = 10         # live quotes past the replay: the new holder publishes
MISSED_QUOTES = 5        # quotes the new holder publishes before the clients come back
SSE_FIRST_EVENTS = 3     # events the SSE client reads before the kill


class Holder:
    """The holder as on_instance needs it: its /status, from inside its container."""

    def __init__(self, docker, cid):
        self.docker, self.cid = docker, cid

    def status(self):
        out = subprocess.run([self.docker, "exec", self.cid, "curl", "-fsS", "--max-time", "3",
                              "http://127.0.0.1:8000/status"], capture_output=True, check=True,
                             timeout=STATUS_TIMEOUT_S).stdout
        return json.loads(out)


def lb_holder(port):
    """The lease holder as the instance the LB reached sees it."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/status" % port, timeout=STATUS_TIMEOUT_S) as r:
            return json.load(r)["lease"]["holder"]
    except OSError:
        return None


def main():
    docker, port, cid, old_id = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    holder = Holder(docker, cid)
    via = Via(port)

    def open_ws():
        ws = WS(port)
        assert ws.open, ws.response.status
        ws.send_json({"action": "subscribe", "symbols": ["AAPL"]})
        return ws

    ws = on_instance(holder, "ws_clients", open_ws)
    s, head, buf = on_instance(holder, "sse_clients", lambda: sse_open(via, "symbols=AAPL", http="1.0"))
    evs, buf = sse_events(s, buf, SSE_FIRST_EVENTS)
    first = ws.recv_until(lambda m: m["type"] == "quote")

    print("%.3f" % time.time(), flush=True)
    subprocess.run([docker, "kill", "--signal", "KILL", cid], capture_output=True, check=True)
    # Each reads until the LB closes it: the last position it had.
    ws_last = ([first["id"]] + ws_drain(ws))[-1]
    sse_ids = [e["id"] for e in evs if "id" in e] + sse_drain(s, buf)
    sse_last = sse_ids[-1]

    # Live quotes come once another instance holds the lease; the resumes
    # wait until it published some, so that both replay what they missed.
    deadline = time.monotonic() + TAKEOVER_WAIT_S
    while lb_holder(port) in (None, "", old_id):
        assert time.monotonic() < deadline, "no new holder seen through the LB within %ds" % TAKEOVER_WAIT_S
        time.sleep(0.5)
    watch = open_ws()
    past = max(seq_of(ws_last), seq_of(sse_last)) + MISSED_QUOTES
    watch.recv_until(lambda m: m["type"] == "quote" and seq_of(m["id"]) >= past)
    watch.close()

    ws, ws_ids, ws_rec = ws_resume(port, ws_last, LIVE_QUOTES)
    check_resumed(ws_ids, ws_last, ws_rec)
    assert ws_rec["replayed"] >= MISSED_QUOTES, ws_rec
    ws.close()

    s, sse_ids, sse_rec = sse_resume(via, sse_last, LIVE_QUOTES)
    check_resumed(sse_ids, sse_last, sse_rec)
    assert sse_rec["replayed"] >= MISSED_QUOTES, sse_rec
    s.close()
    print("WS from %s: %d replayed; SSE from %s: %d replayed; both recovered, gapless to live quotes"
          % (ws_last, ws_rec["replayed"], sse_last, sse_rec["replayed"]))


if __name__ == "__main__":
    main()
