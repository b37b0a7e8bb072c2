/* cluster.c alone: the redis+cluster:// URL, key slots (CRC16 with hash
 * tags, against values Redis's CLUSTER KEYSLOT gives), and that the
 * publisher's keys and channel of one symbol share a slot. The map, MOVED,
 * migration and failover run against a real cluster in
 * test/integration/test_cluster.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "market/history_redis.h"
#include "redis/cluster.h"

static void test_url_good(void **state) {
  char *urls[RCL_SEEDS_MAX];
  size_t n = 0;
  const char *err = NULL;
  assert_int_equal(rcl_url_parse("redis+cluster://10.0.0.1:7000,10.0.0.2:7001/", urls, &n, &err), 0);
  assert_int_equal(n, 2);
  assert_string_equal(urls[0], "redis://10.0.0.1:7000");
  assert_string_equal(urls[1], "redis://10.0.0.2:7001");
  for (size_t i = 0; i < n; i++) free(urls[i]);
  /* the userinfo goes with every seed */
  assert_int_equal(rcl_url_parse("REDIS+CLUSTER://u:p%40ss@a:1,[::1]:2", urls, &n, &err), 0);
  assert_int_equal(n, 2);
  assert_string_equal(urls[0], "redis://u:p%40ss@a:1");
  assert_string_equal(urls[1], "redis://u:p%40ss@[::1]:2");
  for (size_t i = 0; i < n; i++) free(urls[i]);
  assert_true(rcl_is_url("redis+cluster://h:1"));
  assert_false(rcl_is_url("redis://h:1"));
  assert_false(rcl_is_tls("redis+cluster://h:1"));
  /* rediss+cluster://: every seed (and node) is a rediss:// URL */
  assert_int_equal(rcl_url_parse("Rediss+Cluster://:pw@10.0.0.1:7000,10.0.0.2:7001", urls, &n, &err), 0);
  assert_int_equal(n, 2);
  assert_string_equal(urls[0], "rediss://:pw@10.0.0.1:7000");
  assert_string_equal(urls[1], "rediss://:pw@10.0.0.2:7001");
  for (size_t i = 0; i < n; i++) free(urls[i]);
  assert_true(rcl_is_url("rediss+cluster://h:1"));
  assert_true(rcl_is_tls("rediss+cluster://h:1"));
  assert_false(rcl_is_url("rediss://h:1"));
}

static void test_url_bad(void **state) {
  const char *err = NULL;
  const char *bad[] = {"redis+cluster://",          "redis+cluster://a:1,,b:2", "redis+cluster://a:1/0",
                       "redis+cluster://a:1?x=1",   "redis+cluster://a:0",      "redis+cluster://a:1,b:99999",
                       "redis+cluster://a b:1",     "redis://a:1",              "redis+cluster://a:1,"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
    err = NULL;
    assert_int_equal(rcl_url_parse(bad[i], NULL, NULL, &err), UV_EINVAL);
    assert_non_null(err);
  }
  char many[2048] = "redis+cluster://";
  for (int i = 0; i <= RCL_SEEDS_MAX; i++) strcat(many, i ? ",h:1" : "h:1");
  assert_int_equal(rcl_url_parse(many, NULL, NULL, &err), UV_EINVAL);
}

static uint16_t slot(const char *k) { return rcl_slot(k, strlen(k)); }

static void test_slots(void **state) {
  /* from redis-cli CLUSTER KEYSLOT on redis-server 7.0 */
  assert_int_equal(slot("foo"), 12182);
  assert_int_equal(slot("bar"), 5061);
  assert_int_equal(slot("quotes:AAPL"), 8185);
  assert_int_equal(slot("{user1000}.following"), slot("user1000"));
  /* an empty tag or an unclosed brace hashes the whole key */
  assert_int_not_equal(slot("{}foo"), slot("foo"));
  assert_int_not_equal(slot("{foo"), slot("foo"));
  assert_int_equal(slot(""), 0);
}

static void test_script_keys_share_the_channels_slot(void **state) {
  char pos[HR_KEY_MAX], hist[HR_KEY_MAX];
  const char *ch = "quotes:BRK.B";
  size_t pl = hr_key(pos, ch, strlen(ch), false), hl = hr_key(hist, ch, strlen(ch), true);
  assert_int_equal(rcl_slot(pos, pl), slot(ch));
  assert_int_equal(rcl_slot(hist, hl), slot(ch));
}

static void closed(void *ud) { (*(int *)ud)++; }
static void no_map(td_rcluster *cl, bool changed, void *ud) {}

/* The text after MOVED/ASK: "<slot> <host:port>". No server needed: the
 * map read toward the seed fails in the background. */
static void test_redirect_answers(void **state) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  td_rcluster *cl = rcl_new(&loop, "redis+cluster://127.0.0.1:1", "test", no_map, NULL);
  assert_non_null(cl);
  assert_int_equal(rcl_owner(cl, 3999), -1);
  const char moved[] = "3999 127.0.0.1:7002";
  int idx = rcl_moved(cl, moved, sizeof(moved) - 1);
  assert_true(idx >= 0);
  assert_int_equal(rcl_owner(cl, 3999), idx);
  assert_string_equal(rcl_node_at(cl, idx)->addr, "127.0.0.1:7002");
  assert_string_equal(rcl_node_at(cl, idx)->url, "redis://127.0.0.1:7002");
  /* ASK names a node without changing the map; the same address, the same index */
  const char ask[] = "3999 127.0.0.1:7002", other[] = "17 [::1]:7003";
  assert_int_equal(rcl_ask_node(cl, ask, sizeof(ask) - 1), idx);
  int v6 = rcl_ask_node(cl, other, sizeof(other) - 1);
  assert_true(v6 >= 0 && v6 != idx);
  assert_string_equal(rcl_node_at(cl, v6)->addr, "[::1]:7003");
  assert_int_equal(rcl_owner(cl, 17), -1);
  const char *bad[] = {"x 127.0.0.1:1", "16384 127.0.0.1:1", "5 nocolon", "5", "5 127.0.0.1:0"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
    assert_int_equal(rcl_ask_node(cl, bad[i], strlen(bad[i])), -1);
  int done = 0;
  rcl_close(cl, closed, &done);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(done, 1);
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_url_good),
      cmocka_unit_test(test_url_bad),
      cmocka_unit_test(test_slots),
      cmocka_unit_test(test_script_keys_share_the_channels_slot),
      cmocka_unit_test(test_redirect_answers),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
