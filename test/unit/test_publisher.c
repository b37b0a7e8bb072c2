/* publisher against a real redis-server: pipelined order, the in-flight
 * limit, outbox conflation and drops across a redis restart, latest-value
 * HSET batches (rewritten after a restart), bad input, close with commands
 * pending on a stopped server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "market/publisher.c"
#include "redis_fixture.h"

typedef struct ctx {
  uv_loop_t loop;
  rfx redis;
  td_publisher *pub;
  uint64_t want_published;
  int done;
} ctx;

static const pub_options fast = {
    .conn = {.connect_timeout_ms = 1000, .command_timeout_ms = 500, .backoff_min_ms = 20,
             .backoff_max_ms = 80}};

static bool pub_is_ready(void *a) { return pub_ready(((ctx *)a)->pub); }
static bool pub_not_ready(void *a) { return !pub_ready(((ctx *)a)->pub); }
static bool settled(void *a) {
  ctx *c = a;
  struct pub_stats st;
  pub_stats(c->pub, &st);
  return st.inflight == 0 && st.outbox == 0 && st.published >= c->want_published;
}
static bool is_done(void *a) { return ((ctx *)a)->done == 1; }
static void on_done(void *a) { ((ctx *)a)->done++; }

static void ctx_start(ctx *c, const pub_options *opt) {
  memset(c, 0, sizeof(*c));
  assert_int_equal(uv_loop_init(&c->loop), 0);
  assert_int_equal(rfx_spawn(&c->redis, NULL), 0);
  char url[128];
  c->pub = pub_new(&c->loop, rfx_url(&c->redis, url, sizeof(url), NULL, 0), opt ? opt : &fast);
  assert_non_null(c->pub);
  assert_true(rfx_run_until(&c->loop, pub_is_ready, c, 2000));
}

static void ctx_finish(ctx *c) {
  pub_close(c->pub, on_done, c);
  assert_true(rfx_run_until(&c->loop, is_done, c, 2000));
  assert_true(rfx_loop_close(&c->loop));
  rfx_kill(&c->redis);
}

/* A blocking subscriber on `n` channels named ch0..ch<n-1>. */
static redisContext *raw_subscriber(const rfx *r, int n) {
  redisContext *s = rfx_client(r);
  assert_non_null(s);
  for (int i = 0; i < n; i++) {
    char ch[32];
    snprintf(ch, sizeof(ch), "ch%d", i);
    redisAppendCommand(s, "SUBSCRIBE %s", ch);
  }
  for (int i = 0; i < n; i++) {
    redisReply *rep;
    assert_int_equal(redisGetReply(s, (void **)&rep), REDIS_OK);
    freeReplyObject(rep);
  }
  return s;
}

/* The next message on `s`: channel and payload copied out. */
static void next_message(redisContext *s, char *ch, size_t chn, char *msg, size_t msgn) {
  redisReply *rep;
  assert_int_equal(redisGetReply(s, (void **)&rep), REDIS_OK);
  assert_int_equal(rep->type, REDIS_REPLY_ARRAY);
  assert_int_equal(rep->elements, 3);
  assert_string_equal(rep->element[0]->str, "message");
  snprintf(ch, chn, "%s", rep->element[1]->str);
  snprintf(msg, msgn, "%.*s", (int)rep->element[2]->len, rep->element[2]->str);
  freeReplyObject(rep);
}

static int publish_str(td_publisher *p, const char *ch, const char *msg) {
  return pub_publish(p, ch, strlen(ch), msg, strlen(msg));
}

static void test_publish_pipelined_in_order(void **state) {
  ctx c;
  ctx_start(&c, NULL);
  redisContext *s = raw_subscriber(&c.redis, 2);
  struct timeval tv = {5, 0};
  redisSetTimeout(s, tv);
  enum { N = 20000 };
  for (int i = 0; i < N; i++) {
    char msg[32];
    snprintf(msg, sizeof(msg), "m%d", i);
    assert_int_equal(publish_str(c.pub, i % 2 ? "ch1" : "ch0", msg), PUB_SENT);
  }
  struct pub_stats st;
  pub_stats(c.pub, &st);
  assert_int_equal(st.inflight, N); /* all of them in one pipeline */
  c.want_published = N;
  assert_true(rfx_run_until(&c.loop, settled, &c, 5000));
  pub_stats(c.pub, &st);
  assert_int_equal(st.published, N);
  assert_int_equal(st.errors, 0);
  for (int i = 0; i < N; i++) {
    char ch[32], msg[32], want[32];
    next_message(s, ch, sizeof(ch), msg, sizeof(msg));
    snprintf(want, sizeof(want), "m%d", i);
    assert_string_equal(msg, want);
    assert_string_equal(ch, i % 2 ? "ch1" : "ch0");
  }
  redisFree(s);
  ctx_finish(&c);
}

static void test_inflight_limit_conflates(void **state) {
  pub_options o = fast;
  o.max_inflight = 4;
  ctx c;
  ctx_start(&c, &o);
  redisContext *s = raw_subscriber(&c.redis, 10);
  int sent = 0, queued = 0, conflated = 0;
  for (int round = 0; round < 10; round++)
    for (int ch = 0; ch < 10; ch++) {
      char name[16], msg[32];
      snprintf(name, sizeof(name), "ch%d", ch);
      snprintf(msg, sizeof(msg), "ch%d-%d", ch, round);
      int rc = publish_str(c.pub, name, msg);
      sent += rc == PUB_SENT;
      queued += rc == PUB_QUEUED;
      conflated += rc == PUB_CONFLATED;
    }
  assert_int_equal(sent, 4);
  assert_int_equal(queued, 10);
  assert_int_equal(conflated, 86);
  c.want_published = 14;
  assert_true(rfx_run_until(&c.loop, settled, &c, 3000));
  struct pub_stats st;
  pub_stats(c.pub, &st);
  assert_int_equal(st.published + st.conflated + st.dropped + st.errors, 100);
  assert_int_equal(st.published, 14);
  /* The latest payload of every channel is what arrives last for it. */
  char last[10][32] = {{0}};
  for (int i = 0; i < 14; i++) {
    char ch[16], msg[32];
    next_message(s, ch, sizeof(ch), msg, sizeof(msg));
    snprintf(last[atoi(ch + 2)], sizeof(last[0]), "%s", msg);
  }
  for (int ch = 0; ch < 10; ch++) {
    char want[32];
    snprintf(want, sizeof(want), "ch%d-9", ch);
    assert_string_equal(last[ch], want);
  }
  redisFree(s);
  ctx_finish(&c);
}

static void test_outbox_across_restart(void **state) {
  pub_options o = fast;
  o.max_outbox = 8;
  ctx c;
  ctx_start(&c, &o);
  uint64_t offered = 0;
  for (int i = 0; i < 100; i++, offered++) assert_int_equal(publish_str(c.pub, "ch0", "x"), PUB_SENT);
  c.want_published = 100;
  assert_true(rfx_run_until(&c.loop, settled, &c, 3000));

  rfx_kill(&c.redis);
  assert_true(rfx_run_until(&c.loop, pub_not_ready, &c, 2000));
  /* 5 channels x 20 messages: 5 kept, 95 conflated. */
  for (int round = 0; round < 20; round++)
    for (int ch = 0; ch < 5; ch++, offered++) {
      char name[16], msg[32];
      snprintf(name, sizeof(name), "ch%d", ch);
      snprintf(msg, sizeof(msg), "ch%d-%d", ch, round);
      assert_true(publish_str(c.pub, name, msg) >= 0);
    }
  /* 10 more channels: 3 fit (outbox of 8), 7 dropped. */
  int dropped = 0;
  for (int ch = 5; ch < 15; ch++, offered++) {
    char name[16];
    snprintf(name, sizeof(name), "ch%d", ch);
    dropped += publish_str(c.pub, name, "late") == UV_ENOBUFS;
  }
  assert_int_equal(dropped, 7);
  struct pub_stats st;
  pub_stats(c.pub, &st);
  assert_int_equal(st.outbox, 8);
  assert_int_equal(st.conflated, 95);
  assert_int_equal(st.dropped, 7);
  uint32_t i0 = map_find(&c.pub->outbox, "ch0", 3, fnv1a("ch0", 3));
  assert_true(i0 != 0);
  assert_memory_equal(c.pub->outbox.e[i0].data + 3, "ch0-19", 6);

  /* The loop is not running: the publisher cannot reconnect before our
   * subscriber is in place on the restarted server. */
  assert_int_equal(rfx_spawn(&c.redis, NULL), 0);
  redisContext *s = raw_subscriber(&c.redis, 15);
  c.want_published = 108;
  assert_true(rfx_run_until(&c.loop, settled, &c, 3000));
  pub_stats(c.pub, &st);
  assert_int_equal(st.published, 108);
  assert_int_equal(st.errors, 0);
  assert_true(st.reconnects >= 1);
  assert_int_equal(st.published + st.conflated + st.dropped + st.errors, offered);
  for (int i = 0; i < 8; i++) {
    char ch[16], msg[32], want[32];
    next_message(s, ch, sizeof(ch), msg, sizeof(msg));
    int n = atoi(ch + 2);
    assert_true(n < 8);
    snprintf(want, sizeof(want), n < 5 ? "ch%d-19" : "late", n);
    assert_string_equal(msg, want);
  }
  redisFree(s);
  ctx_finish(&c);
}

/* Channels offered with a key wait in the outbox by key (no hash), beside
 * channels by name and keys past the key space (by name too), in one FIFO
 * with the same conflation and counting. */
static void test_outbox_by_key(void **state) {
  pub_options o = fast;
  o.max_outbox = 8;
  o.outbox_keys = 16;
  ctx c;
  ctx_start(&c, &o);
  rfx_kill(&c.redis);
  assert_true(rfx_run_until(&c.loop, pub_not_ready, &c, 2000));
  uint64_t offered = 0;
  for (int round = 0; round < 20; round++)
    for (uint32_t k = 0; k < 4; k++, offered++) {
      char name[16], msg[32];
      snprintf(name, sizeof(name), "ch%u", k);
      snprintf(msg, sizeof(msg), "ch%u-%d", k, round);
      assert_true(pub_offer_key(c.pub, k, name, strlen(name), msg, strlen(msg), 0, 0) >= 0);
    }
  assert_int_equal(publish_str(c.pub, "ch4", "by-name"), PUB_QUEUED);
  assert_int_equal(pub_offer_key(c.pub, 99, "ch5", 3, "u", 1, PUB_F_UPSTREAM, 0), PUB_QUEUED);   /* past 16 */
  assert_int_equal(pub_offer_key(c.pub, 3, "ch3", 3, "up", 2, PUB_F_UPSTREAM, 0), PUB_CONFLATED);
  offered += 3;
  struct pub_stats st;
  pub_stats(c.pub, &st);
  assert_int_equal(st.outbox, 6);
  assert_int_equal(st.conflated, 77);
  uint32_t i1 = c.pub->outbox.by_key[1];
  assert_true(i1 != 0);
  assert_memory_equal(c.pub->outbox.e[i1].data + 3, "ch1-19", 6);
  assert_int_equal(map_find(&c.pub->outbox, "ch1", 3, fnv1a("ch1", 3)), 0);   /* not hashed */
  assert_true(map_find(&c.pub->outbox, "ch5", 3, fnv1a("ch5", 3)) != 0);
  assert_int_equal(pub_drop_upstream(c.pub), 2);   /* ch3 (newest upstream) and ch5 */
  assert_int_equal(c.pub->outbox.by_key[3], 0);

  assert_int_equal(rfx_spawn(&c.redis, NULL), 0);
  redisContext *s = raw_subscriber(&c.redis, 6);
  c.want_published = 4;
  assert_true(rfx_run_until(&c.loop, settled, &c, 3000));
  pub_stats(c.pub, &st);
  assert_int_equal(st.published + st.conflated + st.dropped + st.errors, offered);
  static const char *const want[][2] = {{"ch0", "ch0-19"}, {"ch1", "ch1-19"}, {"ch2", "ch2-19"}, {"ch4", "by-name"}};
  for (int i = 0; i < 4; i++) {   /* oldest channel first */
    char ch[16], msg[32];
    next_message(s, ch, sizeof(ch), msg, sizeof(msg));
    assert_string_equal(ch, want[i][0]);
    assert_string_equal(msg, want[i][1]);
  }
  assert_int_equal(c.pub->outbox.by_key[0], 0);
  redisFree(s);
  ctx_finish(&c);
}

/* The upstream's messages in the outbox are dropped when the lease is lost;
 * POSTed ones stay, and an upstream message superseded by a POSTed one for
 * the same channel is no longer the upstream's. */
static void test_drop_upstream_keeps_the_rest(void **state) {
  ctx c;
  ctx_start(&c, NULL);
  rfx_kill(&c.redis);
  assert_true(rfx_run_until(&c.loop, pub_not_ready, &c, 2000));
  assert_true(pub_publish_flags(c.pub, "up1", 3, "u1", 2, PUB_F_UPSTREAM) >= 0);
  assert_true(pub_publish_flags(c.pub, "up2", 3, "u2", 2, PUB_F_UPSTREAM) >= 0);
  assert_true(publish_str(c.pub, "post", "p1") >= 0);
  assert_true(pub_publish_flags(c.pub, "mixed", 5, "u3", 2, PUB_F_UPSTREAM) >= 0);
  assert_true(publish_str(c.pub, "mixed", "p2") >= 0);
  assert_true(publish_str(c.pub, "post2", "p3") >= 0);
  assert_true(pub_publish_flags(c.pub, "post2", 5, "u4", 2, PUB_F_UPSTREAM) >= 0);
  struct pub_stats st;
  pub_stats(c.pub, &st);
  assert_int_equal(st.outbox, 5);
  assert_int_equal(pub_drop_upstream(c.pub), 3); /* up1, up2, and post2 whose newest is u4 */
  pub_stats(c.pub, &st);
  assert_int_equal(st.outbox, 2);
  assert_int_equal(st.dropped, 3);
  assert_true(map_find(&c.pub->outbox, "post", 4, fnv1a("post", 4)) != 0);
  assert_true(map_find(&c.pub->outbox, "mixed", 5, fnv1a("mixed", 5)) != 0);
  assert_int_equal(pub_drop_upstream(c.pub), 0);
  ctx_finish(&c);
}

static bool last_written_3(void *a) {
  struct pub_stats st;
  pub_stats(((ctx *)a)->pub, &st);
  return st.last_written >= 3 && ((ctx *)a)->pub->hset_inflight == 0;
}

static char *hget(const rfx *r, const char *hash, const char *field) {
  static char buf[64];
  redisContext *k = rfx_client(r);
  redisReply *rep = redisCommand(k, "HGET %s %s", hash, field);
  snprintf(buf, sizeof(buf), "%s", rep && rep->type == REDIS_REPLY_STRING ? rep->str : "(nil)");
  freeReplyObject(rep);
  redisFree(k);
  return buf;
}

static bool hash_rewritten(void *a) {
  ctx *c = a;
  return c->redis.pid > 0 && pub_ready(c->pub) && c->pub->hset_inflight == 0 &&
         strcmp(hget(&c->redis, "quotes:last", "AAPL"), "a2") == 0;
}

static void test_pending_bytes_bounded(void **state) {
  /* Past PUB_MAX_PENDING_BYTES of unwritten commands, messages wait in the
   * outbox. The loop does not run while publishing, so nothing is written
   * yet; the stopped server then keeps the socket from draining it fast. */
  pub_options o = fast;
  o.conn.command_timeout_ms = 0; /* the default: a slow sanitizer build is not a stall */
  ctx c;
  ctx_start(&c, &o);
  rfx_signal(&c.redis, SIGSTOP);
  enum { N = 100, SIZE = 128 * 1024 };
  char *payload = malloc(SIZE);
  memset(payload, 'q', SIZE);
  for (int i = 0; i < N; i++) {
    char ch[16];
    snprintf(ch, sizeof(ch), "big%d", i);
    assert_true(pub_publish(c.pub, ch, strlen(ch), payload, SIZE) >= 0);
  }
  free(payload);
  struct pub_stats st;
  pub_stats(c.pub, &st);
  assert_true(st.outbox > 0);
  assert_true(st.inflight < N);
  assert_true(rconn_pending_bytes(&c.pub->conn) < PUB_MAX_PENDING_BYTES + SIZE + 64);
  rfx_signal(&c.redis, SIGCONT);
  c.want_published = N;
  assert_true(rfx_run_until(&c.loop, settled, &c, 5000));
  pub_stats(c.pub, &st);
  assert_int_equal(st.published, N);
  ctx_finish(&c);
}

/* A latest value as the pipeline makes one: stored in the quote store (its
 * one copy, with the next position of its series), then marked changed. */
static void set_last(td_publisher *p, qstore *qs, smsg_kind kind, const char *field, const char *v) {
  uint32_t id;
  assert_int_equal(qstore_intern(qs, field, strlen(field), &id), 0);
  td_buf *b = buf_from(v, strlen(v));
  assert_int_equal(qstore_insert_id(qs, kind, id, b, 1, qstore_next_seq_id(qs, kind, id), 0), QSTORE_INSERTED);
  buf_unref(b);
  pub_last_changed(p, kind, id);
}

static void test_set_last_batches(void **state) {
  ctx c;
  ctx_start(&c, NULL);
  qstore *qs = qstore_new(4, 60000, 16);
  assert_int_equal(pub_last_track(c.pub, qs, SMSG_QUOTE, "quotes:last"), 0);
  assert_int_equal(pub_last_track(c.pub, qs, SMSG_TRADE, "trades:last"), 0);
  set_last(c.pub, qs, SMSG_QUOTE, "AAPL", "a1");
  set_last(c.pub, qs, SMSG_QUOTE, "AAPL", "a2"); /* replaces a1 before the flush */
  set_last(c.pub, qs, SMSG_QUOTE, "MSFT", "m1");
  set_last(c.pub, qs, SMSG_TRADE, "AAPL", "t1");
  assert_true(rfx_run_until(&c.loop, last_written_3, &c, 2000));
  struct pub_stats st;
  pub_stats(c.pub, &st);
  assert_int_equal(st.last_written, 3); /* 2 fields in one HSET, 1 in another */
  assert_string_equal(hget(&c.redis, "quotes:last", "AAPL"), "a2");
  assert_string_equal(hget(&c.redis, "quotes:last", "MSFT"), "m1");
  assert_string_equal(hget(&c.redis, "trades:last", "AAPL"), "t1");

  /* A restarted server has lost the hashes: they are written again. */
  rfx_kill(&c.redis);
  assert_true(rfx_run_until(&c.loop, pub_not_ready, &c, 2000));
  assert_int_equal(rfx_spawn(&c.redis, NULL), 0);
  assert_true(rfx_run_until(&c.loop, hash_rewritten, &c, 3000));
  assert_string_equal(hget(&c.redis, "trades:last", "AAPL"), "t1");
  ctx_finish(&c);
  qstore_free(qs);
}

static void test_bad_input(void **state) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  assert_null(pub_new(&loop, "http://h", NULL));
  assert_null(pub_new(&loop, "redis://h:99999", NULL));
  ctx c;
  ctx_start(&c, NULL);
  char big[PUB_CHANNEL_MAX + 1];
  memset(big, 'a', sizeof(big));
  assert_int_equal(pub_publish(c.pub, "", 0, "x", 1), UV_EINVAL);
  assert_int_equal(pub_publish(c.pub, big, sizeof(big), "x", 1), UV_EINVAL);
  assert_int_equal(pub_publish(c.pub, "c", 1, big, PUB_PAYLOAD_MAX + 1), UV_EINVAL);
  struct pub_stats st;
  pub_stats(c.pub, &st);
  assert_int_equal(st.dropped, 3);
  assert_string_equal(pub_state_name(c.pub), "ready");
  ctx_finish(&c);
  assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_close_with_pending(void **state) {
  ctx c;
  ctx_start(&c, NULL);
  rfx_signal(&c.redis, SIGSTOP);
  for (int i = 0; i < 1000; i++) publish_str(c.pub, "ch0", "pending");
  rfx_run_for(&c.loop, 20);
  struct pub_stats st;
  pub_stats(c.pub, &st);
  assert_int_equal(st.inflight, 1000);
  pub_close(c.pub, on_done, &c);
  assert_int_equal(publish_str(c.pub, "ch0", "late"), UV_ECANCELED);
  assert_true(rfx_run_until(&c.loop, is_done, &c, 2000));
  assert_true(rfx_loop_close(&c.loop));
  rfx_kill(&c.redis);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  log_set_stdout(getenv("TD_TEST_LOG") != NULL);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_publish_pipelined_in_order),
      cmocka_unit_test(test_inflight_limit_conflates),
      cmocka_unit_test(test_outbox_across_restart),
      cmocka_unit_test(test_outbox_by_key),
      cmocka_unit_test(test_drop_upstream_keeps_the_rest),
      cmocka_unit_test(test_pending_bytes_bounded),
      cmocka_unit_test(test_set_last_batches),
      cmocka_unit_test(test_bad_input),
      cmocka_unit_test(test_close_with_pending),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  log_close();
  return rc;
}
