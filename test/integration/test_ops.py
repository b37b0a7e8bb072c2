"""Operations (issue 7): /metrics, /readyz, and subscriber access control
(JWT HS256 on /ws and /stream, the Origin allow-list)."""
import base64
import hashlib
import hmac
import json
import re
import time

import pytest

from conftest import wait_for
from test_quotes import quote
from wsclient import WS

SECRET = "test-secret-never-logged"


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(claims, secret=SECRET, alg="HS256"):
    head = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = b64(hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest())
    return f"{head}.{body}.{sig}"


@pytest.fixture
def secured(redis_server, tickerd_factory):
    t = tickerd_factory("--feed", "none", "--redis-url", redis_server.url, "--auth", "on",
                        "--allowed-origins", "https://app.example", env={"TICKERD_JWT_SECRET": SECRET})
    wait_for(lambda: t.get("/readyz").status == 200 or None, what="ready")
    return t


def ws_status(t, headers=None, path="/ws"):
    ws = WS(t.port, path=path, headers=headers)
    ws.close()
    return ws.response


def test_jwt_on_websocket(secured):
    good = token({"exp": time.time() + 60, "symbols": ["AAPL", "BRK.*"]})
    assert ws_status(secured).status == 401
    assert ws_status(secured, {"Authorization": "Bearer " + token({"exp": time.time() - 5})}).json()["error"] == "token_expired"
    assert ws_status(secured, {"Authorization": "Bearer " + token({"exp": time.time() + 60}, secret="forged")}).status == 401
    assert ws_status(secured, {"Authorization": "Bearer " + token({}, alg="none")}).status == 401
    assert ws_status(secured, {"Authorization": "Bearer not.a.jwt"}).status == 401
    assert ws_status(secured, path="/ws?token=" + good).status == 101
    ws = WS(secured.port, headers={"Authorization": "Bearer " + good})
    assert ws.open
    ws.send_json({"action": "subscribe", "symbols": ["AAPL", "MSFT", "BRK.B"]})
    err = ws.recv_json()
    assert err["error"] == "forbidden_symbol" and err["symbol"] == "MSFT"
    assert ws.recv_json() == {"type": "subscribed", "symbols": ["AAPL", "BRK.B"]}
    log = open(secured.log_path).read()
    assert SECRET not in log and good not in log


def test_foreign_origin_is_refused(secured):
    good = token({"exp": time.time() + 60})
    r = ws_status(secured, {"Authorization": "Bearer " + good, "Origin": "https://evil.example"})
    assert r.status == 403 and r.json()["error"] == "forbidden_origin"
    assert ws_status(secured, {"Authorization": "Bearer " + good, "Origin": "https://app.example"}).status == 101


def test_jwt_on_sse(secured):
    assert secured.get("/stream?symbols=AAPL").status == 401
    tok = token({"exp": time.time() + 60, "symbols": ["AAPL"]})
    assert secured.get("/stream?symbols=MSFT", headers={"Authorization": "Bearer " + tok}).status == 403
    st = secured.status()["streaming"]
    assert st["auth_denied"] >= 1


def test_auth_off_by_default(redis_server, tickerd_factory):
    t = tickerd_factory("--feed", "none", "--redis-url", redis_server.url)
    assert ws_status(t).status == 101


def test_metrics_exposition(redis_server, tickerd_factory):
    t = tickerd_factory("--feed", "none", "--redis-url", redis_server.url, "--task-phases-ms", "10,10")
    wait_for(lambda: t.get("/readyz").status == 200 or None, what="ready")
    t.get("/hello")
    t.get("/nope")
    t.request("POST", "/quotes", body=[quote("AAPL")])
    wait_for(lambda: t.status()["redis"]["publisher"]["published"] >= 1 or None, what="publish")
    r = t.get("/metrics")
    assert r.status == 200 and r.header("content-type").startswith("text/plain; version=0.0.4")
    text = r.body.decode()
    samples = {}
    for line in text.splitlines():
        if line.startswith("#"):
            assert re.match(r"# (HELP|TYPE) tickerd_\w+ ", line), line
            continue
        name, value = line.rsplit(" ", 1)
        samples[name] = float(value)
    assert samples['tickerd_http_requests_total{route="hello",status="2xx"}'] == 1
    assert samples['tickerd_http_requests_total{route="none",status="4xx"}'] == 1
    assert samples['tickerd_messages_received_total{kind="quotes"}'] == 1
    assert samples["tickerd_redis_published_total"] >= 1
    assert samples['tickerd_redis_up{conn="publisher"}'] == 1
    assert samples["tickerd_resident_memory_bytes"] > 1e6
    assert samples['tickerd_http_request_duration_seconds_bucket{le="+Inf"}'] >= 3
    for name in ("tickerd_tasks_total", "tickerd_stream_clients", "tickerd_stream_slow_closes_total",
                 "tickerd_stream_deliveries_total", "tickerd_redis_reconnects_total"):
        assert any(k.startswith(name) for k in samples), name


def test_readyz_follows_redis(redis_server, tickerd_factory):
    t = tickerd_factory("--feed", "none", "--redis-url", redis_server.url)
    wait_for(lambda: t.get("/readyz").status == 200 or None, what="ready")
    redis_server.stop()
    wait_for(lambda: t.get("/readyz").status == 503 or None, what="not ready")
    assert t.get("/healthz").status == 200
    redis_server.start()
    wait_for(lambda: t.get("/readyz").status == 200 or None, timeout=15, what="ready again")
