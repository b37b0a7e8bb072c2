/* Batched records and their lookups in Redis; see rkv.h. */
#include "redis/rkv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "redis/cluster.h"

/* Tag of every SET; a lookup's tag is its rkv_get pointer (never this small). */
enum { TAG_SET = 1 };

/* A waiting record in the queue: its length, then the formatted SET. */
typedef struct {
  uint32_t len;
  char cmd[];
} rkv_record;

struct rkv_get {
  td_rkv *kv;
  rkv_get_cb cb;         /* NULL: answered (timeout) or cancelled; the reply is still due */
  void *ud;
  uint64_t deadline;     /* loop time */
  rkv_get *prev, *next;  /* in the list of lookups still waiting, oldest first */
};

struct td_rkv {
  uv_loop_t *loop;
  td_rconn conn;
  uv_timer_t flush_timer;
  uv_timer_t get_timer;    /* the oldest waiting lookup's deadline */
  uint32_t get_timeout_ms, flush_ms, batch_max, queue_max;
  /* The queue: records packed in one buffer, sent from `head`. */
  char *q;
  size_t q_head, q_len, q_cap;
  uint64_t q_count;
  rkv_get *waiting_head, *waiting_tail;
  rkv_stats st;
  uint64_t logged_drops, logged_failures, last_log_ms;
  bool closing;
  void (*done)(void *);
  void *done_ud;
  int closes_pending;
  /* Redis Cluster: a parent (no connection of its own) sends each key's
   * records and lookups through a child on the primary of its slot. */
  td_rcluster *map;
  td_rkv *child[RCL_NODES_MAX];
  rkv_options opt;
  td_rkv *parent;
};

static td_rkv *cluster_child(td_rkv *kv, const char *key, size_t klen);

/* ---- counted events, logged at most once per RKV_DROP_LOG_MS ---------------- */

static void log_losses(td_rkv *kv, const char *why) {
  uint64_t now = uv_now(kv->loop);
  if (kv->last_log_ms && now - kv->last_log_ms < RKV_DROP_LOG_MS) return;
  kv->last_log_ms = now ? now : 1;
  td_logline *l = log_begin(TD_LOG_WARN, "records_lost");
  if (!l) return;
  log_str(l, "conn", kv->conn.name);
  log_str(l, "reason", why);
  log_int(l, "dropped", (int64_t)(kv->st.dropped - kv->logged_drops));
  log_int(l, "failed", (int64_t)(kv->st.failed - kv->logged_failures));
  log_int(l, "waiting", (int64_t)kv->q_count);
  log_end(l);
  kv->logged_drops = kv->st.dropped;
  kv->logged_failures = kv->st.failed;
}

/* ---- the queue and its batches ------------------------------------------------ */

/* Room for n more bytes at the end, moving the unsent part to the front
 * rather than growing when that is enough. */
static bool queue_room(td_rkv *kv, size_t n) {
  if (kv->q_head > 0 && kv->q_len - kv->q_head + n <= kv->q_cap) {
    memmove(kv->q, kv->q + kv->q_head, kv->q_len - kv->q_head);
    kv->q_len -= kv->q_head;
    kv->q_head = 0;
  }
  if (kv->q_len + n <= kv->q_cap) return true;
  size_t cap = kv->q_cap ? kv->q_cap : 4096;
  while (cap < kv->q_len + n) cap *= 2;
  char *q = realloc(kv->q, cap);
  if (!q) return false;
  kv->q = q;
  kv->q_cap = cap;
  return true;
}

static void on_flush_timer(uv_timer_t *t);

/* Sends up to batch_max records, pipelined; more left: the next batch on
 * the next loop iteration. */
static void flush(td_rkv *kv) {
  uint32_t sent = 0;
  while (kv->q_count > 0 && sent < kv->batch_max && rconn_ready(&kv->conn)) {
    rkv_record *r = (rkv_record *)(kv->q + kv->q_head);
    if (rconn_command(&kv->conn, TAG_SET, r->cmd, r->len) != 0) break; /* going away: on_ready resumes */
    kv->q_head += sizeof(*r) + ((r->len + 1 + 7) & ~(size_t)7);
    kv->q_count--;
    sent++;
  }
  if (kv->q_count == 0) kv->q_head = kv->q_len = 0;
  if (sent) kv->st.batches++;
  if (kv->q_count > 0 && rconn_ready(&kv->conn)) uv_timer_start(&kv->flush_timer, on_flush_timer, 0, 0);
}

static void on_flush_timer(uv_timer_t *t) { flush(t->data); }

int rkv_put(td_rkv *kv, const char *key, size_t klen, const char *value, size_t vlen, uint32_t ttl_ms) {
  if (kv->map) {
    td_rkv *c = cluster_child(kv, key, klen);
    if (c) return rkv_put(c, key, klen, value, vlen, ttl_ms);
    kv->st.dropped++;
    log_losses(kv, "no cluster map yet");
    return UV_ENOBUFS;
  }
  if (kv->closing || klen == 0 || klen > RKV_KEY_MAX || vlen > RKV_VALUE_MAX) {
    kv->st.dropped++;
    log_losses(kv, kv->closing ? "closing" : "record too large");
    return UV_ENOBUFS;
  }
  char ttl[16];
  int tn = snprintf(ttl, sizeof(ttl), "%u", ttl_ms ? ttl_ms : 1);
  const char *argv[] = {"SET", key, value, "PX", ttl};
  const size_t argl[] = {3, klen, vlen, 2, (size_t)tn};
  char *cmd = NULL;
  int len = redisFormatCommandArgv(&cmd, 5, argv, argl);
  size_t need = sizeof(rkv_record) + (((size_t)len + 1 + 7) & ~(size_t)7); /* 8-aligned, NUL kept */
  if (len < 0 || kv->q_count >= kv->queue_max || kv->q_len - kv->q_head + need > RKV_QUEUE_BYTES_MAX ||
      !queue_room(kv, need)) {
    free(cmd);
    kv->st.dropped++;
    log_losses(kv, len < 0 ? "out of memory" : "queue full");
    return UV_ENOBUFS;
  }
  rkv_record *r = (rkv_record *)(kv->q + kv->q_len);
  r->len = (uint32_t)len;
  memcpy(r->cmd, cmd, (size_t)len + 1); /* hiredis scans a command's name up to a NUL */
  free(cmd);
  kv->q_len += need;
  kv->q_count++;
  kv->st.queued++;
  if (kv->q_count >= kv->batch_max) flush(kv);
  else if (!uv_is_active((uv_handle_t *)&kv->flush_timer)) uv_timer_start(&kv->flush_timer, on_flush_timer, kv->flush_ms, 0);
  return 0;
}

/* ---- lookups ---------------------------------------------------------------------- */

static void waiting_unlink(td_rkv *kv, rkv_get *g) {
  if (g->prev) g->prev->next = g->next;
  else kv->waiting_head = g->next;
  if (g->next) g->next->prev = g->prev;
  else kv->waiting_tail = g->prev;
  g->prev = g->next = NULL;
}

static void on_get_timer(uv_timer_t *t);

static void arm_get_timer(td_rkv *kv) {
  if (!kv->waiting_head) {
    uv_timer_stop(&kv->get_timer);
    return;
  }
  uint64_t now = uv_now(kv->loop), d = kv->waiting_head->deadline;
  uv_timer_start(&kv->get_timer, on_get_timer, d > now ? d - now : 0, 0);
}

/* Answers a waiting lookup; its struct stays until its reply is in. */
static void answer(td_rkv *kv, rkv_get *g, rkv_result res, const char *v, size_t n, const char *why) {
  rkv_get_cb cb = g->cb;
  g->cb = NULL;
  waiting_unlink(kv, g);
  if (res == RKV_FOUND) kv->st.found++;
  else if (res == RKV_MISSING) kv->st.missing++;
  else kv->st.unavailable++;
  cb(g->ud, res, v, n, why);
}

static void on_get_timer(uv_timer_t *t) {
  td_rkv *kv = t->data;
  uint64_t now = uv_now(kv->loop);
  while (kv->waiting_head && kv->waiting_head->deadline <= now) {
    kv->st.timeouts++;
    answer(kv, kv->waiting_head, RKV_UNAVAILABLE, NULL, 0, "no reply in time");
  }
  arm_get_timer(kv);
}

rkv_get *rkv_get_start(td_rkv *kv, const char *key, size_t klen, rkv_get_cb cb, void *ud, const char **why) {
  if (kv->map) {
    td_rkv *c = cluster_child(kv, key, klen);
    if (c) return rkv_get_start(c, key, klen, cb, ud, why);
    kv->st.gets++;
    kv->st.unavailable++;
    *why = "no cluster map yet";
    return NULL;
  }
  kv->st.gets++;
  const char *no = kv->closing ? "closing"
                   : klen == 0 || klen > RKV_KEY_MAX ? "bad key"
                   : !rconn_ready(&kv->conn) ? "not connected"
                   : kv->st.gets_out >= RKV_GETS_MAX ? "too many lookups" : NULL;
  rkv_get *g = no ? NULL : calloc(1, sizeof(*g));
  if (!no && !g) no = "out of memory";
  if (!no) {
    const char *argv[] = {"GET", key};
    const size_t argl[] = {3, klen};
    if (rconn_command_argv(&kv->conn, (uintptr_t)g, 2, argv, argl) != 0) no = "not connected";
  }
  if (no) {
    free(g);
    kv->st.unavailable++;
    if (why) *why = no;
    return NULL;
  }
  g->kv = kv;
  g->cb = cb;
  g->ud = ud;
  g->deadline = uv_now(kv->loop) + kv->get_timeout_ms;
  g->prev = kv->waiting_tail;
  if (kv->waiting_tail) kv->waiting_tail->next = g;
  else kv->waiting_head = g;
  kv->waiting_tail = g;
  kv->st.gets_out++;
  if (kv->waiting_head == g) arm_get_timer(kv);
  return g;
}

void rkv_get_cancel(rkv_get *g) {
  if (!g->cb) return;
  g->cb = NULL;
  g->kv->st.cancelled++;
  waiting_unlink(g->kv, g);
}

static void on_get_reply(td_rkv *kv, rkv_get *g, const redisReply *r) {
  kv->st.gets_out--;
  if (g->cb) {
    if (!r) answer(kv, g, RKV_UNAVAILABLE, NULL, 0, "connection lost");
    else if (r->type == REDIS_REPLY_STRING) answer(kv, g, RKV_FOUND, r->str, r->len, NULL);
    else if (r->type == REDIS_REPLY_NIL) answer(kv, g, RKV_MISSING, NULL, 0, NULL);
    else answer(kv, g, RKV_UNAVAILABLE, NULL, 0, "error reply");
    arm_get_timer(kv);
  }
  free(g);
}

/* ---- the connection ------------------------------------------------------------------ */

static void c_ready(td_rconn *c, void *ud) { flush(ud); }

static void c_lost(td_rconn *c, void *ud, const char *reason, bool was_ready) {
  td_rkv *kv = ud;
  if (was_ready && kv->q_count) log_losses(kv, "redis connection lost");
  if (kv->parent && !kv->parent->closing) rcl_refresh(kv->parent->map); /* a failover? */
}

static void c_reply(td_rconn *c, void *ud, redisReply *r, uintptr_t tag) {
  td_rkv *kv = ud;
  if (tag != TAG_SET) {
    on_get_reply(kv, (rkv_get *)tag, r);
    return;
  }
  if (r && r->type != REDIS_REPLY_ERROR) {
    kv->st.written++;
    return;
  }
  kv->st.failed++;
  log_losses(kv, r ? "error reply" : "connection lost before the reply");
}

static void on_handle_closed(uv_handle_t *h) {
  td_rkv *kv = h->data;
  if (--kv->closes_pending > 0) return;
  void (*done)(void *) = kv->done;
  void *done_ud = kv->done_ud;
  free(kv->q);
  free(kv);
  if (done) done(done_ud);
}

static void on_map(td_rcluster *map, bool changed, void *ud) {}

static td_rkv *cluster_child(td_rkv *kv, const char *key, size_t klen) {
  int idx = !kv->closing && klen ? rcl_owner(kv->map, rcl_slot(key, klen)) : -1;
  if (idx < 0) return NULL;
  if (!kv->child[idx]) {
    const char *err;
    if (!(kv->child[idx] = rkv_new(kv->loop, rcl_node_at(kv->map, idx)->url, &kv->opt, &err))) return NULL;
    kv->child[idx]->parent = kv;
    rkv_start(kv->child[idx]);
  }
  return kv->child[idx];
}

static void parent_closed_one(void *ud) {
  td_rkv *kv = ud;
  if (--kv->closes_pending > 0) return;
  void (*done)(void *) = kv->done;
  void *done_ud = kv->done_ud;
  free(kv);
  if (done) done(done_ud);
}

static void c_closed(td_rconn *c, void *ud) {
  td_rkv *kv = ud;
  kv->closes_pending = 2;
  uv_close((uv_handle_t *)&kv->flush_timer, on_handle_closed);
  uv_close((uv_handle_t *)&kv->get_timer, on_handle_closed);
}

/* ---- API ------------------------------------------------------------------------------- */

td_rkv *rkv_new(uv_loop_t *loop, const char *redis_url, const rkv_options *opt, const char **err) {
  td_rkv *kv = calloc(1, sizeof(*kv));
  if (!kv) {
    if (err) *err = "out of memory";
    return NULL;
  }
  rkv_options o = opt ? *opt : (rkv_options){0};
  if (!o.conn.name) o.conn.name = "records";
  if (rcl_is_url(redis_url)) {
    kv->loop = loop;
    kv->opt = o;
    if (!(kv->map = rcl_new(loop, redis_url, "records", on_map, kv))) {
      if (err) *err = "bad redis+cluster:// URL";
      free(kv);
      return NULL;
    }
    return kv;
  }
  rconn_callbacks cb = {c_ready, c_lost, c_reply, c_closed};
  if (rconn_init(&kv->conn, loop, redis_url, &cb, kv, &o.conn, err) != 0) {
    free(kv);
    return NULL;
  }
  kv->loop = loop;
  kv->get_timeout_ms = o.get_timeout_ms ? o.get_timeout_ms : RKV_GET_TIMEOUT_MS;
  kv->flush_ms = o.flush_ms ? o.flush_ms : RKV_FLUSH_MS;
  kv->batch_max = o.batch_max ? o.batch_max : RKV_BATCH_MAX;
  kv->queue_max = o.queue_max ? o.queue_max : RKV_QUEUE_MAX;
  uv_timer_init(loop, &kv->flush_timer);
  uv_timer_init(loop, &kv->get_timer);
  kv->flush_timer.data = kv->get_timer.data = kv;
  return kv;
}

void rkv_start(td_rkv *kv) {
  if (!kv->map) rconn_start(&kv->conn);
}

void rkv_get_stats(const td_rkv *kv, rkv_stats *out) {
  *out = kv->st;
  if (kv->map) {
    out->connected = rcl_loaded(kv->map);
    for (int i = 0; i < RCL_NODES_MAX; i++) {
      rkv_stats c;
      if (!kv->child[i]) continue;
      rkv_get_stats(kv->child[i], &c);
      out->queued += c.queued, out->written += c.written, out->dropped += c.dropped, out->failed += c.failed;
      out->batches += c.batches, out->waiting += c.waiting, out->gets += c.gets, out->found += c.found;
      out->missing += c.missing, out->unavailable += c.unavailable, out->timeouts += c.timeouts;
      out->cancelled += c.cancelled, out->gets_out += c.gets_out;
      out->connected = out->connected && c.connected;
    }
    return;
  }
  out->waiting = kv->q_count;
  out->connected = rconn_ready(&kv->conn);
}

void rkv_close(td_rkv *kv, void (*done)(void *ud), void *ud) {
  if (kv->closing) return;
  kv->closing = true;
  kv->done = done;
  kv->done_ud = ud;
  if (kv->map) {
    kv->closes_pending = 1;
    for (int i = 0; i < RCL_NODES_MAX; i++)
      if (kv->child[i]) kv->closes_pending++, rkv_close(kv->child[i], parent_closed_one, kv);
    rcl_close(kv->map, parent_closed_one, kv);
    return;
  }
  uv_timer_stop(&kv->flush_timer);
  while (kv->waiting_head) answer(kv, kv->waiting_head, RKV_UNAVAILABLE, NULL, 0, "closing");
  uv_timer_stop(&kv->get_timer);
  rconn_close(&kv->conn);
}
