/* The shared Sentinel target of redis+sentinel:// connections; see
 * sentinel.h. The Sentinels are reached with td_rconn itself (plain
 * redis:// URLs, rediss:// for rediss+sentinel://), two connections each: one for queries, one subscribed to
 * +switch-master (a subscribed RESP2 connection can send nothing else). */
#include "redis/sentinel.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/log.h"
#include "base/url.h"

/* ---- URL ----------------------------------------------------------------- */

static bool has_scheme(const char *url, const char *scheme) {
  return strncasecmp(url, scheme, strlen(scheme)) == 0;
}

bool sentinel_url_is(const char *url) {
  return url && (has_scheme(url, SENTINEL_SCHEME) || has_scheme(url, SENTINEL_TLS_SCHEME));
}

static int url_fail(sentinel_url *u, const char **err, const char *why, int rc) {
  sentinel_url_free(u);
  if (err) *err = why;
  return rc;
}

static bool name_char_ok(char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
         ch == '_' || ch == '.';
}

/* One "host[:port]" of the list, checked by the one URL splitter. */
static int parse_host(sentinel_host *h, const char *p, size_t n, const char **why) {
  char tmp[RCONN_URL_MAX + 16];
  url_parts parts;
  if (n == 0) {
    *why = "empty Sentinel address in the list";
    return -1;
  }
  snprintf(tmp, sizeof(tmp), "x://%.*s", (int)n, p);
  if (url_split(tmp, &parts, why) < 0) return -1;
  if (parts.userinfo || parts.rest[0]) {
    *why = "bad Sentinel address";
    return -1;
  }
  if (!(h->host = strndup(parts.host, parts.host_len))) {
    *why = "out of memory";
    return -1;
  }
  h->port = parts.port ? parts.port : SENTINEL_DEFAULT_PORT;
  return 0;
}

/* The userinfo and db are those of a redis:// URL: rconn_url_parse reads
 * them from "redis://<userinfo>@x/<db>", so both forms decode alike; with
 * "rediss://" the primary's rconn_url says TLS. */
static int parse_primary_part(sentinel_url *u, const char *userinfo, size_t ui_len, const char *db,
                              const char **why) {
  char tmp[RCONN_URL_MAX + 16];
  snprintf(tmp, sizeof(tmp), "%s://%.*s%sx%s%s", u->tls ? "rediss" : "redis", (int)ui_len, userinfo ? userinfo : "", userinfo ? "@" : "",
           db ? "/" : "", db ? db : "");
  int rc = rconn_url_parse(tmp, &u->primary, why);
  memset(tmp, 0, sizeof(tmp)); /* it held the password */
  if (rc < 0) return rc;
  free(u->primary.host);
  free(u->primary.masked);
  u->primary.host = u->primary.masked = NULL;
  return 0;
}

static char *mask(const char *url, const char *userinfo, size_t ui_len) {
  const char *colon = userinfo ? memchr(userinfo, ':', ui_len) : NULL;
  if (!colon) return strdup(url);
  size_t n = strlen(url), pre = (size_t)(colon + 1 - url), pw = ui_len - (size_t)(colon + 1 - userinfo);
  char *m = malloc(n - pw + 4);
  if (!m) return NULL;
  memcpy(m, url, pre);
  memcpy(m + pre, "***", 3);
  memcpy(m + pre + 3, colon + 1 + pw, n - pre - pw + 1);
  return m;
}

int sentinel_url_parse(const char *url, sentinel_url *u, const char **err) {
  const char *why = NULL;
  memset(u, 0, sizeof(*u));
  if (!sentinel_url_is(url)) return url_fail(u, err, "not a redis+sentinel:// URL", UV_EINVAL);
  u->tls = has_scheme(url, SENTINEL_TLS_SCHEME);
  if (strlen(url) > RCONN_URL_MAX) return url_fail(u, err, "redis URL too long", UV_EINVAL);
  if (strpbrk(url, "?#")) return url_fail(u, err, "query and fragment are not supported", UV_EINVAL);
  const char *auth = url + strlen(u->tls ? SENTINEL_TLS_SCHEME : SENTINEL_SCHEME), *slash = strchr(auth, '/');
  if (!slash) return url_fail(u, err, "missing /<master name> after the Sentinels", UV_EINVAL);
  /* The last '@' ends the userinfo, so a raw '@' in a password still works. */
  const char *at = NULL;
  for (const char *p = auth; p < slash; p++)
    if (*p == '@') at = p;
  for (const char *p = at ? at + 1 : auth; p <= slash;) {
    const char *end = memchr(p, ',', (size_t)(slash - p));
    if (!end) end = slash;
    if (u->nhosts == SENTINEL_HOSTS_MAX) return url_fail(u, err, "too many Sentinels in the URL", UV_EINVAL);
    if (parse_host(&u->hosts[u->nhosts], p, (size_t)(end - p), &why) < 0) return url_fail(u, err, why, UV_EINVAL);
    u->nhosts++;
    p = end + 1;
  }
  const char *name = slash + 1, *name_end = name + strcspn(name, "/");
  size_t name_len = (size_t)(name_end - name);
  if (name_len == 0 || name_len > SENTINEL_NAME_MAX)
    return url_fail(u, err, "missing or too long master name", UV_EINVAL);
  for (const char *p = name; p < name_end; p++)
    if (!name_char_ok(*p)) return url_fail(u, err, "bad character in master name", UV_EINVAL);
  if (!(u->master = strndup(name, name_len))) return url_fail(u, err, "out of memory", UV_ENOMEM);
  const char *db = *name_end ? name_end + 1 : NULL;
  int rc = parse_primary_part(u, at ? auth : NULL, at ? (size_t)(at - auth) : 0, db, &why);
  if (rc < 0) return url_fail(u, err, why, rc);
  if (!(u->primary.masked = mask(url, at ? auth : NULL, at ? (size_t)(at - auth) : 0)))
    return url_fail(u, err, "out of memory", UV_ENOMEM);
  return 0;
}

void sentinel_url_free(sentinel_url *u) {
  for (int i = 0; i < u->nhosts; i++) free(u->hosts[i].host);
  free(u->master);
  rconn_url_free(&u->primary);
  memset(u, 0, sizeof(*u));
}

/* ---- the target ---------------------------------------------------------- */

/* One Sentinel: a query connection and a subscribed one. */
typedef struct sentinel_node {
  td_sentinel *s;
  td_rconn q, ev;
  bool q_open, ev_open; /* rconn_init succeeded: it must be closed */
  bool subscribed;
  char label[80];       /* "host:port" for logs */
} sentinel_node;

struct td_sentinel {
  td_sentinel *next; /* the registry */
  uv_loop_t *loop;
  char *key;         /* the URL as given */
  sentinel_url url;
  sentinel_node nodes[SENTINEL_HOSTS_MAX];
  td_rconn **conns;  /* attached connections */
  size_t nconns, cap;
  char *primary_host;
  int primary_port;
  bool querying, again, moving, closing, failing;
  int qi;            /* the Sentinel asked in this round */
  uintptr_t qid;     /* the query in flight (tags qid * 2 and + 1); older answers are ignored */
  uint64_t floor;    /* the newest configuration epoch seen */
  /* This Sentinel's address answer, waiting for its SENTINEL MASTER. */
  char ans_host[SENTINEL_ADDR_MAX + 1];
  int ans_port;
  /* The newest answer of this round passed over as older than `floor`. */
  bool have_stale;
  char stale_host[SENTINEL_ADDR_MAX + 1];
  int stale_port;
  uint64_t stale_epoch;
  int stale_rounds;  /* rounds in a row that had only such answers */
  uint64_t last_round_ms;
  uv_timer_t qtimer; /* this Sentinel's time to answer */
  uv_timer_t rtimer; /* the next round */
  int closes_pending;
  sentinel_stats st;
};

/* Every target of the process (one thread, one loop per target). */
static td_sentinel *registry;

static void start_round(td_sentinel *s);
static void ask_next(td_sentinel *s);
static void on_rtimer(uv_timer_t *t) { start_round(t->data); }
static void on_qtimer(uv_timer_t *t);

td_sentinel *sentinel_find(uv_loop_t *loop, const char *url) {
  for (td_sentinel *s = registry; s; s = s->next)
    if (s->loop == loop && !s->closing && !strcmp(s->key, url)) return s;
  return NULL;
}

bool sentinel_primary(const td_sentinel *s, const char **host, int *port) {
  if (!s->primary_host) return false;
  *host = s->primary_host;
  *port = s->primary_port;
  return true;
}

static void addr_label(char *out, size_t n, const char *host, int port) {
  snprintf(out, n, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
}

/* A round is wanted: now, or once SENTINEL_RECHECK_MIN_MS has passed since
 * the last one, or after the one in flight. */
static void want_round(td_sentinel *s) {
  if (s->closing || s->moving) return;
  if (s->querying) {
    s->again = true;
    return;
  }
  uint64_t now = uv_now(s->loop), next = s->last_round_ms + SENTINEL_RECHECK_MIN_MS;
  if (s->last_round_ms && now < next) {
    if (!uv_is_active((uv_handle_t *)&s->rtimer)) uv_timer_start(&s->rtimer, on_rtimer, next - now, 0);
    return;
  }
  start_round(s);
}

static bool set_primary(td_sentinel *s, const char *host, size_t host_len, int port, const char *source);

/* A whole round brought only older configurations: after
 * SENTINEL_STALE_ROUNDS_MAX of them the floor goes (the Sentinels were
 * reset or replaced) and the newest of those answers is taken. */
static bool give_up_floor(td_sentinel *s) {
  if (!s->have_stale || ++s->stale_rounds < SENTINEL_STALE_ROUNDS_MAX) return false;
  td_logline *l = log_begin(TD_LOG_WARN, "sentinel_epoch_reset");
  if (l) {
    log_str(l, "master", s->url.master);
    log_int(l, "from", (int64_t)s->floor);
    log_int(l, "to", (int64_t)s->stale_epoch);
    log_end(l);
  }
  s->floor = s->stale_epoch;
  set_primary(s, s->stale_host, strlen(s->stale_host), s->stale_port, "query");
  return true;
}

static void round_done(td_sentinel *s, bool answered) {
  uv_timer_stop(&s->qtimer);
  s->querying = false;
  if (!answered) answered = give_up_floor(s);
  else s->stale_rounds = 0;
  if (answered) {
    s->failing = false;
    if (s->again) want_round(s);
    return;
  }
  if (!s->failing) { /* one line per streak, not one per round */
    td_logline *l = log_begin(TD_LOG_WARN, "sentinel_no_answer");
    if (l) {
      log_str(l, "master", s->url.master);
      log_int(l, "sentinels", s->url.nhosts);
      log_int(l, "retry_in_ms", SENTINEL_RETRY_MS);
      log_end(l);
    }
  }
  s->failing = true;
  uv_timer_start(&s->rtimer, on_rtimer, SENTINEL_RETRY_MS, 0);
}

static void start_round(td_sentinel *s) {
  uv_timer_stop(&s->rtimer);
  if (s->closing || s->querying) return;
  s->querying = true;
  s->again = false;
  s->last_round_ms = uv_now(s->loop);
  s->qi = 0;
  s->have_stale = false;
  ask_next(s);
}

static void query_failed(td_sentinel *s, const char *why) {
  sentinel_node *n = &s->nodes[s->qi];
  s->st.query_failures++;
  td_logline *l = log_begin(TD_LOG_WARN, "sentinel_query_failed");
  if (l) {
    log_str(l, "sentinel", n->label);
    log_str(l, "master", s->url.master);
    log_str(l, "reason", why);
    log_end(l);
  }
  s->qi++;
  ask_next(s);
}

/* Asks the next Sentinel of this round whose connection is READY. */
static void ask_next(td_sentinel *s) {
  for (; s->qi < s->url.nhosts; s->qi++) {
    sentinel_node *n = &s->nodes[s->qi];
    if (!n->q_open || !rconn_ready(&n->q)) continue;
    const char *addr[] = {"SENTINEL", "get-master-addr-by-name", s->url.master};
    const char *master[] = {"SENTINEL", "MASTER", s->url.master};
    s->qid++;
    s->ans_host[0] = 0;
    if (rconn_command_argv(&n->q, s->qid * 2, 3, addr, NULL) != 0 ||
        rconn_command_argv(&n->q, s->qid * 2 + 1, 3, master, NULL) != 0)
      continue; /* a lone first answer carries an old qid: ignored */
    s->st.queries++;
    uv_timer_start(&s->qtimer, on_qtimer, SENTINEL_QUERY_TIMEOUT_MS, 0);
    return;
  }
  round_done(s, false);
}

static void on_qtimer(uv_timer_t *t) {
  td_sentinel *s = t->data;
  if (s->querying) query_failed(s, "no answer in time");
}

/* Every attached connection not on the new address goes there now. True
 * when the primary changed. */
static bool set_primary(td_sentinel *s, const char *host, size_t host_len, int port, const char *source) {
  if (s->primary_host && strlen(s->primary_host) == host_len && !memcmp(s->primary_host, host, host_len) &&
      s->primary_port == port)
    return false;
  char *h = strndup(host, host_len);
  if (!h) return false;
  char from[80] = "", to[80];
  if (s->primary_host) addr_label(from, sizeof(from), s->primary_host, s->primary_port);
  addr_label(to, sizeof(to), h, port);
  td_logline *l = log_begin(TD_LOG_INFO, s->primary_host ? "sentinel_primary_changed" : "sentinel_primary");
  if (l) {
    log_str(l, "master", s->url.master);
    if (*from) log_str(l, "from", from);
    log_str(l, "to", to);
    log_str(l, "source", source);
    log_end(l);
  }
  if (s->primary_host) s->st.switches++;
  free(s->primary_host);
  s->primary_host = h;
  s->primary_port = port;
  /* Their drops would ask for rounds that can only confirm this answer. */
  s->moving = true;
  for (size_t i = 0; i < s->nconns; i++) rconn_retarget(s->conns[i], h, port);
  s->moving = false;
  return true;
}

static bool str_reply(const redisReply *r) { return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS); }

/* An address as a Sentinel announces it (an IP, or a name with
 * resolve-hostnames), checked by the one URL splitter: "[" "]" around an
 * IPv6 literal, which Sentinel sends bare. */
static bool announced_addr(const char *h, size_t hl, const char *p, size_t pl, int *port) {
  char tmp[SENTINEL_ADDR_MAX + 16];
  url_parts parts;
  const char *why;
  bool v6 = memchr(h, ':', hl) != NULL;
  if (hl == 0 || hl > SENTINEL_ADDR_MAX || pl > URL_PORT_DIGITS) return false;
  snprintf(tmp, sizeof(tmp), v6 ? "x://[%.*s]:%.*s" : "x://%.*s:%.*s", (int)hl, h, (int)pl, p);
  if (url_split(tmp, &parts, &why) < 0 || parts.userinfo || parts.rest[0] || !parts.port) return false;
  *port = parts.port;
  return true;
}

/* "config-epoch" of a SENTINEL MASTER reply (field, value pairs). */
static bool config_epoch(const redisReply *r, uint64_t *epoch) {
  if (r->type != REDIS_REPLY_ARRAY) return false;
  for (size_t i = 0; i + 1 < r->elements; i += 2) {
    const redisReply *k = r->element[i], *v = r->element[i + 1];
    if (!str_reply(k) || strcmp(k->str, "config-epoch") || !str_reply(v)) continue;
    char *end;
    unsigned long long e = strtoull(v->str, &end, 10);
    if (end == v->str || *end) return false;
    *epoch = e;
    return true;
  }
  return false;
}

/* The address answer, kept until the same Sentinel's epoch comes. */
static void on_addr_reply(td_sentinel *s, const redisReply *r) {
  int port;
  if (!r) {
    query_failed(s, "connection lost");
  } else if (r->type == REDIS_REPLY_NIL) {
    query_failed(s, "master name unknown to this Sentinel");
  } else if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || !str_reply(r->element[0]) ||
             !str_reply(r->element[1]) ||
             !announced_addr(r->element[0]->str, r->element[0]->len, r->element[1]->str, r->element[1]->len, &port)) {
    query_failed(s, r->type == REDIS_REPLY_ERROR ? "error reply" : "unexpected reply");
  } else {
    memcpy(s->ans_host, r->element[0]->str, r->element[0]->len);
    s->ans_host[r->element[0]->len] = 0;
    s->ans_port = port;
  }
}

/* The configuration epoch: the answer is taken, or passed over as older
 * than one already seen (a Sentinel that has not heard of a failover). */
static void on_epoch_reply(td_sentinel *s, const redisReply *r) {
  uint64_t epoch;
  if (!s->ans_host[0]) return; /* the address answer failed: already handled */
  if (!r || !config_epoch(r, &epoch)) {
    query_failed(s, !r ? "connection lost" : "no config-epoch in SENTINEL MASTER");
    return;
  }
  if (epoch < s->floor) {
    s->st.stale_configs++;
    if (!s->have_stale || epoch > s->stale_epoch) {
      s->have_stale = true;
      memcpy(s->stale_host, s->ans_host, sizeof(s->stale_host));
      s->stale_port = s->ans_port;
      s->stale_epoch = epoch;
    }
    query_failed(s, "older configuration epoch than one already seen");
    return;
  }
  s->floor = epoch;
  set_primary(s, s->ans_host, strlen(s->ans_host), s->ans_port, "query");
  round_done(s, true);
}

static void on_q_reply(td_rconn *c, void *ud, redisReply *r, uintptr_t tag) {
  (void)c;
  sentinel_node *n = ud;
  td_sentinel *s = n->s;
  if (s->closing || !s->querying || tag / 2 != s->qid || &s->nodes[s->qi] != n) return;
  if (tag % 2 == 0) {
    on_addr_reply(s, r);
    return;
  }
  uv_timer_stop(&s->qtimer);
  on_epoch_reply(s, r);
}

static void on_q_ready(td_rconn *c, void *ud) {
  (void)c;
  sentinel_node *n = ud;
  if (!n->s->primary_host || n->s->failing) want_round(n->s);
}

static void on_ev_ready(td_rconn *c, void *ud) {
  sentinel_node *n = ud;
  static const char cmd[] = "*2\r\n$9\r\nSUBSCRIBE\r\n$14\r\n+switch-master\r\n";
  if (rconn_command_untracked(c, 0, cmd, sizeof(cmd) - 1) != 0) rconn_reconnect(c, "subscribe failed");
  /* A switch may have happened while this connection was away. */
  want_round(n->s);
}

static void on_ev_lost(td_rconn *c, void *ud, const char *reason, bool was_ready) {
  (void)c, (void)reason, (void)was_ready;
  sentinel_node *n = ud;
  n->subscribed = false;
}

/* "+switch-master" carries "<master> <old ip> <old port> <new ip> <new port>". */
static void on_switch(td_sentinel *s, const char *p, size_t n) {
  const char *f[5];
  size_t fl[5];
  int k = 0;
  for (size_t i = 0; i < n && k < 5;) {
    size_t j = i;
    while (j < n && p[j] != ' ') j++;
    f[k] = p + i;
    fl[k++] = j - i;
    i = j + 1;
  }
  int port;
  if (k != 5 || fl[0] != strlen(s->url.master) || memcmp(f[0], s->url.master, fl[0])) return;
  if (!announced_addr(f[3], fl[3], f[4], fl[4], &port)) return;
  s->st.switch_events++;
  /* The new configuration's epoch is above every one seen: answers of
   * Sentinels that have not heard of it yet are passed over. */
  if (set_primary(s, f[3], fl[3], port, "+switch-master")) s->floor++;
}

static void on_ev_reply(td_rconn *c, void *ud, redisReply *r, uintptr_t tag) {
  (void)c, (void)tag;
  sentinel_node *n = ud;
  if (n->s->closing || !r || r->type != REDIS_REPLY_ARRAY || r->elements != 3 || !str_reply(r->element[0]))
    return;
  if (!strcmp(r->element[0]->str, "subscribe")) {
    n->subscribed = true;
  } else if (!strcmp(r->element[0]->str, "message") && str_reply(r->element[2])) {
    on_switch(n->s, r->element[2]->str, r->element[2]->len);
  }
}

static void free_target(td_sentinel *s) {
  sentinel_url_free(&s->url);
  free(s->primary_host);
  free(s->conns);
  free(s->key);
  free(s);
}

static void closed_one(td_sentinel *s) {
  if (--s->closes_pending == 0) free_target(s);
}

static void on_node_closed(td_rconn *c, void *ud) {
  (void)c;
  closed_one(((sentinel_node *)ud)->s);
}

static void on_timer_closed(uv_handle_t *h) { closed_one(h->data); }

/* Sentinel's own credentials, process-wide like the URL registry. */
static const char *auth_user, *auth_password;

void sentinel_set_auth(const char *user, const char *password) {
  auth_user = user;
  auth_password = password;
}

static void open_node(td_sentinel *s, int i) {
  static const rconn_callbacks qcb = {on_q_ready, NULL, on_q_reply, on_node_closed};
  static const rconn_callbacks evcb = {on_ev_ready, on_ev_lost, on_ev_reply, on_node_closed};
  sentinel_node *n = &s->nodes[i];
  const sentinel_host *h = &s->url.hosts[i];
  char url[96];
  n->s = s;
  addr_label(n->label, sizeof(n->label), h->host, h->port);
  snprintf(url, sizeof(url), "%s://%s", s->url.tls ? "rediss" : "redis", n->label);
  rconn_options o = {.name = "sentinel",
                     .connect_timeout_ms = SENTINEL_QUERY_TIMEOUT_MS,
                     .command_timeout_ms = SENTINEL_QUERY_TIMEOUT_MS,
                     .backoff_max_ms = SENTINEL_BACKOFF_MAX_MS,
                     .user = auth_user,
                     .password = auth_password};
  const char *err;
  n->q_open = rconn_init(&n->q, s->loop, url, &qcb, n, &o, &err) == 0;
  o.name = "sentinel-events";
  n->ev_open = rconn_init(&n->ev, s->loop, url, &evcb, n, &o, &err) == 0;
  if (n->q_open) rconn_start(&n->q);
  if (n->ev_open) rconn_start(&n->ev);
}

static td_sentinel *target_new(uv_loop_t *loop, const char *url, const char **err) {
  td_sentinel *s = calloc(1, sizeof(*s));
  if (!s || !(s->key = strdup(url))) {
    free(s);
    *err = "out of memory";
    return NULL;
  }
  if (sentinel_url_parse(url, &s->url, err) < 0) {
    free(s->key);
    free(s);
    return NULL;
  }
  s->loop = loop;
  s->st.master = s->url.master;
  s->st.url = s->url.primary.masked;
  uv_timer_init(loop, &s->qtimer);
  uv_timer_init(loop, &s->rtimer);
  s->qtimer.data = s->rtimer.data = s;
  for (int i = 0; i < s->url.nhosts; i++) open_node(s, i);
  s->next = registry;
  registry = s;
  return s;
}

static void target_close(td_sentinel *s);

td_sentinel *sentinel_attach(uv_loop_t *loop, const char *url, td_rconn *c, rconn_url *out, const char **err) {
  td_sentinel *s = sentinel_find(loop, url);
  bool made = !s;
  if (made && !(s = target_new(loop, url, err))) return NULL;
  memset(out, 0, sizeof(*out));
  if (s->nconns == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 8;
    td_rconn **a = realloc(s->conns, cap * sizeof(*a));
    if (!a) goto oom;
    s->conns = a;
    s->cap = cap;
  }
  const rconn_url *p = &s->url.primary;
  out->db = p->db;
  out->tls = p->tls;
  if (!(out->masked = strdup(p->masked)) || (p->user && !(out->user = strdup(p->user))) ||
      (p->password && !(out->password = strdup(p->password))))
    goto oom;
  s->conns[s->nconns++] = c;
  return s;
oom:
  rconn_url_free(out);
  *err = "out of memory";
  if (made) target_close(s);
  return NULL;
}

void sentinel_detach(td_sentinel *s, td_rconn *c) {
  for (size_t i = 0; i < s->nconns; i++)
    if (s->conns[i] == c) {
      s->conns[i] = s->conns[--s->nconns];
      break;
    }
  if (s->nconns == 0) target_close(s);
}

/* Out of the registry at once; freed after its handles' close callbacks. */
static void target_close(td_sentinel *s) {
  if (s->closing) return;
  s->closing = true;
  for (td_sentinel **p = &registry; *p; p = &(*p)->next)
    if (*p == s) {
      *p = s->next;
      break;
    }
  s->closes_pending = 2;
  for (int i = 0; i < s->url.nhosts; i++) {
    sentinel_node *n = &s->nodes[i];
    s->closes_pending += n->q_open + n->ev_open;
    if (n->q_open) rconn_close(&n->q);
    if (n->ev_open) rconn_close(&n->ev);
  }
  uv_close((uv_handle_t *)&s->qtimer, on_timer_closed);
  uv_close((uv_handle_t *)&s->rtimer, on_timer_closed);
}

void sentinel_recheck(td_sentinel *s) { want_round(s); }

void sentinel_stale_answer(td_sentinel *s) {
  s->st.stale_answers++;
  want_round(s);
}

void sentinel_get_stats(const td_sentinel *s, sentinel_stats *out) {
  *out = s->st;
  out->config_epoch = s->floor;
  out->primary[0] = 0;
  if (s->primary_host) addr_label(out->primary, sizeof(out->primary), s->primary_host, s->primary_port);
  out->nhosts = s->url.nhosts;
  out->ready = out->subscribed = 0;
  for (int i = 0; i < s->url.nhosts; i++) {
    out->ready += s->nodes[i].q_open && rconn_ready(&s->nodes[i].q);
    out->subscribed += s->nodes[i].subscribed;
  }
}
