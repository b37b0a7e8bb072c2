/* history_redis against a real redis-server: the script's SHA is the one
 * Redis computes, positions from the script in order, the stream and its
 * ids, NOSCRIPT after SCRIPT FLUSH recovered by the publisher, the read of
 * a resume, and the reply shapes as the installed hiredis parses them
 * (0.14 on bookworm, 1.x on trixie: RESP2 either way). */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "market/history_redis.c"
#include "market/publisher.h"
#include "redis_fixture.h"

static const char body[] = "{\"T\":\"q\",\"S\":\"AAPL\",\"bp\":1";

static void test_body_and_payload(void **state) {
  const char payload[] = "{\"T\":\"q\",\"S\":\"AAPL\",\"bp\":1,\"seq\":0,\"epoch\":\"0123456789abcdef\"}";
  assert_int_equal(hr_body_len(payload, sizeof(payload) - 1), strlen(body));
  assert_int_equal(hr_body_len(payload, 10), 0);
  assert_int_equal(hr_body_len("{\"seq\":1,\"epoch\":\"0123456789abcdef\"}", 36), 0); /* seq not 0 */
  hr_position pos = {.seq = 42, .epoch_hex = "fedcba9876543210"};
  td_buf *b = hr_payload(body, strlen(body), &pos);
  uint64_t seq, epoch;
  assert_int_equal(smsg_payload_position(b->data, b->len, &seq, &epoch), 0);
  assert_int_equal(seq, 42);
  assert_true(epoch == 0xfedcba9876543210ull);
  buf_unref(b);
  char key[HR_KEY_MAX];
  assert_int_equal(hr_key(key, "quotes:AAPL", 11, true), strlen("tickerd:{quotes:AAPL}:hist"));
  assert_string_equal(key, "tickerd:{quotes:AAPL}:hist");
}

/* A reply as the installed hiredis makes it from raw RESP. */
static redisReply *parse(const char *resp) {
  redisReader *r = redisReaderCreate();
  void *reply = NULL;
  redisReaderFeed(r, resp, strlen(resp));
  assert_int_equal(redisReaderGetReply(r, &reply), REDIS_OK);
  redisReaderFree(r);
  assert_non_null(reply);
  return reply;
}

static void test_reply_shapes(void **state) {
  hr_position pos;
  const char *err;
  redisReply *r = parse("*2\r\n:7\r\n$16\r\n0123456789abcdef\r\n");
  assert_int_equal(hr_publish_reply(r, &pos, &err), 0);
  assert_int_equal(pos.seq, 7);
  assert_string_equal(pos.epoch_hex, "0123456789abcdef");
  freeReplyObject(r);
  r = parse("-NOSCRIPT No matching script. Please use EVAL.\r\n");
  assert_int_equal(hr_publish_reply(r, &pos, &err), HR_NOSCRIPT);
  freeReplyObject(r);
  const char *bad[] = {"-ERR other\r\n", "*2\r\n:0\r\n$16\r\n0123456789abcdef\r\n", "*2\r\n:1\r\n$3\r\nabc\r\n",
                       "*1\r\n:1\r\n", "$2\r\nok\r\n", "*2\r\n$1\r\n1\r\n$16\r\n0123456789abcdef\r\n"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    r = parse(bad[i]);
    assert_int_equal(hr_publish_reply(r, &pos, &err), -EINVAL);
    freeReplyObject(r);
  }
  assert_int_equal(hr_publish_reply(NULL, &pos, &err), -EINVAL);
}

/* The script on a real server: the SHA Redis gives it is ours, positions
 * start at 1 and go on, the stream has 0-<seq> ids and trims. */
static void test_script_on_redis(void **state) {
  rfx redis = {0};
  assert_int_equal(rfx_spawn(&redis, NULL), 0);
  redisContext *c = rfx_client(&redis);
  assert_non_null(c);
  redisSetTimeout(c, (struct timeval){10, 0}); /* a loaded machine: no NULL reply for a slow one */
  hr_conf conf;
  hr_conf_init(&conf, "0123456789abcdef", 5);
  redisReply *r = redisCommand(c, "SCRIPT LOAD %s", hr_publish_script());
  assert_non_null(r);
  assert_int_equal(r->type, REDIS_REPLY_STRING);
  assert_string_equal(r->str, conf.sha);
  freeReplyObject(r);
  char epoch[SMSG_EPOCH_LEN + 1] = "";
  for (int i = 1; i <= 300; i++) {
    r = redisCommand(c, "EVALSHA %s 2 tickerd:{quotes:AAPL}:pos tickerd:{quotes:AAPL}:hist quotes:AAPL %s %s %s",
                     conf.sha, body, conf.nonce, conf.maxlen);
    hr_position pos;
    const char *err;
    assert_int_equal(hr_publish_reply(r, &pos, &err), 0);
    assert_int_equal(pos.seq, i);
    if (i == 1) memcpy(epoch, pos.epoch_hex, sizeof(epoch));
    assert_string_equal(pos.epoch_hex, epoch);
    freeReplyObject(r);
  }
  r = redisCommand(c, "XREVRANGE tickerd:{quotes:AAPL}:hist + - COUNT 1");
  assert_true(r && r->type == REDIS_REPLY_ARRAY && r->elements == 1);
  assert_string_equal(r->element[0]->element[0]->str, "0-300");
  freeReplyObject(r);
  long long len = rfx_int_command(&redis, "XLEN tickerd:{quotes:AAPL}:hist");
  assert_true(len >= 5 && len < 300); /* MAXLEN ~ 5: whole nodes go */
  /* the hash lost: a new epoch, the stream restarts at 0-1 */
  freeReplyObject(redisCommand(c, "DEL tickerd:{quotes:AAPL}:pos"));
  r = redisCommand(c, "EVALSHA %s 2 tickerd:{quotes:AAPL}:pos tickerd:{quotes:AAPL}:hist quotes:AAPL %s %s %s",
                   conf.sha, body, conf.nonce, conf.maxlen);
  hr_position pos;
  const char *err;
  assert_int_equal(hr_publish_reply(r, &pos, &err), 0);
  assert_int_equal(pos.seq, 1);
  assert_string_not_equal(pos.epoch_hex, epoch);
  freeReplyObject(r);
  assert_int_equal(rfx_int_command(&redis, "XLEN tickerd:{quotes:AAPL}:hist"), 1);
  redisFree(c);
  rfx_kill(&redis);
}

/* ---- the publisher through the script, and the reader ---------------------- */

typedef struct ctx {
  uv_loop_t loop;
  rfx redis;
  td_publisher *pub;
  hr_reader *reader;
  hr_conf conf;
  uint64_t seqs[64];
  int npos, done, reads;
  hr_read_result got;
  uint64_t first_seq;
  size_t n;
} ctx;

static void on_position(void *ud, uint32_t user, const char *ch, size_t chn, const char *b, size_t bn,
                        const hr_position *pos) {
  ctx *c = ud;
  assert_int_equal(user, 7);
  assert_memory_equal(ch, "quotes:AAPL", chn);
  assert_memory_equal(b, body, bn);
  if (c->npos < 64) c->seqs[c->npos] = pos->seq;
  c->npos++;
}

static bool ready(void *a) { return pub_ready(((ctx *)a)->pub); }
static bool all_positioned(void *a) { return ((ctx *)a)->npos >= 20; }
static bool closed(void *a) { return ((ctx *)a)->done == 2; }
static bool read_done(void *a) { return ((ctx *)a)->reads == 1; }
static void on_one_closed(void *a) { ((ctx *)a)->done++; }

static void on_read(void *ud, const hr_read_result *res) {
  ctx *c = ud;
  c->reads++;
  c->got = *res;
  c->n = res->n;
  c->first_seq = res->n ? res->e[0].seq : 0;
}

static void test_publisher_and_reader(void **state) {
  ctx c;
  memset(&c, 0, sizeof(c));
  assert_int_equal(uv_loop_init(&c.loop), 0);
  assert_int_equal(rfx_spawn(&c.redis, NULL), 0);
  char url[128];
  rfx_url(&c.redis, url, sizeof(url), NULL, 0);
  pub_options o = {.conn = {.connect_timeout_ms = 1000, .command_timeout_ms = 500, .backoff_min_ms = 20,
                            .backoff_max_ms = 80}};
  c.pub = pub_new(&c.loop, url, &o);
  c.reader = hr_reader_new(&c.loop, url);
  hr_conf_init(&c.conf, "0123456789abcdef", 1000);
  pub_use_script(c.pub, &c.conf, on_position, &c);
  assert_true(rfx_run_until(&c.loop, ready, &c, 2000));
  for (int i = 0; i < 10; i++) assert_true(pub_publish_body(c.pub, "quotes:AAPL", 11, body, strlen(body), 0, 7) >= 0);
  rfx_run_until(&c.loop, rfx_never, NULL, 200);
  /* NOSCRIPT: the server forgot the script; the next ten go through again */
  redisContext *raw = rfx_client(&c.redis);
  freeReplyObject(redisCommand(raw, "SCRIPT FLUSH"));
  redisFree(raw);
  for (int i = 0; i < 10; i++) assert_true(pub_publish_body(c.pub, "quotes:AAPL", 11, body, strlen(body), 0, 7) >= 0);
  assert_true(rfx_run_until(&c.loop, all_positioned, &c, 3000));
  for (int i = 0; i < 20; i++) assert_int_equal(c.seqs[i], i + 1);
  struct pub_stats st;
  pub_stats(c.pub, &st);
  assert_int_equal(st.published, 20);
  assert_int_equal(st.errors, 0);
  assert_true(st.script_retries >= 1);
  /* a resume after seq 15 reads 16..20 */
  assert_int_equal(hr_read(c.reader, "quotes:AAPL", 11, 15, on_read, &c), 0);
  assert_true(rfx_run_until(&c.loop, read_done, &c, 2000));
  assert_true(c.got.ok);
  assert_int_equal(c.got.top, 20);
  assert_int_equal(c.n, 5);
  assert_int_equal(c.first_seq, 16);
  /* a channel never published: epoch 0 */
  c.reads = 0;
  assert_int_equal(hr_read(c.reader, "quotes:NONE", 11, 0, on_read, &c), 0);
  assert_true(rfx_run_until(&c.loop, read_done, &c, 2000));
  assert_true(c.got.ok);
  assert_true(c.got.epoch == 0 && c.got.top == 0 && c.n == 0);
  pub_close(c.pub, on_one_closed, &c);
  hr_reader_close(c.reader, on_one_closed, &c);
  assert_true(rfx_run_until(&c.loop, closed, &c, 2000));
  assert_true(rfx_loop_close(&c.loop));
  rfx_kill(&c.redis);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_body_and_payload),
      cmocka_unit_test(test_reply_shapes),
      cmocka_unit_test(test_script_on_redis),
      cmocka_unit_test(test_publisher_and_reader),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
