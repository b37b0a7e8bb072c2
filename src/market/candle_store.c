/* Bars in Redis (see candle_store.h). */
#include "market/candle_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <openssl/sha.h>

#include "base/fmt_num.h"
#include "base/log.h"
#include "redis/cluster.h"
#include "redis/redis_conn.h"
#include "redis/resp_put.h"

/* KEYS: the series' sorted sets, one per bar. ARGV: history, the publish
 * command (PUBLISH; SPUBLISH on a Cluster: the channel hashes to its key's
 * slot, so a bar touches one slot), then for each key its channel, bar,
 * start and TTL ms. Returns the bars stored. One bar per call on a Cluster
 * and for a closed bar; a batch of in-progress bars in classic mode. */
static const char put_script[] =
    "local h, pub = -tonumber(ARGV[1]) - 1, ARGV[2]\n"
    "for i = 1, #KEYS do\n"
    "  local a = 3 + (i - 1) * 4\n"
    "  redis.call(pub, ARGV[a], ARGV[a + 1])\n"
    "  redis.call('ZREMRANGEBYSCORE', KEYS[i], ARGV[a + 2], ARGV[a + 2])\n"
    "  redis.call('ZADD', KEYS[i], ARGV[a + 2], ARGV[a + 1])\n"
    "  redis.call('ZREMRANGEBYRANK', KEYS[i], 0, h)\n"
    "  redis.call('PEXPIRE', KEYS[i], ARGV[a + 3])\n"
    "end\n"
    "return #KEYS\n";

/* Reply tags: the script's load, an in-progress bar (not kept), a closed
 * bar (kept in its connection's `sent` FIFO until answered), an ASKING; a
 * read's tag is its struct's address, above all of these. */
enum { TAG_LOAD = 1, TAG_PUT, TAG_KEPT, TAG_ASKING, TAG_LAST = TAG_ASKING };
/* Errors are logged at most once per this many ms, with their count. */
#define CSTORE_LOG_MS 60000
/* Timeframes whose TTL text is kept (the engine has at most CANDLE_MAX_TF);
 * past them the last entry is written again as needed. */
#define CSTORE_TTL_CACHED 8

/* "tickerd:{candles:86400s:<symbol>}:bars" with room */
#define CSTORE_KEY_MAX 128
/* In-progress bars sent in one script call at most (classic mode): each
 * call is a command and a reply for tickerd to make and read, ~1,000
 * instructions a bar alone, and the timer hands over a second's bars at
 * once (six a symbol). */
#define CSTORE_BATCH_MAX 64
/* Room for a batch's keys and for its other arguments (a bar's JSON is
 * ~200 bytes); a bar that does not fit sends the batch first. */
#define CSTORE_BATCH_BYTES (32 * 1024)

struct cstore_read {
  cstore_read_cb cb;        /* NULL once cancelled */
  void *ud;
};

/* A bar's command, a formatted EVALSHA; in at most one FIFO at a time. */
typedef struct cstore_cmd {
  struct cstore_cmd *next;
  uint32_t len;
  uint16_t slot;            /* its series' Cluster slot (0 in classic mode) */
  uint8_t bounces;          /* sent again after MOVED, ASK or NOSCRIPT */
  char text[];
} cstore_cmd;

/* Commands in order, oldest at head (linked through `next`). */
typedef struct {
  cstore_cmd *head, *tail;
  uint32_t len;
} cstore_fifo;

/* One connection: the server's, or on a Cluster one primary's. */
typedef struct {
  cstore *s;
  int idx;                  /* in cstore.link */
  td_rconn conn;
  cstore_fifo wait;         /* closed bars waiting for this connection */
  cstore_fifo sent;         /* closed bars sent here, in the order of their replies */
} cstore_link;

struct cstore {
  uv_loop_t *loop;
  td_rcluster *map;         /* redis+cluster://; NULL in classic mode */
  cstore_link *link[RCL_NODES_MAX]; /* classic: link[0]; Cluster: by node index, made when a map names it */
  cstore_fifo parked;       /* closed bars with nowhere to go yet: no owner known, or to be retried */
  uv_timer_t retry;         /* routes the parked bars again */
  char sha[41];
  char history[16];
  size_t history_len;
  uint32_t history_n;
  /* The TTL argument of each timeframe seen (a bar's every put wrote it
   * again: ~100 instructions of ~2,400 per bar) */
  struct {
    int64_t tf_s;
    size_t len;
    char text[FMT_I64_MAX];
  } ttl[CSTORE_TTL_CACHED];
  int nttl;
  cstore_stats stats;
  uint64_t logged_ms, unlogged;
  /* In-progress bars not sent yet (classic mode): their keys, and their
   * channel, bar, start and TTL, as RESP bulks; sent by batch_send. */
  uint32_t batch_n;
  size_t batch_keys_len, batch_args_len;
  char batch_keys[CSTORE_BATCH_BYTES], batch_args[CSTORE_BATCH_BYTES];
  bool closing;
  int closes_pending;
  void (*done)(void *);
  void *done_ud;
};

static void log_failure(cstore *s, const char *what, const char *detail) {
  uint64_t now = uv_now(s->loop);
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

/* ---- FIFOs --------------------------------------------------------------------- */

static void fifo_push(cstore_fifo *f, cstore_cmd *c) {
  c->next = NULL;
  if (f->tail) f->tail->next = c;
  else f->head = c;
  f->tail = c;
  f->len++;
}

static cstore_cmd *fifo_pop(cstore_fifo *f) {
  cstore_cmd *c = f->head;
  if (!c) return NULL;
  f->head = c->next;
  if (!f->head) f->tail = NULL;
  f->len--;
  return c;
}

/* Moves all of src in front of dst, in order. */
static void fifo_prepend(cstore_fifo *dst, cstore_fifo *src) {
  if (!src->head) return;
  src->tail->next = dst->head;
  if (!dst->tail) dst->tail = src->tail;
  dst->head = src->head;
  dst->len += src->len;
  *src = (cstore_fifo){0};
}

static void fifo_free(cstore_fifo *f) {
  for (cstore_cmd *c; (c = fifo_pop(f));) free(c);
}

/* ---- routing ------------------------------------------------------------------- */

static cstore_link *link_new(cstore *s, int idx, const char *url);

/* A Cluster node's connection, made on first use. */
static cstore_link *link_at(cstore *s, int idx) {
  return s->link[idx] ? s->link[idx] : link_new(s, idx, rcl_node_at(s->map, idx)->url);
}

/* The connection of a slot: classic mode's one, or the slot's primary's;
 * NULL while no owner is known (no map yet) or while closing. */
static cstore_link *link_of(cstore *s, uint16_t slot) {
  if (!s->map) return s->link[0];
  int idx = rcl_owner(s->map, slot);
  return idx < 0 || s->closing ? NULL : link_at(s, idx);
}

static uint16_t slot_of(const cstore *s, const char *key, size_t n) { return s->map ? rcl_slot(key, n) : 0; }

/* Room for a bar on l now: READY, nothing older waiting, hiredis's buffer
 * not backed up, not too many closed bars unanswered. */
static bool can_send(const cstore_link *l) {
  return l && rconn_ready(&l->conn) && l->wait.len == 0 &&
         rconn_pending_bytes(&l->conn) < CSTORE_MAX_PENDING_BYTES && l->sent.len < CSTORE_KEPT_MAX;
}

/* Sends closed bar c on l; it stays in l->sent until its reply. */
static int send_cmd(cstore_link *l, cstore_cmd *c) {
  int rc = rconn_command(&l->conn, TAG_KEPT, c->text, c->len);
  if (rc < 0) {
    l->s->stats.errors++;
    return rc;
  }
  l->s->stats.sent++;
  fifo_push(&l->sent, c);
  return 0;
}

static void drop(cstore *s, cstore_cmd *c, const char *why) {
  free(c);
  s->stats.dropped++;
  log_failure(s, "candle_store_dropped", why);
}

/* c waits in f (a connection's queue, or the parked ones), counted. */
static int wait_in(cstore *s, cstore_fifo *f, cstore_cmd *c) {
  if (s->stats.waiting >= CSTORE_QUEUE_MAX) {
    drop(s, c, "closed bars waiting for Redis past CSTORE_QUEUE_MAX");
    return UV_ENOBUFS;
  }
  fifo_push(f, c);
  s->stats.waiting++;
  return 1;
}

/* A closed bar: sent now, or waiting in order for its slot's connection
 * (parked while no owner is known). 0 sent, 1 waiting, or UV_ENOBUFS. */
static int hold(cstore *s, cstore_cmd *c) {
  cstore_link *l = link_of(s, c->slot);
  if (can_send(l) && send_cmd(l, c) == 0) return 0;
  return wait_in(s, l ? &l->wait : &s->parked, c);
}

/* Sends l's queue, oldest first, while the connection takes it. */
static void drain(cstore_link *l) {
  cstore *s = l->s;
  while (l->wait.len > 0 && rconn_ready(&l->conn) && rconn_pending_bytes(&l->conn) < CSTORE_MAX_PENDING_BYTES &&
         l->sent.len < CSTORE_KEPT_MAX) {
    cstore_cmd *c = fifo_pop(&l->wait);
    s->stats.waiting--;
    if (send_cmd(l, c) < 0) drop(s, c, "a closed bar could not be sent");
  }
}

static void on_retry(uv_timer_t *t);

/* The parked bars to their slot's connection, in order and ahead of the
 * bars waiting there (a parked bar is older than any of its series that
 * waits on a connection: it was in flight, or put before the first map,
 * or moved by the map that sent the newer ones there); those of a slot
 * with no known owner stay parked, and the map is read again. */
static void route_parked(cstore *s) {
  if (s->closing) return;
  cstore_fifo ahead[RCL_NODES_MAX] = {0};
  for (uint32_t n = s->parked.len; n > 0; n--) {
    cstore_cmd *c = fifo_pop(&s->parked);
    cstore_link *l = link_of(s, c->slot);
    fifo_push(l ? &ahead[l->idx] : &s->parked, c);
  }
  for (int i = 0; i < RCL_NODES_MAX; i++) {
    if (!s->link[i]) continue;
    fifo_prepend(&s->link[i]->wait, &ahead[i]);
    drain(s->link[i]);
  }
  if (s->parked.len && s->map) {
    rcl_refresh(s->map);
    if (!uv_is_active((uv_handle_t *)&s->retry)) uv_timer_start(&s->retry, on_retry, CSTORE_RETRY_MS, 0);
  }
}

static void on_retry(uv_timer_t *t) { route_parked(t->data); }

/* A closed bar Redis did not take now (connection lost, cluster down): it
 * waits, and goes again after CSTORE_RETRY_MS. */
static void retry_later(cstore *s, cstore_cmd *c) {
  if (s->closing) {
    free(c);
    return;
  }
  s->stats.resent++;
  if (wait_in(s, &s->parked, c) == 1 && !uv_is_active((uv_handle_t *)&s->retry))
    uv_timer_start(&s->retry, on_retry, CSTORE_RETRY_MS, 0);
}

/* ---- writes -------------------------------------------------------------------- */

/* What varies in a bar's EVALSHA. */
typedef struct {
  const char *channel, *json;
  size_t n, len, kn, sn, tn;
  const char *ttl;
  char key[CSTORE_KEY_MAX], start[FMT_I64_MAX];
} put_args;

/* A series' TTL in milliseconds (its history's span and
 * CSTORE_TTL_EXTRA_MS), as text: kept per timeframe once written. */
static const char *ttl_of(cstore *s, int64_t tf_s, size_t *len) {
  for (int i = 0; i < s->nttl; i++)
    if (s->ttl[i].tf_s == tf_s) {
      *len = s->ttl[i].len;
      return s->ttl[i].text;
    }
  int i = s->nttl < CSTORE_TTL_CACHED ? s->nttl++ : CSTORE_TTL_CACHED - 1;
  s->ttl[i].tf_s = tf_s;
  s->ttl[i].len = (size_t)(fmt_i64(s->ttl[i].text, tf_s * s->history_n * 1000 + CSTORE_TTL_EXTRA_MS) - s->ttl[i].text);
  *len = s->ttl[i].len;
  return s->ttl[i].text;
}

/* A call's head, "*<arguments>" and EVALSHA, for n bars: EVALSHA, the
 * sha, numkeys, the keys, history, the publish command, four per bar. */
#define PUT_HEAD_MAX (sizeof("*\r\n$7\r\nEVALSHA\r\n") + FMT_U64_MAX)
static char *put_head(char *o, uint32_t n) {
  static const char evalsha[] = "\r\n$7\r\nEVALSHA\r\n";
  *o++ = '*';
  o = fmt_u64(o, 5 * (uint64_t)n + 5);
  memcpy(o, evalsha, sizeof(evalsha) - 1);
  return o + sizeof(evalsha) - 1;
}

static const char *pub_cmd(const cstore *s) { return s->map ? "SPUBLISH" : "PUBLISH"; }

/* A bar's arguments after the key: channel, bar, start, TTL. */
static char *put_bar_args(char *o, const put_args *a) {
  o = resp_put_bulk(o, a->channel, a->n);
  o = resp_put_bulk(o, a->json, a->len);
  o = resp_put_bulk(o, a->start, a->sn);
  return resp_put_bulk(o, a->ttl, a->tn);
}

static size_t bar_args_max(const put_args *a) { return 4 * RESP_BULK_OVERHEAD + a->n + a->len + a->sn + a->tn; }

/* The most put_write writes. */
static size_t put_max(const cstore *s, const put_args *a) {
  return PUT_HEAD_MAX + 5 * RESP_BULK_OVERHEAD + 40 + 1 + a->kn + s->history_len + sizeof("SPUBLISH") +
         bar_args_max(a);
}

/* A call's arguments from the SHA to the publish command. */
static char *put_call(const cstore *s, char *o, uint32_t nkeys, const char *keys, size_t keys_len) {
  char num[FMT_U64_MAX];
  o = resp_put_bulk(o, s->sha, 40);
  o = resp_put_bulk(o, num, (size_t)(fmt_u64(num, nkeys) - num));
  memcpy(o, keys, keys_len);
  o += keys_len;
  o = resp_put_bulk(o, s->history, s->history_len);
  const char *pub = pub_cmd(s);
  return resp_put_bulk(o, pub, strlen(pub));
}

/* One bar's call by hand: redisFormatCommandArgv and snprintf cost ~11,000
 * instructions per bar (callgrind), more than the rest of candles per
 * trade at 100 trades per symbol per second. Returns its length. */
static size_t put_write(const cstore *s, const put_args *a, char *cmd) {
  char key[CSTORE_KEY_MAX + RESP_BULK_OVERHEAD];
  size_t kl = (size_t)(resp_put_bulk(key, a->key, a->kn) - key);
  char *o = put_call(s, put_head(cmd, 1), 1, key, kl);
  return (size_t)(put_bar_args(o, a) - cmd);
}

/* The batched in-progress bars in one call, if any; when the connection
 * cannot take them now they are skipped (counted), as one bar would be. */
static void batch_send(cstore *s) {
  if (s->batch_n == 0) return;
  cstore_link *l = s->link[0];
  uint32_t n = s->batch_n;
  s->batch_n = 0;
  size_t keys_len = s->batch_keys_len, args_len = s->batch_args_len;
  s->batch_keys_len = s->batch_args_len = 0;
  if (!can_send(l)) {
    s->stats.skipped += n;
    return;
  }
  /* the head, then four bulks (sha, numkeys, history, publish) and the
   * batch's keys and arguments, formatted already */
  char *cmd = rconn_command_begin(&l->conn, PUT_HEAD_MAX + 4 * RESP_BULK_OVERHEAD + 40 + FMT_U64_MAX + keys_len +
                                                s->history_len + sizeof("SPUBLISH") + args_len);
  if (!cmd) {
    s->stats.errors += n;
    return;
  }
  char *o = put_call(s, put_head(cmd, n), n, s->batch_keys, keys_len);
  memcpy(o, s->batch_args, args_len);
  o += args_len;
  if (rconn_command_end(&l->conn, TAG_PUT, (size_t)(o - cmd)) == 0) s->stats.sent += n;
  else s->stats.errors += n;
}

/* An in-progress bar into the batch (classic mode), which goes when full;
 * false when the bar alone would not fit one. */
static bool batch_add(cstore *s, const put_args *a) {
  size_t kmax = a->kn + RESP_BULK_OVERHEAD, amax = bar_args_max(a);
  if (kmax > CSTORE_BATCH_BYTES || amax > CSTORE_BATCH_BYTES) return false;
  if (s->batch_keys_len + kmax > CSTORE_BATCH_BYTES || s->batch_args_len + amax > CSTORE_BATCH_BYTES) batch_send(s);
  s->batch_keys_len = (size_t)(resp_put_bulk(s->batch_keys + s->batch_keys_len, a->key, a->kn) - s->batch_keys);
  s->batch_args_len = (size_t)(put_bar_args(s->batch_args + s->batch_args_len, a) - s->batch_args);
  if (++s->batch_n == CSTORE_BATCH_MAX) batch_send(s);
  return true;
}

void cstore_flush(cstore *s) { batch_send(s); }

int cstore_put(cstore *s, const char *channel, size_t n, const char *json, size_t len, int64_t start, int64_t tf_s,
               bool closed) {
  put_args a = {.channel = channel, .json = json, .n = n, .len = len};
  a.kn = key_of(a.key, channel, n);
  uint16_t slot = slot_of(s, a.key, a.kn);
  cstore_link *l = link_of(s, slot);
  if (!closed && !can_send(l)) {
    s->stats.skipped++;
    return UV_EAGAIN;
  }
  a.sn = (size_t)(fmt_i64(a.start, start) - a.start);
  a.ttl = ttl_of(s, tf_s, &a.tn);
  if (!closed && !s->map && batch_add(s, &a)) return 0;
  /* the in-progress bars batched so far go first: a closed bar must not
   * be overwritten by an older in-progress one of its series */
  batch_send(s);
  if (!closed) {   /* straight into the connection's buffer: no copy, no malloc */
    char *cmd = rconn_command_begin(&l->conn, put_max(s, &a));
    if (!cmd) return UV_ENOMEM;
    if (rconn_command_end(&l->conn, TAG_PUT, put_write(s, &a, cmd)) == 0) s->stats.sent++;
    else s->stats.errors++;
    return 0;
  }
  /* a closed bar is kept until Redis answers it */
  cstore_cmd *c = malloc(sizeof(*c) + put_max(s, &a));
  if (!c) return UV_ENOMEM;
  c->len = (uint32_t)put_write(s, &a, c->text);
  c->slot = slot;
  c->bounces = 0;
  int rc = hold(s, c);
  if (rc == 1) s->stats.queued++;
  return rc;
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
  char key[CSTORE_KEY_MAX], first[24];
  size_t kn = key_of(key, channel, n);
  cstore_link *l = link_of(s, slot_of(s, key, kn));
  if (!l || !rconn_ready(&l->conn) || limit == 0) return NULL;
  snprintf(first, sizeof(first), "-%u", limit);
  const char *argv[] = {"ZRANGE", key, first, "-1"};
  size_t argl[] = {6, kn, strlen(first), 2};
  cstore_read *r = malloc(sizeof(*r));
  if (!r) return NULL;
  *r = (cstore_read){cb, ud};
  if (rconn_command_argv(&l->conn, (uintptr_t)r, 4, argv, argl) != 0) {
    free(r);
    return NULL;
  }
  s->stats.reads++;
  return r;
}

void cstore_read_cancel(cstore_read *r) {
  if (r) r->cb = NULL;   /* freed when its reply comes */
}

/* ---- replies ------------------------------------------------------------------- */

static bool error_is(const redisReply *r, const char *prefix) {
  return r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, prefix, strlen(prefix)) == 0;
}

static void load_script(cstore_link *l) {
  const char *argv[] = {"SCRIPT", "LOAD", put_script};
  size_t argl[] = {6, 4, sizeof(put_script) - 1};
  if (rconn_command_argv(&l->conn, TAG_LOAD, 3, argv, argl) != 0) l->s->stats.errors++;
}

/* ASK <slot> <host:port>: ASKING, then the bar, on the node named. */
static bool send_asking(cstore *s, cstore_cmd *c, const redisReply *r) {
  static const char asking[] = "*1\r\n$6\r\nASKING\r\n";
  int idx = rcl_ask_node(s->map, r->str + 4, r->len - 4);
  cstore_link *l = idx < 0 || s->closing ? NULL : link_at(s, idx);
  return l && rconn_ready(&l->conn) && rconn_command(&l->conn, TAG_ASKING, asking, sizeof(asking) - 1) == 0 &&
         send_cmd(l, c) == 0;
}

/* A bar Redis refused or did not answer; `kept` the closed bar's command
 * (NULL: an in-progress one, which its next update replaces). */
static void put_failed(cstore_link *l, cstore_cmd *kept, const redisReply *r) {
  cstore *s = l->s;
  s->stats.errors++;
  /* the server's scripts were flushed: load it again */
  if (error_is(r, "NOSCRIPT") && rconn_ready(&l->conn)) load_script(l);
  if (error_is(r, "MOVED ") && s->map) rcl_moved(s->map, r->str + 6, r->len - 6);
  if (kept && (!r || error_is(r, "CLUSTERDOWN") || error_is(r, "TRYAGAIN") || error_is(r, "LOADING"))) {
    retry_later(s, kept);   /* Redis away: as if it had waited */
    return;
  }
  if (!r) return;   /* an in-progress bar on a lost connection: nothing to say */
  bool bounce = error_is(r, "NOSCRIPT") || error_is(r, "MOVED ") || (error_is(r, "ASK ") && s->map);
  if (kept && bounce && kept->bounces < CSTORE_BOUNCES_MAX) {
    kept->bounces++;
    s->stats.resent++;
    if (!error_is(r, "ASK ")) {
      hold(s, kept);   /* sent, waiting, or dropped (counted) */
      return;
    }
    if (send_asking(s, kept, r)) return;
  }
  if (kept) drop(s, kept, r->str);
  else log_failure(s, "candle_store_failed", r->str);
}

static void on_reply(td_rconn *c, void *ud, redisReply *r, uintptr_t tag) {
  cstore_link *l = ud;
  cstore *s = l->s;
  if (tag > TAG_LAST) {
    if (error_is(r, "MOVED ") && s->map) rcl_moved(s->map, r->str + 6, r->len - 6);
    answer_read(s, (cstore_read *)tag, r);
    return;
  }
  if (tag == TAG_ASKING) return;
  if (tag == TAG_LOAD) {
    if (!r || r->type == REDIS_REPLY_ERROR) s->stats.errors++;
    if (r && r->type == REDIS_REPLY_ERROR) log_failure(s, "candle_store_failed", r->str);
    return;
  }
  cstore_cmd *kept = tag == TAG_KEPT ? fifo_pop(&l->sent) : NULL;
  if (r && r->type != REDIS_REPLY_ERROR) {
    s->stats.stored += r->type == REDIS_REPLY_INTEGER && r->integer > 0 ? (uint64_t)r->integer : 1;
    free(kept);
  } else {
    put_failed(l, kept, r);
  }
  drain(l);
}

/* ---- connections ----------------------------------------------------------------- */

static void on_ready(td_rconn *c, void *ud) {
  cstore_link *l = ud;
  load_script(l);   /* before any EVALSHA: a restarted server has no scripts */
  /* the bars this connection lost in flight first, without waiting for
   * the retry timer, then those that waited for it */
  route_parked(l->s);
  drain(l);
}

static void on_lost(td_rconn *c, void *ud, const char *reason, bool was_ready) {
  cstore_link *l = ud;
  /* a primary gone: its replica may have been promoted */
  if (l->s->map && !l->s->closing) rcl_refresh(l->s->map);
}

static void closed_one(void *ud) {
  cstore *s = ud;
  if (--s->closes_pending > 0) return;
  void (*done)(void *) = s->done;
  void *dud = s->done_ud;
  fifo_free(&s->parked);
  free(s);
  if (done) done(dud);
}

static void on_closed(td_rconn *c, void *ud) {
  cstore_link *l = ud;
  cstore *s = l->s;
  fifo_free(&l->wait);
  fifo_free(&l->sent);
  free(l);
  closed_one(s);
}

static cstore_link *link_new(cstore *s, int idx, const char *url) {
  static const rconn_callbacks cb = {on_ready, on_lost, on_reply, on_closed};
  rconn_options o = {.name = s->map ? "candles-shard" : "candles"};
  if (s->map) o.backoff_max_ms = CSTORE_SHARD_BACKOFF_MAX_MS;
  cstore_link *l = calloc(1, sizeof(*l));
  const char *err = NULL;
  if (!l || rconn_init(&l->conn, s->loop, url, &cb, l, &o, &err) < 0) {
    free(l);
    return NULL;
  }
  l->s = s;
  l->idx = idx;
  s->link[idx] = l;
  rconn_start(&l->conn);
  return l;
}

/* A new slot map: a connection to every primary (for reads as well as
 * bars), and the bars waiting for a node that no longer owns their slot
 * go where it is now. */
static void on_map(td_rcluster *map, bool changed, void *ud) {
  cstore *s = ud;
  if (s->closing) return;
  for (uint32_t i = 0; i < rcl_node_count(map); i++)
    if (rcl_node_at(map, (int)i)->slots) link_at(s, (int)i);
  for (int i = 0; changed && i < RCL_NODES_MAX; i++) {
    cstore_link *l = s->link[i];
    for (uint32_t n = l ? l->wait.len : 0; n > 0; n--) {
      cstore_cmd *c = fifo_pop(&l->wait);
      fifo_push(rcl_owner(map, c->slot) == i ? &l->wait : &s->parked, c);
    }
  }
  route_parked(s);
}

cstore *cstore_new(uv_loop_t *loop, const char *redis_url, uint32_t history) {
  cstore *s = calloc(1, sizeof(*s));
  if (!s) return NULL;
  s->loop = loop;
  unsigned char md[SHA_DIGEST_LENGTH];
  SHA1((const unsigned char *)put_script, sizeof(put_script) - 1, md);
  for (int i = 0; i < SHA_DIGEST_LENGTH; i++) snprintf(s->sha + 2 * i, 3, "%02x", md[i]);
  s->history_n = history;
  s->history_len = (size_t)snprintf(s->history, sizeof(s->history), "%u", history);
  if (rcl_is_url(redis_url) ? !(s->map = rcl_new(loop, redis_url, "candles", on_map, s))
                            : !link_new(s, 0, redis_url)) {
    free(s);
    return NULL;
  }
  uv_timer_init(loop, &s->retry);
  s->retry.data = s;
  return s;
}

void cstore_get_stats(const cstore *s, cstore_stats *out) {
  *out = s->stats;
  if (!s->map) {
    out->connected = rconn_ready(&s->link[0]->conn);
    return;
  }
  out->connected = rcl_loaded(s->map);
  for (uint32_t i = 0; out->connected && i < rcl_node_count(s->map); i++)
    if (rcl_node_at(s->map, (int)i)->slots) out->connected = s->link[i] && rconn_ready(&s->link[i]->conn);
}

static void on_timer_closed(uv_handle_t *h) { closed_one(h->data); }

void cstore_close(cstore *s, void (*done)(void *), void *ud) {
  s->done = done;
  s->done_ud = ud;
  s->closing = true;
  s->closes_pending = 2 + (s->map != NULL);   /* the timer, this call, the map */
  for (int i = 0; i < RCL_NODES_MAX; i++) s->closes_pending += s->link[i] != NULL;
  uv_close((uv_handle_t *)&s->retry, on_timer_closed);
  if (s->map) rcl_close(s->map, closed_one, s);
  for (int i = 0; i < RCL_NODES_MAX; i++)
    if (s->link[i]) rconn_close(&s->link[i]->conn);
  closed_one(s);
}
