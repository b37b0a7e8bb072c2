/* ws_session over a real handshake: a server whose /ws route calls
 * ws_session_open on a hub with the test access table. The handshake and
 * its refusals, the subscribe / unsubscribe / list actions with their
 * errors, symbols the grant does not allow, snapshots and recovery on
 * subscribe, topics, the close handshake and a protocol error. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "base/buf.h"
#include "base/log.h"
#include "stream/ws_session.h"
#include "stream_fixture.h"

static sfx_env E;

static void h_ws(td_request *req) { ws_session_open(req, ((sfx_env *)req->user)->hub); }
static const td_route routes[] = {{ROUTE_GET, "/ws", h_ws, "ws"}};

static int setup(void **state) {
  memset(&ws_counters, 0, sizeof(ws_counters));
  return sfx_start(&E, sfx_hub_opts(NULL), routes, 1);
}
static int teardown(void **state) { return sfx_stop(&E) ? 0 : -1; }

/* A session: the handshake answered 101 with the right accept key. */
static void open_ws(hcli *c, sfx_ws *w, const char *headers) {
  assert_int_equal(hcli_open(c, server_port(E.server)), 0);
  sfx_ws_handshake(c, headers);
  assert_true(hcli_wait_bytes(&E.loop, c, "\r\n\r\n"));
  assert_int_equal(strncmp(c->buf, "HTTP/1.1 101 Switching Protocols\r\n", 34), 0);
  assert_non_null(strstr(c->buf, "\r\nSec-WebSocket-Accept: " SFX_WS_ACCEPT "\r\n"));
  sfx_ws_init(w, c);
}

static void close_ws(hcli *c, sfx_ws *w) {
  sfx_ws_free(w);
  hcli_close(c);
  assert_true(hfx_wait_open(&E.loop, 0));
}

/* The next message, parsed; fails the test when none arrives. */
static json_t *next(sfx_ws *w, int *seen) {
  assert_true(sfx_ws_wait(&E.loop, w, *seen + 1));
  return sfx_ws_json(w, (*seen)++);
}

static void expect_type(sfx_ws *w, int *seen, const char *type, const char *error) {
  json_t *m = next(w, seen);
  assert_string_equal(sfx_type(m), type);
  if (error) assert_string_equal(json_string_value(json_object_get(m, "error")), error);
  json_decref(m);
}

static void refused_handshakes(void **state) {
  static const struct {
    const char *request;
    int status;
    const char *header;
  } cases[] = {
      {"GET /ws HTTP/1.1\r\nHost: t\r\n\r\n", 426, "\r\nUpgrade: websocket\r\n"},
      {"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " SFX_WS_KEY
       "\r\nSec-WebSocket-Version: 8\r\n\r\n",
       426, "\r\nSec-WebSocket-Version: 13\r\n"},
      {"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: short\r\n"
       "Sec-WebSocket-Version: 13\r\n\r\n",
       400, "\"error\":\"bad_websocket_key\""},
  };
  hresp r[HCLI_MAX_RESPONSES];
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    hcli c;
    assert_int_equal(hcli_open(&c, server_port(E.server)), 0);
    hcli_send(&c, cases[i].request);
    assert_true(hcli_wait(&E.loop, &c, 1, r));
    assert_int_equal(r[0].status, cases[i].status);
    assert_non_null(strstr(c.buf, cases[i].header));
    hcli_close(&c);
  }
  /* the access table refuses: its answer goes out, no session starts */
  hcli c;
  assert_int_equal(hcli_open(&c, server_port(E.server)), 0);
  sfx_ws_handshake(&c, "X-Deny: 1\r\n");
  assert_true(hcli_wait(&E.loop, &c, 1, r));
  assert_int_equal(r[0].status, 401);
  assert_int_equal(sfx_access_counts.refusals, 1);
  assert_int_equal(ws_counters.sessions, 0);
  hcli_close(&c);
  assert_true(hfx_wait_open(&E.loop, 0));
}

static void subscribe_list_unsubscribe(void **state) {
  hcli c;
  sfx_ws w;
  int seen = 0;
  open_ws(&c, &w, NULL);
  sfx_ws_send(&w, "{\"action\":\"subscribe\",\"symbols\":[\"AAPL\",\"bad sym\",\"MSFT\"]}");
  expect_type(&w, &seen, "error", "bad_symbol");
  json_t *m = next(&w, &seen);
  assert_string_equal(sfx_type(m), "subscribed");
  json_t *syms = json_object_get(m, "symbols");
  assert_int_equal(json_array_size(syms), 2);
  assert_string_equal(json_string_value(json_array_get(syms, 0)), "AAPL");
  json_decref(m);

  sfx_publish(E.hub, E.store, "AAPL", 1, 100);
  m = next(&w, &seen);
  assert_string_equal(sfx_type(m), "quote");
  assert_string_equal(json_string_value(json_object_get(m, "symbol")), "AAPL");
  json_decref(m);

  sfx_ws_send(&w, "{\"action\":\"list\"}");
  m = next(&w, &seen);
  assert_string_equal(sfx_type(m), "list");
  assert_int_equal(json_array_size(json_object_get(m, "symbols")), 2);
  assert_int_equal(json_array_size(json_object_get(m, "topics")), 0);
  json_decref(m);

  sfx_ws_send(&w, "{\"action\":\"unsubscribe\",\"symbols\":[\"AAPL\",\"IBM\"]}");
  m = next(&w, &seen);
  assert_string_equal(sfx_type(m), "unsubscribed");
  assert_int_equal(json_array_size(json_object_get(m, "symbols")), 1);
  json_decref(m);
  sfx_publish(E.hub, E.store, "AAPL", 2, 101);
  sfx_publish(E.hub, E.store, "MSFT", 1, 200);
  m = next(&w, &seen); /* MSFT only: AAPL is gone */
  assert_string_equal(json_string_value(json_object_get(m, "symbol")), "MSFT");
  json_decref(m);

  /* what is not an action is answered with an error, and the session lives on */
  sfx_ws_send(&w, "not json");
  expect_type(&w, &seen, "error", "bad_json");
  sfx_ws_send(&w, "{\"action\":\"dance\"}");
  expect_type(&w, &seen, "error", "bad_action");
  sfx_ws_send(&w, "{\"action\":\"subscribe\",\"symbols\":\"AAPL\"}");
  expect_type(&w, &seen, "error", "bad_request");
  td_buf *bin = ws_frame_encode_masked(WS_OP_BINARY, "\x01\x02", 2);
  hcli_sendn(&c, bin->data, bin->len);
  buf_unref(bin);
  expect_type(&w, &seen, "error", "bad_message");
  assert_int_equal(ws_counters.bad_messages, 3); /* a bad subscribe is an action's error, not a bad message */
  assert_int_equal(ws_counters.messages_in, 7);
  close_ws(&c, &w);
}

/* "X-Allow: AAPL": the grant allows AAPL only; the grant is released when
 * the session ends (teardown checks admits == releases). */
static void forbidden_symbol(void **state) {
  hcli c;
  sfx_ws w;
  int seen = 0;
  open_ws(&c, &w, "X-Allow: AAPL\r\n");
  sfx_ws_send(&w, "{\"action\":\"subscribe\",\"symbols\":[\"MSFT\",\"AAPL\"]}");
  json_t *m = next(&w, &seen);
  assert_string_equal(json_string_value(json_object_get(m, "error")), "forbidden_symbol");
  assert_string_equal(json_string_value(json_object_get(m, "symbol")), "MSFT");
  json_decref(m);
  m = next(&w, &seen);
  assert_int_equal(json_array_size(json_object_get(m, "symbols")), 1);
  json_decref(m);
  assert_int_equal(sfx_access_counts.releases, 0);
  close_ws(&c, &w);
  assert_int_equal(sfx_access_counts.releases, 1);
}

/* Subscribing with "history" or "since": the stored quotes come after the
 * "subscribed" answer. */
static void snapshot_and_recovery(void **state) {
  for (uint64_t s = 1; s <= 4; s++) sfx_store(&E, "AAPL", s, 100 + (double)s);
  hcli c;
  sfx_ws w;
  int seen = 0;
  open_ws(&c, &w, NULL);
  sfx_ws_send(&w, "{\"action\":\"subscribe\",\"symbols\":[\"AAPL\"],\"history\":2}");
  expect_type(&w, &seen, "subscribed", NULL);
  json_t *m = next(&w, &seen);
  assert_string_equal(sfx_type(m), "history");
  assert_int_equal(json_array_size(json_object_get(m, "quotes")), 2);
  json_decref(m);
  sfx_ws_send(&w, "{\"action\":\"subscribe\",\"symbols\":[\"AAPL\"],\"history\":999}");
  expect_type(&w, &seen, "error", "bad_history");

  char msg[256];
  snprintf(msg, sizeof(msg), "{\"action\":\"subscribe\",\"symbols\":[\"AAPL\"],\"since\":\"AAPL:%s:2\"}",
           qstore_epoch_hex(E.store));
  sfx_ws_send(&w, msg);
  expect_type(&w, &seen, "subscribed", NULL);
  for (int s = 3; s <= 4; s++) {
    m = next(&w, &seen);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(m, "data"), "seq")), s);
    json_decref(m);
  }
  m = next(&w, &seen);
  assert_string_equal(sfx_type(m), "recovery");
  assert_true(json_is_true(json_object_get(m, "recovered")));
  json_decref(m);
  close_ws(&c, &w);
}

static void topics(void **state) {
  assert_int_equal(hub_topic_add(E.hub, "tasks"), 0);
  hcli c;
  sfx_ws w;
  int seen = 0;
  open_ws(&c, &w, NULL);
  sfx_ws_send(&w, "{\"action\":\"subscribe\",\"topics\":[\"tasks\",\"nope\"]}");
  expect_type(&w, &seen, "error", "bad_topic");
  expect_type(&w, &seen, "subscribed", NULL);
  assert_true(hub_topic_listened(E.hub, 0));
  hub_topic_publish(E.hub, 0, "{\"type\":\"task\"}", 15);
  expect_type(&w, &seen, "task", NULL);
  sfx_ws_send(&w, "{\"action\":\"unsubscribe\",\"topics\":[\"tasks\"]}");
  expect_type(&w, &seen, "unsubscribed", NULL);
  assert_false(hub_topic_listened(E.hub, 0));
  close_ws(&c, &w);
}

/* The client's close frame is echoed and the connection ends. */
static void close_handshake(void **state) {
  hcli c;
  sfx_ws w;
  open_ws(&c, &w, NULL);
  td_buf *b = ws_frame_encode_close_masked(WS_CLOSE_NORMAL, "bye");
  hcli_sendn(&c, b->data, b->len);
  buf_unref(b);
  assert_true(sfx_ws_wait_closed(&E.loop, &w));
  assert_int_equal(w.close_code, WS_CLOSE_NORMAL);
  assert_true(hcli_wait_eof(&E.loop, &c));
  close_ws(&c, &w);
}

/* An unmasked client frame breaks RFC 6455: close 1002, counted. */
static void protocol_error(void **state) {
  hcli c;
  sfx_ws w;
  open_ws(&c, &w, NULL);
  td_buf *b = ws_frame_encode(WS_OP_TEXT, "{}", 2);
  hcli_sendn(&c, b->data, b->len);
  buf_unref(b);
  assert_true(sfx_ws_wait_closed(&E.loop, &w));
  assert_int_equal(w.close_code, WS_CLOSE_PROTOCOL_ERROR);
  assert_true(hcli_wait_eof(&E.loop, &c));
  assert_int_equal(ws_counters.protocol_errors, 1);
  close_ws(&c, &w);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  log_set_stdout(getenv("TD_TEST_LOG") != NULL);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(refused_handshakes, setup, teardown),
      cmocka_unit_test_setup_teardown(subscribe_list_unsubscribe, setup, teardown),
      cmocka_unit_test_setup_teardown(forbidden_symbol, setup, teardown),
      cmocka_unit_test_setup_teardown(snapshot_and_recovery, setup, teardown),
      cmocka_unit_test_setup_teardown(topics, setup, teardown),
      cmocka_unit_test_setup_teardown(close_handshake, setup, teardown),
      cmocka_unit_test_setup_teardown(protocol_error, setup, teardown),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  buf_pool_release();
  log_close();
  return rc;
}
