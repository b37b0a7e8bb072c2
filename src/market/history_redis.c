/* Positions and history in Redis (see history_redis.h). */
#include "market/history_redis.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "base/fmt_num.h"
#include "base/log.h"
#include "market/quote_store.h"
#include "redis/cluster.h"
#include "redis/redis_conn.h"

/* KEYS: pos hash, stream. ARGV: channel, body, nonce, maxlen, and the
 * publish command (SPUBLISH on a Cluster; PUBLISH when absent).
 * A new epoch is made when the channel has none, and also when XADD refuses
 * the id (a stream whose ids ran ahead of the hash, say after a partial
 * restore): the stream is deleted and the sequence restarts. */
static const char publish_script[] =
    "local function fresh()\n"
    "  local t = redis.call('TIME')\n"
    "  local e = string.sub(redis.sha1hex(ARGV[3]..':'..t[1]..':'..t[2]..':'..KEYS[1]), 1, 16)\n"
    "  redis.call('DEL', KEYS[2])\n"
    "  redis.call('HSET', KEYS[1], 'e', e, 's', 0)\n"
    "  return e\n"
    "end\n"
    "local e = redis.call('HGET', KEYS[1], 'e')\n"
    "if not e then e = fresh() end\n"
    "local s = redis.call('HINCRBY', KEYS[1], 's', 1)\n"
    "local p = ARGV[2]..',\"seq\":'..s..',\"epoch\":\"'..e..'\"}'\n"
    "local ok = redis.pcall('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '0-'..s, 'd', p)\n"
    "if type(ok) == 'table' and ok.err then\n"
    "  e = fresh()\n"
    "  s = redis.call('HINCRBY', KEYS[1], 's', 1)\n"
    "  p = ARGV[2]..',\"seq\":'..s..',\"epoch\":\"'..e..'\"}'\n"
    "  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '0-'..s, 'd', p)\n"
    "end\n"
    "redis.call(ARGV[5] or 'PUBLISH', ARGV[1], p)\n"
    "return {s, e}\n";

/* KEYS: pos hash, stream. ARGV: first seq wanted, count. Answers {epoch,
 * top, entries from the first wanted, the stream's last entry} (the last
 * is the latest quote of a client that cannot be resumed, on an instance
 * whose memory has none). Sent with EVAL: resumes are rare, and EVAL never
 * meets NOSCRIPT. */
static const char read_script[] =
    "local m = redis.call('HMGET', KEYS[1], 'e', 's')\n"
    "if not m[1] then return {'', 0, {}, {}} end\n"
    "return {m[1], tonumber(m[2]), redis.call('XRANGE', KEYS[2], '0-'..ARGV[1], '+', 'COUNT', ARGV[2]),\n"
    "        redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)}\n";

const char *hr_publish_script(void) { return publish_script; }

void hr_conf_init(hr_conf *c, const char *nonce_hex, unsigned maxlen) {
  unsigned char md[SHA_DIGEST_LENGTH];
  SHA1((const unsigned char *)publish_script, sizeof(publish_script) - 1, md);
  for (int i = 0; i < SHA_DIGEST_LENGTH; i++) snprintf(c->sha + 2 * i, 3, "%02x", md[i]);
  snprintf(c->nonce, sizeof(c->nonce), "%s", nonce_hex);
  snprintf(c->maxlen, sizeof(c->maxlen), "%u", maxlen);
}

size_t hr_key(char *out, const char *channel, size_t n, bool stream) {
  const char *tail = stream ? "}:hist" : "}:pos";
  size_t pn = sizeof(HR_KEY_PREFIX) - 1, tn = strlen(tail);
  if (n > HR_KEY_MAX - pn - tn - 1) n = HR_KEY_MAX - pn - tn - 1;
  memcpy(out, HR_KEY_PREFIX, pn);
  memcpy(out + pn, channel, n);
  memcpy(out + pn + n, tail, tn + 1);
  return pn + n + tn;
}

size_t hr_body_len(const char *payload, size_t n) {
  static const char head[] = ",\"seq\":0,\"epoch\":\"";
  if (n < HR_SEQ0_TAIL_LEN) return 0;
  size_t body = n - HR_SEQ0_TAIL_LEN;
  if (memcmp(payload + body, head, sizeof(head) - 1) || memcmp(payload + n - 2, "\"}", 2)) return 0;
  return body;
}

td_buf *hr_payload(const char *body, size_t n, const hr_position *pos) {
  td_buf *b = buf_new(n + HR_SEQ0_TAIL_LEN + 20);
  if (!b) return NULL;
  char *o = b->data;
  memcpy(o, body, n);
  o += n;
  memcpy(o, ",\"seq\":", 7);
  o = fmt_u64(o + 7, pos->seq);
  memcpy(o, ",\"epoch\":\"", 10);
  memcpy(o + 10, pos->epoch_hex, SMSG_EPOCH_LEN);
  memcpy(o + 10 + SMSG_EPOCH_LEN, "\"}", 2);
  b->len = (uint32_t)(o + 12 + SMSG_EPOCH_LEN - b->data);
  return b;
}

/* An epoch as the scripts return it: 16 lowercase hex characters. */
static bool read_epoch(const redisReply *r, uint64_t *epoch, char *hex) {
  if (r->type != REDIS_REPLY_STRING || r->len != SMSG_EPOCH_LEN ||
      qstore_epoch_parse(r->str, (size_t)r->len, epoch) != 0)
    return false;
  if (hex) {
    memcpy(hex, r->str, SMSG_EPOCH_LEN);
    hex[SMSG_EPOCH_LEN] = '\0';
  }
  return true;
}

/* Lua numbers come back as integers in hiredis 0.14 and 1.x alike (RESP2);
 * a RESP3 connection would not change them either. */
int hr_publish_reply(const redisReply *r, hr_position *pos, const char **err) {
  *err = "no reply";
  if (!r) return -EINVAL;
  if (r->type == REDIS_REPLY_ERROR) {
    *err = r->str;
    return strncmp(r->str, "NOSCRIPT", 8) == 0 ? HR_NOSCRIPT : -EINVAL;
  }
  *err = "unexpected reply shape";
  if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_INTEGER ||
      r->element[0]->integer <= 0 || !read_epoch(r->element[1], &pos->epoch, pos->epoch_hex))
    return -EINVAL;
  pos->seq = (uint64_t)r->element[0]->integer;
  return 0;
}

/* ---- the publisher's commands in flight ----------------------------------- */

int hr_fifo_reserve(hr_fifo *f) {
  if (f->len < f->cap) return 0;
  uint32_t cap = f->cap ? f->cap * 2 : 64;
  hr_sent *e = malloc((size_t)cap * sizeof(*e));
  if (!e) return UV_ENOMEM;
  for (uint32_t i = 0; i < f->len; i++) e[i] = f->e[(f->head + i) % f->cap];
  free(f->e);
  f->e = e;
  f->cap = cap;
  f->head = 0;
  return 0;
}

void hr_fifo_push(hr_fifo *f, const hr_sent *s) { f->e[(f->head + f->len++) % f->cap] = *s; }

bool hr_fifo_pop(hr_fifo *f, hr_sent *out) {
  if (!f->len) return false;
  *out = f->e[f->head];
  f->head = (f->head + 1) % f->cap;
  f->len--;
  return true;
}

void hr_fifo_free(hr_fifo *f) {
  hr_sent s;
  while (hr_fifo_pop(f, &s)) buf_unref(s.msg);
  free(f->e);
  memset(f, 0, sizeof(*f));
}

/* ---- the reader ---------------------------------------------------------- */

typedef struct hr_request {
  hr_read_cb cb;
  void *ud;
} hr_request;

struct hr_reader {
  td_rconn conn;
  void (*done)(void *);
  void *done_ud;
  /* Redis Cluster: a parent (no connection of its own) reads each channel
   * through a child reader on the primary of its slot. */
  uv_loop_t *loop;
  td_rcluster *map;
  hr_reader *child[RCL_NODES_MAX];
  hr_reader *parent;
  int closes_pending;
};

/* An XRANGE entry: [id "0-<seq>", ["d", payload]]. */
static bool read_entry(const redisReply *r, hr_entry *out) {
  if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_STRING ||
      r->element[1]->type != REDIS_REPLY_ARRAY || r->element[1]->elements != 2 ||
      r->element[1]->element[1]->type != REDIS_REPLY_STRING)
    return false;
  const char *id = r->element[0]->str;
  if (strncmp(id, "0-", 2) != 0) return false;
  char *end;
  errno = 0;
  unsigned long long seq = strtoull(id + 2, &end, 10);
  if (errno || *end || end == id + 2) return false;
  out->seq = seq;
  out->payload = r->element[1]->element[1]->str;
  out->len = (size_t)r->element[1]->element[1]->len;
  return true;
}

/* {epoch, top, entries, [last]}; epoch "" for a channel never published. */
static bool read_result(const redisReply *r, hr_read_result *res, hr_entry **es) {
  if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 4 || r->element[1]->type != REDIS_REPLY_INTEGER ||
      r->element[2]->type != REDIS_REPLY_ARRAY || r->element[3]->type != REDIS_REPLY_ARRAY ||
      r->element[3]->elements > 1)
    return false;
  if (r->element[3]->elements == 1 && !read_entry(r->element[3]->element[0], &res->last)) return false;
  if (r->element[0]->type == REDIS_REPLY_STRING && r->element[0]->len == 0) return true; /* epoch 0, top 0 */
  if (!read_epoch(r->element[0], &res->epoch, NULL)) return false;
  res->top = (uint64_t)r->element[1]->integer;
  const redisReply *a = r->element[2];
  if (a->elements > HR_REPLAY_MAX) return false;
  *es = calloc(a->elements ? a->elements : 1, sizeof(**es));
  if (!*es) return false;
  for (size_t i = 0; i < a->elements; i++)
    if (!read_entry(a->element[i], &(*es)[i])) return false;
  res->n = a->elements;
  res->e = *es;
  return true;
}

static void on_reply(td_rconn *c, void *ud, redisReply *r, uintptr_t tag) {
  hr_request *req = (hr_request *)tag;
  hr_read_result res = {0};
  hr_entry *es = NULL;
  res.ok = read_result(r, &res, &es);
  hr_reader *reader = c->ud;
  if (reader->parent && r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "MOVED ", 6) == 0)
    rcl_moved(reader->parent->map, r->str + 6, r->len - 6); /* this read fails; the next goes right */
  if (!res.ok) {
    res = (hr_read_result){0};
    td_logline *l = log_begin(TD_LOG_WARN, "history_read_failed");
    if (l) {
      log_str(l, "error", !r ? "connection lost" : r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
      log_end(l);
    }
  }
  req->cb(req->ud, &res);
  free(es);
  free(req);
}

static void on_ready(td_rconn *c, void *ud) {}
static void on_lost(td_rconn *c, void *ud, const char *reason, bool was_ready) {
  hr_reader *r = ud;
  if (r->parent) rcl_refresh(r->parent->map);
}
static void on_closed(td_rconn *c, void *ud) {
  hr_reader *r = ud;
  void (*done)(void *) = r->done;
  void *dud = r->done_ud;
  free(r);
  if (done) done(dud);
}

static void on_map(td_rcluster *map, bool changed, void *ud) {}

hr_reader *hr_reader_new(uv_loop_t *loop, const char *redis_url) {
  hr_reader *r = calloc(1, sizeof(*r));
  if (!r) return NULL;
  r->loop = loop;
  if (rcl_is_url(redis_url)) {
    if (!(r->map = rcl_new(loop, redis_url, "history", on_map, r))) {
      free(r);
      return NULL;
    }
    return r;
  }
  static const rconn_callbacks cb = {on_ready, on_lost, on_reply, on_closed};
  rconn_options o = {.name = "history"};
  const char *err = NULL;
  if (rconn_init(&r->conn, loop, redis_url, &cb, r, &o, &err) < 0) {
    free(r);
    return NULL;
  }
  rconn_start(&r->conn);
  return r;
}

static hr_reader *child_for(hr_reader *r, const char *channel, size_t n) {
  int idx = rcl_owner(r->map, rcl_slot(channel, n));
  if (idx < 0) return NULL;
  if (!r->child[idx] && (r->child[idx] = hr_reader_new(r->loop, rcl_node_at(r->map, idx)->url)))
    r->child[idx]->parent = r;
  return r->child[idx];
}

int hr_read(hr_reader *r, const char *channel, size_t n, uint64_t after, hr_read_cb cb, void *ud) {
  char pos[HR_KEY_MAX], hist[HR_KEY_MAX], first[24], count[24];
  if (r->map) {
    hr_reader *c = child_for(r, channel, n);
    return c ? hr_read(c, channel, n, after, cb, ud) : UV_ENOTCONN;
  }
  size_t pl = hr_key(pos, channel, n, false), hl = hr_key(hist, channel, n, true);
  snprintf(first, sizeof(first), "%llu", (unsigned long long)after + 1);
  snprintf(count, sizeof(count), "%d", HR_REPLAY_MAX);
  const char *argv[] = {"EVAL", read_script, "2", pos, hist, first, count};
  size_t argl[] = {4, sizeof(read_script) - 1, 1, pl, hl, strlen(first), strlen(count)};
  if (!rconn_ready(&r->conn)) return UV_ENOTCONN;
  hr_request *req = malloc(sizeof(*req));
  char *cmd = NULL;
  int len = req ? redisFormatCommandArgv(&cmd, 7, argv, argl) : -1;
  if (len < 0) {
    free(req);
    return UV_ENOMEM;
  }
  *req = (hr_request){cb, ud};
  int rc = rconn_command(&r->conn, (uintptr_t)req, cmd, (size_t)len);
  free(cmd);
  if (rc < 0) free(req);
  return rc;
}

static void parent_closed_one(void *ud) {
  hr_reader *r = ud;
  if (--r->closes_pending > 0) return;
  void (*done)(void *) = r->done;
  void *dud = r->done_ud;
  free(r);
  if (done) done(dud);
}

void hr_reader_close(hr_reader *r, void (*done)(void *), void *ud) {
  r->done = done;
  r->done_ud = ud;
  if (!r->map) {
    rconn_close(&r->conn);
    return;
  }
  r->closes_pending = 1;
  for (int i = 0; i < RCL_NODES_MAX; i++)
    if (r->child[i]) r->closes_pending++, hr_reader_close(r->child[i], parent_closed_one, r);
  rcl_close(r->map, parent_closed_one, r);
}
