/* PUBLISH pipeline with a conflating outbox, and batched HSET of the quote
 * store's latest values; see publisher.h for the counting rules. */
#include "market/publisher.h"

#include <stdlib.h>
#include <string.h>

#include "base/fmt_num.h"
#include "base/fnv1a.h"
#include "base/log.h"
#include "base/td_limits.h"
#include "market/quote_store.h"
#include "market/history_redis.h"
#include "redis/cluster.h"
#include "redis/resp_put.h"

enum { TAG_PUBLISH = 1, TAG_HSET = 2, TAG_HEARTBEAT = 3, TAG_SCRIPT = 4, TAG_LOAD = 5, TAG_ASKING = 6 };

/* ---- the outbox: a bounded map with an intrusive list ---------------------
 * Entries live in one slab, indexed from 1 (0 is "none"). The list is the
 * outbox's FIFO. A channel offered with a key (pub_offer_key: the pipeline's
 * symbol id and channel slot) is found in by_key[key], an array; any other
 * channel by name, in a hash map over the same slab. */

typedef struct pub_entry {
  uint32_t hash;
  uint32_t key;            /* by_key index, or PUB_KEY_NONE: in the hash map */
  uint32_t chain;          /* next entry in the bucket; free list link */
  uint32_t prev, next;     /* list links */
  bool listed;
  bool upstream;           /* outbox: the newest message is the upstream feed's (pub_drop_upstream) */
  uint32_t user;           /* outbox: the caller's value for pub_position_cb */
  uint32_t key_len, val_len, cap;
  char *data;              /* key then value */
} pub_entry;

typedef struct pub_map {
  pub_entry *e;            /* e[1..max] */
  uint32_t *bucket;
  uint32_t *by_key;        /* by_key[key]: entry index, 0 none; nkeys of them */
  uint32_t nkeys;
  uint32_t mask, max, count, free_head, used;
  uint32_t head, tail, listed;
} pub_map;

static int map_init(pub_map *m, uint32_t max, uint32_t nkeys) {
  uint32_t nb = 16;
  while (nb < max) nb <<= 1;
  memset(m, 0, sizeof(*m));
  m->e = calloc((size_t)max + 1, sizeof(*m->e));
  m->bucket = calloc(nb, sizeof(*m->bucket));
  /* calloc of a large array maps zero pages: only keys used cost memory */
  m->by_key = nkeys ? calloc(nkeys, sizeof(*m->by_key)) : NULL;
  if (!m->e || !m->bucket || (nkeys && !m->by_key)) return UV_ENOMEM;
  m->mask = nb - 1;
  m->max = max;
  m->nkeys = nkeys;
  return 0;
}

static void map_free(pub_map *m) {
  if (m->e)
    for (uint32_t i = 1; i <= m->max; i++) free(m->e[i].data);
  free(m->e);
  free(m->bucket);
  free(m->by_key);
  memset(m, 0, sizeof(*m));
}

static uint32_t map_find(const pub_map *m, const char *k, size_t n, uint32_t h) {
  for (uint32_t i = m->bucket[h & m->mask]; i; i = m->e[i].chain) {
    const pub_entry *e = &m->e[i];
    if (e->hash == h && e->key_len == n && memcmp(e->data, k, n) == 0) return i;
  }
  return 0;
}

static void list_push(pub_map *m, uint32_t i) {
  pub_entry *e = &m->e[i];
  if (e->listed) return;
  e->listed = true;
  e->prev = m->tail;
  e->next = 0;
  if (m->tail) m->e[m->tail].next = i;
  else m->head = i;
  m->tail = i;
  m->listed++;
}

static void list_unlink(pub_map *m, uint32_t i) {
  pub_entry *e = &m->e[i];
  if (!e->listed) return;
  if (e->prev) m->e[e->prev].next = e->next;
  else m->head = e->next;
  if (e->next) m->e[e->next].prev = e->prev;
  else m->tail = e->prev;
  e->listed = false;
  m->listed--;
}

/* Stores the value of entry i, growing its buffer only when needed. */
static int entry_set_value(pub_entry *e, const char *v, size_t n) {
  size_t need = (size_t)e->key_len + n;
  if (need > e->cap) {
    char *d = realloc(e->data, need);
    if (!d) return UV_ENOMEM;
    e->data = d;
    e->cap = (uint32_t)need;
  }
  memcpy(e->data + e->key_len, v, n);
  e->val_len = (uint32_t)n;
  return 0;
}

/* Inserts channel k (not present) with value, found by `key` when it is
 * not PUB_KEY_NONE, else by its hash h; returns its index, 0 when full. */
static uint32_t map_insert(pub_map *m, uint32_t key, const char *k, size_t kn, uint32_t h, const char *v,
                           size_t vn) {
  uint32_t i;
  if (m->free_head) {
    i = m->free_head;
    m->free_head = m->e[i].chain;
  } else if (m->used < m->max) {
    i = ++m->used;
  } else {
    return 0;
  }
  pub_entry *e = &m->e[i];
  e->key_len = 0;
  if (entry_set_value(e, k, kn) < 0) goto undo; /* the key, then the value */
  e->key_len = (uint32_t)kn;
  e->val_len = 0;
  if (entry_set_value(e, v, vn) < 0) goto undo;
  e->key = key;
  if (key != PUB_KEY_NONE) {
    m->by_key[key] = i;
  } else {
    e->hash = h;
    e->chain = m->bucket[h & m->mask];
    m->bucket[h & m->mask] = i;
  }
  m->count++;
  return i;
undo:
  e->key_len = e->val_len = 0;
  e->chain = m->free_head;
  m->free_head = i;
  return 0;
}

static void map_remove(pub_map *m, uint32_t i) {
  pub_entry *e = &m->e[i];
  list_unlink(m, i);
  if (e->key != PUB_KEY_NONE) {
    m->by_key[e->key] = 0;
  } else {
    uint32_t *pp = &m->bucket[e->hash & m->mask];
    while (*pp != i) pp = &m->e[*pp].chain;
    *pp = e->chain;
  }
  if (e->cap > PUB_ENTRY_KEEP_BYTES) { /* a rare giant: give it back */
    free(e->data);
    e->data = NULL;
    e->cap = 0;
  }
  e->key_len = e->val_len = 0;
  e->chain = m->free_head;
  m->free_head = i;
  m->count--;
}

/* ---- the publisher -------------------------------------------------------- */

/* The latest values: which (kind, symbol id) changed since written. The
 * values themselves are the quote store's latest entries, read when the
 * HSET is formatted; a key is id * SMSG_KIND_COUNT + kind. */
enum { LAST_LISTED = 1, LAST_KEPT = 2 };   /* changed since written; ever changed */

typedef struct {
  const qstore *store;
  char hash[SMSG_KIND_COUNT][PUB_CHANNEL_MAX + 1];   /* "" for a kind not tracked */
  uint8_t *state;          /* state[key]: LAST_* bits */
  uint32_t *list;          /* keys with LAST_LISTED, oldest change first */
  uint32_t nlist, nkeys;
} pub_last;

struct td_publisher {
  uv_loop_t *loop;
  td_rconn conn;
  uv_timer_t last_timer;
  uint32_t max_inflight;
  uint32_t drain_room; /* free pipeline slots that trigger an outbox drain */
  pub_map outbox;   /* channel -> latest payload, FIFO */
  pub_last last;
  uint32_t inflight, hset_inflight;
  bool closing;
  int closes_pending;
  void (*done)(void *);
  void *done_ud;
  uint64_t published, conflated, dropped, errors, last_written, last_dropped, last_errors;
  /* Positions in Redis (pub_use_script): EVALSHA instead of PUBLISH. */
  const hr_conf *hr;
  pub_position_cb on_position;
  void *position_ud;
  hr_fifo sent;            /* script commands in flight, oldest first */
  bool loading;            /* a SCRIPT LOAD is in flight */
  uint64_t script_retries; /* messages sent again after NOSCRIPT */
  uint64_t script_errors_logged_ms;
  /* Redis Cluster (the "cluster" section below): a parent routes each
   * channel by slot to a child publisher per primary; children publish
   * with SPUBLISH and hand MOVED/ASK answers back to their parent. */
  struct pub_cluster *cl;  /* parent only */
  td_publisher *parent;    /* child only */
  uint64_t redirected;     /* messages handed back after MOVED/ASK */
};

struct pub_cluster {
  td_rcluster *map;
  pub_options opt;
  td_publisher *child[RCL_NODES_MAX];
  const qstore *store;                       /* pub_last_track's */
  char hash[SMSG_KIND_COUNT][PUB_CHANNEL_MAX + 1];
};

static void cluster_redirect(td_publisher *child, const redisReply *r, const hr_sent *s);
static int cluster_offer(td_publisher *p, uint32_t key, const char *ch, size_t chn, const char *v, size_t vn,
                         unsigned flags, uint32_t user);

/* Room in the pipeline: replies outstanding and bytes not yet written. */
static bool pipeline_room(const td_publisher *p) {
  return p->inflight < p->max_inflight && rconn_pending_bytes(&p->conn) < PUB_MAX_PENDING_BYTES;
}

/* Formatted straight into the connection's output buffer: no copy. */
static int send_publish_tagged(td_publisher *p, uintptr_t tag, const char *ch, size_t chn, const char *v,
                               size_t vn) {
  static const char head[] = "*3\r\n$7\r\nPUBLISH\r\n", shead[] = "*3\r\n$8\r\nSPUBLISH\r\n";
  const char *h = p->parent ? shead : head;
  size_t hn = p->parent ? sizeof(shead) - 1 : sizeof(head) - 1;
  if (!rconn_ready(&p->conn)) return UV_ENOTCONN;
  char *o = rconn_command_begin(&p->conn, hn + 1 + chn + vn + 2 * RESP_BULK_OVERHEAD);
  if (!o) return UV_ENOMEM;
  memcpy(o, h, hn);
  char *end = resp_put_bulk(o + hn, ch, chn);
  end = resp_put_bulk(end, v, vn);
  return rconn_command_end(&p->conn, tag, (size_t)(end - o));
}

static void load_script(td_publisher *p) {
  const char *argv[] = {"SCRIPT", "LOAD", hr_publish_script()};
  size_t argl[] = {6, 4, strlen(argv[2])};
  char *cmd = NULL;
  int len = redisFormatCommandArgv(&cmd, 3, argv, argl);
  if (len < 0) return;
  if (rconn_command(&p->conn, TAG_LOAD, cmd, (size_t)len) == 0) p->loading = true;
  free(cmd);
}

/* EVALSHA <sha> 2 <pos key> <stream key> <channel> <body> <nonce> <maxlen>
 * (history_redis.h), formatted in place like PUBLISH; the message is kept
 * until its reply for the position and a NOSCRIPT retry. */
static int send_script(td_publisher *p, const char *ch, size_t chn, const char *body, size_t bn, uint32_t user,
                       bool retried) {
  static const char head[] = "*9\r\n$7\r\nEVALSHA\r\n", shead[] = "*10\r\n$7\r\nEVALSHA\r\n";
  char pos[HR_KEY_MAX], hist[HR_KEY_MAX];
  if (!rconn_ready(&p->conn)) return UV_ENOTCONN;
  size_t pl = hr_key(pos, ch, chn, false), hl = hr_key(hist, ch, chn, true);
  td_buf *msg = hr_fifo_reserve(&p->sent) == 0 ? buf_new(chn + bn) : NULL;
  char *o = msg ? rconn_command_begin(&p->conn, sizeof(shead) + 88 + pl + hl + chn + bn + 10 * RESP_BULK_OVERHEAD)
                : NULL;
  if (!o) {
    buf_unref(msg);
    return UV_ENOMEM;
  }
  /* a child of a cluster publisher names the publish command: SPUBLISH */
  size_t hn = p->parent ? sizeof(shead) - 1 : sizeof(head) - 1;
  memcpy(o, p->parent ? shead : head, hn);
  char *w = resp_put_bulk(o + hn, p->hr->sha, 40);
  w = resp_put_bulk(w, "2", 1);
  w = resp_put_bulk(w, pos, pl);
  w = resp_put_bulk(w, hist, hl);
  w = resp_put_bulk(w, ch, chn);
  w = resp_put_bulk(w, body, bn);
  w = resp_put_bulk(w, p->hr->nonce, strlen(p->hr->nonce));
  w = resp_put_bulk(w, p->hr->maxlen, strlen(p->hr->maxlen));
  if (p->parent) w = resp_put_bulk(w, "SPUBLISH", 8);
  int rc = rconn_command_end(&p->conn, TAG_SCRIPT, (size_t)(w - o));
  if (rc < 0) {
    buf_unref(msg);
    return rc;
  }
  memcpy(msg->data, ch, chn);
  memcpy(msg->data + chn, body, bn);
  msg->len = (uint32_t)(chn + bn);
  hr_fifo_push(&p->sent, &(hr_sent){msg, (uint32_t)chn, user, retried});
  p->inflight++;
  return 0;
}

static int send_publish(td_publisher *p, const char *ch, size_t chn, const char *v, size_t vn, uint32_t user) {
  if (p->hr) return send_script(p, ch, chn, v, vn, user, false);
  int rc = send_publish_tagged(p, TAG_PUBLISH, ch, chn, v, vn);
  if (rc == 0) p->inflight++;
  return rc;
}

int pub_heartbeat(td_publisher *p, const char *channel, size_t channel_len, const char *payload, size_t len) {
  /* a cluster's subscriber watches its node connections instead */
  if (p->cl || p->closing || !pipeline_room(p)) return UV_EAGAIN;
  return send_publish_tagged(p, TAG_HEARTBEAT, channel, channel_len, payload, len);
}

/* Sends queued messages, oldest channel first, while the pipeline has room. */
static void flush_outbox(td_publisher *p) {
  pub_map *m = &p->outbox;
  while (m->head && pipeline_room(p) && rconn_ready(&p->conn)) {
    uint32_t i = m->head;
    pub_entry *e = &m->e[i];
    if (send_publish(p, e->data, e->key_len, e->data + e->key_len, e->val_len, e->user) < 0) return;
    map_remove(m, i);
  }
}

/* The outbox entry of a channel, 0 when it has none; *h: its hash when
 * it goes by name. */
static uint32_t outbox_find(const pub_map *m, uint32_t key, const char *ch, size_t chn, uint32_t *h) {
  if (key != PUB_KEY_NONE) return m->by_key[key];
  *h = fnv1a(ch, chn);
  return map_find(m, ch, chn, *h);
}

static int outbox_put(td_publisher *p, uint32_t key, const char *ch, size_t chn, const char *v, size_t vn,
                      bool upstream, uint32_t user) {
  pub_map *m = &p->outbox;
  uint32_t h = 0;
  uint32_t i = outbox_find(m, key, ch, chn, &h);
  if (i) {
    if (entry_set_value(&m->e[i], v, vn) < 0) goto drop;
    m->e[i].upstream = upstream;
    m->e[i].user = user;
    p->conflated++;
    return PUB_CONFLATED;
  }
  if (!(i = map_insert(m, key, ch, chn, h, v, vn))) goto drop;
  m->e[i].upstream = upstream;
  m->e[i].user = user;
  list_push(m, i);
  return PUB_QUEUED;
drop:
  p->dropped++;
  return UV_ENOBUFS;
}

static int offer(td_publisher *p, uint32_t key, const char *channel, size_t channel_len, const char *payload,
                 size_t payload_len, unsigned flags, uint32_t user) {
  bool upstream = flags & PUB_F_UPSTREAM;
  uint32_t h;
  if (p->cl) return cluster_offer(p, key, channel, channel_len, payload, payload_len, flags, user);
  if (key >= p->outbox.nkeys) key = PUB_KEY_NONE;   /* outside the key space: by name */
  if (channel_len == 0 || channel_len > PUB_CHANNEL_MAX || payload_len > PUB_PAYLOAD_MAX) {
    p->dropped++;
    return UV_EINVAL;
  }
  if (p->closing) {
    p->dropped++;
    return UV_ECANCELED;
  }
  if (p->outbox.count > 0) {
    flush_outbox(p);
    /* A queued older message for this channel must not be overtaken. */
    if (p->outbox.count > 0 && outbox_find(&p->outbox, key, channel, channel_len, &h))
      return outbox_put(p, key, channel, channel_len, payload, payload_len, upstream, user);
  }
  if (pipeline_room(p) && send_publish(p, channel, channel_len, payload, payload_len, user) == 0)
    return PUB_SENT;
  return outbox_put(p, key, channel, channel_len, payload, payload_len, upstream, user);
}

int pub_offer_key(td_publisher *p, uint32_t key, const char *channel, size_t channel_len, const char *data,
                  size_t len, unsigned flags, uint32_t user) {
  return offer(p, key, channel, channel_len, data, len, flags, user);
}

int pub_publish_flags(td_publisher *p, const char *channel, size_t channel_len, const char *payload,
                      size_t payload_len, unsigned flags) {
  return offer(p, PUB_KEY_NONE, channel, channel_len, payload, payload_len, flags, 0);
}

static void cluster_each_child(td_publisher *p, void (*fn)(td_publisher *child, void *arg), void *arg);

static void use_script_of(td_publisher *child, void *parent) {
  td_publisher *p = parent;
  pub_use_script(child, p->hr, p->on_position, p->position_ud);
}

void pub_use_script(td_publisher *p, const hr_conf *conf, pub_position_cb cb, void *ud) {
  p->hr = conf;
  p->on_position = cb;
  p->position_ud = ud;
  if (p->cl) cluster_each_child(p, use_script_of, p);
}

int pub_publish_body(td_publisher *p, const char *channel, size_t channel_len, const char *body, size_t body_len,
                     unsigned flags, uint32_t user) {
  return offer(p, PUB_KEY_NONE, channel, channel_len, body, body_len, flags, user);
}

int pub_publish(td_publisher *p, const char *channel, size_t channel_len, const char *payload,
                size_t payload_len) {
  return pub_publish_flags(p, channel, channel_len, payload, payload_len, 0);
}

static void drop_upstream_of(td_publisher *child, void *n) { *(size_t *)n += pub_drop_upstream(child); }

size_t pub_drop_upstream(td_publisher *p) {
  pub_map *m = &p->outbox;
  size_t n = 0, by_children = 0; /* the children count their own */
  if (p->cl) cluster_each_child(p, drop_upstream_of, &by_children);
  for (uint32_t i = m->head, next; i; i = next) {
    next = m->e[i].next;
    if (!m->e[i].upstream) continue;
    map_remove(m, i);
    n++;
  }
  p->dropped += n;
  return n + by_children;
}

/* ---- latest values -------------------------------------------------------- */

static void last_free(pub_last *l) {
  free(l->state);
  free(l->list);
  memset(l, 0, sizeof(*l));
}

static int cluster_last_track(td_publisher *p, const qstore *store, smsg_kind kind, const char *hash);

int pub_last_track(td_publisher *p, const qstore *store, smsg_kind kind, const char *hash) {
  pub_last *l = &p->last;
  size_t hn = strlen(hash);
  if (p->cl) return cluster_last_track(p, store, kind, hash);
  if ((unsigned)kind >= SMSG_KIND_COUNT || hn == 0 || hn > PUB_CHANNEL_MAX || (l->store && l->store != store))
    return UV_EINVAL;
  if (!l->store) {
    uint32_t nkeys = symtab_max(qstore_symtab(store)) * SMSG_KIND_COUNT;
    l->state = calloc(nkeys, sizeof(*l->state));
    l->list = calloc(nkeys, sizeof(*l->list));
    if (!l->state || !l->list) {
      last_free(l);
      return UV_ENOMEM;
    }
    l->store = store;
    l->nkeys = nkeys;
  }
  memcpy(l->hash[kind], hash, hn + 1);
  return 0;
}

static void last_list(pub_last *l, uint32_t key) {
  if (l->state[key] & LAST_LISTED) return;
  l->state[key] |= LAST_LISTED | LAST_KEPT;
  l->list[l->nlist++] = key;
}

static td_publisher *cluster_last_owner(td_publisher *p, smsg_kind kind);

void pub_last_changed(td_publisher *p, smsg_kind kind, uint32_t id) {
  pub_last *l = &p->last;
  if (p->cl) {
    td_publisher *child = cluster_last_owner(p, kind);
    if (child) pub_last_changed(child, kind, id);
    else p->last_dropped++;
    return;
  }
  uint32_t key = id * SMSG_KIND_COUNT + (uint32_t)kind;
  if (p->closing || (unsigned)kind >= SMSG_KIND_COUNT || key >= l->nkeys || !l->hash[kind][0]) {
    p->last_dropped++;
    return;
  }
  last_list(l, key);
}

static smsg_kind key_kind(uint32_t key) { return (smsg_kind)(key % SMSG_KIND_COUNT); }
static uint32_t key_id(uint32_t key) { return key / SMSG_KIND_COUNT; }

/* The store's latest payload of a listed key; NULL when there is none to
 * write (never stored, or too large to send). */
static const td_buf *last_value(const pub_last *l, uint32_t key) {
  qstore_entry e;
  if (!qstore_latest_id(l->store, key_kind(key), key_id(key), &e) || e.payload->len > PUB_PAYLOAD_MAX) return NULL;
  return e.payload;
}

/* One HSET of every listed field of `kind`, in the order they changed;
 * they leave the list once it is queued. false when not sent (next tick). */
static bool flush_last_kind(td_publisher *p, smsg_kind kind) {
  pub_last *l = &p->last;
  const symtab *syms = qstore_symtab(l->store);
  const char *hash = l->hash[kind];
  size_t hn = strlen(hash), bytes = 32 + hn + RESP_BULK_OVERHEAD, n = 0;
  for (uint32_t i = 0; i < l->nlist; i++) {
    const td_buf *v = key_kind(l->list[i]) == kind ? last_value(l, l->list[i]) : NULL;
    if (!v) continue;
    bytes += symtab_len(syms, key_id(l->list[i])) + v->len + 2 * RESP_BULK_OVERHEAD;
    n++;
  }
  if (n > 0) {
    /* formatted straight into the connection's output buffer, like PUBLISH */
    char *o = rconn_command_begin(&p->conn, bytes), *w = o;
    if (!o) return false;
    *w++ = '*';
    w = fmt_u64(w, 2 + 2 * n);
    memcpy(w, "\r\n$4\r\nHSET\r\n", 12);
    w = resp_put_bulk(w + 12, hash, hn);
    for (uint32_t i = 0; i < l->nlist; i++) {
      uint32_t key = l->list[i];
      const td_buf *v = key_kind(key) == kind ? last_value(l, key) : NULL;
      if (!v) continue;
      w = resp_put_bulk(w, symtab_name(syms, key_id(key)), symtab_len(syms, key_id(key)));
      w = resp_put_bulk(w, v->data, v->len);
    }
    if (rconn_command_end(&p->conn, TAG_HSET, (size_t)(w - o)) < 0) return false;
    p->hset_inflight++;
    p->last_written += n;
  }
  uint32_t kept = 0;   /* the other kinds' keys stay listed, in order */
  for (uint32_t i = 0; i < l->nlist; i++) {
    uint32_t key = l->list[i];
    if (key_kind(key) == kind) l->state[key] &= (uint8_t)~LAST_LISTED;
    else l->list[kept++] = key;
  }
  l->nlist = kept;
  return true;
}

static void flush_last(td_publisher *p) {
  /* One round of batches at a time: a slow server conflates instead of
   * queueing HSETs behind each other. */
  if (p->hset_inflight > 0) return;
  while (p->last.nlist && rconn_ready(&p->conn))
    if (!flush_last_kind(p, key_kind(p->last.list[0]))) return; /* not sent: next tick */
}

static void on_last_timer(uv_timer_t *t) {
  td_publisher *p = t->data;
  flush_outbox(p); /* a safety net: replies and publishes drain it first */
  flush_last(p);
}

/* ---- connection events ---------------------------------------------------- */

static void on_ready(td_rconn *c, void *ud) {
  td_publisher *p = ud;
  if (p->hr) load_script(p); /* before any EVALSHA: a restarted server has no scripts */
  /* A restarted server lost the hash: write every kept value again. */
  for (uint32_t key = 0; key < p->last.nkeys; key++)
    if (p->last.state[key] & LAST_KEPT) last_list(&p->last, key);
  flush_outbox(p);
  flush_last(p);
}

static void on_lost(td_rconn *c, void *ud, const char *reason, bool was_ready) {
  td_publisher *p = ud;
  p->hset_inflight = 0;
  p->loading = false;
  /* a shard's primary gone: its replica may have been promoted */
  if (p->parent && !p->parent->closing) rcl_refresh(p->parent->cl->map);
}

/* Script errors are logged at most once per this many ms: a script the
 * server refuses fails for every message. */
#define PUB_SCRIPT_LOG_MS 1000

static void log_script_error(td_publisher *p, const char *err) {
  uint64_t now = uv_now(p->loop);
  if (p->script_errors_logged_ms && now - p->script_errors_logged_ms < PUB_SCRIPT_LOG_MS) return;
  p->script_errors_logged_ms = now ? now : 1;
  td_logline *l = log_begin(TD_LOG_WARN, "redis_publish_script_failed");
  if (l) {
    log_str(l, "error", err);
    log_end(l);
  }
}

/* The answer to an EVALSHA: the position goes to the owner; NOSCRIPT (the
 * server's script cache was flushed) loads the script and sends the
 * message once more, behind what is already in flight. */
static void on_script_reply(td_publisher *p, redisReply *r) {
  hr_sent s;
  if (!hr_fifo_pop(&p->sent, &s)) return;
  hr_position pos;
  const char *err;
  int rc = hr_publish_reply(r, &pos, &err);
  const char *ch = s.msg->data, *body = s.msg->data + s.chn;
  size_t bn = s.msg->len - s.chn;
  if (rc != 0 && r && r->type == REDIS_REPLY_ERROR && p->parent &&
      (strncmp(r->str, "MOVED ", 6) == 0 || strncmp(r->str, "ASK ", 4) == 0)) {
    p->redirected++;
    cluster_redirect(p, r, &s); /* sent again where the slot is now */
    buf_unref(s.msg);
    return;
  }
  if (rc == HR_NOSCRIPT && !s.retried) {
    if (!p->loading) load_script(p);
    if (send_script(p, ch, s.chn, body, bn, s.user, true) == 0) {
      p->script_retries++;
      buf_unref(s.msg);
      return;
    }
  }
  if (rc == 0) {
    p->published++;
    if (p->on_position) p->on_position(p->position_ud, s.user, ch, s.chn, body, bn, &pos);
  } else {
    p->errors++;
    if (r) log_script_error(p, err);
  }
  buf_unref(s.msg);
}

static void on_reply(td_rconn *c, void *ud, redisReply *r, uintptr_t tag) {
  td_publisher *p = ud;
  bool ok = r && r->type != REDIS_REPLY_ERROR;
  if (tag == TAG_HEARTBEAT || tag == TAG_ASKING) return; /* the subscriber times its echo, not this reply */
  if (tag == TAG_LOAD) {
    p->loading = false;
    if (r && r->type == REDIS_REPLY_ERROR) log_script_error(p, r->str);
    return;
  }
  if (tag == TAG_PUBLISH || tag == TAG_SCRIPT) {
    p->inflight--;
    if (tag == TAG_SCRIPT) on_script_reply(p, r); /* counts it */
    else if (ok) p->published++;
    else p->errors++;
    /* SPUBLISH carries no copy of its message: a MOVED only fixes the map */
    if (p->parent && r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "MOVED ", 6) == 0)
      cluster_redirect(p, r, NULL);
    if (p->outbox.head && p->max_inflight - p->inflight >= p->drain_room) flush_outbox(p);
    return;
  }
  if (p->hset_inflight) p->hset_inflight--;
  if (!ok) p->last_errors++;
  if (r && r->type == REDIS_REPLY_ERROR) {
    td_logline *l = log_begin(TD_LOG_WARN, "redis_hset_failed");
    if (l) {
      log_strn(l, "error", r->str, r->len);
      log_end(l);
    }
  }
}

static void pub_maybe_done(td_publisher *p) {
  if (--p->closes_pending > 0) return;
  void (*done)(void *) = p->done;
  void *dud = p->done_ud;
  map_free(&p->outbox);
  last_free(&p->last);
  hr_fifo_free(&p->sent);
  free(p->cl);
  free(p);
  if (done) done(dud);
}

static td_publisher *cluster_new(uv_loop_t *loop, const char *url, const pub_options *o);
static void cluster_close(td_publisher *p);
static void cluster_stats(const td_publisher *p, struct pub_stats *out);
static bool cluster_ready(const td_publisher *p);

static void on_closed(td_rconn *c, void *ud) { pub_maybe_done(ud); }
static void on_timer_closed(uv_handle_t *h) { pub_maybe_done(h->data); }

td_publisher *pub_new(uv_loop_t *loop, const char *redis_url, const pub_options *opt) {
  pub_options o = opt ? *opt : (pub_options){0};
  if (rcl_is_url(redis_url)) return cluster_new(loop, redis_url, &o);
  td_publisher *p = calloc(1, sizeof(*p));
  if (!p) return NULL;
  p->loop = loop;
  p->max_inflight = o.max_inflight ? o.max_inflight : TD_REDIS_MAX_INFLIGHT;
  p->drain_room = p->max_inflight / 2 < PUB_DRAIN_HYSTERESIS ? (p->max_inflight + 1) / 2
                                                             : PUB_DRAIN_HYSTERESIS;
  if (map_init(&p->outbox, o.max_outbox ? o.max_outbox : TD_MAX_SYMBOLS, o.outbox_keys) < 0) goto fail;
  if (!o.conn.name) o.conn.name = "publisher";
  static const rconn_callbacks cb = {on_ready, on_lost, on_reply, on_closed};
  const char *err = NULL;
  if (rconn_init(&p->conn, loop, redis_url, &cb, p, &o.conn, &err) < 0) goto fail;
  uv_timer_init(loop, &p->last_timer);
  p->last_timer.data = p;
  uint32_t every = o.last_flush_ms ? o.last_flush_ms : TD_REDIS_LAST_FLUSH_MS;
  uv_timer_start(&p->last_timer, on_last_timer, every, every);
  rconn_start(&p->conn);
  return p;
fail:
  map_free(&p->outbox);
  free(p);
  return NULL;
}

void pub_close(td_publisher *p, void (*done)(void *), void *ud) {
  if (p->closing) return;
  p->closing = true;
  p->done = done;
  p->done_ud = ud;
  p->dropped += p->outbox.count; /* never to be sent */
  while (p->outbox.head) map_remove(&p->outbox, p->outbox.head);
  if (p->cl) {
    cluster_close(p);
    return;
  }
  p->closes_pending = 2;
  uv_close((uv_handle_t *)&p->last_timer, on_timer_closed);
  rconn_close(&p->conn);
}

bool pub_ready(const td_publisher *p) { return p->cl ? cluster_ready(p) : rconn_ready(&p->conn); }

const char *pub_state_name(const td_publisher *p) {
  return rconn_state_name(p->cl ? (cluster_ready(p) ? RCONN_READY : RCONN_CONNECTING) : p->conn.state);
}

void pub_stats(const td_publisher *p, struct pub_stats *out) {
  if (p->cl) {
    cluster_stats(p, out);
    return;
  }
  out->state = p->conn.state;
  out->published = p->published;
  out->conflated = p->conflated;
  out->dropped = p->dropped;
  out->errors = p->errors;
  out->reconnects = p->conn.reconnects;
  out->inflight = p->inflight;
  out->outbox = p->outbox.count;
  out->last_written = p->last_written;
  out->last_dropped = p->last_dropped;
  out->last_errors = p->last_errors;
  out->script_retries = p->script_retries;
}

/* ---- cluster ----------------------------------------------------------------
 * The parent has no connection of its own: it holds the slot map and one
 * child publisher per primary, created when a map first names it. Each
 * message goes to the child of its channel's slot, whose outbox, pipeline
 * and counters are those of any publisher. Until the first map, messages
 * wait in the parent's outbox (the same conflating outbox); a new map
 * sends them on. A child whose node owns no slot any more (failover,
 * migration) loses its outbox: those quotes would reach a replica, or come
 * after newer ones published on the new owner. */

static void cluster_each_child(td_publisher *p, void (*fn)(td_publisher *child, void *arg), void *arg) {
  for (uint32_t i = 0; i < RCL_NODES_MAX; i++)
    if (p->cl->child[i]) fn(p->cl->child[i], arg);
}

static td_publisher *cluster_child(td_publisher *p, int idx) {
  struct pub_cluster *cl = p->cl;
  if (cl->child[idx]) return cl->child[idx];
  pub_options o = cl->opt;
  o.conn.name = "publisher-shard";
  /* each failed attempt reads the map again (on_lost): retry often enough
   * to see a replica's promotion soon after it happened */
  if (!o.conn.backoff_max_ms) o.conn.backoff_max_ms = PUB_SHARD_BACKOFF_MAX_MS;
  td_publisher *c = pub_new(p->loop, rcl_node_at(cl->map, idx)->url, &o);
  if (!c) return NULL;
  c->parent = p;
  if (p->hr) pub_use_script(c, p->hr, p->on_position, p->position_ud);
  for (int k = 0; k < SMSG_KIND_COUNT; k++)
    if (cl->hash[k][0]) pub_last_track(c, cl->store, (smsg_kind)k, cl->hash[k]);
  return cl->child[idx] = c;
}

static int cluster_offer(td_publisher *p, uint32_t key, const char *ch, size_t chn, const char *v, size_t vn,
                         unsigned flags, uint32_t user) {
  if (p->closing) {
    p->dropped++;
    return UV_ECANCELED;
  }
  int idx = chn ? rcl_owner(p->cl->map, rcl_slot(ch, chn)) : -1;
  if (idx < 0) {
    if (chn == 0 || chn > PUB_CHANNEL_MAX || vn > PUB_PAYLOAD_MAX) {
      p->dropped++;
      return UV_EINVAL;
    }
    return outbox_put(p, key < p->outbox.nkeys ? key : PUB_KEY_NONE, ch, chn, v, vn, flags & PUB_F_UPSTREAM, user);
  }
  td_publisher *c = cluster_child(p, idx);
  if (!c) {
    p->dropped++;
    return UV_ENOMEM;
  }
  return offer(c, key, ch, chn, v, vn, flags, user);
}

/* A message the child's node refused with MOVED (the map is fixed and it
 * goes where the slot is now) or ASK (sent once more, after ASKING, to the
 * node the slot is migrating to). `s` NULL: a SPUBLISH, not kept. */
static void cluster_redirect(td_publisher *child, const redisReply *r, const hr_sent *s) {
  td_publisher *p = child->parent;
  if (p->closing) return;
  const char *ch = s ? s->msg->data : NULL, *body = s ? s->msg->data + s->chn : NULL;
  size_t bn = s ? s->msg->len - s->chn : 0;
  if (strncmp(r->str, "ASK ", 4) == 0) {
    int idx = s ? rcl_ask_node(p->cl->map, r->str + 4, r->len - 4) : -1;
    td_publisher *c = idx >= 0 && !s->retried ? cluster_child(p, idx) : NULL;
    static const char asking[] = "*1\r\n$6\r\nASKING\r\n";
    if (c && rconn_ready(&c->conn) && rconn_command(&c->conn, TAG_ASKING, asking, sizeof(asking) - 1) == 0 &&
        send_script(c, ch, s->chn, body, bn, s->user, true) == 0)
      return;
    p->dropped++;
    return;
  }
  rcl_moved(p->cl->map, r->str + 6, r->len - 6);
  if (s) cluster_offer(p, PUB_KEY_NONE, ch, s->chn, body, bn, 0, s->user);
}

static void cluster_on_map(td_rcluster *map, bool changed, void *ud) {
  td_publisher *p = ud;
  struct pub_cluster *cl = p->cl;
  if (p->closing) return;
  for (uint32_t i = 0; i < rcl_node_count(map); i++) /* connected before the first message */
    if (rcl_node_at(map, (int)i)->slots) cluster_child(p, (int)i);
  for (uint32_t i = 0; i < RCL_NODES_MAX; i++) {
    td_publisher *c = cl->child[i];
    if (!c || rcl_node_at(map, (int)i)->slots) continue;
    c->dropped += c->outbox.count;
    while (c->outbox.head) map_remove(&c->outbox, c->outbox.head);
  }
  /* what waited for a map: every entry once, in order (one may wait again) */
  for (uint32_t n = p->outbox.count; n > 0 && p->outbox.head; n--) {
    pub_entry *e = &p->outbox.e[p->outbox.head];
    char *copy = malloc((size_t)e->key_len + e->val_len + 1);
    uint32_t kl = e->key_len, vl = e->val_len, user = e->user;
    unsigned flags = e->upstream ? PUB_F_UPSTREAM : 0;
    if (copy) memcpy(copy, e->data, (size_t)kl + vl);
    map_remove(&p->outbox, p->outbox.head);
    if (copy) cluster_offer(p, PUB_KEY_NONE, copy, kl, copy + kl, vl, flags, user);
    else p->dropped++;
    free(copy);
  }
}

static td_publisher *cluster_new(uv_loop_t *loop, const char *url, const pub_options *o) {
  td_publisher *p = calloc(1, sizeof(*p));
  if (!p) return NULL;
  p->loop = loop;
  p->cl = calloc(1, sizeof(*p->cl));
  if (!p->cl || map_init(&p->outbox, o->max_outbox ? o->max_outbox : TD_MAX_SYMBOLS, o->outbox_keys) < 0) goto fail;
  p->cl->opt = *o;
  if (!(p->cl->map = rcl_new(loop, url, "publisher", cluster_on_map, p))) goto fail;
  return p;
fail:
  map_free(&p->outbox);
  free(p->cl);
  free(p);
  return NULL;
}

static int cluster_last_track(td_publisher *p, const qstore *store, smsg_kind kind, const char *hash) {
  struct pub_cluster *cl = p->cl;
  size_t hn = strlen(hash);
  if ((unsigned)kind >= SMSG_KIND_COUNT || hn == 0 || hn > PUB_CHANNEL_MAX || (cl->store && cl->store != store))
    return UV_EINVAL;
  cl->store = store;
  memcpy(cl->hash[kind], hash, hn + 1);
  for (uint32_t i = 0; i < RCL_NODES_MAX; i++)
    if (cl->child[i]) pub_last_track(cl->child[i], store, kind, hash);
  return 0;
}

/* The child of the node that holds the latest-values hash of `kind`. */
static td_publisher *cluster_last_owner(td_publisher *p, smsg_kind kind) {
  const char *hash = (unsigned)kind < SMSG_KIND_COUNT ? p->cl->hash[kind] : "";
  int idx = hash[0] ? rcl_owner(p->cl->map, rcl_slot(hash, strlen(hash))) : -1;
  return idx >= 0 && !p->closing ? cluster_child(p, idx) : NULL;
}

static bool cluster_ready(const td_publisher *p) {
  const struct pub_cluster *cl = p->cl;
  if (!rcl_loaded(cl->map)) return false;
  for (uint32_t i = 0; i < rcl_node_count(cl->map); i++)
    if (rcl_node_at(cl->map, (int)i)->slots && (!cl->child[i] || !rconn_ready(&cl->child[i]->conn))) return false;
  return true;
}

static void cluster_stats(const td_publisher *p, struct pub_stats *out) {
  memset(out, 0, sizeof(*out));
  for (uint32_t i = 0; i < RCL_NODES_MAX; i++) {
    struct pub_stats c;
    if (!p->cl->child[i]) continue;
    pub_stats(p->cl->child[i], &c);
    out->published += c.published;
    out->conflated += c.conflated;
    out->dropped += c.dropped;
    out->errors += c.errors;
    out->reconnects += c.reconnects;
    out->inflight += c.inflight;
    out->outbox += c.outbox;
    out->last_written += c.last_written;
    out->last_dropped += c.last_dropped;
    out->last_errors += c.last_errors;
    out->script_retries += c.script_retries;
  }
  out->state = cluster_ready(p) ? RCONN_READY : RCONN_CONNECTING;
  out->conflated += p->conflated;
  out->dropped += p->dropped;
  out->outbox += p->outbox.count;
  out->last_dropped += p->last_dropped;
}

static void cluster_closed_one(void *ud) { pub_maybe_done(ud); }

static void cluster_close(td_publisher *p) {
  struct pub_cluster *cl = p->cl;
  p->closes_pending = 1;
  for (uint32_t i = 0; i < RCL_NODES_MAX; i++)
    if (cl->child[i]) p->closes_pending++;
  for (uint32_t i = 0; i < RCL_NODES_MAX; i++)
    if (cl->child[i]) pub_close(cl->child[i], cluster_closed_one, p);
  rcl_close(cl->map, cluster_closed_one, p);
}
