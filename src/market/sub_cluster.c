/* Sharded pub/sub on a Redis Cluster; see sub_cluster.h. */
#include "sub_cluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "base/fnv1a.h"
#include "base/log.h"
#include "net/tls.h"
#include "redis/cluster.h"
#include "redis/redis_tls.h"

typedef enum { CH_NONE, CH_SUBSCRIBING, CH_SUBSCRIBED, CH_UNSUBSCRIBING } chan_state;
typedef enum { N_IDLE, N_CONNECTING, N_READY, N_CLOSING } node_state;

typedef struct subc_chan {
  struct subc_chan *next;
  uint32_t refs;
  uint32_t id;      /* symbol id of a quote channel, else SYMTAB_NONE */
  uint32_t hash;
  uint16_t slot;
  int16_t node;     /* where the command in flight or the subscription is; -1 */
  chan_state state;
  uint32_t len;
  char name[];
} subc_chan;

typedef struct subc_node {
  sub_cluster *sc;
  int idx;
  node_state state;
  bool down;            /* lost, and not connected since (logged once) */
  /* TCP, or TLS under rediss+cluster:// (net/tls.h carries both); allocated
   * on the node's first connect, as most of RCL_NODES_MAX are never used */
  tls_conn *conn;
  redisReader *reader;
  char *out;            /* commands not yet handed to tls_write */
  size_t out_len, out_cap;
} subc_node;

struct sub_cluster {
  uv_loop_t *loop;
  sub_callbacks cb;
  void *ud;
  td_rcluster *map;
  subc_node nodes[RCL_NODES_MAX];
  subc_chan **bucket;
  uint32_t nchannels;    /* refs > 0 */
  uint32_t nmissing;     /* refs > 0 and not SUBSCRIBED */
  const symtab *syms;
  char quote_prefix[TD_CHANNEL_PREFIX_MAX + 2];
  size_t quote_prefix_len;
  bool gap;              /* something was lost since the last on_state(true) */
  bool ever_ready;
  bool closing;
  int closes_pending;
  uv_timer_t retry;      /* reconnects and resubscribes after a loss */
  void (*done)(void *);
  void *done_ud;
  uint64_t messages, reconnects, moved, unsolicited;
};

static void node_drop(subc_node *n, const char *why);
static void node_connect(subc_node *n);
static void reconcile_all(sub_cluster *sc);
static void closed_one(sub_cluster *sc);

/* ---- channels ----------------------------------------------------------------- */

static bool missing(const subc_chan *c) { return c->refs > 0 && c->state != CH_SUBSCRIBED; }

/* Every change of refs or state goes through here: nmissing stays exact. */
static void chan_set(sub_cluster *sc, subc_chan *c, uint32_t refs, chan_state st) {
  sc->nmissing -= missing(c);
  sc->nchannels -= c->refs > 0;
  c->refs = refs;
  c->state = st;
  sc->nmissing += missing(c);
  sc->nchannels += c->refs > 0;
}

static subc_chan *chan_find(const sub_cluster *sc, const char *name, size_t n, uint32_t h) {
  for (subc_chan *c = sc->bucket[h & (SUBC_BUCKETS - 1)]; c; c = c->next)
    if (c->hash == h && c->len == n && memcmp(c->name, name, n) == 0) return c;
  return NULL;
}

static void chan_free(sub_cluster *sc, subc_chan *c) {
  subc_chan **pp = &sc->bucket[c->hash & (SUBC_BUCKETS - 1)];
  while (*pp != c) pp = &(*pp)->next;
  *pp = c->next;
  free(c);
}

static uint32_t quote_id(const sub_cluster *sc, const char *name, size_t n) {
  size_t pl = sc->quote_prefix_len;
  if (!sc->syms || n <= pl || memcmp(name, sc->quote_prefix, pl)) return SYMTAB_NONE;
  return symtab_find(sc->syms, name + pl, n - pl);
}

/* ---- node connections ------------------------------------------------------ */

/* Room for `need` more bytes in the node's unsent commands. */
static int node_reserve(subc_node *n, size_t need) {
  if (n->out_len + need <= n->out_cap) return 0;
  size_t cap = n->out_cap ? n->out_cap * 2 : 4096;
  while (cap < n->out_len + need) cap *= 2;
  char *o = realloc(n->out, cap);
  if (!o) return UV_ENOMEM;
  n->out = o;
  n->out_cap = cap;
  return 0;
}

static int node_queue(subc_node *n, const char *verb, const subc_chan *c) {
  if (node_reserve(n, 64 + c->len) < 0) return UV_ENOMEM;
  n->out_len += (size_t)snprintf(n->out + n->out_len, n->out_cap - n->out_len, "*2\r\n$%zu\r\n%s\r\n$%u\r\n",
                                 strlen(verb), verb, c->len);
  memcpy(n->out + n->out_len, c->name, c->len);
  n->out_len += c->len;
  memcpy(n->out + n->out_len, "\r\n", 2);
  n->out_len += 2;
  return 0;
}

static void node_flush(subc_node *n) {
  if (n->state != N_READY || n->out_len == 0) return;
  if (tls_write_queue_size(n->conn) + n->out_len > SUBC_WRITE_QUEUE_MAX) {
    node_drop(n, "write queue full");
    return;
  }
  int rc = tls_write(n->conn, n->out, n->out_len); /* copied */
  n->out_len = 0;
  if (rc < 0) node_drop(n, rc == UV_ENOBUFS ? "write queue full" : "write failed");
}

static void flush_all(sub_cluster *sc) {
  for (int i = 0; i < RCL_NODES_MAX; i++) node_flush(&sc->nodes[i]);
}

/* What every change converges to: a wanted channel subscribed on its slot's
 * owner, an unwanted one unsubscribed and forgotten. One command in flight
 * per channel; its reply calls this again. */
static void reconcile(sub_cluster *sc, subc_chan *c) {
  if (c->state == CH_SUBSCRIBING || c->state == CH_UNSUBSCRIBING || sc->closing) return;
  if (c->refs == 0 && c->state == CH_NONE) {
    chan_free(sc, c);
    return;
  }
  if (c->refs > 0 && c->state == CH_NONE) {
    int idx = rcl_owner(sc->map, c->slot);
    if (idx < 0) return; /* the next map */
    subc_node *n = &sc->nodes[idx];
    if (n->state == N_IDLE) node_connect(n);
    if (n->state != N_READY || node_queue(n, "SSUBSCRIBE", c) < 0) return;
    c->node = (int16_t)idx;
    chan_set(sc, c, c->refs, CH_SUBSCRIBING);
    return;
  }
  if (c->refs == 0 && c->state == CH_SUBSCRIBED) {
    subc_node *n = &sc->nodes[c->node];
    if (n->state == N_READY && node_queue(n, "SUNSUBSCRIBE", c) == 0) chan_set(sc, c, 0, CH_UNSUBSCRIBING);
  }
}

static void reconcile_all(sub_cluster *sc) {
  for (uint32_t b = 0; b < SUBC_BUCKETS; b++)
    for (subc_chan *c = sc->bucket[b], *next; c; c = next) {
      next = c->next;
      reconcile(sc, c);
    }
  flush_all(sc);
}

/* After a loss, once every wanted channel is subscribed again: the hub
 * checks each channel's next position. */
static void maybe_ready(sub_cluster *sc) {
  if (sc->nmissing > 0 || !rcl_loaded(sc->map) || sc->closing) return;
  if (sc->ever_ready && !sc->gap) return;
  bool resubscribed = sc->ever_ready;
  sc->ever_ready = true;
  sc->gap = false;
  if (sc->cb.on_state) sc->cb.on_state(sc->ud, true, resubscribed);
}

/* Until every wanted channel is subscribed again, the map is read again
 * each round: a failed primary's slots move only once its replica won the
 * election, and no node tells us when. */
static void on_retry(uv_timer_t *t) {
  sub_cluster *sc = t->data;
  reconcile_all(sc);
  if (sc->nmissing == 0 || sc->closing) return;
  rcl_refresh(sc->map);
  uv_timer_start(&sc->retry, on_retry, SUBC_RETRY_MS, 0);
}

static void lose(sub_cluster *sc) {
  if (!sc->gap && sc->ever_ready && sc->cb.on_state) sc->cb.on_state(sc->ud, false, false);
  sc->gap = true;
  rcl_refresh(sc->map);
  if (!uv_is_active((uv_handle_t *)&sc->retry)) uv_timer_start(&sc->retry, on_retry, SUBC_RETRY_MS, 0);
}

static void log_node(const subc_node *n, td_log_level lvl, const char *event, const char *why) {
  td_logline *l = log_begin(lvl, event);
  if (!l) return;
  log_str(l, "node", rcl_node_at(n->sc->map, n->idx)->addr);
  if (why) log_str(l, "reason", why);
  log_end(l);
}

/* The node's channels go back to NONE (the map decides where they go). */
static void node_lost(subc_node *n, const char *why) {
  sub_cluster *sc = n->sc;
  /* once per loss, not per failed attempt while the node stays down */
  if (!sc->closing && !n->down) log_node(n, TD_LOG_WARN, "redis_shard_lost", why);
  n->down = true;
  if (n->reader) redisReaderFree(n->reader);
  n->reader = NULL;
  n->out_len = 0;
  if (sc->closing) return;
  for (uint32_t b = 0; b < SUBC_BUCKETS; b++)
    for (subc_chan *c = sc->bucket[b]; c; c = c->next)
      if (c->node == n->idx && c->state != CH_NONE) {
        c->node = -1;
        chan_set(sc, c, c->refs, CH_NONE);
      }
  sc->reconnects++;
  lose(sc);
}

/* We end the connection; on_conn_close follows from the loop. */
static void node_drop(subc_node *n, const char *why) {
  if (n->state == N_IDLE || n->state == N_CLOSING) return;
  n->state = N_CLOSING;
  tls_close(n->conn, why ? why : "closing");
  node_lost(n, why);
}

/* The last callback of a connection: ours (node_drop), the server's, or a
 * failed connect or TLS handshake. */
static void on_conn_close(tls_conn *c, const char *reason) {
  subc_node *n = c->data;
  sub_cluster *sc = n->sc;
  bool ours = n->state == N_CLOSING;
  n->state = N_IDLE;
  if (!ours) node_lost(n, tls_error(c) ? tls_error(c) : reason);
  if (sc->closing) closed_one(sc); /* may free sc: last */
}

/* One pushed array or reply. */
static void on_push(subc_node *n, redisReply *r) {
  sub_cluster *sc = n->sc;
  if (r->type == REDIS_REPLY_ERROR) {
    /* a MOVED (or any error) names no channel: start this node afresh */
    if (strncmp(r->str, "MOVED ", 6) == 0) sc->moved++;
    node_drop(n, r->str);
    return;
  }
  if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 || r->element[0]->type != REDIS_REPLY_STRING ||
      r->element[1]->type != REDIS_REPLY_STRING)
    return; /* +OK of AUTH */
  const char *kind = r->element[0]->str, *name = r->element[1]->str;
  size_t kn = r->element[0]->len, nn = r->element[1]->len;
  subc_chan *c = chan_find(sc, name, nn, fnv1a(name, nn));
  if (kn == 8 && memcmp(kind, "smessage", 8) == 0) {
    if (!c || c->refs == 0 || r->element[2]->type != REDIS_REPLY_STRING) return;
    sc->messages++;
    sc->cb.on_message(sc->ud, c->id, name, nn, r->element[2]->str, r->element[2]->len);
    return;
  }
  if (!c) return;
  if (kn == 10 && memcmp(kind, "ssubscribe", 10) == 0) {
    if (c->state == CH_SUBSCRIBING) chan_set(sc, c, c->refs, CH_SUBSCRIBED);
  } else if (kn == 12 && memcmp(kind, "sunsubscribe", 12) == 0) {
    if (c->state == CH_SUBSCRIBED) {
      /* not asked for: the slot moved to another node */
      sc->unsolicited++;
      td_logline *l = log_begin(TD_LOG_INFO, "redis_shard_channel_moved");
      if (l) {
        log_strn(l, "channel", name, nn);
        log_str(l, "from", rcl_node_at(sc->map, n->idx)->addr);
        log_end(l);
      }
      c->node = -1;
      chan_set(sc, c, c->refs, CH_NONE);
      lose(sc);
      return;
    }
    if (c->state == CH_UNSUBSCRIBING) {
      c->node = -1;
      chan_set(sc, c, c->refs, CH_NONE);
    }
  } else {
    return;
  }
  reconcile(sc, c);
}

static void on_conn_read(tls_conn *conn, const char *data, size_t len) {
  subc_node *n = conn->data;
  sub_cluster *sc = n->sc;
  if (n->state != N_READY) return;
  if (redisReaderFeed(n->reader, data, len) != REDIS_OK) {
    node_drop(n, "bad reply");
    return;
  }
  void *reply;
  while (n->state == N_READY && n->reader) {
    if (redisReaderGetReply(n->reader, &reply) != REDIS_OK) {
      node_drop(n, "bad reply");
      break;
    }
    if (!reply) break;
    on_push(n, reply);
    freeReplyObject(reply);
  }
  flush_all(sc);
  maybe_ready(sc);
}

static void on_conn_connect(tls_conn *conn, int status) {
  subc_node *n = conn->data;
  sub_cluster *sc = n->sc;
  if (status < 0) return; /* on_conn_close follows and counts the loss */
  if (n->state != N_CONNECTING) return; /* dropped meanwhile */
  if (!(n->reader = redisReaderCreate())) {
    node_drop(n, "out of memory");
    return;
  }
  n->state = N_READY;
  n->down = false;
  log_node(n, TD_LOG_INFO, "redis_shard_connected", NULL);
  /* AUTH first when the URL has a password; its +OK is skipped by on_push */
  rconn_url u;
  const char *err;
  if (rconn_url_parse(rcl_node_at(sc->map, n->idx)->url, &u, &err) == 0) {
    if (u.password) {
      const char *argv[] = {"AUTH", u.user ? u.user : u.password, u.password};
      char *cmd = NULL;
      int len = redisFormatCommandArgv(&cmd, u.user ? 3 : 2, argv, NULL);
      if (len > 0 && node_reserve(n, (size_t)len) == 0) {
        memcpy(n->out + n->out_len, cmd, (size_t)len);
        n->out_len += (size_t)len;
      }
      if (len > 0) memset(cmd, 0, (size_t)len); /* the password */
      free(cmd);
    }
    rconn_url_free(&u);
  }
  reconcile_all(sc);
}

static const tls_callbacks conn_cb = {
    .on_connect = on_conn_connect, .on_read = on_conn_read, .on_close = on_conn_close};

static void node_connect(subc_node *n) {
  sub_cluster *sc = n->sc;
  rconn_url u;
  const char *err = NULL;
  if (rconn_url_parse(rcl_node_at(sc->map, n->idx)->url, &u, &err) < 0) return;
  /* rediss+cluster://: the same trust as every rediss:// connection, and the
   * name checked is the address the slot map announces */
  tls_ctx *ctx = u.tls ? redis_tls_ctx(&err) : NULL;
  if (u.tls && !ctx) {
    rconn_url_free(&u);
    log_node(n, TD_LOG_ERROR, "redis_shard_tls_unusable", err);
    return;
  }
  if (!n->conn && !(n->conn = calloc(1, sizeof(*n->conn)))) {
    rconn_url_free(&u);
    return;
  }
  n->conn->data = n;
  tls_init(sc->loop, n->conn, ctx, &conn_cb);
  int rc = tls_connect(n->conn, u.host, u.port, u.tls, SUBC_CONNECT_TIMEOUT_MS);
  rconn_url_free(&u);
  if (rc < 0) {
    node_lost(n, uv_strerror(rc)); /* no callback comes; the retry timer tries again */
    return;
  }
  n->state = N_CONNECTING;
}

static void on_map(td_rcluster *map, bool changed, void *ud) {
  sub_cluster *sc = ud;
  if (sc->closing) return;
  reconcile_all(sc);
  maybe_ready(sc);
}

/* ---- the API ------------------------------------------------------------------ */

sub_cluster *subc_new(uv_loop_t *loop, const char *url, const sub_callbacks *cb, void *ud, const sub_options *opt) {
  sub_cluster *sc = calloc(1, sizeof(*sc));
  if (!sc || !(sc->bucket = calloc(SUBC_BUCKETS, sizeof(*sc->bucket)))) goto fail;
  sc->loop = loop;
  sc->cb = *cb;
  sc->ud = ud;
  if (opt && opt->syms && opt->quote_prefix) {
    size_t pl = strlen(opt->quote_prefix);
    if (pl == 0 || pl > TD_CHANNEL_PREFIX_MAX) goto fail;
    memcpy(sc->quote_prefix, opt->quote_prefix, pl);
    sc->quote_prefix[pl] = ':';
    sc->quote_prefix_len = pl + 1;
    sc->syms = opt->syms;
  }
  for (int i = 0; i < RCL_NODES_MAX; i++) {
    sc->nodes[i].sc = sc;
    sc->nodes[i].idx = i;
  }
  if (!(sc->map = rcl_new(loop, url, "subscriber", on_map, sc))) goto fail;
  uv_timer_init(loop, &sc->retry);
  sc->retry.data = sc;
  return sc;
fail:
  if (sc) free(sc->bucket);
  free(sc);
  return NULL;
}

int subc_add(sub_cluster *sc, const char *channel) {
  size_t n = strlen(channel);
  if (n == 0 || n > SUB_CHANNEL_MAX) return UV_EINVAL;
  uint32_t h = fnv1a(channel, n);
  subc_chan *c = chan_find(sc, channel, n, h);
  if (!c) {
    if (sc->nchannels >= SUB_MAX_CHANNELS) return UV_ENOBUFS;
    if (!(c = calloc(1, sizeof(*c) + n + 1))) return UV_ENOMEM;
    memcpy(c->name, channel, n);
    c->len = (uint32_t)n;
    c->hash = h;
    c->slot = rcl_slot(channel, n);
    c->node = -1;
    c->id = quote_id(sc, channel, n);
    c->next = sc->bucket[h & (SUBC_BUCKETS - 1)];
    sc->bucket[h & (SUBC_BUCKETS - 1)] = c;
  }
  chan_set(sc, c, c->refs + 1, c->state);
  if (c->refs == 1) {
    reconcile(sc, c);
    flush_all(sc);
  }
  return 0;
}

void subc_remove(sub_cluster *sc, const char *channel) {
  size_t n = strlen(channel);
  subc_chan *c = chan_find(sc, channel, n, fnv1a(channel, n));
  if (!c || c->refs == 0) return;
  chan_set(sc, c, c->refs - 1, c->state);
  if (c->refs == 0) {
    reconcile(sc, c);
    flush_all(sc);
  }
}

uint32_t subc_channel_count(const sub_cluster *sc, const char *channel) {
  size_t n = strlen(channel);
  const subc_chan *c = chan_find(sc, channel, n, fnv1a(channel, n));
  return c ? c->refs : 0;
}

void subc_stats(const sub_cluster *sc, struct sub_stats *out) {
  memset(out, 0, sizeof(*out));
  out->state = rcl_loaded(sc->map) && sc->nmissing == 0 && !sc->gap ? RCONN_READY : RCONN_CONNECTING;
  out->channels = sc->nchannels;
  out->messages = sc->messages;
  out->reconnects = sc->reconnects;
}

static void subc_free(sub_cluster *sc) {
  void (*done)(void *) = sc->done;
  void *dud = sc->done_ud;
  for (uint32_t b = 0; b < SUBC_BUCKETS; b++)
    for (subc_chan *c = sc->bucket[b], *next; c; c = next) {
      next = c->next;
      free(c);
    }
  for (int i = 0; i < RCL_NODES_MAX; i++) {
    free(sc->nodes[i].out);
    free(sc->nodes[i].conn);
  }
  free(sc->bucket);
  free(sc);
  if (done) done(dud);
}

static void closed_one(sub_cluster *sc) {
  if (--sc->closes_pending == 0) subc_free(sc);
}

static void on_handle_closed(uv_handle_t *h) { closed_one(h->data); }
static void on_map_closed(void *ud) { closed_one(ud); }

void subc_close(sub_cluster *sc, void (*done)(void *), void *ud) {
  if (sc->closing) return;
  sc->closing = true;
  sc->done = done;
  sc->done_ud = ud;
  sc->closes_pending = 3; /* the retry timer, the map, and this call */
  uv_close((uv_handle_t *)&sc->retry, on_handle_closed);
  rcl_close(sc->map, on_map_closed, sc);
  for (int i = 0; i < RCL_NODES_MAX; i++) {
    subc_node *n = &sc->nodes[i];
    if (n->state == N_CONNECTING || n->state == N_READY) sc->closes_pending++, node_drop(n, NULL);
    else if (n->state == N_CLOSING) sc->closes_pending++; /* its close callback is due */
  }
  closed_one(sc);
}
