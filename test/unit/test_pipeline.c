/* pipeline with real publishers to a real redis-server: what a feed hands
 * in arrives on quotes:SYM (other kinds on their own channels) in order,
 * each (kind, symbol) numbered 1, 2, 3 ..., the same bytes kept in the
 * quote store and, for quotes, in the quotes:last hash; bad feed items are
 * skipped and counted; a batch is published whole or not at all (a refused
 * batch uses up no sequence numbers). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "base/buf.h"
#include "base/log.h"
#include "market/pipeline.h"
#include "market/publisher.h"
#include "market/quote_store.h"
#include "redis_fixture.h"

static struct {
  uv_loop_t loop;
  rfx redis;
  td_publisher *pub[TD_REDIS_PUBLISH_CONNS];
  qstore *store;
  td_pipeline *p;
  redisContext *sub;     /* a blocking subscriber to quotes:* and trades:* */
  uint64_t want_published;
  int closed;
} T;

static const pub_options fast = {.conn = {.connect_timeout_ms = 1000, .command_timeout_ms = 1000,
                                          .backoff_min_ms = 20, .backoff_max_ms = 80}};

static bool all_ready(void *a) {
  struct pub_stats st;
  return pipeline_publisher_stats(T.p, &st);
}
static bool settled(void *a) {
  struct pub_stats st;
  pipeline_publisher_stats(T.p, &st);
  return st.inflight == 0 && st.outbox == 0 && st.published >= T.want_published;
}
static void on_closed(void *a) { T.closed++; }
static bool all_closed(void *a) { return T.closed == TD_REDIS_PUBLISH_CONNS; }

static int setup(void **state) {
  memset(&T, 0, sizeof(T));
  uv_loop_init(&T.loop);
  if (rfx_spawn(&T.redis, NULL) != 0) return -1;
  char url[128];
  rfx_url(&T.redis, url, sizeof(url), NULL, 0);
  for (int i = 0; i < TD_REDIS_PUBLISH_CONNS; i++) T.pub[i] = pub_new(&T.loop, url, &fast);
  T.store = qstore_new(64, 300000, TD_MAX_SYMBOLS);
  T.p = pipeline_new(&T.loop, T.pub, "quotes", T.store);
  if (!rfx_run_until(&T.loop, all_ready, NULL, 3000)) return -1;
  T.sub = rfx_client(&T.redis);
  redisReply *rep = redisCommand(T.sub, "PSUBSCRIBE quotes:* trades:*");
  freeReplyObject(rep);
  redisGetReply(T.sub, (void **)&rep); /* the second pattern's confirmation */
  freeReplyObject(rep);
  struct timeval tv = {3, 0};
  redisSetTimeout(T.sub, tv);
  return 0;
}

static int teardown(void **state) {
  redisFree(T.sub);
  pipeline_free(T.p);
  for (int i = 0; i < TD_REDIS_PUBLISH_CONNS; i++) pub_close(T.pub[i], on_closed, NULL);
  bool ok = rfx_run_until(&T.loop, all_closed, NULL, 3000);
  qstore_free(T.store);
  ok = rfx_loop_close(&T.loop) && ok;
  rfx_kill(&T.redis);
  return ok && buf_live_count() == 0 ? 0 : -1;
}

/* Runs the loop until Redis acknowledged `n` more PUBLISH commands. */
static void wait_published(uint64_t n) {
  T.want_published += n;
  assert_true(rfx_run_until(&T.loop, settled, NULL, 3000));
}

typedef struct {
  char channel[64];
  char payload[512];
  uint64_t seq, epoch;
} pmsg;

/* The next pmessage the subscriber holds, with its position read back. */
static void next_message(pmsg *m) {
  redisReply *rep;
  assert_int_equal(redisGetReply(T.sub, (void **)&rep), REDIS_OK);
  assert_int_equal(rep->type, REDIS_REPLY_ARRAY);
  assert_int_equal(rep->elements, 4);
  assert_string_equal(rep->element[0]->str, "pmessage");
  snprintf(m->channel, sizeof(m->channel), "%s", rep->element[2]->str);
  snprintf(m->payload, sizeof(m->payload), "%.*s", (int)rep->element[3]->len, rep->element[3]->str);
  assert_int_equal(smsg_payload_position(rep->element[3]->str, rep->element[3]->len, &m->seq, &m->epoch), 0);
  freeReplyObject(rep);
}

#define QUOTE(sym, bp)                                                                                     \
  "{\"T\":\"q\",\"S\":\"" sym "\",\"bx\":\"V\",\"bp\":" bp ",\"bs\":3,\"ax\":\"V\",\"ap\":" bp ",\"as\":1," \
  "\"t\":\"2026-11-21T20:00:00Z\"}"
#define TRADE(sym) "{\"T\":\"t\",\"S\":\"" sym "\",\"i\":1,\"x\":\"V\",\"p\":1.5,\"s\":10,\"t\":\"2026-11-21T20:00:00Z\"}"

static void feed_publishes_in_order(void **state) {
  static const char feed[] = "[" QUOTE("AAPL", "1.01") "," QUOTE("MSFT", "2.01") "," QUOTE("AAPL", "1.02") ","
                             "{\"T\":\"q\",\"S\":\"AAPL\"}," TRADE("AAPL") "," QUOTE("AAPL", "1.03") ","
                             QUOTE("MSFT", "2.02") "]";
  assert_int_equal(pipeline_feed(T.p, feed, sizeof(feed) - 1), 6);
  pipeline_stats st;
  pipeline_get_stats(T.p, &st);
  assert_int_equal(st.stream.skipped[SMSG_SKIP_MISSING], 1);
  assert_int_equal(st.received[SMSG_QUOTE], 5);
  assert_int_equal(st.received[SMSG_TRADE], 1);
  assert_int_equal(st.queued, 6);
  wait_published(6);

  /* per channel in feed order, numbered per (kind, symbol) */
  static const struct {
    const char *channel, *price;
    uint64_t seq;
  } want[] = {{"quotes:AAPL", "1.01", 1}, {"quotes:MSFT", "2.01", 1}, {"quotes:AAPL", "1.02", 2},
              {"trades:AAPL", "1.5", 1},  {"quotes:AAPL", "1.03", 3}, {"quotes:MSFT", "2.02", 2}};
  pmsg got[6];
  for (int i = 0; i < 6; i++) next_message(&got[i]);
  for (size_t w = 0; w < 6; w++) {
    /* the publishers are sharded by channel: order holds within a channel */
    int k = -1, nth = 0;
    for (size_t j = 0; j <= w; j++) nth += !strcmp(want[j].channel, want[w].channel);
    for (int i = 0, seen = 0; i < 6 && k < 0; i++)
      if (!strcmp(got[i].channel, want[w].channel) && ++seen == nth) k = i;
    assert_true(k >= 0);
    assert_int_equal(got[k].seq, want[w].seq);
    assert_int_equal(got[k].epoch, qstore_epoch(T.store));
    char price[32];
    snprintf(price, sizeof(price), "%s\":%s,", !strcmp(want[w].channel, "trades:AAPL") ? "\"p" : "\"bp", want[w].price);
    assert_non_null(strstr(got[k].payload, price + 1));
  }

  /* the store holds the very bytes that were published */
  qstore_entry e;
  assert_true(qstore_latest(T.store, SMSG_QUOTE, "AAPL", 4, &e));
  assert_int_equal(e.seq, 3);
  const char *aapl3 = NULL;
  for (int i = 0; i < 6; i++)
    if (!strcmp(got[i].channel, "quotes:AAPL") && got[i].seq == 3) aapl3 = got[i].payload;
  assert_non_null(aapl3);
  assert_int_equal(e.payload->len, strlen(aapl3));
  assert_memory_equal(e.payload->data, aapl3, e.payload->len);
  assert_true(qstore_latest(T.store, SMSG_TRADE, "AAPL", 4, &e));
  assert_int_equal(e.seq, 1);

  /* and quotes:last, written on the publisher's flush timer */
  redisContext *k = rfx_client(&T.redis);
  redisReply *rep = NULL;
  for (int i = 0; i < 100; i++) {
    rfx_run_for(&T.loop, 10);
    rep = redisCommand(k, "HGET quotes:last AAPL");
    if (rep->type == REDIS_REPLY_STRING) break;
    freeReplyObject(rep);
    rep = NULL;
  }
  assert_non_null(rep);
  assert_string_equal(rep->str, aapl3);
  freeReplyObject(rep);
  rep = redisCommand(k, "HEXISTS quotes:last MSFT");
  assert_int_equal(rep->integer, 1);
  freeReplyObject(rep);
  redisFree(k);

  assert_true(pipeline_feed(T.p, "not json", 8) < 0);
}

/* One bad item refuses the whole batch: nothing is published, no number is
 * used; the next good batch continues the sequence where it was. */
static void batch_all_or_nothing(void **state) {
  static const char good1[] = "[" QUOTE("IBM", "3.01") "]";
  static const char bad[] = "[" QUOTE("IBM", "3.02") ",{\"T\":\"q\",\"S\":\"IBM\",\"bp\":\"x\"}]";
  static const char good2[] = "[" QUOTE("IBM", "3.03") "," QUOTE("IBM", "3.04") "," TRADE("IBM") "]";
  pipeline_result r;
  char err[SMSG_ERR_MAX];
  assert_int_equal(pipeline_batch(T.p, good1, sizeof(good1) - 1, &r, err), 0);
  assert_int_equal(r.accepted, 1);
  wait_published(1);
  assert_int_equal(pipeline_batch(T.p, bad, sizeof(bad) - 1, &r, err), -EINVAL);
  assert_int_equal(r.accepted, 0);
  assert_non_null(strstr(err, "item 1"));
  assert_int_equal(pipeline_batch(T.p, good2, sizeof(good2) - 1, &r, err), 0);
  assert_int_equal(r.accepted, 3);
  assert_int_equal(r.by_kind[SMSG_QUOTE], 2);
  assert_int_equal(r.by_kind[SMSG_TRADE], 1);
  wait_published(3);
  pipeline_stats st;
  pipeline_get_stats(T.p, &st);
  assert_int_equal(st.batches, 3);
  assert_int_equal(st.batches_rejected, 1);

  pmsg m;
  uint64_t quote_seqs[3], nq = 0;
  for (int i = 0; i < 4; i++) {
    next_message(&m);
    assert_null(strstr(m.payload, "3.02")); /* the refused batch's good item too */
    if (!strcmp(m.channel, "quotes:IBM")) quote_seqs[nq++] = m.seq;
    else assert_string_equal(m.channel, "trades:IBM");
  }
  assert_int_equal(nq, 3);
  for (uint64_t i = 0; i < 3; i++) assert_int_equal(quote_seqs[i], i + 1);
  /* nothing else arrived */
  redisReply *rep;
  struct timeval tv = {0, 50000};
  redisSetTimeout(T.sub, tv);
  assert_int_not_equal(redisGetReply(T.sub, (void **)&rep), REDIS_OK);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  log_set_stdout(getenv("TD_TEST_LOG") != NULL);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(feed_publishes_in_order, setup, teardown),
      cmocka_unit_test_setup_teardown(batch_all_or_nothing, setup, teardown),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  buf_pool_release();
  log_close();
  return rc;
}
