/* subscriber against a real redis-server: reference counts checked with
 * PUBSUB NUMSUB/CHANNELS, SUBSCRIBE/UNSUBSCRIBE churn on one channel (the
 * hiredis 0.14.1 callback-table trap), resubscription after a restart, and
 * the heartbeat (healthy, and timing out when it cannot arrive). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "market/subscriber.c"
#include "redis_fixture.h"

typedef struct ctx {
  uv_loop_t loop;
  rfx redis, redis2;
  td_subscriber *sub;
  td_publisher *pub;
  int ready_events, unready_events, resubscribed_events;
  bool ready;
  int messages;
  uint32_t last_id;
  char last_channel[64], last_payload[64];
  int done;
  const char *check_channel;
  long long want_numsub;
} ctx;

static const rconn_options fast_conn = {.connect_timeout_ms = 1000, .command_timeout_ms = 500,
                                        .backoff_min_ms = 20, .backoff_max_ms = 80};

static void on_message(void *ud, uint32_t id, const char *ch, size_t chn, const char *p, size_t n) {
  ctx *c = ud;
  c->messages++;
  c->last_id = id;
  snprintf(c->last_channel, sizeof(c->last_channel), "%.*s", (int)chn, ch);
  snprintf(c->last_payload, sizeof(c->last_payload), "%.*s", (int)n, p);
}

static void on_state(void *ud, bool ready, bool resubscribed) {
  ctx *c = ud;
  c->ready = ready;
  if (ready) c->ready_events++;
  else c->unready_events++;
  c->resubscribed_events += resubscribed;
}

static const sub_callbacks cbs = {on_message, on_state};

static bool is_ready(void *a) { return ((ctx *)a)->ready; }
static bool not_ready(void *a) { return !((ctx *)a)->ready; }
static bool resubscribed(void *a) { return ((ctx *)a)->resubscribed_events > 0 && ((ctx *)a)->ready; }
static bool got_message(void *a) { return ((ctx *)a)->messages > 0; }
static bool is_done(void *a) { return ((ctx *)a)->done == 2; }
static void on_done(void *a) { ((ctx *)a)->done++; }

static long long numsub(const rfx *r, const char *ch) {
  redisContext *k = rfx_client(r);
  redisReply *rep = redisCommand(k, "PUBSUB NUMSUB %s", ch);
  long long v = rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 ? rep->element[1]->integer : -1;
  freeReplyObject(rep);
  redisFree(k);
  return v;
}

static long long nchannels(const rfx *r) {
  redisContext *k = rfx_client(r);
  redisReply *rep = redisCommand(k, "PUBSUB CHANNELS");
  long long v = rep && rep->type == REDIS_REPLY_ARRAY ? (long long)rep->elements : -1;
  freeReplyObject(rep);
  redisFree(k);
  return v;
}

static bool numsub_is(void *a) {
  ctx *c = a;
  return numsub(&c->redis, c->check_channel) == c->want_numsub;
}

static void publish_raw(const rfx *r, const char *ch, const char *msg) {
  redisContext *k = rfx_client(r);
  freeReplyObject(redisCommand(k, "PUBLISH %s %s", ch, msg));
  redisFree(k);
}

static void ctx_start(ctx *c, const sub_options *opt) {
  memset(c, 0, sizeof(*c));
  assert_int_equal(uv_loop_init(&c->loop), 0);
  assert_int_equal(rfx_spawn(&c->redis, NULL), 0);
  char url[128];
  sub_options o = opt ? *opt : (sub_options){.conn = fast_conn};
  c->sub = sub_new(&c->loop, rfx_url(&c->redis, url, sizeof(url), NULL, 0), &cbs, c, &o);
  assert_non_null(c->sub);
}

static void ctx_finish(ctx *c) {
  sub_close(c->sub, on_done, c);
  if (c->pub) pub_close(c->pub, on_done, c);
  else c->done++;
  assert_true(rfx_run_until(&c->loop, is_done, c, 2000));
  assert_true(rfx_loop_close(&c->loop));
  rfx_kill(&c->redis);
  rfx_kill(&c->redis2);
}

static void test_refcounts(void **state) {
  ctx c;
  ctx_start(&c, NULL);
  assert_int_equal(sub_add(c.sub, "quotes:AAPL"), 0); /* before READY: sent on READY */
  assert_true(rfx_run_until(&c.loop, is_ready, &c, 2000));
  assert_int_equal(c.resubscribed_events, 0);
  assert_int_equal(sub_add(c.sub, "quotes:AAPL"), 0);
  assert_int_equal(sub_add(c.sub, "quotes:MSFT"), 0);
  assert_int_equal(sub_channel_count(c.sub, "quotes:AAPL"), 2);
  assert_int_equal(sub_add(c.sub, ""), UV_EINVAL);
  assert_int_equal(sub_add(c.sub, sub_heartbeat_channel(c.sub)), UV_EINVAL);
  c.check_channel = "quotes:MSFT";
  c.want_numsub = 1;
  assert_true(rfx_run_until(&c.loop, numsub_is, &c, 2000));
  assert_int_equal(numsub(&c.redis, "quotes:AAPL"), 1); /* one SUBSCRIBE for two refs */
  assert_int_equal(nchannels(&c.redis), 3);              /* + the heartbeat channel */

  publish_raw(&c.redis, "quotes:AAPL", "hello");
  assert_true(rfx_run_until(&c.loop, got_message, &c, 2000));
  assert_string_equal(c.last_channel, "quotes:AAPL");
  assert_string_equal(c.last_payload, "hello");

  sub_remove(c.sub, "quotes:AAPL");
  rfx_run_for(&c.loop, 50);
  assert_int_equal(numsub(&c.redis, "quotes:AAPL"), 1); /* one ref left */
  sub_remove(c.sub, "quotes:AAPL");
  sub_remove(c.sub, "quotes:AAPL"); /* extra removes are ignored */
  c.check_channel = "quotes:AAPL";
  c.want_numsub = 0;
  assert_true(rfx_run_until(&c.loop, numsub_is, &c, 2000));
  assert_int_equal(sub_channel_count(c.sub, "quotes:AAPL"), 0);
  assert_int_equal(numsub(&c.redis, "quotes:MSFT"), 1);
  struct sub_stats st;
  sub_stats(c.sub, &st);
  assert_int_equal(st.channels, 1);
  assert_int_equal(st.messages, 1);
  assert_int_equal(st.state, RCONN_READY);
  ctx_finish(&c);
}

static bool chan_settled(void *a) {
  ctx *c = a;
  sub_chan *e = chan_find(c->sub, c->check_channel, strlen(c->check_channel));
  return e ? (e->refs > 0 ? e->srv == SRV_SUBSCRIBED : false) : true;
}

static void test_churn_one_channel(void **state) {
  ctx c;
  ctx_start(&c, NULL);
  assert_true(rfx_run_until(&c.loop, is_ready, &c, 2000));
  c.check_channel = "quotes:X";
  /* Tight churn, no loop turn in between, ending subscribed. */
  for (int i = 0; i < 50; i++) {
    assert_int_equal(sub_add(c.sub, "quotes:X"), 0);
    sub_remove(c.sub, "quotes:X");
  }
  assert_int_equal(sub_add(c.sub, "quotes:X"), 0);
  assert_true(rfx_run_until(&c.loop, chan_settled, &c, 2000));
  assert_int_equal(numsub(&c.redis, "quotes:X"), 1);
  publish_raw(&c.redis, "quotes:X", "after-churn");
  assert_true(rfx_run_until(&c.loop, got_message, &c, 2000));
  assert_string_equal(c.last_payload, "after-churn");

  /* Churn across loop turns, so replies interleave with requests. */
  for (int i = 0; i < 30; i++) {
    sub_remove(c.sub, "quotes:X");
    rfx_run_for(&c.loop, i % 3);
    assert_int_equal(sub_add(c.sub, "quotes:X"), 0);
    rfx_run_for(&c.loop, i % 2);
  }
  assert_true(rfx_run_until(&c.loop, chan_settled, &c, 2000));
  c.messages = 0;
  publish_raw(&c.redis, "quotes:X", "after-churn-2");
  assert_true(rfx_run_until(&c.loop, got_message, &c, 2000));
  assert_string_equal(c.last_payload, "after-churn-2");

  /* And ending unsubscribed: the entry goes away, the server agrees. */
  sub_remove(c.sub, "quotes:X");
  assert_int_equal(sub_add(c.sub, "quotes:X"), 0);
  sub_remove(c.sub, "quotes:X");
  assert_true(rfx_run_until(&c.loop, chan_settled, &c, 2000));
  c.want_numsub = 0;
  assert_true(rfx_run_until(&c.loop, numsub_is, &c, 2000));
  assert_null(chan_find(c.sub, "quotes:X", 8));
  ctx_finish(&c);
}

static void test_resubscribe_after_restart(void **state) {
  ctx c;
  ctx_start(&c, NULL);
  assert_int_equal(sub_add(c.sub, "a"), 0);
  assert_int_equal(sub_add(c.sub, "b"), 0);
  assert_int_equal(sub_add(c.sub, "gone"), 0);
  assert_true(rfx_run_until(&c.loop, is_ready, &c, 2000));
  rfx_kill(&c.redis);
  assert_true(rfx_run_until(&c.loop, not_ready, &c, 2000));
  sub_remove(c.sub, "gone"); /* while down: never resubscribed */
  assert_int_equal(rfx_spawn(&c.redis, NULL), 0);
  assert_true(rfx_run_until(&c.loop, resubscribed, &c, 3000));
  assert_int_equal(numsub(&c.redis, "a"), 1);
  assert_int_equal(numsub(&c.redis, "b"), 1);
  assert_int_equal(numsub(&c.redis, "gone"), 0);
  assert_int_equal(nchannels(&c.redis), 3);
  publish_raw(&c.redis, "b", "back");
  assert_true(rfx_run_until(&c.loop, got_message, &c, 2000));
  assert_string_equal(c.last_channel, "b");
  struct sub_stats st;
  sub_stats(c.sub, &st);
  assert_true(st.reconnects >= 1);
  assert_int_equal(st.channels, 2);
  ctx_finish(&c);
}

static bool heartbeats_5(void *a) {
  struct sub_stats st;
  sub_stats(((ctx *)a)->sub, &st);
  return st.heartbeats >= 5;
}

static bool hb_timed_out(void *a) {
  struct sub_stats st;
  sub_stats(((ctx *)a)->sub, &st);
  return st.hb_timeouts >= 1 && ((ctx *)a)->unready_events >= 1;
}

static void test_heartbeat_healthy(void **state) {
  ctx c;
  memset(&c, 0, sizeof(c));
  assert_int_equal(uv_loop_init(&c.loop), 0);
  assert_int_equal(rfx_spawn(&c.redis, NULL), 0);
  char url[128];
  pub_options po = {.conn = fast_conn};
  c.pub = pub_new(&c.loop, rfx_url(&c.redis, url, sizeof(url), NULL, 0), &po);
  sub_options so = {.heartbeat_pub = c.pub, .conn = fast_conn, .heartbeat_ms = 20,
                    .heartbeat_timeout_ms = 200};
  c.sub = sub_new(&c.loop, url, &cbs, &c, &so);
  assert_true(rfx_run_until(&c.loop, heartbeats_5, &c, 3000));
  struct sub_stats st;
  sub_stats(c.sub, &st);
  assert_int_equal(st.hb_timeouts, 0);
  assert_int_equal(c.unready_events, 0);
  assert_int_equal(c.messages, 0); /* heartbeats are not delivered */
  ctx_finish(&c);
}

static void test_heartbeat_timeout_reconnects(void **state) {
  /* The publisher talks to another server: heartbeats can never arrive. */
  ctx c;
  memset(&c, 0, sizeof(c));
  assert_int_equal(uv_loop_init(&c.loop), 0);
  assert_int_equal(rfx_spawn(&c.redis, NULL), 0);
  assert_int_equal(rfx_spawn(&c.redis2, NULL), 0);
  char url[128], url2[128];
  pub_options po = {.conn = fast_conn};
  c.pub = pub_new(&c.loop, rfx_url(&c.redis2, url2, sizeof(url2), NULL, 0), &po);
  sub_options so = {.heartbeat_pub = c.pub, .conn = fast_conn, .heartbeat_ms = 20,
                    .heartbeat_timeout_ms = 150};
  c.sub = sub_new(&c.loop, rfx_url(&c.redis, url, sizeof(url), NULL, 0), &cbs, &c, &so);
  assert_int_equal(sub_add(c.sub, "a"), 0);
  assert_true(rfx_run_until(&c.loop, hb_timed_out, &c, 3000));
  /* It came back and resubscribed on its own. */
  assert_true(rfx_run_until(&c.loop, resubscribed, &c, 3000));
  assert_int_equal(numsub(&c.redis, "a"), 1);
  struct sub_stats st;
  sub_stats(c.sub, &st);
  assert_int_equal(st.heartbeats, 0);
  assert_true(st.reconnects >= 1);
  ctx_finish(&c);
}

/* Quote channels of known symbols are found by id and handed over with it;
 * others (unknown symbol, another prefix) by name, with SYMTAB_NONE. */
static void test_quote_channels_by_id(void **state) {
  symtab *syms = symtab_new(16);
  uint32_t msft, aapl;
  assert_int_equal(symtab_intern(syms, "MSFT", 4, &msft), 0);
  assert_int_equal(symtab_intern(syms, "AAPL", 4, &aapl), 0);
  ctx c;
  sub_options o = {.conn = fast_conn, .syms = syms, .quote_prefix = "quotes"};
  ctx_start(&c, &o);
  assert_int_equal(sub_add(c.sub, "quotes:AAPL"), 0);
  assert_int_equal(sub_add(c.sub, "quotes:ZZZ"), 0);
  assert_int_equal(sub_add(c.sub, "candles:AAPL"), 0);
  sub_chan *e = chan_find(c.sub, "quotes:AAPL", 11);
  assert_non_null(e);
  assert_int_equal(e->id, aapl);
  assert_ptr_equal(c.sub->by_id[aapl], e);
  assert_null(c.sub->by_id[msft]);
  assert_int_equal(chan_find(c.sub, "quotes:ZZZ", 10)->id, SYMTAB_NONE);
  assert_int_equal(chan_find(c.sub, "candles:AAPL", 12)->id, SYMTAB_NONE);
  assert_true(rfx_run_until(&c.loop, is_ready, &c, 2000));

  publish_raw(&c.redis, "quotes:AAPL", "a");
  assert_true(rfx_run_until(&c.loop, got_message, &c, 2000));
  assert_string_equal(c.last_channel, "quotes:AAPL");
  assert_int_equal(c.last_id, aapl);
  c.messages = 0;
  publish_raw(&c.redis, "candles:AAPL", "b");
  assert_true(rfx_run_until(&c.loop, got_message, &c, 2000));
  assert_string_equal(c.last_channel, "candles:AAPL");
  assert_int_equal(c.last_id, SYMTAB_NONE);

  sub_remove(c.sub, "quotes:AAPL");
  c.check_channel = "quotes:AAPL";
  c.want_numsub = 0;
  assert_true(rfx_run_until(&c.loop, numsub_is, &c, 2000));
  assert_null(c.sub->by_id[aapl]);
  assert_null(chan_find(c.sub, "quotes:AAPL", 11));
  ctx_finish(&c);
  symtab_free(syms);
}

static long long numpat(const rfx *r) {
  redisContext *k = rfx_client(r);
  redisReply *rep = redisCommand(k, "PUBSUB NUMPAT");
  long long v = rep && rep->type == REDIS_REPLY_INTEGER ? rep->integer : -1;
  freeReplyObject(rep);
  redisFree(k);
  return v;
}

static bool numpat_is(void *a) {
  ctx *c = a;
  return numpat(&c->redis) == c->want_numsub;
}

/* Publishes `msg` on `ch`, then a marker on "zz:end" (always subscribed by
 * the caller), and runs until the marker: whatever `msg` brought is in. */
static void publish_settled(ctx *c, const char *ch, const char *msg) {
  publish_raw(&c->redis, ch, msg);
  int before = c->messages;
  publish_raw(&c->redis, "zz:end", "end");
  for (int i = 0; i < 200 && (c->messages == before || strcmp(c->last_payload, "end")); i++) rfx_run_for(&c->loop, 10);
  assert_string_equal(c->last_payload, "end");
  c->messages--; /* the marker */
}

/* A PUBLISH reaches the connection by its channel and by every matching
 * pattern; on_message hears it once, whichever routes were live. */
static void test_patterns_one_route_per_message(void **state) {
  ctx c;
  ctx_start(&c, NULL);
  assert_int_equal(sub_add(c.sub, "zz:end"), 0);
  assert_int_equal(sub_padd(c.sub, "quotes:*"), 0);
  assert_int_equal(sub_padd(c.sub, "quotes:*"), 0);
  assert_int_equal(sub_padd(c.sub, "quotes:A*"), 0);
  assert_int_equal(sub_padd(c.sub, "quotes:A*B"), UV_EINVAL);
  assert_int_equal(sub_padd(c.sub, "quotes:AAPL"), UV_EINVAL);
  assert_int_equal(sub_pattern_count(c.sub, "quotes:*"), 2);
  assert_true(rfx_run_until(&c.loop, is_ready, &c, 2000));
  assert_int_equal(numpat(&c.redis), 2);

  publish_settled(&c, "quotes:AAPL", "1");  /* two patterns */
  assert_int_equal(c.messages, 1);
  publish_settled(&c, "quotes:MSFT", "2");  /* one */
  assert_int_equal(c.messages, 2);
  assert_int_equal(sub_add(c.sub, "quotes:AAPL"), 0);
  c.check_channel = "quotes:AAPL";
  assert_true(rfx_run_until(&c.loop, chan_settled, &c, 2000));
  publish_settled(&c, "quotes:AAPL", "3");  /* the channel and two patterns */
  assert_int_equal(c.messages, 3);
  assert_string_equal(c.last_channel, "zz:end");
  struct sub_stats st;
  sub_stats(c.sub, &st);
  assert_int_equal(st.patterns, 2);
  assert_int_equal(st.pdups, 1 + 2);
  assert_int_equal(st.pmessages, 2);

  /* The channel's last reference gone, its message still serves the patterns. */
  sub_remove(c.sub, "quotes:AAPL");
  publish_settled(&c, "quotes:AAPL", "4");
  assert_int_equal(c.messages, 4);

  /* A pattern whose PUNSUBSCRIBE is not yet out: Redis still sends its
   * pmessage (the longest route) with the other pattern's; the message
   * must still reach the other pattern's clients, once. */
  assert_int_equal(sub_padd(c.sub, "quotes:AB*"), 0);
  c.want_numsub = 3;
  assert_true(rfx_run_until(&c.loop, numpat_is, &c, 2000));
  sub_premove(c.sub, "quotes:AB*");
  publish_raw(&c.redis, "quotes:ABC", "4b");   /* before the PUNSUBSCRIBE is written */
  publish_settled(&c, "quotes:NONE", "-");
  assert_int_equal(c.messages, 6);             /* "4b" and the "-" through quotes:* */

  /* Churn without a loop turn, ending with one reference each. */
  for (int i = 0; i < 20; i++) {
    sub_premove(c.sub, "quotes:A*");
    assert_int_equal(sub_padd(c.sub, "quotes:A*"), 0);
  }
  sub_premove(c.sub, "quotes:*");
  assert_int_equal(sub_pattern_count(c.sub, "quotes:*"), 1);
  publish_settled(&c, "quotes:ABC", "5");
  assert_int_equal(c.messages, 7);
  sub_premove(c.sub, "quotes:*");
  sub_premove(c.sub, "quotes:A*");
  sub_premove(c.sub, "quotes:A*");   /* extra removes are ignored */
  c.want_numsub = 0;
  assert_true(rfx_run_until(&c.loop, numpat_is, &c, 2000));
  assert_int_equal(c.sub->npats, 0);
  publish_settled(&c, "quotes:ABC", "6");
  assert_int_equal(c.messages, 7);
  ctx_finish(&c);
}

static void test_patterns_resubscribed_after_restart(void **state) {
  ctx c;
  ctx_start(&c, NULL);
  assert_int_equal(sub_padd(c.sub, "quotes:BRK.*"), 0);
  assert_int_equal(sub_padd(c.sub, "quotes:gone*"), 0);
  assert_int_equal(sub_add(c.sub, "zz:end"), 0);
  assert_true(rfx_run_until(&c.loop, is_ready, &c, 2000));
  rfx_kill(&c.redis);
  assert_true(rfx_run_until(&c.loop, not_ready, &c, 2000));
  sub_premove(c.sub, "quotes:gone*"); /* while down: never resubscribed */
  assert_int_equal(rfx_spawn(&c.redis, NULL), 0);
  assert_true(rfx_run_until(&c.loop, resubscribed, &c, 3000));
  assert_int_equal(numpat(&c.redis), 1);
  publish_settled(&c, "quotes:BRK.A", "back");
  assert_int_equal(c.messages, 1);
  ctx_finish(&c);
}

static void test_bad_url(void **state) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  assert_null(sub_new(&loop, "http://x", &cbs, NULL, NULL));
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  log_set_stdout(getenv("TD_TEST_LOG") != NULL);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_refcounts),
      cmocka_unit_test(test_churn_one_channel),
      cmocka_unit_test(test_resubscribe_after_restart),
      cmocka_unit_test(test_heartbeat_healthy),
      cmocka_unit_test(test_heartbeat_timeout_reconnects),
      cmocka_unit_test(test_quote_channels_by_id),
      cmocka_unit_test(test_patterns_one_route_per_message),
      cmocka_unit_test(test_patterns_resubscribed_after_restart),
      cmocka_unit_test(test_bad_url),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  log_close();
  return rc;
}
