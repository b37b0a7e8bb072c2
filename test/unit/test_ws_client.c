/* ws_client against the fake Alpaca server: the upgrade, messages in order,
 * fragmented messages with a ping between fragments, server pings, the
 * close handshake both ways, oversize and invalid frames, a refused upgrade,
 * a certificate for the wrong host. The test plays Alpaca's auth and
 * subscribe steps by hand so that the fake sends its data. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "fake_alpaca.h"
#include "upstream/ws_client.h"

#define MAX_MSGS 64

typedef struct {
  wsc w;
  int opens;
  int closes;
  int close_code;
  char close_reason[160];
  char msgs[MAX_MSGS][2048];
  int nmsgs;
  const char *subscribe; /* sent after "authenticated" */
  int close_after;       /* wsc_close after this many messages (0: never) */
  int want;              /* done after this many messages (0: at close) */
  bool done;
} client;

static void c_on_open(wsc *w) {
  client *c = w->data;
  c->opens++;
}

static void c_on_message(wsc *w, const char *text, size_t len) {
  client *c = w->data;
  if (c->nmsgs < MAX_MSGS) snprintf(c->msgs[c->nmsgs++], sizeof(c->msgs[0]), "%.*s", (int)len, text);
  if (strstr(c->msgs[c->nmsgs - 1], "\"msg\":\"connected\"")) {
    const char *auth = "{\"action\":\"auth\",\"key\":\"testkey\",\"secret\":\"testsecret\"}";
    assert_int_equal(wsc_send_text(w, auth, strlen(auth)), 0);
  } else if (strstr(c->msgs[c->nmsgs - 1], "\"msg\":\"authenticated\"")) {
    assert_int_equal(wsc_send_text(w, c->subscribe, strlen(c->subscribe)), 0);
  }
  if (c->close_after && c->nmsgs == c->close_after) wsc_close(w, WS_CLOSE_NORMAL, "test done");
  if (c->want && c->nmsgs == c->want) c->done = true;
}

static void c_on_close(wsc *w, int code, const char *reason) {
  client *c = w->data;
  c->closes++;
  c->close_code = code;
  snprintf(c->close_reason, sizeof(c->close_reason), "%s", reason);
  c->done = true;
}

static const wsc_callbacks c_cb = {c_on_open, c_on_message, c_on_close};

typedef struct {
  uv_loop_t loop;
  fake_server f;
  tls_ctx *ctx;
  client c;
} env;

static void env_start(env *e, const char *cert, const char *const *args) {
  uv_loop_init(&e->loop);
  assert_int_equal(fake_start(&e->f, cert, args), 0);
  const char *err;
  assert_int_equal(tls_ctx_new(&e->ctx, fake_path("ca.pem"), &err), 0);
  memset(&e->c, 0, sizeof(e->c));
  e->c.subscribe = "{\"action\":\"subscribe\",\"quotes\":[\"AAPL\"],\"trades\":[\"MSFT\"]}";
  wsc_init(&e->loop, &e->c.w, e->ctx, &c_cb);
  e->c.w.data = &e->c;
}

static void env_connect(env *e, const char *scheme, int port, size_t max_message) {
  char url[128];
  snprintf(url, sizeof(url), "%s://127.0.0.1:%d/v2/test", scheme, port);
  assert_int_equal(wsc_connect(&e->c.w, url, max_message, 5000), 0);
}

/* Closes what is open and runs the loop to its end. */
static void env_stop(env *e) {
  if (e->c.closes == 0) {
    e->c.done = false;
    wsc_close(&e->c.w, WS_CLOSE_GOING_AWAY, "test end");
    assert_true(run_until(&e->loop, &e->c.done, 10000));
  }
  assert_int_equal(e->c.closes, 1);
  run_to_end(&e->loop);
  fake_stop(&e->f);
  tls_ctx_free(e->ctx);
  assert_int_equal(uv_loop_close(&e->loop), 0);
}

static void test_happy_and_client_close(void **state) {
  env e;
  const char *args[] = {"--mode", "happy", "--batches", "2", NULL};
  env_start(&e, "server", args);
  /* connected, authenticated, subscription, 2 batches: then we close. */
  e.c.close_after = 5;
  env_connect(&e, "wss", e.f.ws_port, 1 << 20);
  assert_true(run_until(&e.loop, &e.c.done, 10000));
  assert_int_equal(e.c.opens, 1);
  assert_int_equal(e.c.nmsgs, 5);
  assert_string_equal(e.c.msgs[0], "[{\"T\":\"success\",\"msg\":\"connected\"}]");
  assert_string_equal(e.c.msgs[1], "[{\"T\":\"success\",\"msg\":\"authenticated\"}]");
  assert_non_null(strstr(e.c.msgs[2], "\"T\":\"subscription\""));
  assert_non_null(strstr(e.c.msgs[3], "{\"T\":\"q\",\"S\":\"AAPL\""));
  assert_non_null(strstr(e.c.msgs[3], "{\"T\":\"t\",\"S\":\"MSFT\""));
  assert_non_null(strstr(e.c.msgs[4], "\"bp\":189.51"));
  /* Our close was answered by the server's close frame. */
  assert_int_equal(e.c.closes, 1);
  assert_int_equal(e.c.close_code, WS_CLOSE_NORMAL);
  assert_string_equal(e.c.close_reason, "test done");
  assert_true(e.c.w.close_received);
  env_stop(&e);
}

static void test_plain_ws(void **state) {
  env e;
  const char *args[] = {"--batches", "1", NULL};
  env_start(&e, NULL, args);
  e.c.want = 4;
  env_connect(&e, "ws", e.f.ws_port, 0);
  assert_true(run_until(&e.loop, &e.c.done, 10000));
  assert_int_equal(e.c.nmsgs, 4);
  env_stop(&e);
}

static void test_fragmented_with_ping(void **state) {
  env e;
  const char *args[] = {"--mode", "fragment", NULL};
  env_start(&e, "server", args);
  e.c.want = 4;
  env_connect(&e, "wss", e.f.ws_port, 1 << 20);
  assert_true(run_until(&e.loop, &e.c.done, 10000));
  /* The message sent 7 bytes per frame arrives whole and parses as the batch. */
  assert_non_null(strstr(e.c.msgs[3], "[{\"T\":\"q\",\"S\":\"AAPL\""));
  assert_int_equal(e.c.msgs[3][strlen(e.c.msgs[3]) - 1], ']');
  assert_int_equal(e.c.w.pings_in, 1);
  assert_int_equal(e.c.w.pongs_out, 1);
  env_stop(&e);
}

static void test_server_ping_answered(void **state) {
  env e;
  const char *args[] = {"--mode", "ping", NULL};
  env_start(&e, "server", args);
  e.c.want = 4;
  env_connect(&e, "wss", e.f.ws_port, 1 << 20);
  /* The fake sends the PONG trade only once our pong came back. */
  assert_true(run_until(&e.loop, &e.c.done, 10000));
  assert_non_null(strstr(e.c.msgs[3], "\"S\":\"PONG\""));
  assert_int_equal(e.c.w.pongs_out, 1);
  env_stop(&e);
}

static void expect_failure(const char *mode, int code, const char *reason) {
  env e;
  const char *args[] = {"--mode", mode, NULL};
  env_start(&e, "server", args);
  env_connect(&e, "wss", e.f.ws_port, 1 << 20);
  assert_true(run_until(&e.loop, &e.c.done, 10000));
  assert_int_equal(e.c.closes, 1);
  assert_int_equal(e.c.close_code, code);
  assert_string_equal(e.c.close_reason, reason);
  env_stop(&e);
}

static void test_oversize_frame(void **state) {
  expect_failure("oversize", WS_CLOSE_TOO_BIG, "message too big");
}

static void test_invalid_frame(void **state) {
  env e;
  const char *args[] = {"--mode", "invalid", NULL};
  env_start(&e, "server", args);
  env_connect(&e, "wss", e.f.ws_port, 1 << 20);
  assert_true(run_until(&e.loop, &e.c.done, 10000));
  assert_int_equal(e.c.close_code, WS_CLOSE_PROTOCOL_ERROR);
  assert_non_null(e.c.close_reason[0] ? e.c.close_reason : NULL);
  env_stop(&e);
}

static void test_server_closes_after_bad_auth(void **state) {
  env e;
  const char *args[] = {"--mode", "badauth", NULL};
  env_start(&e, "server", args);
  env_connect(&e, "wss", e.f.ws_port, 1 << 20);
  assert_true(run_until(&e.loop, &e.c.done, 10000));
  assert_string_equal(e.c.msgs[1], "[{\"T\":\"error\",\"code\":402,\"msg\":\"auth failed\"}]");
  /* The server's close frame (1000) was answered; the code is the server's. */
  assert_int_equal(e.c.close_code, WS_CLOSE_NORMAL);
  assert_true(e.c.w.close_received);
  env_stop(&e);
}

static void test_upgrade_refused(void **state) {
  env e;
  const char *args[] = {"--rest", NULL};
  env_start(&e, "server", args);
  /* The REST port answers the upgrade request with a 404. */
  env_connect(&e, "wss", e.f.rest_port, 1 << 20);
  assert_true(run_until(&e.loop, &e.c.done, 10000));
  assert_int_equal(e.c.opens, 0);
  assert_int_equal(e.c.close_code, WS_CLOSE_ABNORMAL);
  assert_string_equal(e.c.close_reason, "handshake refused: HTTP 404");
  assert_int_equal(e.c.w.head.status, 404);
  env_stop(&e);
}

static void test_wrong_certificate(void **state) {
  env e;
  env_start(&e, "wrong", NULL);
  env_connect(&e, "wss", e.f.ws_port, 1 << 20);
  assert_true(run_until(&e.loop, &e.c.done, 10000));
  assert_int_equal(e.c.opens, 0);
  assert_int_equal(e.c.close_code, WS_CLOSE_ABNORMAL);
  assert_non_null(strstr(e.c.close_reason, "mismatch"));
  env_stop(&e);
}

/* A server that stops reading: our idle ping goes unanswered, and after a
 * second idle period the connection is closed. */
static void test_idle_timeout(void **state) {
  env e;
  const char *args[] = {"--mode", "stall", NULL};
  env_start(&e, "server", args);
  e.c.w.idle_ms = 150;
  env_connect(&e, "wss", e.f.ws_port, 1 << 20);
  assert_true(run_until(&e.loop, &e.c.done, 10000));
  assert_int_equal(e.c.nmsgs, 3); /* connected, authenticated, subscription */
  assert_int_equal(e.c.close_code, WS_CLOSE_ABNORMAL);
  assert_string_equal(e.c.close_reason, "idle timeout");
  env_stop(&e);
}

/* Our close frame goes unanswered: the close timeout ends the connection. */
static void test_close_timeout(void **state) {
  env e;
  const char *args[] = {"--mode", "stall", NULL};
  env_start(&e, "server", args);
  e.c.close_after = 3;
  e.c.w.close_timeout_ms = 100;
  env_connect(&e, "wss", e.f.ws_port, 1 << 20);
  assert_true(run_until(&e.loop, &e.c.done, 10000));
  assert_false(e.c.w.close_received);
  assert_int_equal(e.c.close_code, WS_CLOSE_NORMAL);
  assert_string_equal(e.c.close_reason, "test done");
  env_stop(&e);
}

static void test_bad_urls(void **state) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  client c;
  memset(&c, 0, sizeof(c));
  wsc_init(&loop, &c.w, NULL, &c_cb);
  assert_int_equal(wsc_connect(&c.w, "https://h/x", 0, 100), UV_EINVAL);
  assert_int_equal(wsc_connect(&c.w, "wss://", 0, 100), UV_EINVAL);
  assert_int_equal(wsc_connect(&c.w, "wss://h/x", 0, 100), UV_EINVAL); /* TLS without ctx */
  assert_int_equal(wsc_send_text(&c.w, "x", 1), UV_ENOTCONN);
  wsc_close(&c.w, 1000, "nothing open");
  run_to_end(&loop);
  assert_int_equal(c.closes, 0);
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
  fake_process_setup();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_happy_and_client_close),
      cmocka_unit_test(test_plain_ws),
      cmocka_unit_test(test_fragmented_with_ping),
      cmocka_unit_test(test_server_ping_answered),
      cmocka_unit_test(test_oversize_frame),
      cmocka_unit_test(test_invalid_frame),
      cmocka_unit_test(test_server_closes_after_bad_auth),
      cmocka_unit_test(test_upgrade_refused),
      cmocka_unit_test(test_wrong_certificate),
      cmocka_unit_test(test_idle_timeout),
      cmocka_unit_test(test_close_timeout),
      cmocka_unit_test(test_bad_urls),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
