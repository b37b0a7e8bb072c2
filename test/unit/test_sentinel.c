/* sentinel: redis+sentinel:// URLs, and the shared target's life without
 * any Sentinel answering (connections wait, never connect anywhere, and
 * everything closes). Failovers against real Sentinels are
 * test/integration/test_sentinel.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "base/log.h"
#include "redis/redis_conn.h"
#include "redis/sentinel.h"
#include "redis_fixture.h"

static void test_url_good(void **state) {
  (void)state;
  sentinel_url u;
  const char *err = NULL;
  assert_int_equal(sentinel_url_parse("redis+sentinel://10.0.0.1,h-2:26380,[::1]:7/mymaster", &u, &err), 0);
  assert_int_equal(u.nhosts, 3);
  assert_string_equal(u.hosts[0].host, "10.0.0.1");
  assert_int_equal(u.hosts[0].port, SENTINEL_DEFAULT_PORT);
  assert_string_equal(u.hosts[1].host, "h-2");
  assert_int_equal(u.hosts[1].port, 26380);
  assert_string_equal(u.hosts[2].host, "::1");
  assert_int_equal(u.hosts[2].port, 7);
  assert_string_equal(u.master, "mymaster");
  assert_int_equal(u.primary.db, 0);
  assert_null(u.primary.password);
  assert_string_equal(u.primary.masked, "redis+sentinel://10.0.0.1,h-2:26380,[::1]:7/mymaster");
  sentinel_url_free(&u);

  assert_int_equal(sentinel_url_parse("REDIS+SENTINEL://alice:s%40c:r@t@h:1,h:2/m.1/3", &u, &err), 0);
  assert_int_equal(u.nhosts, 2);
  assert_string_equal(u.primary.user, "alice");
  assert_string_equal(u.primary.password, "s@c:r@t");
  assert_string_equal(u.master, "m.1");
  assert_int_equal(u.primary.db, 3);
  assert_string_equal(u.primary.masked, "REDIS+SENTINEL://alice:***@h:1,h:2/m.1/3");
  sentinel_url_free(&u);

  assert_int_equal(sentinel_url_parse("redis+sentinel://:pw@h/m/", &u, &err), 0);
  assert_null(u.primary.user);
  assert_string_equal(u.primary.password, "pw");
  assert_string_equal(u.primary.masked, "redis+sentinel://:***@h/m/");
  assert_false(u.tls);
  assert_false(u.primary.tls);
  sentinel_url_free(&u);

  /* rediss+sentinel://: the same URL, TLS to the Sentinels and the primary */
  assert_true(sentinel_url_is("RediSS+Sentinel://h/m"));
  assert_int_equal(sentinel_url_parse("rediss+sentinel://:pw@h:5,h2/m/2", &u, &err), 0);
  assert_true(u.tls);
  assert_true(u.primary.tls);
  assert_int_equal(u.nhosts, 2);
  assert_string_equal(u.hosts[0].host, "h");
  assert_int_equal(u.hosts[0].port, 5);
  assert_string_equal(u.master, "m");
  assert_int_equal(u.primary.db, 2);
  assert_string_equal(u.primary.masked, "rediss+sentinel://:***@h:5,h2/m/2");
  sentinel_url_free(&u);
}

static void test_url_bad(void **state) {
  (void)state;
  static const char *const bad[] = {
      "", "redis://h/m", "redis+sentinel://", "redis+sentinel://h", "redis+sentinel://h/",
      "redis+sentinel://h//1", "redis+sentinel://,h/m", "redis+sentinel://h,/m", "redis+sentinel://h,,h/m",
      "redis+sentinel://h:0/m", "redis+sentinel://h:65536/m", "redis+sentinel://h o/m", "redis+sentinel://h/m n",
      "redis+sentinel://h/m/x", "redis+sentinel://h/m/1/2", "redis+sentinel://h/m?x", "redis+sentinel://h/m#x",
      "redis+sentinel://user@h/m", "redis+sentinel://u:@h/m", "redis+sentinel://u:%zz@h/m",
      "redis+sentinel://[::1/m", "redis+sentinel://a,b,c,d,e,f,g,h,i/m",
      "rediss+sentinel://", "rediss+sentinel://h", "redis+sentinels://h/m", "rediss://h/m"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
    sentinel_url u;
    const char *err = NULL;
    int rc = sentinel_url_parse(bad[i], &u, &err);
    if (rc != UV_EINVAL) fprintf(stderr, "accepted bad URL %s\n", bad[i]);
    assert_int_equal(rc, UV_EINVAL);
    assert_non_null(err);
    assert_int_equal(u.nhosts, 0);
    assert_null(u.primary.password);
  }
  char name[SENTINEL_NAME_MAX + 40] = "redis+sentinel://h/";
  memset(name + strlen(name), 'm', SENTINEL_NAME_MAX + 1);
  sentinel_url u;
  const char *err = NULL;
  assert_int_equal(sentinel_url_parse(name, &u, &err), UV_EINVAL);
}

typedef struct {
  int ready, closed;
} counts;

static void c_ready(td_rconn *c, void *ud) { (void)c, ((counts *)ud)->ready++; }
static void c_closed(td_rconn *c, void *ud) { (void)c, ((counts *)ud)->closed++; }
static bool two_closed(void *arg) { return ((counts *)arg)->closed == 2; }

/* Sentinels that refuse: the connections wait (no address to try), the
 * status says so, and closing both ends the target and its own
 * connections (the loop runs dry; ASan sees no leak). */
static void test_no_sentinel_answers(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  char url[128];
  snprintf(url, sizeof(url), "redis+sentinel://127.0.0.1:%d,127.0.0.1:%d/mymaster", rfx_free_port(),
           rfx_free_port());
  static const rconn_callbacks cb = {c_ready, NULL, NULL, c_closed};
  counts n = {0};
  td_rconn a, b;
  const char *err = NULL;
  assert_int_equal(rconn_init(&a, &loop, url, &cb, &n, NULL, &err), 0);
  assert_int_equal(rconn_init(&b, &loop, url, &cb, &n, NULL, &err), 0);
  assert_ptr_equal(a.sentinel, b.sentinel);
  assert_ptr_equal(sentinel_find(&loop, url), a.sentinel);
  rconn_start(&a);
  rconn_start(&b);
  rfx_run_for(&loop, 300);
  assert_int_equal(n.ready, 0);
  assert_int_equal(a.state, RCONN_BACKOFF);
  assert_null(a.url.host);
  sentinel_stats st;
  sentinel_get_stats(a.sentinel, &st);
  assert_string_equal(st.master, "mymaster");
  assert_string_equal(st.primary, "");
  assert_int_equal(st.nhosts, 2);
  assert_int_equal(st.ready, 0);
  rconn_close(&a);
  rconn_close(&b);
  assert_true(rfx_run_until(&loop, two_closed, &n, 2000));
  assert_null(sentinel_find(&loop, url));
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  log_set_stdout(getenv("TD_TEST_LOG") != NULL);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_url_good),
      cmocka_unit_test(test_url_bad),
      cmocka_unit_test(test_no_sentinel_answers),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
