/* alpaca_rest against the fake server's REST port: found (converted to a
 * stream quote), not found (404 and the empty quote), upstream 500 and bad
 * JSON, timeout, concurrent requests sharing one upstream request,
 * cancellation, limits, a certificate for the wrong host, credentials. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "market/alpaca_rest.h"
#include "fake_alpaca.h"
#include "upstream/https_client.h"
#include "base/log.h"

typedef struct {
  int calls;
  arest_result res;
  char json[1024];
  bool done;
  int *outstanding; /* shared countdown */
} answer;

static void on_answer(void *ud, arest_result res, const char *json, size_t len) {
  answer *a = ud;
  a->calls++;
  a->res = res;
  a->json[0] = 0;
  if (json) snprintf(a->json, sizeof(a->json), "%.*s", (int)len, json);
  else assert_int_equal(len, 0);
  a->done = true;
  if (a->outstanding) (*a->outstanding)--;
}

typedef struct {
  uv_loop_t loop;
  fake_server f;
  td_config cfg;
  arest *r;
} env;

static void load(env *e, const char *url, const char *secret) {
  const char *ca = fake_path("ca.pem");
  char *argv[] = {"tickerd", "--alpaca-rest-url", (char *)url, "--ca-file", (char *)ca, NULL};
  char sv[64];
  snprintf(sv, sizeof(sv), "APCA_API_SECRET_KEY=%s", secret);
  char *const envv[] = {"APCA_API_KEY_ID=testkey", sv, NULL};
  assert_int_equal(cfg_load_env(&e->cfg, 5, argv, envv), 0);
}

static void env_start(env *e, const char *cert, const char *secret) {
  memset(e, 0, sizeof(*e));
  uv_loop_init(&e->loop);
  const char *args[] = {"--rest", "--rest-delay-ms", "300", NULL};
  assert_int_equal(fake_start(&e->f, cert, args), 0);
  char url[128];
  snprintf(url, sizeof(url), "https://127.0.0.1:%d/", e->f.rest_port);
  load(e, url, secret);
  const char *err = NULL;
  assert_int_equal(arest_new(&e->loop, alpaca_opts_of(&e->cfg), &e->r, &err), 0);
}

static void env_stop(env *e) {
  arest_free(e->r);
  run_to_end(&e->loop);
  assert_int_equal(uv_loop_close(&e->loop), 0);
  fake_stop(&e->f);
  cfg_free(&e->cfg);
}

static void ask(env *e, const char *symbol, answer *a) {
  memset(a, 0, sizeof(*a));
  arest_wait *w;
  assert_int_equal(arest_get(e->r, symbol, on_answer, a, &w), 0);
  assert_int_equal(a->calls, 0); /* never from inside arest_get */
  assert_true(run_until(&e->loop, &a->done, 10000));
  assert_int_equal(a->calls, 1);
}

static void test_found_and_not_found(void **state) {
  env e;
  env_start(&e, "server", "testsecret");
  answer a;
  ask(&e, "AAPL", &a);
  assert_int_equal(a.res, AREST_OK);
  const char *head = "{\"T\":\"q\",\"S\":\"AAPL\",\"bx\":\"V\",\"bp\":189.5,\"bs\":3,";
  if (strncmp(a.json, head, strlen(head)) != 0) fail_msg("got %s", a.json);
  assert_non_null(strstr(a.json, "\"c\":[\"R\"],\"z\":\"C\",\"t\":\""));
  ask(&e, "NOPE", &a);
  assert_int_equal(a.res, AREST_NOT_FOUND);
  assert_string_equal(a.json, "");
  ask(&e, "EMPTY", &a);
  assert_int_equal(a.res, AREST_NOT_FOUND);
  ask(&e, "FAIL", &a);
  assert_int_equal(a.res, AREST_UPSTREAM_ERROR);
  ask(&e, "BADJSON", &a);
  assert_int_equal(a.res, AREST_UPSTREAM_ERROR);
  assert_int_equal(arest_http_status(AREST_OK), 200);
  assert_int_equal(arest_http_status(AREST_NOT_FOUND), 404);
  assert_int_equal(arest_http_status(AREST_TIMEOUT), 504);
  assert_int_equal(arest_http_status(AREST_UPSTREAM_ERROR), 502);
  assert_string_equal(arest_result_name(AREST_UPSTREAM_ERROR), "upstream_error");
  const arest_stats *st = arest_get_stats(e.r);
  assert_int_equal(st->upstream, 5);
  assert_int_equal(st->results[AREST_OK], 1);
  assert_int_equal(st->results[AREST_NOT_FOUND], 2);
  assert_int_equal(st->results[AREST_UPSTREAM_ERROR], 2);
  env_stop(&e);
}

static void test_wrong_secret(void **state) {
  env e;
  env_start(&e, "server", "not-the-secret");
  answer a;
  ask(&e, "AAPL", &a); /* 403 upstream */
  assert_int_equal(a.res, AREST_UPSTREAM_ERROR);
  env_stop(&e);
}

static void test_timeout(void **state) {
  env e;
  env_start(&e, "server", "testsecret");
  arest_set_timeout(e.r, 100); /* the fake answers SLOW after 300 ms */
  answer a;
  ask(&e, "SLOW", &a);
  assert_int_equal(a.res, AREST_TIMEOUT);
  env_stop(&e);
}

typedef struct {
  int status;
  char body[256];
  bool done;
} raw;

static void on_raw(void *ud, int status, const char *body, size_t len, const char *err) {
  raw *r = ud;
  r->status = status;
  if (body) snprintf(r->body, sizeof(r->body), "%.*s", (int)len, body);
  r->done = true;
}

/* How many upstream requests the fake saw for each symbol. */
static void fake_stats(env *e, raw *out) {
  tls_ctx *ctx;
  const char *err;
  assert_int_equal(tls_ctx_new(&ctx, fake_path("ca.pem"), &err), 0);
  char url[128];
  snprintf(url, sizeof(url), "https://127.0.0.1:%d/_stats", e->f.rest_port);
  memset(out, 0, sizeof(*out));
  hcli_req *q;
  assert_int_equal(hcli_get(&e->loop, ctx, url, NULL, 0, 5000, on_raw, out, &q), 0);
  assert_true(run_until(&e->loop, &out->done, 10000));
  tls_ctx_free(ctx);
}

#define SHARED 5

static void test_concurrent_requests_share_one(void **state) {
  env e;
  env_start(&e, "server", "testsecret");
  answer a[SHARED];
  int outstanding = SHARED;
  for (int i = 0; i < SHARED; i++) {
    memset(&a[i], 0, sizeof(a[i]));
    a[i].outstanding = &outstanding;
    arest_wait *w;
    assert_int_equal(arest_get(e.r, "SLOW", on_answer, &a[i], &w), 0);
  }
  for (int i = 0; i < SHARED; i++) assert_true(run_until(&e.loop, &a[i].done, 10000));
  assert_int_equal(outstanding, 0);
  for (int i = 0; i < SHARED; i++) {
    assert_int_equal(a[i].calls, 1);
    assert_int_equal(a[i].res, AREST_OK);
    assert_string_equal(a[i].json, a[0].json);
  }
  const arest_stats *st = arest_get_stats(e.r);
  assert_int_equal(st->upstream, 1);
  assert_int_equal(st->shared, SHARED - 1);
  raw r;
  fake_stats(&e, &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "{\"SLOW\": 1}");
  /* Once answered, a new request goes upstream again. */
  answer again;
  ask(&e, "SLOW", &again);
  assert_int_equal(arest_get_stats(e.r)->upstream, 2);
  env_stop(&e);
}

static void test_cancel(void **state) {
  env e;
  env_start(&e, "server", "testsecret");
  answer a1 = {0}, a2 = {0}, a3 = {0};
  arest_wait *w1, *w2, *w3;
  assert_int_equal(arest_get(e.r, "SLOW", on_answer, &a1, &w1), 0);
  assert_int_equal(arest_get(e.r, "SLOW", on_answer, &a2, &w2), 0);
  arest_cancel(e.r, w1);
  assert_true(run_until(&e.loop, &a2.done, 10000));
  assert_int_equal(a1.calls, 0);
  assert_int_equal(a2.calls, 1);
  assert_int_equal(a2.res, AREST_OK);
  /* The only waiter cancelled: no callback, the request is dropped. */
  assert_int_equal(arest_get(e.r, "AAPL", on_answer, &a3, &w3), 0);
  arest_cancel(e.r, w3);
  bool never = false;
  run_until(&e.loop, &never, 200);
  assert_int_equal(a3.calls, 0);
  env_stop(&e);
}

/* A listener that never accepts: requests hang until freed. */
static void test_limits(void **state) {
  env e;
  memset(&e, 0, sizeof(e));
  uv_loop_init(&e.loop);
  uv_tcp_t srv;
  uv_tcp_init(&e.loop, &srv);
  struct sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", 0, &addr);
  assert_int_equal(uv_tcp_bind(&srv, (struct sockaddr *)&addr, 0), 0);
  int fd;
  uv_fileno((uv_handle_t *)&srv, &fd);
  assert_int_equal(listen(fd, 128), 0);
  struct sockaddr_in got;
  int len = sizeof(got);
  uv_tcp_getsockname(&srv, (struct sockaddr *)&got, &len);
  char url[64];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d", ntohs(got.sin_port));
  load(&e, url, "s");
  const char *err;
  assert_int_equal(arest_new(&e.loop, alpaca_opts_of(&e.cfg), &e.r, &err), 0);
  answer a[AREST_MAX_PENDING + 1];
  memset(a, 0, sizeof(a));
  arest_wait *w;
  for (int i = 0; i < AREST_MAX_PENDING; i++) {
    char sym[16];
    snprintf(sym, sizeof(sym), "S%d", i);
    memset(&a[i], 0, sizeof(a[i]));
    assert_int_equal(arest_get(e.r, sym, on_answer, &a[i], &w), 0);
  }
  assert_int_equal(arest_get(e.r, "ONEMORE", on_answer, &a[AREST_MAX_PENDING], &w), -EBUSY);
  assert_int_equal(arest_get(e.r, "S0", on_answer, &a[AREST_MAX_PENDING], &w), 0); /* joins */
  assert_int_equal(arest_get(e.r, "bad sym", on_answer, &a[0], &w), -EINVAL);
  assert_int_equal(arest_get(e.r, "", on_answer, &a[0], &w), -EINVAL);
  assert_int_equal(arest_get_stats(e.r)->busy, 1);
  bool never = false;
  run_until(&e.loop, &never, 50);
  arest_free(e.r); /* cancels them all: no callback */
  uv_close((uv_handle_t *)&srv, NULL);
  run_to_end(&e.loop);
  for (int i = 0; i <= AREST_MAX_PENDING; i++) assert_int_equal(a[i].calls, 0);
  assert_int_equal(uv_loop_close(&e.loop), 0);
  cfg_free(&e.cfg);
}

static void test_wrong_certificate(void **state) {
  env e;
  env_start(&e, "wrong", "testsecret");
  answer a;
  ask(&e, "AAPL", &a);
  assert_int_equal(a.res, AREST_UPSTREAM_ERROR);
  env_stop(&e);
}

static void test_config(void **state) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  td_config cfg;
  char *argv[] = {"tickerd", NULL};
  char *const none[] = {NULL};
  assert_int_equal(cfg_load_env(&cfg, 1, argv, none), 0);
  arest *r = (arest *)1;
  const char *err = NULL;
  assert_int_equal(arest_new(&loop, alpaca_opts_of(&cfg), &r, &err), -EINVAL);
  assert_null(r);
  assert_non_null(strstr(err, "APCA_API_KEY_ID"));
  cfg_free(&cfg);
  char *argv2[] = {"tickerd", "--alpaca-rest-url", "wss://x/", NULL};
  char *const creds[] = {"APCA_API_KEY_ID=k", "APCA_API_SECRET_KEY=s", NULL};
  assert_int_equal(cfg_load_env(&cfg, 3, argv2, creds), 0);
  assert_int_equal(arest_new(&loop, alpaca_opts_of(&cfg), &r, &err), -EINVAL);
  assert_non_null(strstr(err, "--alpaca-rest-url"));
  cfg_free(&cfg);
  char *const crlf[] = {"APCA_API_KEY_ID=k\r\nX-Evil: 1", "APCA_API_SECRET_KEY=s", NULL};
  assert_int_equal(cfg_load_env(&cfg, 1, argv, crlf), 0);
  assert_int_equal(arest_new(&loop, alpaca_opts_of(&cfg), &r, &err), -EINVAL);
  assert_non_null(strstr(err, "control characters"));
  cfg_free(&cfg);
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
  fake_process_setup();
  log_set_stdout(false);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_found_and_not_found),
      cmocka_unit_test(test_wrong_secret),
      cmocka_unit_test(test_timeout),
      cmocka_unit_test(test_concurrent_requests_share_one),
      cmocka_unit_test(test_cancel),
      cmocka_unit_test(test_limits),
      cmocka_unit_test(test_wrong_certificate),
      cmocka_unit_test(test_config),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
