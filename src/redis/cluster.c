/* The slot map of a Redis Cluster; see cluster.h. */
#include "redis/cluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/log.h"

/* ---- URL and slots --------------------------------------------------------- */

bool rcl_is_url(const char *url) {
  return url && (strncasecmp(url, RCL_SCHEME, strlen(RCL_SCHEME)) == 0 ||
                 strncasecmp(url, RCL_TLS_SCHEME, strlen(RCL_TLS_SCHEME)) == 0);
}

bool rcl_is_tls(const char *url) { return url && strncasecmp(url, RCL_TLS_SCHEME, strlen(RCL_TLS_SCHEME)) == 0; }

static void free_list(char **out, size_t n) {
  for (size_t i = 0; i < n; i++) free(out[i]);
}

/* Each seed is checked by the one redis:// parser (rediss:// for
 * rediss+cluster://), with the URL's userinfo in front: the rules (host
 * names, ports, %-escapes) are the same. */
int rcl_url_parse(const char *url, char **out, size_t *n, const char **err) {
  char *urls[RCL_SEEDS_MAX];
  size_t count = 0;
  if (!rcl_is_url(url)) return *err = "redis+cluster URL must start with redis+cluster://", UV_EINVAL;
  if (strlen(url) > RCONN_URL_MAX) return *err = "redis URL too long", UV_EINVAL;
  bool tls = rcl_is_tls(url);
  const char *scheme = tls ? "rediss://" : "redis://";
  const char *p = url + strlen(tls ? RCL_TLS_SCHEME : RCL_SCHEME), *end = p + strcspn(p, "/?#");
  if (*end && strcmp(end, "/") != 0)
    return *err = "redis+cluster:// takes no db, query or fragment (a Cluster has db 0 only)", UV_EINVAL;
  const char *at = NULL;
  for (const char *q = p; q < end; q++)
    if (*q == '@') at = q;
  const char *hosts = at ? at + 1 : p;
  size_t ulen = at ? (size_t)(at - p) + 1 : 0; /* userinfo with its '@' */
  if (hosts == end) return *err = "redis+cluster:// needs host:port[,host:port...]", UV_EINVAL;
  for (const char *h = hosts; h <= end;) {
    const char *comma = memchr(h, ',', (size_t)(end - h));
    const char *e = comma ? comma : end;
    if (count == RCL_SEEDS_MAX) {
      free_list(urls, count);
      return *err = "too many seed nodes in redis+cluster://", UV_EINVAL;
    }
    size_t hl = (size_t)(e - h), len = strlen(scheme) + ulen + hl;
    char *u = malloc(len + 1);
    rconn_url parsed;
    int rc = u ? 0 : UV_ENOMEM;
    if (u) {
      snprintf(u, len + 1, "%s%.*s%.*s", scheme, (int)ulen, p, (int)hl, h);
      rc = hl ? rconn_url_parse(u, &parsed, err) : (*err = "empty seed in redis+cluster://", UV_EINVAL);
      if (rc == 0) rconn_url_free(&parsed);
    }
    if (rc < 0) {
      free(u);
      free_list(urls, count);
      return rc == UV_ENOMEM ? (*err = "out of memory", rc) : UV_EINVAL;
    }
    urls[count++] = u;
    h = e + 1;
  }
  if (out) {
    memcpy(out, urls, count * sizeof(*urls));
    *n = count;
  } else {
    free_list(urls, count);
  }
  return 0;
}

static uint16_t crc16_table[256];

/* CRC16-CCITT (XMODEM), the Cluster's key hash. */
static void crc16_init(void) {
  for (unsigned i = 0; i < 256; i++) {
    uint16_t c = (uint16_t)(i << 8);
    for (int b = 0; b < 8; b++) c = (uint16_t)(c & 0x8000 ? (c << 1) ^ 0x1021 : c << 1);
    crc16_table[i] = c;
  }
}

uint16_t rcl_slot(const char *key, size_t n) {
  if (!crc16_table[1]) crc16_init();
  /* a non-empty {tag}: only the tag is hashed */
  const char *open = memchr(key, '{', n);
  if (open) {
    const char *close = memchr(open + 1, '}', n - (size_t)(open + 1 - key));
    if (close && close > open + 1) {
      key = open + 1;
      n = (size_t)(close - key);
    }
  }
  uint16_t crc = 0;
  for (size_t i = 0; i < n; i++) crc = (uint16_t)((crc << 8) ^ crc16_table[((crc >> 8) ^ (uint8_t)key[i]) & 0xff]);
  return crc & (RCL_SLOTS - 1);
}

/* ---- the map --------------------------------------------------------------- */

typedef enum { RCL_IDLE, RCL_FETCHING, RCL_FETCH_CLOSING, RCL_CLOSING } rcl_state;

struct td_rcluster {
  uv_loop_t *loop;
  const char *name;
  rcl_state state;
  rcl_map_cb cb;
  void *ud;
  char *seeds[RCL_SEEDS_MAX];
  size_t nseeds;
  char *userinfo;          /* "user:password@" of the URL, or "" (secret) */
  const char *scheme;      /* of the node URLs: "rediss://" under rediss+cluster:// */
  rcl_node nodes[RCL_NODES_MAX];
  uint32_t nnodes;
  uint16_t owner[RCL_SLOTS];
  bool loaded;
  bool again;              /* a refresh was asked during a read */
  unsigned next_addr;      /* round robin over nodes then seeds */
  unsigned failures;       /* addresses tried in a row without a map */
  uint64_t maps, last_fetch_ms;
  td_rconn conn;
  uv_timer_t timer;
  void (*done)(void *);
  void *done_ud;
};

static void fetch_start(td_rcluster *cl);
static void on_timer(uv_timer_t *t) { rcl_refresh(t->data); }

static int node_find_or_add(td_rcluster *cl, const char *host, size_t hn, long port) {
  char addr[sizeof(cl->nodes[0].addr)];
  bool v6 = memchr(host, ':', hn) != NULL;
  int len = snprintf(addr, sizeof(addr), v6 ? "[%.*s]:%ld" : "%.*s:%ld", (int)hn, host, port);
  if (len < 0 || (size_t)len >= sizeof(addr) || hn == 0 || port < 1 || port > 65535) return -1;
  for (uint32_t i = 0; i < cl->nnodes; i++)
    if (strcmp(cl->nodes[i].addr, addr) == 0) return (int)i;
  if (cl->nnodes == RCL_NODES_MAX) {
    log_msg(TD_LOG_WARN, "redis_cluster_nodes_full", "more primaries than RCL_NODES_MAX; slots left unmapped");
    return -1;
  }
  size_t ul = strlen(cl->userinfo), n = strlen(cl->scheme) + ul + (size_t)len + 1;
  char *url = malloc(n);
  if (!url) return -1;
  /* rediss://: TLS verified against the address the map announces (an IP
   * SAN for a numeric one), as for any rediss:// URL */
  snprintf(url, n, "%s%s%s", cl->scheme, cl->userinfo, addr);
  rcl_node *node = &cl->nodes[cl->nnodes];
  memcpy(node->addr, addr, (size_t)len + 1);
  node->url = url;
  node->slots = 0;
  return (int)cl->nnodes++;
}

/* "host:port" (the last ':' splits, so a bare IPv6 address works too). */
static int node_from_addr(td_rcluster *cl, const char *s, size_t n) {
  const char *colon = NULL;
  for (size_t i = 0; i < n; i++)
    if (s[i] == ':') colon = s + i;
  if (!colon) return -1;
  long port = strtol(colon + 1, NULL, 10);
  const char *h = s;
  size_t hn = (size_t)(colon - s);
  if (hn >= 2 && h[0] == '[' && h[hn - 1] == ']') h++, hn -= 2;
  return node_find_or_add(cl, h, hn, port);
}

static void set_owner(td_rcluster *cl, uint16_t slot, uint16_t idx) {
  if (cl->owner[slot] != RCL_NONE) cl->nodes[cl->owner[slot]].slots--;
  cl->owner[slot] = idx;
  if (idx != RCL_NONE) cl->nodes[idx].slots++;
}

/* CLUSTER SLOTS: [[start, end, [ip, port, id, ...], replicas...], ...]. An
 * empty ip means "the node you asked". false on a bad shape. */
static bool apply_slots(td_rcluster *cl, const redisReply *r, bool *changed) {
  static uint16_t next[RCL_SLOTS];
  if (!r || r->type != REDIS_REPLY_ARRAY) return false;
  for (size_t s = 0; s < RCL_SLOTS; s++) next[s] = RCL_NONE;
  for (size_t i = 0; i < r->elements; i++) {
    const redisReply *e = r->element[i];
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 || e->element[0]->type != REDIS_REPLY_INTEGER ||
        e->element[1]->type != REDIS_REPLY_INTEGER || e->element[2]->type != REDIS_REPLY_ARRAY ||
        e->element[2]->elements < 2 || e->element[2]->element[0]->type != REDIS_REPLY_STRING ||
        e->element[2]->element[1]->type != REDIS_REPLY_INTEGER)
      return false;
    long long lo = e->element[0]->integer, hi = e->element[1]->integer;
    if (lo < 0 || hi >= RCL_SLOTS || lo > hi) return false;
    const redisReply *ip = e->element[2]->element[0];
    const char *host = ip->len ? ip->str : cl->conn.url.host;
    size_t hn = ip->len ? ip->len : strlen(cl->conn.url.host);
    int idx = node_find_or_add(cl, host, hn, (long)e->element[2]->element[1]->integer);
    for (long long s = lo; s <= hi; s++) next[s] = idx < 0 ? RCL_NONE : (uint16_t)idx;
  }
  *changed = false;
  for (size_t s = 0; s < RCL_SLOTS; s++) {
    if (cl->owner[s] == next[s]) continue;
    *changed = true;
    set_owner(cl, (uint16_t)s, next[s]);
  }
  return true;
}

static void fetch_done(td_rcluster *cl, bool ok) {
  if (cl->state != RCL_FETCHING) return;
  cl->state = RCL_FETCH_CLOSING;
  if (!ok) cl->failures++;
  rconn_close(&cl->conn);
}

static void on_fetch_ready(td_rconn *c, void *ud) {
  td_rcluster *cl = ud;
  const char *argv[] = {"CLUSTER", "SLOTS"};
  if (rconn_command_argv(c, 0, 2, argv, NULL) < 0) fetch_done(cl, false);
}

static void on_fetch_lost(td_rconn *c, void *ud, const char *reason, bool was_ready) { fetch_done(ud, false); }

static void on_fetch_reply(td_rconn *c, void *ud, redisReply *r, uintptr_t tag) {
  td_rcluster *cl = ud;
  bool changed = false, ok = r && r->type != REDIS_REPLY_ERROR && apply_slots(cl, r, &changed);
  if (!ok) {
    td_logline *l = log_begin(TD_LOG_WARN, "redis_cluster_map_failed");
    if (l) {
      log_str(l, "conn", cl->name);
      log_str(l, "node", c->url.masked);
      log_str(l, "error", !r ? "no reply" : r->type == REDIS_REPLY_ERROR ? r->str : "unexpected CLUSTER SLOTS reply");
      log_end(l);
    }
    fetch_done(cl, false);
    return;
  }
  cl->loaded = true;
  cl->maps++;
  cl->failures = 0;
  td_logline *l = log_begin(changed ? TD_LOG_INFO : TD_LOG_DEBUG, "redis_cluster_map");
  if (l) {
    log_str(l, "conn", cl->name);
    log_str(l, "from", c->url.masked);
    log_int(l, "nodes", cl->nnodes);
    log_bool(l, "changed", changed);
    log_end(l);
  }
  fetch_done(cl, true);
  cl->cb(cl, changed, cl->ud);
}

static void rcl_free(td_rcluster *cl) {
  void (*done)(void *) = cl->done;
  void *dud = cl->done_ud;
  free_list(cl->seeds, cl->nseeds);
  for (uint32_t i = 0; i < cl->nnodes; i++) free(cl->nodes[i].url);
  if (cl->userinfo) memset(cl->userinfo, 0, strlen(cl->userinfo));
  free(cl->userinfo);
  free(cl);
  if (done) done(dud);
}

static void on_timer_closed(uv_handle_t *h) { rcl_free(h->data); }

static void on_fetch_closed(td_rconn *c, void *ud) {
  td_rcluster *cl = ud;
  if (cl->state == RCL_CLOSING) {
    uv_close((uv_handle_t *)&cl->timer, on_timer_closed);
    return;
  }
  cl->state = RCL_IDLE;
  /* a failed read moves on at once through the addresses, then waits */
  bool round_done = cl->failures && cl->failures % (cl->nnodes + cl->nseeds) == 0;
  if (cl->failures && !round_done) fetch_start(cl);
  else if (cl->failures || cl->again) uv_timer_start(&cl->timer, on_timer,
                                                     cl->failures ? RCL_RETRY_MS : RCL_REFRESH_MIN_MS, 0);
  cl->again = false;
}

/* The next address to ask: the known primaries first, then the seeds. */
static const char *next_url(td_rcluster *cl) {
  for (unsigned tries = 0; tries < cl->nnodes + cl->nseeds; tries++) {
    unsigned i = cl->next_addr++ % (cl->nnodes + cl->nseeds);
    if (i >= cl->nnodes) return cl->seeds[i - cl->nnodes];
    if (cl->nodes[i].slots) return cl->nodes[i].url;
  }
  return cl->seeds[0];
}

static void fetch_start(td_rcluster *cl) {
  static const rconn_callbacks cb = {on_fetch_ready, on_fetch_lost, on_fetch_reply, on_fetch_closed};
  rconn_options o = {.name = "cluster-map", .connect_timeout_ms = RCL_FETCH_TIMEOUT_MS,
                     .command_timeout_ms = RCL_FETCH_TIMEOUT_MS};
  const char *err = NULL;
  if (rconn_init(&cl->conn, cl->loop, next_url(cl), &cb, cl, &o, &err) < 0) {
    uv_timer_start(&cl->timer, on_timer, RCL_RETRY_MS, 0);
    return;
  }
  cl->state = RCL_FETCHING;
  cl->last_fetch_ms = uv_now(cl->loop);
  rconn_start(&cl->conn);
}

void rcl_refresh(td_rcluster *cl) {
  if (cl->state == RCL_CLOSING) return;
  if (cl->state != RCL_IDLE) {
    cl->again = true;
    return;
  }
  uint64_t now = uv_now(cl->loop);
  if (cl->last_fetch_ms && now - cl->last_fetch_ms < RCL_REFRESH_MIN_MS) {
    if (!uv_is_active((uv_handle_t *)&cl->timer))
      uv_timer_start(&cl->timer, on_timer, RCL_REFRESH_MIN_MS - (now - cl->last_fetch_ms), 0);
    return;
  }
  uv_timer_stop(&cl->timer);
  fetch_start(cl);
}

/* "<slot> <host:port>", what follows the MOVED/ASK word. */
static int redirect_parse(td_rcluster *cl, const char *text, size_t n, long *slot) {
  const char *sp = memchr(text, ' ', n);
  if (!sp || sp == text) return -1;
  char *end;
  *slot = strtol(text, &end, 10);
  if (end != sp || *slot < 0 || *slot >= RCL_SLOTS) return -1;
  return node_from_addr(cl, sp + 1, n - (size_t)(sp + 1 - text));
}

int rcl_moved(td_rcluster *cl, const char *text, size_t n) {
  long slot;
  int idx = redirect_parse(cl, text, n, &slot);
  if (idx >= 0) set_owner(cl, (uint16_t)slot, (uint16_t)idx);
  rcl_refresh(cl);
  return idx;
}

int rcl_ask_node(td_rcluster *cl, const char *text, size_t n) {
  long slot;
  return redirect_parse(cl, text, n, &slot);
}

td_rcluster *rcl_new(uv_loop_t *loop, const char *url, const char *name, rcl_map_cb cb, void *ud) {
  const char *err = NULL;
  td_rcluster *cl = calloc(1, sizeof(*cl));
  if (!cl) return NULL;
  if (rcl_url_parse(url, cl->seeds, &cl->nseeds, &err) < 0) {
    td_logline *l = log_begin(TD_LOG_ERROR, "redis_url_invalid");
    if (l) {
      log_str(l, "error", err);
      log_end(l);
    }
    free(cl);
    return NULL;
  }
  /* the userinfo as the seeds carry it: "redis://" + userinfo + host */
  cl->scheme = rcl_is_tls(url) ? "rediss://" : "redis://";
  const char *s = cl->seeds[0] + strlen(cl->scheme), *at = strrchr(s, '@');
  cl->userinfo = strndup(s, at ? (size_t)(at - s) + 1 : 0);
  if (!cl->userinfo) {
    rcl_free(cl);
    return NULL;
  }
  cl->loop = loop;
  cl->name = name;
  cl->cb = cb;
  cl->ud = ud;
  for (size_t i = 0; i < RCL_SLOTS; i++) cl->owner[i] = RCL_NONE;
  uv_timer_init(loop, &cl->timer);
  cl->timer.data = cl;
  cl->next_addr = 0;
  fetch_start(cl);
  return cl;
}

bool rcl_loaded(const td_rcluster *cl) { return cl->loaded; }
int rcl_owner(const td_rcluster *cl, uint16_t slot) {
  return cl->owner[slot & (RCL_SLOTS - 1)] == RCL_NONE ? -1 : cl->owner[slot & (RCL_SLOTS - 1)];
}
const rcl_node *rcl_node_at(const td_rcluster *cl, int idx) {
  return idx >= 0 && (uint32_t)idx < cl->nnodes ? &cl->nodes[idx] : NULL;
}
uint32_t rcl_node_count(const td_rcluster *cl) { return cl->nnodes; }
uint64_t rcl_maps(const td_rcluster *cl) { return cl->maps; }

void rcl_close(td_rcluster *cl, void (*done)(void *), void *ud) {
  cl->done = done;
  cl->done_ud = ud;
  rcl_state prev = cl->state;
  cl->state = RCL_CLOSING;
  uv_timer_stop(&cl->timer);
  if (prev == RCL_FETCHING) rconn_close(&cl->conn);
  else if (prev == RCL_IDLE) uv_close((uv_handle_t *)&cl->timer, on_timer_closed);
  /* RCL_FETCH_CLOSING: on_fetch_closed sees CLOSING and finishes */
}
