/* Bars in Redis (see candle_store.h). */
#include "market/candle_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <openssl/sha.h>

#include "base/fmt_num.h"
#include "base/log.h"
#include "redis/redis_conn.h"
#include "redis/resp_put.h"

/* KEYS: the series' sorted set. ARGV: channel, bar, start, history, TTL ms. */
static const char put_script[] =
    "redis.call('PUBLISH', ARGV[1], ARGV[2])\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], ARGV[3], ARGV[3])\n"
    "redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])\n"
    "redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -tonumber(ARGV[4]) - 1)\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[5])\n"
    "return 1\n";

/* Reply tags: the script's load, a put; a read's tag is its struct. */
enum { TAG_LOAD = 1, TAG_PUT = 2 };
/* Errors are logged at most once per this many ms, with their count. */
#define CSTORE_LOG_MS 60000

/* "tickerd:{candles:86400s:<symbol>}:bars" with room */
#define CSTORE_KEY_MAX 128

struct cstore_read {
  cstore_read_cb cb;        /* NULL once cancelled */
  void *ud;
};

typedef struct {
  char *cmd;                /* a formatted EVALSHA, NUL ended */
  size_t len;
} cstore_cmd;

struct cstore {
  td_rconn conn;
  char sha[41];
  char history[16];
  uint32_t history_n;
  cstore_cmd *queue;        /* closed bars waiting: a ring, oldest at head */
  uint32_t qhead, qlen, qcap;
  cstore_stats stats;
  uint64_t logged_ms, unlogged;
  void (*done)(void *);
  void *done_ud;
};

static void log_failure(cstore *s, const char *what, const char *detail) {
  uint64_t now = uv_now(s->conn.loop);
  if (s->logged_ms && now - s->logged_ms < CSTORE_LOG_MS) {
    s->unlogged++;
    return;
  }
  td_logline *l = log_begin(TD_LOG_WARN, what);
  if (l) {
    log_str(l, "detail", detail);
    log_int(l, "suppressed", (int64_t)s->unlogged);
    log_end(l);
  }
  s->logged_ms = now ? now : 1;
  s->unlogged = 0;
}

/* The series' key, by hand: snprintf cost a fifth of a bar's store. A
 * channel too long for CSTORE_KEY_MAX is cut, as snprintf cut it. */
static size_t key_of(char *out, const char *channel, size_t n) {
  static const char prefix[] = CSTORE_KEY_PREFIX, suffix[] = CSTORE_KEY_SUFFIX;
  const size_t room = CSTORE_KEY_MAX - sizeof(prefix) - sizeof(suffix) + 1;
  if (n > room) n = room;
  memcpy(out, prefix, sizeof(prefix) - 1);
  memcpy(out + sizeof(prefix) - 1, channel, n);
  memcpy(out + sizeof(prefix) - 1 + n, suffix, sizeof(suffix));
  return sizeof(prefix) - 1 + n + sizeof(suffix) - 1;
}

/* Whether a put can go now: READY, nothing older waiting, hiredis's buffer
 * not backed up. */
static bool can_send(const cstore *s) {
  return rconn_ready(&s->conn) && s->qlen == 0 && rconn_pending_bytes(&s->conn) < CSTORE_MAX_PENDING_BYTES;
}

static void send_put(cstore *s, const cstore_cmd *c) {
  if (rconn_command(&s->conn, TAG_PUT, c->cmd, c->len) == 0) s->stats.sent++;
  else s->stats.errors++;
}

/* Sends the queue, oldest first, while the connection takes it. */
static void drain(cstore *s) {
  while (s->qlen > 0 && rconn_ready(&s->conn) && rconn_pending_bytes(&s->conn) < CSTORE_MAX_PENDING_BYTES) {
    cstore_cmd *c = &s->queue[s->qhead];
    send_put(s, c);
    free(c->cmd);
    s->qhead = (s->qhead + 1) % s->qcap;
    s->qlen--;
  }
  s->stats.waiting = s->qlen;
}

static bool enqueue(cstore *s, char *cmd, size_t len) {
  if (s->qlen == s->qcap) {
    if (s->qcap == CSTORE_QUEUE_MAX) return false;
    uint32_t cap = s->qcap ? s->qcap * 2 : 64;
    if (cap > CSTORE_QUEUE_MAX) cap = CSTORE_QUEUE_MAX;
    cstore_cmd *q = malloc(cap * sizeof(*q));
    if (!q) return false;
    for (uint32_t i = 0; i < s->qlen; i++) q[i] = s->queue[(s->qhead + i) % s->qcap];
    free(s->queue);
    s->queue = q;
    s->qcap = cap;
    s->qhead = 0;
  }
  s->queue[(s->qhead + s->qlen++) % s->qcap] = (cstore_cmd){cmd, len};
  s->stats.queued++;
  s->stats.waiting = s->qlen;
  return true;
}

int cstore_put(cstore *s, const char *channel, size_t n, const char *json, size_t len, int64_t start, int64_t tf_s,
               bool closed) {
  if (!closed && !can_send(s)) {
    s->stats.skipped++;
    return UV_EAGAIN;
  }
  char key[CSTORE_KEY_MAX], start_s[FMT_I64_MAX], ttl[FMT_I64_MAX];
  size_t kn = key_of(key, channel, n);
  size_t sn = (size_t)(fmt_i64(start_s, start) - start_s);
  size_t tn = (size_t)(fmt_i64(ttl, tf_s * s->history_n * 1000 + CSTORE_TTL_EXTRA_MS) - ttl);
  size_t hn = strlen(s->history);
  /* The command by hand: redisFormatCommandArgv and snprintf cost ~11,000
   * instructions per bar (callgrind), more than the rest of candles per
   * trade at 100 trades per symbol per second. It is written straight into
   * the connection's output buffer when it can go now (no copy, no
   * malloc), else into a queue entry of its own. */
  static const char head[] = "*9\r\n$7\r\nEVALSHA\r\n";
  size_t max = sizeof(head) + 8 * RESP_BULK_OVERHEAD + 40 + 1 + kn + n + len + sn + hn + tn;
  bool now = can_send(s);
  char *cmd = now ? rconn_command_begin(&s->conn, max) : malloc(max);
  if (!cmd) return UV_ENOMEM;
  char *o = cmd + sizeof(head) - 1;
  memcpy(cmd, head, sizeof(head) - 1);
  o = resp_put_bulk(o, s->sha, 40);
  o = resp_put_bulk(o, "1", 1);
  o = resp_put_bulk(o, key, kn);
  o = resp_put_bulk(o, channel, n);
  o = resp_put_bulk(o, json, len);
  o = resp_put_bulk(o, start_s, sn);
  o = resp_put_bulk(o, s->history, hn);
  o = resp_put_bulk(o, ttl, tn);
  size_t cl = (size_t)(o - cmd);
  if (now) {
    if (rconn_command_end(&s->conn, TAG_PUT, cl) == 0) s->stats.sent++;
    else s->stats.errors++;
    return 0;
  }
  if (!enqueue(s, cmd, cl)) {
    free(cmd);
    s->stats.dropped++;
    log_failure(s, "candle_store_dropped", "closed bars waiting for Redis past CSTORE_QUEUE_MAX");
    return UV_ENOBUFS;
  }
  return 1;
}

/* ---- reads ----------------------------------------------------------------- */

static void answer_read(cstore *s, cstore_read *r, const redisReply *reply) {
  bool ok = reply && reply->type == REDIS_REPLY_ARRAY;
  for (size_t i = 0; ok && i < reply->elements; i++) ok = reply->element[i]->type == REDIS_REPLY_STRING;
  size_t n = ok ? reply->elements : 0;
  const char **bars = calloc(n ? n : 1, sizeof(*bars));
  size_t *lens = calloc(n ? n : 1, sizeof(*lens));
  ok = ok && bars && lens;
  for (size_t i = 0; ok && i < n; i++) {
    bars[i] = reply->element[i]->str;
    lens[i] = reply->element[i]->len;
  }
  if (!ok) {
    s->stats.read_failures++;
    log_failure(s, "candle_store_read_failed",
                !reply ? "connection lost" : reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
  }
  if (r->cb) r->cb(r->ud, ok, bars, lens, ok ? n : 0);
  free(bars);
  free(lens);
  free(r);
}

cstore_read *cstore_read_start(cstore *s, const char *channel, size_t n, uint32_t limit, cstore_read_cb cb, void *ud) {
  if (!rconn_ready(&s->conn) || limit == 0) return NULL;
  char key[CSTORE_KEY_MAX], first[24];
  size_t kn = key_of(key, channel, n);
  snprintf(first, sizeof(first), "-%u", limit);
  const char *argv[] = {"ZRANGE", key, first, "-1"};
  size_t argl[] = {6, kn, strlen(first), 2};
  cstore_read *r = malloc(sizeof(*r));
  if (!r) return NULL;
  *r = (cstore_read){cb, ud};
  if (rconn_command_argv(&s->conn, (uintptr_t)r, 4, argv, argl) != 0) {
    free(r);
    return NULL;
  }
  s->stats.reads++;
  return r;
}

void cstore_read_cancel(cstore_read *r) {
  if (r) r->cb = NULL;   /* freed when its reply comes */
}

/* ---- the connection ------------------------------------------------------------ */

static void load_script(cstore *s) {
  const char *argv[] = {"SCRIPT", "LOAD", put_script};
  size_t argl[] = {6, 4, sizeof(put_script) - 1};
  if (rconn_command_argv(&s->conn, TAG_LOAD, 3, argv, argl) != 0) s->stats.errors++;
}

static void on_ready(td_rconn *c, void *ud) {
  cstore *s = ud;
  load_script(s);   /* before any EVALSHA: a restarted server has no scripts */
  s->stats.connected = true;
  drain(s);
}

static void on_lost(td_rconn *c, void *ud, const char *reason, bool was_ready) {
  cstore *s = ud;
  s->stats.connected = false;
}

static void on_reply(td_rconn *c, void *ud, redisReply *r, uintptr_t tag) {
  cstore *s = ud;
  if (tag != TAG_LOAD && tag != TAG_PUT) {
    answer_read(s, (cstore_read *)tag, r);
    return;
  }
  if (r && r->type != REDIS_REPLY_ERROR) {
    if (tag == TAG_PUT) s->stats.stored++;
  } else {
    s->stats.errors++;
    /* the server's scripts were flushed: load it again (this bar is lost) */
    if (r && !strncmp(r->str, "NOSCRIPT", 8) && rconn_ready(c)) load_script(s);
    log_failure(s, "candle_store_failed", !r ? "connection lost" : r->str);
  }
  if (tag == TAG_PUT) drain(s);
}

static void on_closed(td_rconn *c, void *ud) {
  cstore *s = ud;
  void (*done)(void *) = s->done;
  void *dud = s->done_ud;
  while (s->qlen > 0) {
    free(s->queue[s->qhead].cmd);
    s->qhead = (s->qhead + 1) % s->qcap;
    s->qlen--;
  }
  free(s->queue);
  free(s);
  if (done) done(dud);
}

cstore *cstore_new(uv_loop_t *loop, const char *redis_url, uint32_t history) {
  cstore *s = calloc(1, sizeof(*s));
  if (!s) return NULL;
  static const rconn_callbacks cb = {on_ready, on_lost, on_reply, on_closed};
  rconn_options o = {.name = "candles"};
  const char *err = NULL;
  if (rconn_init(&s->conn, loop, redis_url, &cb, s, &o, &err) < 0) {
    free(s);
    return NULL;
  }
  unsigned char md[SHA_DIGEST_LENGTH];
  SHA1((const unsigned char *)put_script, sizeof(put_script) - 1, md);
  for (int i = 0; i < SHA_DIGEST_LENGTH; i++) snprintf(s->sha + 2 * i, 3, "%02x", md[i]);
  s->history_n = history;
  snprintf(s->history, sizeof(s->history), "%u", history);
  rconn_start(&s->conn);
  return s;
}

void cstore_get_stats(const cstore *s, cstore_stats *out) { *out = s->stats; }

void cstore_close(cstore *s, void (*done)(void *), void *ud) {
  s->done = done;
  s->done_ud = ud;
  rconn_close(&s->conn);
}
