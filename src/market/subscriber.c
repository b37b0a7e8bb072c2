/* Subscribe-mode connection with reference-counted channels, one pending
 * (UN)SUBSCRIBE per channel at most, and a heartbeat; see subscriber.h. */
#include "market/subscriber.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fnv1a.h"
#include "base/log.h"
#include "base/td_limits.h"
#include "redis/cluster.h"
#include "sub_cluster.h"

enum { TAG_SUB = 1 };

/* What the server has been told about a channel. */
typedef enum { SRV_NONE, SRV_SUBSCRIBING, SRV_SUBSCRIBED, SRV_UNSUBSCRIBING } sub_srv;

typedef struct sub_chan sub_pat;

typedef struct sub_chan {
  struct sub_chan *next;
  uint32_t hash;
  uint32_t id;          /* symbol id of a quote channel, indexed in by_id; else SYMTAB_NONE */
  uint32_t refs;
  sub_srv srv;
  bool hb;
  bool pattern;         /* a PSUBSCRIBE pattern, in pats[], not in the table */
  size_t len;
  char name[];
} sub_chan;

struct td_subscriber {
  uv_loop_t *loop;
  td_rconn conn;
  uv_timer_t hb_timer;
  sub_callbacks cb;
  void *ud;
  td_publisher *hb_pub;
  uint32_t hb_ms, hb_timeout_ms;
  char hb_channel[sizeof(SUB_HB_PREFIX) + 16];
  sub_chan *hb;
  /* Every channel is in the by-name table (subscribing, resubscribing and
   * teardown walk it); a quote channel is also in by_id, where a message
   * finds it with the one hash of its symbol (symtab_find). */
  sub_chan **bucket;
  uint32_t nbuckets, nentries, nchannels;
  const symtab *syms;   /* NULL: no quote channels, everything by name */
  char quote_prefix[TD_CHANNEL_PREFIX_MAX + 2];   /* "<prefix>:" */
  size_t quote_prefix_len;
  sub_chan **by_id;     /* symtab_max(syms) of them */
  bool subscribed;      /* READY and the heartbeat channel confirmed */
  bool was_subscribed;  /* for on_state's resubscribed flag */
  uint64_t last_hb;     /* uv_now of the last sign of life */
  uint64_t hb_sent;
  bool closing;
  int closes_pending;
  void (*done)(void *);
  void *done_ud;
  uint64_t messages, heartbeats, hb_timeouts;
  /* Patterns (PSUBSCRIBE), kept as channel entries outside the table: a
   * literal prefix followed by '*', reference counted and reconciled like
   * a channel. Few of them: a message is matched against every one. */
  sub_chan *pats[SUB_MAX_PATTERNS];
  uint32_t npats;
  uint64_t pmessages, pdups;
  char *scratch;
  size_t scratch_cap;
  sub_cluster *cl;      /* redis+cluster://: everything is handed to sub_cluster.c */
};

/* ---- channel table -------------------------------------------------------- */

/* The symbol id of a quote channel's name, or SYMTAB_NONE. */
static uint32_t quote_id(const td_subscriber *s, const char *name, size_t n) {
  size_t pl = s->quote_prefix_len;
  if (!s->syms || n <= pl || memcmp(name, s->quote_prefix, pl)) return SYMTAB_NONE;
  return symtab_find(s->syms, name + pl, n - pl);
}

static sub_chan *chan_find_name(const td_subscriber *s, const char *name, size_t n) {
  uint32_t h = fnv1a(name, n);
  for (sub_chan *e = s->bucket[h & (s->nbuckets - 1)]; e; e = e->next)
    if (e->hash == h && e->len == n && memcmp(e->name, name, n) == 0) return e;
  return NULL;
}

/* A quote channel by its symbol's id; anything else (the heartbeat channel,
 * candles:*, a quote channel subscribed before its symbol had an id) by
 * name. */
static sub_chan *chan_find(const td_subscriber *s, const char *name, size_t n) {
  uint32_t id = quote_id(s, name, n);
  if (id != SYMTAB_NONE && s->by_id[id]) return s->by_id[id];
  return chan_find_name(s, name, n);
}

static int chan_grow(td_subscriber *s) {
  uint32_t nb = s->nbuckets * 2;
  sub_chan **b = calloc(nb, sizeof(*b));
  if (!b) return UV_ENOMEM;
  for (uint32_t i = 0; i < s->nbuckets; i++)
    for (sub_chan *e = s->bucket[i], *next; e; e = next) {
      next = e->next;
      e->next = b[e->hash & (nb - 1)];
      b[e->hash & (nb - 1)] = e;
    }
  free(s->bucket);
  s->bucket = b;
  s->nbuckets = nb;
  return 0;
}

static sub_chan *chan_insert(td_subscriber *s, const char *name, size_t n) {
  if (s->nentries >= s->nbuckets && chan_grow(s) < 0) return NULL;
  sub_chan *e = calloc(1, sizeof(*e) + n + 1);
  if (!e) return NULL;
  memcpy(e->name, name, n);
  e->len = n;
  e->hash = fnv1a(name, n);
  e->next = s->bucket[e->hash & (s->nbuckets - 1)];
  s->bucket[e->hash & (s->nbuckets - 1)] = e;
  s->nentries++;
  e->id = quote_id(s, name, n);
  if (e->id != SYMTAB_NONE) s->by_id[e->id] = e;
  return e;
}

static void chan_remove(td_subscriber *s, sub_chan *e) {
  sub_chan **pp = &s->bucket[e->hash & (s->nbuckets - 1)];
  while (*pp != e) pp = &(*pp)->next;
  *pp = e->next;
  s->nentries--;
  if (e->id != SYMTAB_NONE) s->by_id[e->id] = NULL;
  free(e);
}

/* ---- pattern table -------------------------------------------------------- */

static bool pat_live(const sub_pat *p) { return p->srv == SRV_SUBSCRIBED || p->srv == SRV_UNSUBSCRIBING; }

static bool pat_matches(const sub_pat *p, const char *channel, size_t n) {
  return n >= p->len - 1 && memcmp(channel, p->name, p->len - 1) == 0;
}

static sub_pat *pat_find(td_subscriber *s, const char *name, size_t n) {
  for (uint32_t i = 0; i < s->npats; i++)
    if (s->pats[i]->len == n && memcmp(s->pats[i]->name, name, n) == 0) return s->pats[i];
  return NULL;
}

/* Which of the routes Redis had for `channel` when it published a message
 * delivers it here: the channel's own `message` when the channel was
 * subscribed, else the `pmessage` of the longest matching pattern (two
 * distinct prefixes of one length cannot both match). Redis writes every
 * route of one PUBLISH to this connection back to back, and (P)SUBSCRIBE
 * replies come in order with them, so the states as the replies read so
 * far set them are the states Redis published with: exactly one route of
 * each message passes. NULL: the channel's own. */
static const sub_pat *route_of(const td_subscriber *s, const sub_chan *e, const char *channel, size_t n) {
  if (e && (e->srv == SRV_SUBSCRIBED || e->srv == SRV_UNSUBSCRIBING)) return NULL;
  const sub_pat *best = NULL;
  for (uint32_t i = 0; i < s->npats; i++) {
    const sub_pat *p = s->pats[i];
    if (pat_live(p) && pat_matches(p, channel, n) && (!best || p->len > best->len)) best = p;
  }
  return best;
}

/* Whether a pattern that some client wants matches `channel`: a message on
 * a channel nobody holds any more still serves the pattern's clients. */
static bool pat_wanted(const td_subscriber *s, const char *channel, size_t n) {
  for (uint32_t i = 0; i < s->npats; i++)
    if (s->pats[i]->refs > 0 && pat_matches(s->pats[i], channel, n)) return true;
  return false;
}

/* ---- commands ------------------------------------------------------------- */

static char *scratch_reserve(td_subscriber *s, size_t n) {
  if (n > s->scratch_cap) {
    size_t cap = s->scratch_cap ? s->scratch_cap : 1024;
    while (cap < n) cap *= 2;
    char *p = realloc(s->scratch, cap);
    if (!p) return NULL;
    s->scratch = p;
    s->scratch_cap = cap;
  }
  return s->scratch;
}

static size_t put_bulk(char *o, const char *p, size_t n) {
  int h = sprintf(o, "$%zu\r\n", n);
  memcpy(o + h, p, n);
  memcpy(o + h + n, "\r\n", 2);
  return (size_t)h + n + 2;
}

/* (UN)SUBSCRIBE for `n` channels, or P(UN)SUBSCRIBE for `n` patterns. */
static int send_pubsub(td_subscriber *s, const char *verb, sub_chan **list, size_t n) {
  size_t bytes = 64;
  for (size_t i = 0; i < n; i++) bytes += list[i]->len + 32;
  char *o = scratch_reserve(s, bytes);
  if (!o) return UV_ENOMEM;
  size_t len = (size_t)sprintf(o, "*%zu\r\n", n + 1);
  len += put_bulk(o + len, verb, strlen(verb));
  for (size_t i = 0; i < n; i++) len += put_bulk(o + len, list[i]->name, list[i]->len);
  o[len] = '\0'; /* hiredis walks the arguments with strchr() */
  return rconn_command_untracked(&s->conn, TAG_SUB, o, len);
}

static void pat_free(td_subscriber *s, sub_pat *p) {
  uint32_t i = 0;
  while (s->pats[i] != p) i++;
  s->pats[i] = s->pats[--s->npats];
  free(p);
}

/* Moves one channel (or pattern) toward what its count asks for; one
 * request at a time. One no longer wanted nor held is freed. */
static void reconcile(td_subscriber *s, sub_chan *e) {
  if (e->refs > 0 && e->srv == SRV_NONE && rconn_ready(&s->conn)) {
    if (send_pubsub(s, e->pattern ? "PSUBSCRIBE" : "SUBSCRIBE", &e, 1) == 0) e->srv = SRV_SUBSCRIBING;
  } else if (e->refs == 0 && e->srv == SRV_SUBSCRIBED && rconn_ready(&s->conn)) {
    if (send_pubsub(s, e->pattern ? "PUNSUBSCRIBE" : "UNSUBSCRIBE", &e, 1) == 0) e->srv = SRV_UNSUBSCRIBING;
  } else if (e->refs == 0 && e->srv == SRV_NONE) {
    if (e->pattern) pat_free(s, e);
    else chan_remove(s, e);
  }
}

int sub_add(td_subscriber *s, const char *channel) {
  if (s->cl) return subc_add(s->cl, channel);
  size_t n = strlen(channel);
  if (n == 0 || n > SUB_CHANNEL_MAX || !strcmp(channel, s->hb_channel) || s->closing)
    return UV_EINVAL;
  sub_chan *e = chan_find(s, channel, n);
  if (!e) {
    if (s->nchannels >= SUB_MAX_CHANNELS) return UV_ENOBUFS;
    if (!(e = chan_insert(s, channel, n))) return UV_ENOMEM;
  }
  if (e->refs++ == 0) {
    s->nchannels++;
    reconcile(s, e);
  }
  return 0;
}

void sub_remove(td_subscriber *s, const char *channel) {
  if (s->cl) {
    subc_remove(s->cl, channel);
    return;
  }
  size_t n = strlen(channel);
  sub_chan *e = n ? chan_find(s, channel, n) : NULL;
  if (!e || e->hb || e->refs == 0) return;
  if (--e->refs == 0) {
    s->nchannels--;
    reconcile(s, e);
  }
}

uint32_t sub_channel_count(const td_subscriber *s, const char *channel) {
  if (s->cl) return subc_channel_count(s->cl, channel);
  sub_chan *e = chan_find(s, channel, strlen(channel));
  return e ? e->refs : 0;
}

const char *sub_heartbeat_channel(const td_subscriber *s) { return s->hb_channel; }

int sub_padd(td_subscriber *s, const char *pattern) {
  size_t n = strlen(pattern);
  if (s->cl) return UV_ENOTSUP; /* sharded pub/sub has no pattern subscribe */
  if (n == 0 || n > SUB_CHANNEL_MAX || pattern[n - 1] != '*' || memchr(pattern, '*', n - 1) || s->closing)
    return UV_EINVAL;
  sub_pat *p = pat_find(s, pattern, n);
  if (!p) {
    if (s->npats >= SUB_MAX_PATTERNS) return UV_ENOBUFS;
    if (!(p = calloc(1, sizeof(*p) + n + 1))) return UV_ENOMEM;
    memcpy(p->name, pattern, n);
    p->len = n;
    p->id = SYMTAB_NONE;
    p->pattern = true;
    s->pats[s->npats++] = p;
  }
  if (p->refs++ == 0) reconcile(s, p);
  return 0;
}

void sub_premove(td_subscriber *s, const char *pattern) {
  sub_pat *p = pat_find(s, pattern, strlen(pattern));
  if (p && p->refs > 0 && --p->refs == 0) reconcile(s, p);
}

uint32_t sub_pattern_count(td_subscriber *s, const char *pattern) {
  sub_pat *p = pat_find(s, pattern, strlen(pattern));
  return p ? p->refs : 0;
}

/* ---- replies -------------------------------------------------------------- */

static void set_subscribed(td_subscriber *s, bool on) {
  if (s->subscribed == on) return;
  s->subscribed = on;
  bool resubscribed = on && s->was_subscribed;
  if (on) {
    s->was_subscribed = true;
    s->last_hb = uv_now(s->loop);
  }
  if (s->cb.on_state) s->cb.on_state(s->ud, on, resubscribed);
}

/* pmessage (pattern, channel, payload), psubscribe, punsubscribe. */
static void on_pattern_reply(td_subscriber *s, redisReply *r) {
  const char *kind = r->element[0]->str;
  sub_pat *p = pat_find(s, r->element[1]->str, r->element[1]->len);
  if (!p) return;
  if (!strcmp(kind, "pmessage")) {
    if (r->elements < 4 || r->element[2]->type != REDIS_REPLY_STRING || r->element[3]->type != REDIS_REPLY_STRING)
      return;
    const char *ch = r->element[2]->str;
    size_t n = r->element[2]->len;
    sub_chan *e = chan_find(s, ch, n);
    if (route_of(s, e, ch, n) != p) { /* another route of this PUBLISH delivers it */
      s->pdups++;
      return;
    }
    /* The route is chosen from Redis's states alone; whether anyone still
     * wants the message is asked after, of every pattern: a pattern being
     * unsubscribed may carry a message that another one's clients need. */
    if (!pat_wanted(s, ch, n)) return;
    s->messages++;
    s->pmessages++;
    uint32_t id = e ? e->id : quote_id(s, ch, n);
    if (s->cb.on_message) s->cb.on_message(s->ud, id, ch, n, r->element[3]->str, r->element[3]->len);
  } else if (!strcmp(kind, "psubscribe")) {
    p->srv = SRV_SUBSCRIBED;
    reconcile(s, p);
  } else if (!strcmp(kind, "punsubscribe")) {
    p->srv = SRV_NONE;
    reconcile(s, p);
  }
}

static void on_reply(td_rconn *c, void *ud, redisReply *r, uintptr_t tag) {
  td_subscriber *s = ud;
  if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
      r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING)
    return; /* NULL: the connection is going away; on_lost resets the table */
  const char *kind = r->element[0]->str;
  if (kind[0] == 'p') {
    on_pattern_reply(s, r);
    return;
  }
  sub_chan *e = chan_find(s, r->element[1]->str, r->element[1]->len);
  if (!e) return;
  if (!strcmp(kind, "message")) {
    redisReply *m = r->element[2];
    if (e->hb) {
      s->heartbeats++;
      s->last_hb = uv_now(s->loop);
    } else if ((e->refs > 0 || pat_wanted(s, e->name, e->len)) && m->type == REDIS_REPLY_STRING) {
      s->messages++;
      if (s->cb.on_message) s->cb.on_message(s->ud, e->id, e->name, e->len, m->str, m->len);
    }
  } else if (!strcmp(kind, "subscribe")) {
    e->srv = SRV_SUBSCRIBED;
    /* The heartbeat channel is last in a resubscription: all are confirmed. */
    if (e->hb) set_subscribed(s, true);
    else reconcile(s, e);
  } else if (!strcmp(kind, "unsubscribe")) {
    e->srv = SRV_NONE;
    reconcile(s, e);
  }
}

static void on_ready(td_rconn *c, void *ud) {
  td_subscriber *s = ud;
  /* One SUBSCRIBE for every wanted channel, the heartbeat channel last. */
  sub_chan **list = malloc(sizeof(*list) * (s->nentries + 1));
  size_t n = 0;
  if (!list) {
    rconn_reconnect(&s->conn, "out of memory");
    return;
  }
  /* Patterns first: Redis answers in order, so the heartbeat channel's
   * confirmation still says that everything is subscribed. */
  sub_pat *pats[SUB_MAX_PATTERNS];
  size_t np = 0;
  for (uint32_t i = 0; i < s->npats; i++)
    if (s->pats[i]->refs > 0) pats[np++] = s->pats[i];
  if (np && send_pubsub(s, "PSUBSCRIBE", pats, np) == 0)
    for (size_t i = 0; i < np; i++) pats[i]->srv = SRV_SUBSCRIBING;
  for (uint32_t i = 0; i < s->nbuckets; i++)
    for (sub_chan *e = s->bucket[i]; e; e = e->next)
      if (e->refs > 0 && !e->hb) list[n++] = e;
  list[n++] = s->hb;
  if (send_pubsub(s, "SUBSCRIBE", list, n) == 0)
    for (size_t i = 0; i < n; i++) list[i]->srv = SRV_SUBSCRIBING;
  free(list);
}

static void on_lost(td_rconn *c, void *ud, const char *reason, bool was_ready) {
  td_subscriber *s = ud;
  for (uint32_t i = 0; i < s->nbuckets; i++)
    for (sub_chan *e = s->bucket[i], *next; e; e = next) {
      next = e->next;
      e->srv = SRV_NONE;
      if (e->refs == 0) chan_remove(s, e);
    }
  for (uint32_t i = s->npats; i-- > 0;) {
    s->pats[i]->srv = SRV_NONE;
    if (s->pats[i]->refs == 0) reconcile(s, s->pats[i]); /* frees it */
  }
  set_subscribed(s, false);
}

/* ---- heartbeat ------------------------------------------------------------ */

static void on_hb_timer(uv_timer_t *t) {
  td_subscriber *s = t->data;
  uint64_t now = uv_now(s->loop);
  if (!s->hb_pub || !s->subscribed || !pub_ready(s->hb_pub)) {
    s->last_hb = now; /* only time while both sides could deliver counts */
    return;
  }
  if (now - s->last_hb >= s->hb_timeout_ms) {
    s->hb_timeouts++;
    td_logline *l = log_begin(TD_LOG_WARN, "redis_sub_heartbeat_timeout");
    if (l) {
      log_str(l, "url", s->conn.url.masked);
      log_int(l, "silent_ms", (int64_t)(now - s->last_hb));
      log_end(l);
    }
    rconn_reconnect(&s->conn, "heartbeat timeout");
    return;
  }
  char payload[24];
  int n = snprintf(payload, sizeof(payload), "%llu", (unsigned long long)++s->hb_sent);
  pub_heartbeat(s->hb_pub, s->hb_channel, strlen(s->hb_channel), payload, (size_t)n);
}

/* ---- lifecycle ------------------------------------------------------------ */

static void sub_free(td_subscriber *s) {
  if (s->bucket)
    for (uint32_t i = 0; i < s->nbuckets; i++)
      for (sub_chan *e = s->bucket[i], *next; e; e = next) {
        next = e->next;
        free(e);
      }
  for (uint32_t i = 0; i < s->npats; i++) free(s->pats[i]);
  free(s->bucket);
  free(s->by_id);
  free(s->scratch);
  free(s);
}

static void sub_maybe_done(td_subscriber *s) {
  if (--s->closes_pending > 0) return;
  void (*done)(void *) = s->done;
  void *dud = s->done_ud;
  sub_free(s);
  if (done) done(dud);
}

static void on_closed(td_rconn *c, void *ud) { sub_maybe_done(ud); }
static void on_cluster_closed(void *ud) { sub_maybe_done(ud); }
static void on_timer_closed(uv_handle_t *h) { sub_maybe_done(h->data); }

static void make_hb_channel(td_subscriber *s) {
  unsigned char rnd[8];
  uint64_t fallback = uv_hrtime() ^ ((uint64_t)(uintptr_t)s << 16);
  if (uv_random(NULL, NULL, rnd, sizeof(rnd), 0, NULL) < 0) memcpy(rnd, &fallback, sizeof(rnd));
  int n = snprintf(s->hb_channel, sizeof(s->hb_channel), "%s", SUB_HB_PREFIX);
  for (size_t i = 0; i < sizeof(rnd); i++) n += sprintf(s->hb_channel + n, "%02x", rnd[i]);
}

td_subscriber *sub_new(uv_loop_t *loop, const char *redis_url, const sub_callbacks *cb, void *ud,
                       const sub_options *opt) {
  sub_options o = opt ? *opt : (sub_options){0};
  td_subscriber *s = calloc(1, sizeof(*s));
  if (!s) return NULL;
  s->loop = loop;
  if (rcl_is_url(redis_url)) {
    if (!(s->cl = subc_new(loop, redis_url, cb, ud, &o))) goto fail;
    return s;
  }
  s->cb = *cb;
  s->ud = ud;
  s->hb_pub = o.heartbeat_pub;
  s->hb_ms = o.heartbeat_ms ? o.heartbeat_ms : TD_SUB_HEARTBEAT_MS;
  s->hb_timeout_ms = o.heartbeat_timeout_ms ? o.heartbeat_timeout_ms : TD_SUB_HEARTBEAT_TIMEOUT_MS;
  s->nbuckets = 64;
  if (!(s->bucket = calloc(s->nbuckets, sizeof(*s->bucket)))) goto fail;
  if (o.syms && o.quote_prefix) {
    size_t pl = strlen(o.quote_prefix);
    if (pl == 0 || pl > TD_CHANNEL_PREFIX_MAX) goto fail;
    memcpy(s->quote_prefix, o.quote_prefix, pl);
    s->quote_prefix[pl] = ':';
    s->quote_prefix_len = pl + 1;
    s->syms = o.syms;
    if (!(s->by_id = calloc(symtab_max(o.syms), sizeof(*s->by_id)))) goto fail;
  }
  make_hb_channel(s);
  if (!(s->hb = chan_insert(s, s->hb_channel, strlen(s->hb_channel)))) goto fail;
  s->hb->hb = true;
  s->hb->refs = 1;
  if (!o.conn.name) o.conn.name = "subscriber";
  static const rconn_callbacks rcb = {on_ready, on_lost, on_reply, on_closed};
  const char *err = NULL;
  if (rconn_init(&s->conn, loop, redis_url, &rcb, s, &o.conn, &err) < 0) goto fail;
  uv_timer_init(loop, &s->hb_timer);
  s->hb_timer.data = s;
  uv_timer_start(&s->hb_timer, on_hb_timer, s->hb_ms, s->hb_ms);
  rconn_start(&s->conn);
  return s;
fail:
  sub_free(s);
  return NULL;
}

void sub_close(td_subscriber *s, void (*done)(void *), void *ud) {
  if (s->closing) return;
  s->closing = true;
  s->done = done;
  s->done_ud = ud;
  if (s->cl) {
    s->closes_pending = 1;
    subc_close(s->cl, on_cluster_closed, s);
    return;
  }
  s->closes_pending = 2;
  uv_close((uv_handle_t *)&s->hb_timer, on_timer_closed);
  rconn_close(&s->conn);
}

uint64_t sub_behind_ms(const td_subscriber *s) { return s->cl ? 0 : rconn_behind_ms(&s->conn); }

void sub_stats(const td_subscriber *s, struct sub_stats *out) {
  if (s->cl) {
    subc_stats(s->cl, out);
    return;
  }
  out->state = s->conn.state;
  out->channels = s->nchannels;
  out->messages = s->messages;
  out->reconnects = s->conn.reconnects;
  out->heartbeats = s->heartbeats;
  out->hb_timeouts = s->hb_timeouts;
  out->patterns = 0;
  for (uint32_t i = 0; i < s->npats; i++) out->patterns += s->pats[i]->refs > 0;
  out->pmessages = s->pmessages;
  out->pdups = s->pdups;
}
