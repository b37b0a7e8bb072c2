/* TLS to Redis: the process-wide context and the relay (redis_tls.h).
 *
 * A relay is one heap object per connection attempt. It owns a tls_conn
 * (the real socket to Redis), a listening unix socket until hiredis has
 * connected, and the accepted end. It is freed once its owner released it
 * and every handle is closed, never from inside one of its own callbacks. */
#include "redis/redis_tls.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/log.h"

/* Longest TMPDIR used for the relay's socket; a longer one gives /tmp. */
#define REDIS_TLS_TMPDIR_MAX 64

/* ---- the process's context ----------------------------------------------- */

static tls_ctx *redis_ctx;

int redis_tls_configure(const redis_tls_opts *o, const char **err) {
  tls_ctx *ctx = NULL;
  int rc = tls_ctx_new(&ctx, o->ca_file, err);
  if (rc < 0) return rc;
  bool cert = o->cert_file && *o->cert_file, key = o->key_file && *o->key_file;
  if (cert != key) {
    *err = "a client certificate needs both --redis-cert and --redis-key";
    rc = UV_EINVAL;
  } else if (cert) {
    rc = tls_ctx_use_client_cert(ctx, o->cert_file, o->key_file, err);
  }
  if (rc < 0) {
    tls_ctx_free(ctx);
    return rc;
  }
  tls_ctx_free(redis_ctx);
  redis_ctx = ctx;
  return 0;
}

tls_ctx *redis_tls_ctx(const char **err) {
  if (!redis_ctx && redis_tls_configure(&(redis_tls_opts){0}, err) < 0) return NULL;
  return redis_ctx;
}

void redis_tls_shutdown(void) {
  tls_ctx_free(redis_ctx);
  redis_ctx = NULL;
}

/* ---- the relay ------------------------------------------------------------ */

struct redis_tls_relay {
  uv_loop_t *loop;
  const redis_tls_relay_cb *cb; /* NULL once released */
  void *ud;
  bool released;
  bool closing;
  bool tls_active;   /* tls_connect succeeded and on_close has not come */
  bool listening;    /* the listener is open */
  bool peer_open;    /* hiredis's connection was accepted and is open */
  bool peer_paused;  /* not reading hiredis: the TLS side is full */
  int closes_pending;
  /* TMPDIR (at most REDIS_TLS_TMPDIR_MAX) + "/tickerd-relay-XXXXXX/s" fits sun_path. */
  char dir[sizeof(((struct sockaddr_un *)0)->sun_path) - 2];
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
  bool dir_made, file_made;
  char host[TLS_MAX_HOST + 1];
  int port;
  tls_conn tls;
  uv_pipe_t listener;
  uv_pipe_t peer;
  char rbuf[REDIS_TLS_READ_BUF];
};

/* One write towards hiredis: the request and its bytes in one allocation. */
typedef struct {
  uv_write_t req;
  char data[];
} relay_wreq;

static void relay_close(redis_tls_relay *r, const char *why);

static void maybe_free(redis_tls_relay *r) {
  if (r->released && !r->tls_active && r->closes_pending == 0) free(r);
}

static void on_handle_closed(uv_handle_t *h) {
  redis_tls_relay *r = h->data;
  r->closes_pending--;
  maybe_free(r);
}

/* The socket file exists from bind to hiredis's first bytes: nobody else may
 * find it. (Not only to accept: hiredis 1.x checks that a non-blocking
 * connect completed by calling connect() again, which Linux answers with
 * EISCONN only while the path still names a listening socket.) */
static void remove_socket_file(redis_tls_relay *r) {
  if (r->file_made) unlink(r->path);
  if (r->dir_made) rmdir(r->dir);
  r->file_made = r->dir_made = false;
}

static void close_listener(redis_tls_relay *r) {
  remove_socket_file(r);
  if (!r->listening) return;
  r->listening = false;
  r->closes_pending++;
  uv_close((uv_handle_t *)&r->listener, on_handle_closed);
}

static void relay_close(redis_tls_relay *r, const char *why) {
  if (r->closing) return;
  r->closing = true;
  close_listener(r);
  if (r->peer_open) {
    r->peer_open = false;
    r->closes_pending++;
    uv_close((uv_handle_t *)&r->peer, on_handle_closed); /* hiredis reads EOF */
  }
  if (r->tls_active) tls_close(&r->tls, why);
}

void redis_tls_relay_release(redis_tls_relay *r) {
  if (!r) return;
  r->cb = NULL;
  r->released = true;
  relay_close(r, "released");
  maybe_free(r);
}

/* ---- hiredis -> Redis ------------------------------------------------------ */

static void on_peer_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  redis_tls_relay *r = h->data;
  *buf = uv_buf_init(r->rbuf, sizeof(r->rbuf));
}

static void on_peer_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  redis_tls_relay *r = s->data;
  if (nread == 0 || r->closing) return;
  if (nread < 0) { /* hiredis closed its context */
    relay_close(r, "hiredis closed");
    return;
  }
  if (r->listening) close_listener(r); /* hiredis is connected: see remove_socket_file */
  if (tls_write(&r->tls, buf->base, (size_t)nread) < 0) return; /* the TLS side is closing */
  if (tls_write_queue_size(&r->tls) > REDIS_TLS_HIGH_WATER) {
    uv_read_stop(s);
    r->peer_paused = true;
  }
}

static void on_tls_drain(tls_conn *c) {
  redis_tls_relay *r = c->data;
  if (!r->peer_paused || !r->peer_open || r->closing) return;
  r->peer_paused = false;
  if (uv_read_start((uv_stream_t *)&r->peer, on_peer_alloc, on_peer_read) < 0) relay_close(r, "read start failed");
}

/* ---- Redis -> hiredis ------------------------------------------------------ */

static void on_peer_written(uv_write_t *req, int status) {
  redis_tls_relay *r = req->handle->data;
  free(req);
  if (status < 0) {
    if (status != UV_ECANCELED) relay_close(r, "write to hiredis failed");
    return;
  }
  if (!r->closing && uv_stream_get_write_queue_size((uv_stream_t *)&r->peer) == 0)
    tls_pause_reading(&r->tls, false);
}

/* Write now, else queue a copy of the rest. */
static void on_tls_read(tls_conn *c, const char *data, size_t len) {
  redis_tls_relay *r = c->data;
  if (r->closing) return;
  if (!r->peer_open) { /* Redis speaks only when spoken to */
    relay_close(r, "data from Redis before a command");
    return;
  }
  uv_stream_t *s = (uv_stream_t *)&r->peer;
  size_t off = 0;
  if (uv_stream_get_write_queue_size(s) == 0) {
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    int n = uv_try_write(s, &b, 1);
    if (n > 0) off = (size_t)n;
  }
  if (off == len) return;
  relay_wreq *w = malloc(sizeof(*w) + (len - off));
  if (!w) {
    relay_close(r, "out of memory");
    return;
  }
  memcpy(w->data, data + off, len - off);
  uv_buf_t b = uv_buf_init(w->data, (unsigned)(len - off));
  if (uv_write(&w->req, s, &b, 1, on_peer_written) < 0) {
    free(w);
    relay_close(r, "write to hiredis failed");
    return;
  }
  if (uv_stream_get_write_queue_size(s) > REDIS_TLS_HIGH_WATER) tls_pause_reading(&r->tls, true);
}

/* ---- setting up ------------------------------------------------------------ */

/* A warning about this relay's session; rconn's own line (with the
 * connection's name) follows when hiredis sees the loss. */
static void log_relay(const redis_tls_relay *r, const char *event, const char *reason) {
  td_logline *l = log_begin(TD_LOG_WARN, event);
  if (!l) return;
  log_str(l, "host", r->host);
  log_int(l, "port", r->port);
  log_str(l, "reason", reason);
  log_end(l);
}

/* Only this process may come in: the directory is 0700 and SO_PEERCRED must
 * name our pid. */
static bool peer_is_us(uv_pipe_t *p) {
  uv_os_fd_t fd;
  struct ucred cr;
  socklen_t len = sizeof(cr);
  if (uv_fileno((uv_handle_t *)p, &fd) != 0) return false;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0) return false;
  return cr.pid == getpid();
}

static void on_peer_connect(uv_stream_t *server, int status) {
  redis_tls_relay *r = server->data;
  /* One peer per relay: a second one is never accepted and is reset when
   * the listener closes. */
  if (r->closing || r->peer_open) return;
  if (status < 0) {
    relay_close(r, "accept failed");
    return;
  }
  uv_pipe_init(r->loop, &r->peer, 0);
  r->peer.data = r;
  r->peer_open = true;
  const char *why = NULL;
  if (uv_accept(server, (uv_stream_t *)&r->peer) < 0) why = "accept failed";
  else if (!peer_is_us(&r->peer)) why = "unix socket peer is not this process";
  if (!why && uv_read_start((uv_stream_t *)&r->peer, on_peer_alloc, on_peer_read) < 0) why = "read start failed";
  if (!why) return;
  log_relay(r, "redis_tls_relay_refused", why);
  relay_close(r, why); /* hiredis sees the connection reset */
}

static int listen_start(redis_tls_relay *r) {
  const char *tmp = getenv("TMPDIR");
  /* A long TMPDIR would not leave room in sun_path: /tmp then. */
  if (!tmp || !*tmp || strlen(tmp) > REDIS_TLS_TMPDIR_MAX) tmp = "/tmp";
  snprintf(r->dir, sizeof(r->dir), "%s/tickerd-relay-XXXXXX", tmp);
  if (!mkdtemp(r->dir)) return -errno;
  r->dir_made = true;
  if ((size_t)snprintf(r->path, sizeof(r->path), "%s/s", r->dir) >= sizeof(r->path)) return UV_ENAMETOOLONG;
  int rc = uv_pipe_init(r->loop, &r->listener, 0);
  if (rc < 0) return rc;
  r->listener.data = r;
  r->listening = true;
  rc = uv_pipe_bind(&r->listener, r->path);
  if (rc < 0) return rc;
  r->file_made = true;
  return uv_listen((uv_stream_t *)&r->listener, 1, on_peer_connect);
}

static void notify_fail(redis_tls_relay *r, const char *reason, const char *detail) {
  const redis_tls_relay_cb *cb = r->cb;
  if (cb) cb->on_fail(r->ud, reason, detail);
}

static void on_tls_connect(tls_conn *c, int status) {
  redis_tls_relay *r = c->data;
  if (status < 0) { /* on_close follows */
    const char *reason = status == TLS_ECERT        ? "TLS certificate refused"
                         : status == TLS_EHANDSHAKE ? "TLS handshake failed"
                                                    : "connect failed";
    const char *detail = tls_error(c);
    notify_fail(r, reason, detail ? detail : uv_strerror(status));
    return;
  }
  int rc = listen_start(r);
  if (rc < 0) {
    notify_fail(r, "TLS relay failed", uv_strerror(rc));
    relay_close(r, "TLS relay failed");
    return;
  }
  if (r->cb) r->cb->on_ready(r->ud, r->path);
}

static void on_tls_close(tls_conn *c, const char *reason) {
  redis_tls_relay *r = c->data;
  bool lost = !r->closing && r->peer_open; /* Redis's side ended, not ours */
  r->tls_active = false;
  if (lost) log_relay(r, "redis_tls_closed", reason);
  relay_close(r, reason);
  maybe_free(r);
}

static const tls_callbacks relay_tls_cb = {
    .on_connect = on_tls_connect,
    .on_read = on_tls_read,
    .on_close = on_tls_close,
    .on_drain = on_tls_drain,
};

int redis_tls_relay_start(uv_loop_t *loop, const char *host, int port, const redis_tls_relay_cb *cb,
                          void *ud, redis_tls_relay **out, const char **err) {
  *out = NULL;
  tls_ctx *ctx = redis_tls_ctx(err);
  if (!ctx) return UV_EINVAL;
  redis_tls_relay *r = calloc(1, sizeof(*r));
  if (!r) {
    *err = "out of memory";
    return UV_ENOMEM;
  }
  r->loop = loop;
  r->cb = cb;
  r->ud = ud;
  snprintf(r->host, sizeof(r->host), "%s", host);
  r->port = port;
  r->tls.data = r;
  tls_init(loop, &r->tls, ctx, &relay_tls_cb);
  /* No timer of its own: the owner's connect timeout covers the attempt. */
  int rc = tls_connect(&r->tls, host, port, true, 0);
  if (rc < 0) {
    free(r);
    *err = uv_strerror(rc);
    return rc;
  }
  r->tls_active = true;
  *out = r;
  return 0;
}
