/* One self-healing Redis connection; see redis_conn.h for the state machine.
 *
 * hiredis 0.14 rules this file lives by:
 *  - the context is freed by hiredis right after the connect-failure or the
 *    disconnect callback, and by redisAsyncFree() (synchronously when not in
 *    a reply callback, else once that callback returns);
 *  - the disconnect callback fires only for a context that was connected;
 *  - freeing inside the connect callback is a use-after-free in hiredis,
 *    so a drop decided there is deferred to a zero-delay timer. */
#include "redis/redis_conn.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "base/log.h"
#include "redis_uv.h"
#include <hiredis/sds.h>
#include "base/td_limits.h"
#include "base/rng.h"
#include "base/url.h"
#include "redis/redis_tls.h"
#include "redis/sentinel.h"

/* Tags are shifted left to carry these two flags through hiredis's privdata. */
#define RCONN_TAG_TRACKED  1u
#define RCONN_TAG_INTERNAL 2u
enum { RCONN_INTERNAL_AUTH = 1, RCONN_INTERNAL_SELECT = 2, RCONN_INTERNAL_PING = 3, RCONN_INTERNAL_ROLE = 4 };

/* ---- URL ----------------------------------------------------------------- */

static const char *const state_names[] = {
    "idle", "resolving", "connecting", "authenticating", "selecting",
    "pinging", "ready", "backoff", "closing", "closed"};

const char *rconn_state_name(rconn_state s) {
  return (unsigned)s < sizeof(state_names) / sizeof(*state_names) ? state_names[s] : "?";
}

/* A %-decoded copy of p[0..n), NULL on a bad escape, %00 or OOM. */
static char *pct_decode(const char *p, size_t n) {
  char *out = malloc(n + 1);
  if (out && url_decode(p, n, out, n + 1, URL_DECODE_STRICT) < 0) {
    free(out);
    return NULL;
  }
  return out;
}

static int parse_uint(const char *p, size_t n, long max, long *out) {
  long v = 0;
  if (n == 0 || n > 10) return -1;
  for (size_t i = 0; i < n; i++) {
    if (p[i] < '0' || p[i] > '9') return -1;
    v = v * 10 + (p[i] - '0');
  }
  if (v > max) return -1;
  *out = v;
  return 0;
}

static bool has_prefix_ci(const char *s, const char *prefix) {
  return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

static int url_fail(rconn_url *u, const char **err, const char *why, int rc) {
  rconn_url_free(u);
  if (err) *err = why;
  return rc;
}

/* userinfo is "user:password" or ":password", both %-decodable. */
static int parse_userinfo(rconn_url *u, const char *p, size_t n, const char **why) {
  const char *colon = memchr(p, ':', n);
  if (!colon) {
    *why = "userinfo must be user:password or :password";
    return -1;
  }
  size_t ulen = (size_t)(colon - p);
  if (ulen > 0 && !(u->user = pct_decode(p, ulen))) {
    *why = "bad %-escape in user name";
    return -1;
  }
  if (!(u->password = pct_decode(colon + 1, n - ulen - 1)) || !*u->password) {
    *why = "bad or empty password";
    return -1;
  }
  return 0;
}

/* The URL with the password span replaced by "***", for logs. */
static char *mask_url(const char *url, const char *pw, size_t pwlen) {
  size_t n = strlen(url);
  char *m = malloc(n + 4);
  if (!m) return NULL;
  if (!pw) return memcpy(m, url, n + 1);
  size_t pre = (size_t)(pw - url);
  memcpy(m, url, pre);
  memcpy(m + pre, "***", 3);
  memcpy(m + pre + 3, pw + pwlen, n - pre - pwlen + 1);
  return m;
}

static int parse_unix(rconn_url *u, const char *url, const char **err) {
  const char *path = url + strlen("unix://");
  if (*path != '/') return url_fail(u, err, "unix:// needs an absolute path: unix:///path", UV_EINVAL);
  if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
    return url_fail(u, err, "unix socket path too long", UV_EINVAL);
  if (strpbrk(path, "?#")) return url_fail(u, err, "unix:// takes no query or fragment", UV_EINVAL);
  u->is_unix = true;
  if (!(u->path = strdup(path)) || !(u->masked = strdup(url)))
    return url_fail(u, err, "out of memory", UV_ENOMEM);
  return 0;
}

int rconn_url_parse(const char *url, rconn_url *out, const char **err) {
  rconn_url *u = out;
  const char *why = NULL;
  memset(u, 0, sizeof(*u));
  if (!url || !*url) return url_fail(u, err, "empty redis URL", UV_EINVAL);
  if (strlen(url) > RCONN_URL_MAX) return url_fail(u, err, "redis URL too long", UV_EINVAL);
  if (has_prefix_ci(url, "unix://")) return parse_unix(u, url, err);
  u->tls = has_prefix_ci(url, "rediss://");
  if (!u->tls && !has_prefix_ci(url, "redis://"))
    return url_fail(u, err, "redis URL must start with redis://, rediss:// or unix://", UV_EINVAL);

  url_parts parts;
  if (url_split(url, &parts, &why) < 0) return url_fail(u, err, why, UV_EINVAL);
  if (strpbrk(parts.rest, "?#")) return url_fail(u, err, "query and fragment are not supported", UV_EINVAL);
  if (parts.userinfo && parse_userinfo(u, parts.userinfo, parts.userinfo_len, &why) < 0)
    return url_fail(u, err, why, UV_EINVAL);
  if (!(u->host = strndup(parts.host, parts.host_len))) return url_fail(u, err, "out of memory", UV_ENOMEM);
  u->port = parts.port ? parts.port : RCONN_DEFAULT_PORT;
  if (parts.rest[0] == '/' && parts.rest[1]) {
    long db;
    if (parse_uint(parts.rest + 1, strlen(parts.rest + 1), RCONN_DB_MAX, &db) < 0)
      return url_fail(u, err, "bad db number after /", UV_EINVAL);
    u->db = (int)db;
  }
  const char *pw = NULL;
  size_t pwlen = 0;
  if (parts.userinfo) {
    pw = memchr(parts.userinfo, ':', parts.userinfo_len) + 1;
    pwlen = parts.userinfo_len - (size_t)(pw - parts.userinfo);
  }
  if (!(u->masked = mask_url(url, pw, pwlen))) return url_fail(u, err, "out of memory", UV_ENOMEM);
  return 0;
}

/* A password is cleared before its memory goes back to the allocator. */
static void free_secret(char *s) {
  if (!s) return;
  memset(s, 0, strlen(s));
  free(s);
}

void rconn_url_free(rconn_url *u) {
  free(u->host);
  free(u->path);
  free(u->user);
  free_secret(u->password);
  free(u->masked);
  memset(u, 0, sizeof(*u));
}

/* Replaces the URL's userinfo (see rconn_options.password). */
static int set_credentials(rconn_url *u, const char *user, const char *password) {
  char *nu = user && *user ? strdup(user) : NULL, *np = strdup(password);
  if ((user && *user && !nu) || !np) {
    free(nu);
    free(np);
    return -1;
  }
  free(u->user);
  free_secret(u->password);
  u->user = nu;
  u->password = np;
  return 0;
}

/* ---- state and logging --------------------------------------------------- */

static void set_state(td_rconn *c, rconn_state next, const char *reason) {
  rconn_state prev = c->state;
  c->state = next;
  /* Failures get their own warn line (context_gone); the rest is detail. */
  td_log_level lvl = next == RCONN_READY ? TD_LOG_INFO : TD_LOG_DEBUG;
  td_logline *l = log_begin(lvl, "redis_state");
  if (!l) return;
  log_str(l, "conn", c->name);
  log_str(l, "url", c->url.masked);
  log_str(l, "from", rconn_state_name(prev));
  log_str(l, "to", rconn_state_name(next));
  if (reason) log_str(l, "reason", reason);
  log_end(l);
}


static void watch_reset(td_rconn *c) { c->watch_head = c->watch_len = 0; }

static void watch_sent(td_rconn *c) {
  uint64_t now = uv_now(c->loop);
  if (c->watch_len > 0) {
    uint32_t tail = (c->watch_head + c->watch_len - 1) % RCONN_WATCH_SLOTS;
    if (c->watch[tail].sent_ms == now || c->watch_len == RCONN_WATCH_SLOTS) {
      c->watch[tail].n++;
      return;
    }
  }
  uint32_t slot = (c->watch_head + c->watch_len) % RCONN_WATCH_SLOTS;
  c->watch[slot].sent_ms = now;
  c->watch[slot].n = 1;
  c->watch_len++;
}

static void watch_replied(td_rconn *c) {
  if (c->watch_len == 0) return;
  if (--c->watch[c->watch_head].n == 0) {
    c->watch_head = (c->watch_head + 1) % RCONN_WATCH_SLOTS;
    c->watch_len--;
  }
}

/* ---- reply objects --------------------------------------------------------
 * Every PUBLISH and HSET reply is one integer. hiredis's default reader
 * functions calloc a redisReply for it and free it once the callback
 * returned: two allocator calls per command, about a tenth of what a
 * pipelined PUBLISH costs tickerd. A top-level integer is therefore read into
 * one static object instead. That is safe because the loop is single-threaded
 * and hiredis's async layer consumes each top-level reply (callback, then
 * freeObject) before it parses the next one. Integers inside arrays, and
 * every other type, are built by hiredis's own functions: freeReplyObject()
 * of an array frees its elements directly, not through freeObject. */

static redisReplyObjectFunctions *hiredis_fn; /* hiredis's defaults, shared by every reader */
static redisReply rconn_int_reply;

/* hiredis 1.x counts array elements in size_t (0.14: int) and adds RESP3's
 * doubles and booleans; members are named, never placed, so that one table
 * fits both. */
#if HIREDIS_MAJOR >= 1
typedef size_t rf_count;
#else
typedef int rf_count;
#endif

static void *rf_string(const redisReadTask *t, char *s, size_t n) { return hiredis_fn->createString(t, s, n); }
static void *rf_array(const redisReadTask *t, rf_count n) { return hiredis_fn->createArray(t, n); }
static void *rf_nil(const redisReadTask *t) { return hiredis_fn->createNil(t); }
#if HIREDIS_MAJOR >= 1
static void *rf_double(const redisReadTask *t, double d, char *s, size_t n) {
  return hiredis_fn->createDouble(t, d, s, n);
}
static void *rf_bool(const redisReadTask *t, int b) { return hiredis_fn->createBool(t, b); }
#endif

static void *rf_integer(const redisReadTask *t, long long v) {
  if (t->parent) return hiredis_fn->createInteger(t, v);
  rconn_int_reply.type = REDIS_REPLY_INTEGER;
  rconn_int_reply.integer = v;
  return &rconn_int_reply;
}

static void rf_free(void *o) {
  if (o != &rconn_int_reply) hiredis_fn->freeObject(o);
}

static redisReplyObjectFunctions rconn_reply_fn = {
    .createString = rf_string,
    .createArray = rf_array,
    .createInteger = rf_integer,
#if HIREDIS_MAJOR >= 1
    .createDouble = rf_double,
    .createBool = rf_bool,
#endif
    .createNil = rf_nil,
    .freeObject = rf_free,
};

static void use_reply_fn(redisAsyncContext *ac) {
  redisReader *r = ac->c.reader;
  if (r->fn == &rconn_reply_fn) return;
  if (!hiredis_fn) hiredis_fn = r->fn;
  if (r->fn != hiredis_fn) return; /* not the defaults we delegate to: leave it */
  r->fn = &rconn_reply_fn;
}

/* ---- the connection cycle ------------------------------------------------ */

static void connect_attempt(td_rconn *c);
static void context_gone(td_rconn *c, const char *reason, const char *detail);
static void maybe_closed(td_rconn *c);

static void on_timer(uv_timer_t *t) {
  td_rconn *c = t->data;
  switch (c->state) {
  case RCONN_BACKOFF:
    c->reconnects++;
    connect_attempt(c);
    break;
  case RCONN_RESOLVING:
    c->gai_timed_out = true;
    uv_cancel((uv_req_t *)&c->gai); /* else its callback sees the flag */
    break;
  case RCONN_CONNECTING:
  case RCONN_AUTHENTICATING:
  case RCONN_SELECTING:
  case RCONN_PINGING:
  case RCONN_READY: /* a drop deferred out of the connect callback */
    rconn_reconnect(c, c->late_drop ? c->late_drop : "connect timeout");
    break;
  case RCONN_CLOSING: /* a close requested inside the connect callback */
    if (c->ac) rconn_reconnect(c, "closing");
    maybe_closed(c);
    break;
  default:
    break;
  }
}

static void on_watchdog(uv_timer_t *t) {
  td_rconn *c = t->data;
  if (c->state != RCONN_READY || c->watch_len == 0) return;
  uint64_t age = uv_now(c->loop) - c->watch[c->watch_head].sent_ms;
  if (age < c->command_timeout_ms) return;
  td_logline *l = log_begin(TD_LOG_WARN, "redis_command_timeout");
  if (l) {
    log_str(l, "conn", c->name);
    log_str(l, "url", c->url.masked);
    log_int(l, "oldest_ms", (int64_t)age);
    log_end(l);
  }
  rconn_reconnect(c, "command timeout");
}

static void became_ready(td_rconn *c) {
  uv_timer_stop(&c->timer);
  c->attempt = 0;
  c->ever_ready = true;
  watch_reset(c);
  set_state(c, RCONN_READY, NULL);
  uint64_t every = c->command_timeout_ms / 4 ? c->command_timeout_ms / 4 : 1;
  uv_timer_start(&c->watchdog, on_watchdog, every, every);
  if (c->cb.on_ready) c->cb.on_ready(c, c->ud);
}

static int send_raw(td_rconn *c, uintptr_t flags_tag, const char *cmd, size_t len);

/* Builds AUTH [user] pass, SELECT db, PING or ROLE as RESP and sends it. */
static int send_internal(td_rconn *c, int which) {
  const char *argv[3];
  size_t argl[3];
  int argc = 0;
  char db[16];
  if (which == RCONN_INTERNAL_AUTH) {
    argv[argc++] = "AUTH";
    if (c->url.user) argv[argc++] = c->url.user;
    argv[argc++] = c->url.password;
  } else if (which == RCONN_INTERNAL_SELECT) {
    argv[argc++] = "SELECT";
    snprintf(db, sizeof(db), "%d", c->url.db);
    argv[argc++] = db;
  } else {
    argv[argc++] = which == RCONN_INTERNAL_ROLE ? "ROLE" : "PING";
  }
  for (int i = 0; i < argc; i++) argl[i] = strlen(argv[i]);
  char *cmd = NULL;
  int len = redisFormatCommandArgv(&cmd, argc, argv, argl);
  if (len < 0) return UV_ENOMEM;
  int rc = send_raw(c, ((uintptr_t)which << 2) | RCONN_TAG_INTERNAL, cmd, (size_t)len);
  if (which == RCONN_INTERNAL_AUTH) memset(cmd, 0, (size_t)len); /* the password */
  free(cmd);
  return rc;
}

/* After the TCP/unix connect or a handshake step: the next step. */
static void handshake_next(td_rconn *c) {
  rconn_state next = RCONN_READY;
  int which = 0;
  if (c->state == RCONN_CONNECTING && c->url.password) {
    next = RCONN_AUTHENTICATING;
    which = RCONN_INTERNAL_AUTH;
  } else if ((c->state == RCONN_CONNECTING || c->state == RCONN_AUTHENTICATING) && c->url.db) {
    next = RCONN_SELECTING;
    which = RCONN_INTERNAL_SELECT;
  } else if (c->sentinel && c->state != RCONN_PINGING) {
    /* A Sentinel's answer can be stale (a failover under way, a demoted
     * node): only a node that says it is a master is used. */
    next = RCONN_PINGING;
    which = RCONN_INTERNAL_ROLE;
  } else if (c->state == RCONN_CONNECTING) {
    /* A TCP connect proves only that something accepted: a server that
     * never answers would get every command written into a black hole. */
    next = RCONN_PINGING;
    which = RCONN_INTERNAL_PING;
  }
  if (next == RCONN_READY) {
    became_ready(c);
    return;
  }
  set_state(c, next, NULL);
  if (send_internal(c, which) < 0) {
    c->late_drop = "handshake command failed";
    uv_timer_start(&c->timer, on_timer, 0, 0);
  }
}

static void on_connect(const redisAsyncContext *ac, int status) {
  td_rconn *c = ac->data;
  if (status != REDIS_OK) {
    /* hiredis frees the context once we return. */
    c->ac = NULL;
    context_gone(c, "connect failed", ac->errstr);
    return;
  }
  c->in_connect_cb = true; /* on_ready runs from here: no free allowed */
  handshake_next(c);
  c->in_connect_cb = false;
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
  td_rconn *c = ac->data;
  const char *reason = c->drop_reason;
  if (!reason) reason = status == REDIS_OK ? "server closed the connection" : "connection lost";
  c->ac = NULL;
  c->dying = NULL;
  context_gone(c, reason, status == REDIS_OK ? NULL : ac->errstr);
}

/* `addr`: the numeric address, or with a TLS relay the path of its socket. */
static void do_connect(td_rconn *c, const char *addr) {
  redisAsyncContext *ac = c->relay         ? redisAsyncConnectUnix(addr)
                          : c->url.is_unix ? redisAsyncConnectUnix(c->url.path)
                                           : redisAsyncConnect(addr, c->url.port);
  set_state(c, RCONN_CONNECTING, NULL);
  if (!ac) {
    context_gone(c, "out of memory", NULL);
    return;
  }
  if (ac->err) {
    char detail[128];
    snprintf(detail, sizeof(detail), "%s", ac->errstr);
    redisAsyncFree(ac);
    context_gone(c, "connect failed", detail);
    return;
  }
  int rc = redisuv_attach(ac, c->loop);
  if (rc < 0) {
    redisAsyncFree(ac);
    context_gone(c, "event loop attach failed", uv_strerror(rc));
    return;
  }
  ac->data = c;
  use_reply_fn(ac);
  c->ac = ac;
  c->drop_reason = NULL;
  c->late_drop = NULL;
  redisAsyncSetConnectCallback(ac, on_connect);
  redisAsyncSetDisconnectCallback(ac, on_disconnect);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  td_rconn *c = req->data;
  c->gai_active = false;
  if (c->state == RCONN_CLOSING) {
    uv_freeaddrinfo(res);
    maybe_closed(c);
    return;
  }
  const char *why = NULL;
  if (c->gai_timed_out) why = "connect timeout (resolving)";
  else if (status < 0) why = "resolve failed";
  /* IPv4 first: Redis deployments and container networks mostly listen
   * there, while "localhost" often lists ::1 first. */
  struct addrinfo *ai = NULL;
  for (struct addrinfo *p = why ? NULL : res; p && !ai; p = p->ai_next)
    if (p->ai_family == AF_INET) ai = p;
  for (struct addrinfo *p = why ? NULL : res; p && !ai; p = p->ai_next)
    if (p->ai_family == AF_INET6) ai = p;
  if (!why && !ai) why = "resolve found no address";
  if (why) {
    uv_freeaddrinfo(res);
    context_gone(c, why, status < 0 ? uv_strerror(status) : NULL);
    return;
  }
  if (ai->ai_family == AF_INET)
    uv_ip4_name((struct sockaddr_in *)ai->ai_addr, c->addr, sizeof(c->addr));
  else
    uv_ip6_name((struct sockaddr_in6 *)ai->ai_addr, c->addr, sizeof(c->addr));
  uv_freeaddrinfo(res);
  do_connect(c, c->addr);
}

static bool is_numeric_host(const char *h) {
  unsigned char tmp[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, h, tmp) == 1 || inet_pton(AF_INET6, h, tmp) == 1;
}

/* redis+sentinel://: the primary's address, asked before each attempt.
 * False when none is known yet: the Sentinel's first answer retargets
 * this connection (rconn_retarget) long before this wait runs out. */
static bool sentinel_target(td_rconn *c) {
  const char *host;
  int port;
  if (!sentinel_primary(c->sentinel, &host, &port)) {
    set_state(c, RCONN_BACKOFF, "no primary known yet");
    uv_timer_start(&c->timer, on_timer, c->backoff_max_ms, 0);
    return false;
  }
  if (!c->url.host || strcmp(c->url.host, host)) {
    char *h = strdup(host);
    if (!h) {
      context_gone(c, "out of memory", NULL);
      return false;
    }
    free(c->url.host);
    c->url.host = h;
  }
  c->url.port = port;
  return true;
}

/* ---- rediss:// ------------------------------------------------------------
 * The relay makes and verifies the TLS session; hiredis then connects to its
 * unix socket and everything after (AUTH, SELECT, PING, commands) is the
 * plain path. The connect timer covers the TLS handshake too. */

static void on_relay_ready(void *ud, const char *path) { do_connect(ud, path); }

static void on_relay_fail(void *ud, const char *reason, const char *detail) {
  context_gone(ud, reason, detail); /* releases the relay */
}

static const redis_tls_relay_cb relay_cb = {on_relay_ready, on_relay_fail};

static void tls_attempt(td_rconn *c) {
  const char *err = NULL;
  set_state(c, RCONN_CONNECTING, "tls");
  int rc = redis_tls_relay_start(c->loop, c->url.host, c->url.port, &relay_cb, c, &c->relay, &err);
  if (rc < 0) context_gone(c, "TLS setup failed", err);
}

static void connect_attempt(td_rconn *c) {
  if (c->sentinel && !sentinel_target(c)) return;
  uv_timer_start(&c->timer, on_timer, c->connect_timeout_ms, 0);
  if (c->url.tls) {
    tls_attempt(c);
    return;
  }
  if (c->url.is_unix || is_numeric_host(c->url.host)) {
    do_connect(c, c->url.is_unix ? NULL : c->url.host);
    return;
  }
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
  char port[8];
  snprintf(port, sizeof(port), "%d", c->url.port);
  set_state(c, RCONN_RESOLVING, NULL);
  c->gai_timed_out = false;
  int rc = uv_getaddrinfo(c->loop, &c->gai, on_resolved, c->url.host, port, &hints);
  if (rc < 0) {
    context_gone(c, "resolve failed", uv_strerror(rc));
    return;
  }
  c->gai_active = true;
}

/* The current context is gone (or never came): back off and retry. */
static void context_gone(td_rconn *c, const char *reason, const char *detail) {
  bool was_ready = c->state == RCONN_READY;
  uv_timer_stop(&c->timer);
  uv_timer_stop(&c->watchdog);
  watch_reset(c);
  redis_tls_relay_release(c->relay);
  c->relay = NULL;
  if (c->state == RCONN_CLOSING) {
    maybe_closed(c);
    return;
  }
  c->errors++;
  if (!was_ready) c->attempt++;
  if (c->sentinel) sentinel_recheck(c->sentinel); /* a failover may be why */
  uint64_t delay = backoff_ms(c->backoff_min_ms, c->backoff_max_ms, c->attempt, &c->rng);
  set_state(c, RCONN_BACKOFF, reason);
  td_logline *l = log_begin(TD_LOG_WARN, was_ready ? "redis_lost" : "redis_connect_failed");
  if (l) {
    log_str(l, "conn", c->name);
    log_str(l, "url", c->url.masked);
    log_str(l, "reason", reason);
    if (detail && *detail) log_str(l, "detail", detail);
    if (c->sentinel && c->url.host) log_str(l, "addr", c->url.host), log_int(l, "port", c->url.port);
    log_int(l, "retry_in_ms", (int64_t)delay);
    log_end(l);
  }
  uv_timer_start(&c->timer, on_timer, delay, 0);
  if (c->cb.on_lost) c->cb.on_lost(c, c->ud, reason, was_ready);
}

void rconn_retarget(td_rconn *c, const char *host, int port) {
  bool there = c->url.host && !strcmp(c->url.host, host) && c->url.port == port;
  if (c->state == RCONN_IDLE || c->state == RCONN_RESOLVING || c->state >= RCONN_CLOSING) return;
  if (there && c->state != RCONN_BACKOFF) return; /* already on its way there */
  /* c->relay alone: a TLS handshake to the old primary, dropped too. */
  if (c->ac || c->relay) rconn_reconnect(c, "primary moved (sentinel)");
  if (c->state == RCONN_BACKOFF) uv_timer_start(&c->timer, on_timer, 0, 0);
}

void rconn_reconnect(td_rconn *c, const char *reason) {
  redisAsyncContext *ac = c->ac;
  if (!ac && c->relay) context_gone(c, reason, NULL); /* still making the TLS session */
  if (!ac) return;
  if (c->in_connect_cb) { /* freeing here is a use-after-free in hiredis */
    c->late_drop = reason;
    uv_timer_start(&c->timer, on_timer, 0, 0);
    return;
  }
  bool connected = ac->c.flags & REDIS_CONNECTED;
  c->drop_reason = reason;
  if (connected) c->dying = ac; /* its disconnect callback is still to come */
  /* Nulled first: pending callbacks run with NULL replies during the free
   * and must not be able to send on this context. */
  c->ac = NULL;
  redisAsyncFree(ac);
  /* A context never connected gets no disconnect callback. */
  if (!connected) context_gone(c, reason, NULL);
}

/* ---- commands ------------------------------------------------------------ */

/* ROLE's first element is "master" on a primary; anything else is dropped
 * and the Sentinels asked again. */
static bool role_is_master(td_rconn *c, const redisReply *r) {
  const redisReply *e = r->type == REDIS_REPLY_ARRAY && r->elements > 0 ? r->element[0] : NULL;
  if (e && e->type == REDIS_REPLY_STRING && e->len == 6 && !memcmp(e->str, "master", 6)) return true;
  td_logline *l = log_begin(TD_LOG_WARN, "redis_not_primary");
  if (l) {
    log_str(l, "conn", c->name);
    log_str(l, "url", c->url.masked);
    log_str(l, "addr", c->url.host);
    log_int(l, "port", c->url.port);
    if (e && e->type == REDIS_REPLY_STRING) log_strn(l, "role", e->str, e->len);
    log_end(l);
  }
  sentinel_stale_answer(c->sentinel);
  rconn_reconnect(c, "not a primary (stale Sentinel answer)");
  return false;
}

static void on_reply(redisAsyncContext *ac, void *r, void *privdata) {
  td_rconn *c = ac->data;
  uintptr_t v = (uintptr_t)privdata;
  redisReply *reply = r;
  if (v & RCONN_TAG_TRACKED) watch_replied(c);
  if (!(v & RCONN_TAG_INTERNAL)) {
    if (c->cb.on_reply) c->cb.on_reply(c, c->ud, reply, v >> 2);
    return;
  }
  if (!reply || c->ac != ac) return; /* going away: on_disconnect handles it */
  if (reply->type == REDIS_REPLY_ERROR) {
    static const char *const events[] = {"", "redis_auth_failed", "redis_select_failed", "redis_ping_failed",
                                         "redis_role_failed"};
    static const char *const reasons[] = {"", "auth failed", "select failed", "ping failed", "role failed"};
    uintptr_t which = v >> 2 <= RCONN_INTERNAL_ROLE ? v >> 2 : 0;
    td_logline *l = log_begin(TD_LOG_ERROR, events[which]);
    if (l) {
      log_str(l, "conn", c->name);
      log_str(l, "url", c->url.masked);
      log_strn(l, "error", reply->str, reply->len);
      log_end(l);
    }
    rconn_reconnect(c, reasons[which]);
    return;
  }
  if (v >> 2 == RCONN_INTERNAL_ROLE && !role_is_master(c, reply)) return;
  handshake_next(c);
}

/* Room for `len` more bytes in hiredis's output buffer, grown geometrically.
 * sds alone adds only 1 MiB per step past 1 MiB, and hiredis frees the buffer
 * after every complete write: a busy pipeline then copied its buffer over
 * and over while it grew (callgrind: ~400 instructions per PUBLISH). */
static int obuf_reserve(redisContext *rc, size_t len) {
  size_t used = sdslen(rc->obuf);
  if (sdsavail(rc->obuf) >= len) return 0;
  size_t add = used > len ? used : len;
  if (add < RCONN_OBUF_MIN) add = RCONN_OBUF_MIN;
  sds s = sdsMakeRoomFor(rc->obuf, add);
  if (!s) return UV_ENOMEM;
  rc->obuf = s;
  return 0;
}

static int send_raw(td_rconn *c, uintptr_t flags_tag, const char *cmd, size_t len) {
  if (!c->ac || (c->ac->c.flags & (REDIS_DISCONNECTING | REDIS_FREEING))) return UV_ENOTCONN;
  if (obuf_reserve(&c->ac->c, len) < 0) return UV_ENOMEM;
  if (redisAsyncFormattedCommand(c->ac, on_reply, (void *)flags_tag, cmd, len) != REDIS_OK)
    return UV_EIO;
  return 0;
}

/* ---- commands formatted in place -----------------------------------------
 * redisAsyncFormattedCommand parses the name of every command (strchr,
 * strtol, three strncasecmp for the subscribe family), copies it into the
 * output buffer and queues a callback: ~640 instructions per PUBLISH, more
 * than the publisher's own work. A plain command (never the subscribe family
 * or MONITOR, whose replies hiredis routes itself) needs only the last two
 * steps. With hiredis 0.14, whose callback list and output buffer are public
 * in async.h and hiredis.h, rconn does them itself, exactly as
 * __redisAsyncCommand and __redisPushCallback do for such a command: the
 * command is formatted straight into the output buffer, a malloc'd callback
 * node (hiredis frees it with free() once the reply came, or while freeing
 * the context) is appended to ac->replies, and the write event is armed.
 * Other hiredis versions take redisAsyncFormattedCommand.
 *
 * Runs: consecutive in-place commands with the same tag share one callback
 * node, its privdata the tag and how many commands it stands for. With a
 * node per command, tens of thousands of PUBLISH in flight made a list
 * whose nodes were cold by the time their replies came: following ->next
 * was 8 % of tickerd's samples under POST /quotes load and refilling
 * malloc's cache with the freed nodes another 9 %. When the reply for a
 * run's first command comes, hiredis has already unlinked and freed its
 * node; on_run_reply puts a node for the rest of the run back at the head
 * of the list (malloc returns the chunk just freed, still in cache) before
 * it hands the reply on, so commands sent from that reply's callback still
 * extend the same run. */
#if HIREDIS_MAJOR == 0 && HIREDIS_MINOR == 14
#define RCONN_IN_PLACE 1
#else
#define RCONN_IN_PLACE 0
#endif

/* A run's privdata: (commands << RUN_TAG_BITS) | flags_tag. Tags that do not
 * fit in RUN_TAG_BITS get a node of their own. */
#define RUN_TAG_BITS 8
#define RUN_TAG_MASK (((uintptr_t)1 << RUN_TAG_BITS) - 1)
#define RUN_ONE ((uintptr_t)1 << RUN_TAG_BITS)
#define RUN_MAX_COMMANDS (UINTPTR_MAX >> RUN_TAG_BITS)

static void on_run_reply(redisAsyncContext *ac, void *r, void *privdata);

static redisCallback *callback_new(redisCallbackFn *fn, uintptr_t privdata) {
  redisCallback *cb = malloc(sizeof(*cb));
  if (!cb) return NULL;
  cb->next = NULL;
  cb->fn = fn;
  cb->pending_subs = 1;
  cb->privdata = (void *)privdata;
  return cb;
}

static void on_run_reply(redisAsyncContext *ac, void *r, void *privdata) {
  uintptr_t run = (uintptr_t)privdata, tag = run & RUN_TAG_MASK;
  uintptr_t left = (run >> RUN_TAG_BITS) - 1; /* commands of the run after this one */
  if (!r) { /* the context is being freed: every command of the run fails */
    for (uintptr_t i = 0; i <= left; i++) on_reply(ac, NULL, (void *)tag);
    return;
  }
  if (left) {
    redisCallback *cb = callback_new(on_run_reply, left << RUN_TAG_BITS | tag);
    if (!cb) {
      /* The rest of the run's replies would find no callback, which hiredis
       * asserts on: fail them here and drop the connection instead. */
      td_rconn *c = ac->data;
      on_reply(ac, r, (void *)tag);
      for (uintptr_t i = 0; i < left; i++) on_reply(ac, NULL, (void *)tag);
      if (c->ac == ac) rconn_reconnect(c, "out of memory");
      return;
    }
    cb->next = ac->replies.head;
    ac->replies.head = cb;
    if (!ac->replies.tail) ac->replies.tail = cb;
  }
  on_reply(ac, r, (void *)tag);
}

static bool in_place_ok(const redisAsyncContext *ac) {
  return RCONN_IN_PLACE &&
         !(ac->c.flags & (REDIS_DISCONNECTING | REDIS_FREEING | REDIS_SUBSCRIBED | REDIS_MONITORING));
}

char *rconn_command_begin(td_rconn *c, size_t max) {
  if (c->state != RCONN_READY || !c->ac) return NULL;
  redisContext *rc = &c->ac->c;
  if (!in_place_ok(c->ac)) {
    if (rc->flags & (REDIS_DISCONNECTING | REDIS_FREEING)) return NULL;
    if (max + 1 > c->scratch_cap) {
      char *s = realloc(c->scratch, max + 1);
      if (!s) return NULL;
      c->scratch = s;
      c->scratch_cap = max + 1;
    }
    return c->scratch;
  }
  if (obuf_reserve(rc, max + 1) < 0) return NULL;
  return rc->obuf + sdslen(rc->obuf);
}

int rconn_command_end(td_rconn *c, uintptr_t tag, size_t len) {
  redisAsyncContext *ac = c->ac;
  uintptr_t flags_tag = (tag << 2) | RCONN_TAG_TRACKED;
  if (!in_place_ok(ac)) {
    c->scratch[len] = '\0'; /* hiredis parses the command name with strchr() */
    int rc = send_raw(c, flags_tag, c->scratch, len);
    if (rc == 0) watch_sent(c);
    return rc;
  }
  redisCallback *t = ac->replies.tail;
  if (flags_tag <= RUN_TAG_MASK && t && t->fn == on_run_reply &&
      ((uintptr_t)t->privdata & RUN_TAG_MASK) == flags_tag &&
      ((uintptr_t)t->privdata >> RUN_TAG_BITS) < RUN_MAX_COMMANDS) {
    t->privdata = (void *)((uintptr_t)t->privdata + RUN_ONE); /* one more in the run */
  } else {
    redisCallback *cb = flags_tag <= RUN_TAG_MASK ? callback_new(on_run_reply, RUN_ONE | flags_tag)
                                                  : callback_new(on_reply, flags_tag);
    if (!cb) return UV_ENOMEM;
    if (t) t->next = cb;
    else ac->replies.head = cb;
    ac->replies.tail = cb;
  }
  sdsinclen(ac->c.obuf, len);
  if (ac->ev.addWrite) ac->ev.addWrite(ac->ev.data);
  watch_sent(c);
  return 0;
}

size_t rconn_pending_bytes(const td_rconn *c) { return c->ac ? sdslen(c->ac->c.obuf) : 0; }

uint64_t rconn_behind_ms(const td_rconn *c) { return redisuv_behind_ms(c->ac); }

bool rconn_ready(const td_rconn *c) {
  return c->state == RCONN_READY && c->ac &&
         !(c->ac->c.flags & (REDIS_DISCONNECTING | REDIS_FREEING));
}

int rconn_command(td_rconn *c, uintptr_t tag, const char *cmd, size_t len) {
  if (!rconn_ready(c)) return UV_ENOTCONN;
  char *o = rconn_command_begin(c, len);
  if (!o) return UV_ENOMEM;
  memcpy(o, cmd, len);
  return rconn_command_end(c, tag, len);
}

int rconn_command_argv(td_rconn *c, uintptr_t tag, int argc, const char **argv, const size_t *argl) {
  size_t lens[RCONN_ARGV_MAX];
  if (argc < 1 || argc > RCONN_ARGV_MAX) return UV_EINVAL;
  if (!argl) {
    for (int i = 0; i < argc; i++) lens[i] = strlen(argv[i]);
    argl = lens;
  }
  char *cmd = NULL;
  int len = redisFormatCommandArgv(&cmd, argc, argv, argl);
  if (len < 0) return UV_ENOMEM;
  int rc = rconn_command(c, tag, cmd, (size_t)len);
  free(cmd);
  return rc;
}

int rconn_command_untracked(td_rconn *c, uintptr_t tag, const char *cmd, size_t len) {
  if (c->state != RCONN_READY) return UV_ENOTCONN;
  return send_raw(c, tag << 2, cmd, len);
}

/* ---- lifecycle ----------------------------------------------------------- */

int rconn_init(td_rconn *c, uv_loop_t *loop, const char *url, const rconn_callbacks *cb,
               void *ud, const rconn_options *opt, const char **err) {
  memset(c, 0, sizeof(*c));
  int rc = 0;
  if (sentinel_url_is(url)) {
    if (!(c->sentinel = sentinel_attach(loop, url, c, &c->url, err))) rc = UV_EINVAL;
  } else {
    rc = rconn_url_parse(url, &c->url, err);
  }
  if (rc < 0) {
    /* the URL itself is never logged: it may hold a password */
    td_logline *l = log_begin(TD_LOG_ERROR, "redis_bad_url");
    if (l) {
      log_str(l, "conn", opt && opt->name ? opt->name : "redis");
      log_str(l, "error", *err);
      log_end(l);
    }
    return rc;
  }
  rconn_options o = opt ? *opt : (rconn_options){0};
  if (o.password && set_credentials(&c->url, o.user, o.password) < 0) {
    rconn_url_free(&c->url);
    *err = "out of memory";
    return UV_ENOMEM;
  }
  c->loop = loop;
  c->cb = *cb;
  c->ud = ud;
  c->name = o.name ? o.name : "redis";
  c->connect_timeout_ms = o.connect_timeout_ms ? o.connect_timeout_ms : TD_REDIS_CONNECT_TIMEOUT_MS;
  c->command_timeout_ms = o.command_timeout_ms ? o.command_timeout_ms : TD_REDIS_COMMAND_TIMEOUT_MS;
  c->backoff_min_ms = o.backoff_min_ms ? o.backoff_min_ms : TD_REDIS_BACKOFF_MIN_MS;
  c->backoff_max_ms = o.backoff_max_ms ? o.backoff_max_ms : TD_REDIS_BACKOFF_MAX_MS;
  if (c->backoff_max_ms < c->backoff_min_ms) c->backoff_max_ms = c->backoff_min_ms;
  c->rng = rng_seed_random();
  uv_timer_init(loop, &c->timer);
  uv_timer_init(loop, &c->watchdog);
  c->timer.data = c->watchdog.data = c;
  c->gai.data = c;
  c->state = RCONN_IDLE;
  return 0;
}

void rconn_start(td_rconn *c) {
  if (c->state == RCONN_IDLE) connect_attempt(c);
}

static void on_handle_closed(uv_handle_t *h) {
  td_rconn *c = h->data;
  if (--c->closes_pending > 0) return;
  set_state(c, RCONN_CLOSED, NULL);
  if (c->sentinel) sentinel_detach(c->sentinel, c);
  rconn_url_free(&c->url);
  free(c->scratch);
  c->scratch = NULL;
  c->scratch_cap = 0;
  if (c->cb.on_closed) c->cb.on_closed(c, c->ud);
}

/* CLOSING ends once the context and the resolver request are gone. */
static void maybe_closed(td_rconn *c) {
  if (c->state != RCONN_CLOSING || c->ac || c->dying || c->gai_active || c->closes_pending) return;
  c->closes_pending = 2;
  uv_close((uv_handle_t *)&c->timer, on_handle_closed);
  uv_close((uv_handle_t *)&c->watchdog, on_handle_closed);
}

void rconn_close(td_rconn *c) {
  if (c->state == RCONN_CLOSING || c->state == RCONN_CLOSED) return;
  set_state(c, RCONN_CLOSING, NULL);
  uv_timer_stop(&c->timer);
  uv_timer_stop(&c->watchdog);
  if (c->gai_active) uv_cancel((uv_req_t *)&c->gai);
  if (c->in_connect_cb) {
    uv_timer_start(&c->timer, on_timer, 0, 0);
    return;
  }
  if (c->ac || c->relay) rconn_reconnect(c, "closing"); /* ends in context_gone -> maybe_closed */
  maybe_closed(c);
}
