"""The HTTP core (issue 2): endpoints, tasks, limits, smuggling, pipelining,
backpressure and shutdown, against the real binary over real sockets."""
import json
import os
import re
import signal
import socket
import subprocess
import time

from conftest import BIN, IO_TIMEOUT_S, SANITIZED, is_closed, read_response, wait_for

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def test_hello_starts_a_task_and_answers_at_once(tickerd):
    r = tickerd.get("/hello", headers={"User-Agent": "pytest-agent"})
    assert r.status == 200
    assert r.header("content-type") == "application/json"
    assert r.header("date") and r.header("x-request-id")
    body = r.json()
    assert body["message"] == "Hello, World!"
    assert UUID4.match(body["task_id"])
    task = tickerd.get(f"/tasks/{body['task_id']}").json()
    assert task["state"] in ("pending", "running")
    assert task["request"]["user_agent"] == "pytest-agent"
    assert task["request"]["path"] == "/hello"
    assert task["request"]["method"] == "GET"
    assert task["request"]["client_ip"] == "127.0.0.1"
    done = wait_for(lambda: tickerd.get(f"/tasks/{body['task_id']}").json()["state"] == "completed" or None,
                    what="task completion")
    assert done


def test_root_lists_endpoints_and_captures_query(tickerd):
    r = tickerd.get("/?user=ada&x=%41%20b")
    assert r.status == 200
    body = r.json()
    assert "GET /hello" in body["endpoints"] and "GET /tasks/{id}" in body["endpoints"]
    task = tickerd.get(f"/tasks/{body['task_id']}").json()
    assert task["request"]["query"] == {"user": "ada", "x": "A b"}


def test_task_phases_are_visible_and_logged(tickerd_factory):
    t = tickerd_factory("--feed", "none", "--task-phases-ms", "300,300", "--task-error-rate", "0")
    tid = t.get("/hello").json()["task_id"]
    wait_for(lambda: t.get(f"/tasks/{tid}").json().get("phase") == 2 or None, what="phase 2")
    task = wait_for(lambda: (lambda j: j if j["state"] == "completed" else None)(t.get(f"/tasks/{tid}").json()),
                    what="completion")
    assert task["started_at"] and task["finished_at"] and task["error"] is None
    # the log is flushed every 100 ms
    events = wait_for(lambda: (lambda ev: ev if len(ev) == 3 else None)(
        [e for e in t.log_events() if e.get("task_id") == tid]), what="three log lines")
    names = [e["event"] for e in events]
    assert names == ["task_started", "task_phase", "task_completed"], names
    assert all("ts" in e and e["level"] for e in events)


def outcomes(t, n):
    ids = [t.get("/hello").json()["task_id"] for _ in range(n)]

    def all_done():
        states = [t.get(f"/tasks/{i}").json()["state"] for i in ids]
        return states if all(s in ("completed", "failed") for s in states) else None

    return wait_for(all_done, what="tasks to finish")


def test_failures_follow_the_seed(tickerd_factory):
    args = ("--feed", "none", "--task-phases-ms", "20,20", "--task-error-rate", "0.5", "--task-seed", "42")
    first = outcomes(tickerd_factory(*args), 12)
    second = outcomes(tickerd_factory(*args), 12)
    assert first == second
    assert "failed" in first and "completed" in first


def test_failed_task_reports_error_but_response_was_fine(tickerd_factory):
    t = tickerd_factory("--feed", "none", "--task-phases-ms", "10,10", "--task-error-rate", "1")
    r = t.get("/hello")
    assert r.status == 200
    tid = r.json()["task_id"]
    task = wait_for(lambda: (lambda j: j if j["state"] == "failed" else None)(t.get(f"/tasks/{tid}").json()),
                    what="failure")
    assert "simulated error" in task["error"]
    wait_for(lambda: any(e["event"] == "task_failed" and e["task_id"] == tid for e in t.log_events()) or None,
             what="task_failed in the log")
    assert t.status()["tasks"]["failed"] == 1


def test_capacity_gives_503_with_retry_after(tickerd_factory):
    t = tickerd_factory("--feed", "none", "--task-phases-ms", "60000,1", "--max-tasks", "2")
    assert t.get("/hello").status == 200
    assert t.get("/").status == 200
    r = t.get("/hello")
    assert r.status == 503
    assert r.header("retry-after") == "1"
    assert r.json()["error"] == "too_many_tasks"
    s = t.status()["tasks"]
    assert s["active"] == 2 and s["rejected"] == 1


def test_task_lookup_errors(tickerd_factory):
    t = tickerd_factory("--feed", "none", "--share-tasks", "false")
    assert t.get("/tasks/not-a-uuid").status == 400
    r = t.get("/tasks/00000000-0000-4000-8000-000000000000")
    assert r.status == 404 and r.json()["error"] == "unknown_task"


def test_task_lookup_without_redis(tickerd):
    """Sharing on (the default) and no Redis: an id not held here cannot be
    looked up in the fleet's records, which is not the same as unknown."""
    r = tickerd.get("/tasks/00000000-0000-4000-8000-000000000000")
    assert r.status == 503 and r.json()["error"] == "task_lookup_unavailable"


def test_task_listing(tickerd):
    ids = [tickerd.get("/hello").json()["task_id"] for _ in range(3)]
    listing = tickerd.get("/tasks?limit=2").json()
    assert [x["id"] for x in listing["tasks"]] == ids[::-1][:2]
    assert tickerd.get("/tasks?limit=0").status == 400
    assert tickerd.get("/tasks?state=bogus").status == 400


def test_finished_tasks_expire(tickerd_factory):
    t = tickerd_factory("--feed", "none", "--task-phases-ms", "10,10", "--task-error-rate", "0",
                        "--task-retention-ms", "200", "--share-tasks", "false")
    tid = t.get("/hello").json()["task_id"]
    wait_for(lambda: t.get(f"/tasks/{tid}").status == 404 or None, what="expiry")
    assert t.status()["tasks"]["expired"] == 1


def test_status_healthz_readyz(tickerd):
    s = tickerd.status()
    for key in ("version", "uptime_s", "open_connections", "tasks", "http"):
        assert key in s
    for key in ("active", "completed", "failed", "cancelled", "rejected"):
        assert key in s["tasks"]
    assert tickerd.get("/healthz").status == 200


def test_unknown_path_and_wrong_method(tickerd):
    r = tickerd.get("/nope")
    assert r.status == 404 and r.json()["status"] == 404
    r = tickerd.request("POST", "/status", body="")
    assert r.status == 405
    assert r.header("allow") == "GET, HEAD"


def test_head_has_length_but_no_body(tickerd):
    with tickerd.connect() as s:
        s.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        head, rest = read_response(s, head_request=True)
        assert head.status == 200 and int(head.header("content-length")) > 0 and head.body == b""
        get, _ = read_response(s, rest)
        assert get.json() == {"status": "ok"}


def test_pipelined_responses_come_in_order(tickerd):
    reqs = b"".join(f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-Id: req-{i}\r\n\r\n".encode() for i in range(20))
    with tickerd.connect() as s:
        s.sendall(reqs)
        rest = b""
        for i in range(20):
            r, rest = read_response(s, rest)
            assert r.header("x-request-id") == f"req-{i}"


def test_http10_closes_unless_keep_alive(tickerd):
    with tickerd.connect() as s:
        s.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        r, _ = read_response(s)
        assert r.status == 200 and r.header("connection") == "close"
        assert is_closed(s)
    with tickerd.connect() as s:
        s.sendall(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        r, _ = read_response(s)
        assert r.header("connection") == "keep-alive"
        s.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        r, _ = read_response(s)
        assert r.status == 200


def test_connection_close_is_honoured(tickerd):
    with tickerd.connect() as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        r, _ = read_response(s)
        assert r.header("connection") == "close"
        assert is_closed(s)


def test_chunked_body_is_read(tickerd):
    body = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    with tickerd.connect() as s:
        s.sendall(b"POST /status HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body +
                  b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        r, rest = read_response(s)
        assert r.status == 405  # the body was consumed: the next request parses
        r, _ = read_response(s, rest)
        assert r.status == 200


def expect_error_and_close(t, raw, status):
    with t.connect() as s:
        s.sendall(raw)
        r, _ = read_response(s)
        assert r.status == status, r.body
        assert r.header("content-type") == "application/json"
        assert r.json()["status"] == status
        assert is_closed(s)
    return r


def test_header_limit_gives_431(tickerd):
    big = b"X-Big: " + b"a" * (17 * 1024) + b"\r\n"
    expect_error_and_close(tickerd, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n", 431)
    long_url = b"GET /" + b"a" * (17 * 1024) + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    expect_error_and_close(tickerd, long_url, 431)
    assert tickerd.status()["http"]["too_large"] == 2


def test_body_limit_gives_413(tickerd_factory):
    t = tickerd_factory("--feed", "none", "--max-body-bytes", "1000")
    expect_error_and_close(t, b"POST /status HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n", 413)
    chunks = b"".join(b"100\r\n" + b"x" * 256 + b"\r\n" for _ in range(8)) + b"0\r\n\r\n"
    expect_error_and_close(t, b"POST /status HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks, 413)


def test_bad_requests_give_400_and_close(tickerd):
    cases = {
        "no host": b"GET /healthz HTTP/1.1\r\n\r\n",
        "http/2.0": b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n",
        "garbage": b"\x00\x01\x02 nonsense\r\n\r\n",
        "bad method": b"FROB /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        "space before colon": b"GET /healthz HTTP/1.1\r\nHost : x\r\n\r\n",
    }
    for name, raw in cases.items():
        r = expect_error_and_close(tickerd, raw, 400)
        assert r.json()["message"], name


def test_smuggling_attempts_are_refused(tickerd):
    smuggled = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
    cases = {
        "CR-only line ends": b"GET /healthz HTTP/1.1\rHost: x\r\r\n",
        "bare CR in a value hides a header": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\rTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "CL and TE together": b"POST /status HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
        "duplicate Content-Length": b"POST /status HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd" + smuggled,
        "obs-fold": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n  b\r\n\r\n",
        "TE not chunked last": b"POST /status HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    }
    before = tickerd.status()["tasks"]["created"]
    for name, raw in cases.items():
        with tickerd.connect() as s:
            s.sendall(raw)
            r, rest = read_response(s)
            assert r.status == 400, name
            assert is_closed(s), name
    assert tickerd.status()["tasks"]["created"] == before, "a smuggled request ran"


def test_too_many_connections_gives_503(tickerd_factory):
    t = tickerd_factory("--feed", "none", "--max-connections", "2")
    # the fixture's readiness probe must be gone: only this /status connection is open
    wait_for(lambda: t.status()["open_connections"] == 1 or None, what="the probe connection to close")
    a, b = t.connect(), t.connect()
    try:
        for s in (a, b):  # both are accepted and served before the third arrives
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(s)[0].status == 200
        with t.connect() as c:
            r, _ = read_response(c)
            assert r.status == 503 and r.json()["error"] == "too_many_connections"
            assert is_closed(c)
    finally:
        a.close()
        b.close()
    def rejected():
        r = t.get("/status")  # may itself be refused while the others are still closing
        return r.status == 200 and r.json()["http"]["rejected_full"] >= 1 or None

    wait_for(rejected, what="rejected count")


def test_slowloris_header_timeout(tickerd_factory):
    t = tickerd_factory("--feed", "none", "--header-timeout-ms", "300")
    with t.connect() as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        start = time.monotonic()
        for _ in range(3):
            s.sendall(b"X-Slow: 1\r\n")
            time.sleep(0.05)
        assert is_closed(s, timeout=3)
        assert time.monotonic() - start < 3
    assert t.status()["http"]["header_timeouts"] == 1


def test_idle_keepalive_timeout(tickerd_factory):
    t = tickerd_factory("--feed", "none", "--idle-timeout-ms", "300")
    with t.connect() as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        read_response(s)
        assert is_closed(s, timeout=3)
    assert t.status()["http"]["idle_timeouts"] >= 1


def test_client_that_never_reads_cannot_grow_memory(tickerd_factory):
    t = tickerd_factory("--feed", "none", "--task-phases-ms", "60000,1")
    for _ in range(400):
        t.get("/hello")
    # each response is ~150 KiB: a few pipelined ones fill the kernel buffers, then ours
    big = t.get("/tasks?limit=400")
    assert big.status == 200 and len(big.body) > 100_000
    rss_before = t.rss_bytes()
    s = t.connect()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.setblocking(False)
    req = b"GET /tasks?limit=400 HTTP/1.1\r\nHost: x\r\n\r\n" * 50
    sent, deadline = 0, time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            sent += s.send(req)
        except BlockingIOError:
            time.sleep(0.01)
    st = t.status()  # still serving others
    assert st["http"]["backpressure_pauses"] >= 1
    answered = st["http"]["requests"]
    # the server stopped reading this client long before it answered all it sent
    assert answered < sent // len(b"GET /tasks?limit=400 HTTP/1.1\r\nHost: x\r\n\r\n")
    if not SANITIZED:
        assert t.rss_bytes() - rss_before < 32 * 1024 * 1024
    s.close()
    wait_for(lambda: t.status()["open_connections"] == 1 or None, what="the connection to be freed")


def test_sigterm_shutdown_cancels_tasks_and_exits_zero(tickerd_factory):
    t = tickerd_factory("--feed", "none", "--task-phases-ms", "60000,1000", "--shutdown-grace-ms", "2000")
    ids = [t.get("/hello").json()["task_id"] for _ in range(3)]
    idle = t.connect()
    idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    read_response(idle)
    start = time.monotonic()
    assert t.stop(signal.SIGTERM) == 0
    assert time.monotonic() - start < 3
    assert is_closed(idle, timeout=1)
    events = t.log_events()
    cancelled = {e["task_id"] for e in events if e["event"] == "task_cancelled"}
    assert cancelled == set(ids)
    names = [e["event"] for e in events]
    assert "server_stopping" in names and names[-1] == "server_stopped"


def test_sigint_finishes_in_flight_response(tickerd_factory):
    t = tickerd_factory("--feed", "none", "--shutdown-grace-ms", "3000")
    s = t.connect()
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # head not finished yet
    time.sleep(0.1)
    t.proc.send_signal(signal.SIGINT)
    time.sleep(0.1)
    s.sendall(b"\r\n")
    r, _ = read_response(s)
    assert r.status == 200 and r.header("connection") == "close"
    assert t.proc.wait(timeout=5) == 0


def run_bin(*args, env=None):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=IO_TIMEOUT_S,
                          env={"PATH": os.environ["PATH"], **(env or {})})


def test_config_errors_name_the_option():
    for args, name in [(["--port", "70000"], "--port"), (["--task-error-rate", "2"], "--task-error-rate"),
                       (["--task-phases-ms", "5,x"], "--task-phases-ms"), (["--feed", "kafka"], "--feed"),
                       (["--bogus"], "--bogus"), (["--max-tasks"], "--max-tasks")]:
        p = run_bin(*args)
        assert p.returncode == 2, args
        assert name in p.stderr, p.stderr
    p = run_bin(env={"TICKERD_PORT": "abc"})
    assert p.returncode == 2 and "--port" in p.stderr and "TICKERD_PORT" in p.stderr


def test_help_lists_every_option():
    p = run_bin("--help")
    assert p.returncode == 0
    for opt in ("--host", "--port", "--log-file", "--task-phases-ms", "--task-error-rate", "--task-seed",
                "--max-tasks", "--max-connections", "--redis-url"):
        assert opt in p.stdout


def test_flag_wins_over_environment(tickerd_factory):
    t = tickerd_factory("--feed", "none", "--max-tasks", "1", "--task-phases-ms", "60000,1",
                        env={"TICKERD_MAX_TASKS": "100"})
    assert t.get("/hello").status == 200
    assert t.get("/hello").status == 503


def test_log_file_default_name_in_working_directory(tmp_path, tickerd_factory):
    t = tickerd_factory("--feed", "none", cwd=str(tmp_path))
    # the fixture passes --log-file; run one without it in tmp_path
    port_probe = run_bin("--version")
    assert port_probe.returncode == 0
    p = subprocess.Popen([BIN, "--port", "0", "--feed", "none"], cwd=tmp_path, stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: (tmp_path / "async_tasks.log").exists() and (tmp_path / "async_tasks.log").stat().st_size > 0
                 or None, what="async_tasks.log")
        first = json.loads((tmp_path / "async_tasks.log").read_text().splitlines()[0])
        assert first["event"] == "server_started"
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=5) == 0
    t.stop()
