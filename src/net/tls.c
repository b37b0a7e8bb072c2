/* TLS (or plain TCP) client connections over libuv with OpenSSL memory BIOs.
 *
 * The data path: socket -> rbuf -> BIO_write(rbio) -> SSL_read -> on_read,
 * and tls_write -> SSL_write -> wbio -> socket. OpenSSL may produce bytes to
 * send from any call (handshake messages, key updates, alerts), so the write
 * BIO is drained after every SSL call. The error queue is cleared before
 * each call so that SSL_get_error sees only that call's errors. */
#include "net/tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tls_ctx {
  SSL_CTX *ssl_ctx;
};

/* One socket write: the request and its bytes in one allocation. */
typedef struct {
  uv_write_t req;
  size_t len;
  char data[];
} tls_wreq;

static void fail(tls_conn *c, int status, const char *why);
static void read_plain(tls_conn *c);

int tls_ctx_new(tls_ctx **out, const char *ca_file, const char **err) {
  *out = NULL;
  tls_ctx *ctx = calloc(1, sizeof(*ctx));
  if (!ctx) {
    *err = "out of memory";
    return UV_ENOMEM;
  }
  ctx->ssl_ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx->ssl_ctx) {
    free(ctx);
    *err = "SSL_CTX_new failed";
    return UV_ENOMEM;
  }
  SSL_CTX_set_min_proto_version(ctx->ssl_ctx, TLS1_2_VERSION);
  SSL_CTX_set_verify(ctx->ssl_ctx, SSL_VERIFY_PEER, NULL);
  /* Writes through a memory BIO always complete; the flag only lets the
   * buffer behind a retried write move, which ours never needs, but it is
   * harmless and avoids a spurious "bad write retry". */
  SSL_CTX_set_mode(ctx->ssl_ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  ERR_clear_error();
  int ok = (ca_file && *ca_file) ? SSL_CTX_load_verify_locations(ctx->ssl_ctx, ca_file, NULL)
                                 : SSL_CTX_set_default_verify_paths(ctx->ssl_ctx);
  if (ok != 1) {
    SSL_CTX_free(ctx->ssl_ctx);
    free(ctx);
    *err = (ca_file && *ca_file) ? "cannot load the CA file (--ca-file)"
                                 : "cannot load the system CA store";
    ERR_clear_error();
    return UV_EINVAL;
  }
  *out = ctx;
  return 0;
}

int tls_ctx_use_client_cert(tls_ctx *ctx, const char *cert_file, const char *key_file, const char **err) {
  ERR_clear_error();
  int rc = 0;
  if (SSL_CTX_use_certificate_chain_file(ctx->ssl_ctx, cert_file) != 1) {
    *err = "cannot load the client certificate";
    rc = UV_EINVAL;
  } else if (SSL_CTX_use_PrivateKey_file(ctx->ssl_ctx, key_file, SSL_FILETYPE_PEM) != 1) {
    *err = "cannot load the client key";
    rc = UV_EINVAL;
  } else if (SSL_CTX_check_private_key(ctx->ssl_ctx) != 1) {
    *err = "the client key does not match the certificate";
    rc = UV_EINVAL;
  }
  ERR_clear_error();
  return rc;
}

void tls_ctx_free(tls_ctx *ctx) {
  if (!ctx) return;
  SSL_CTX_free(ctx->ssl_ctx);
  free(ctx);
}

void tls_init(uv_loop_t *loop, tls_conn *c, tls_ctx *ctx, const tls_callbacks *cb) {
  void *data = c->data;
  memset(c, 0, offsetof(tls_conn, rbuf));
  c->data = data;
  c->loop = loop;
  c->ctx = ctx;
  c->cb = cb;
  c->state = TLS_IDLE;
}

const char *tls_error(const tls_conn *c) { return c->error; }

size_t tls_write_queue_size(const tls_conn *c) {
  if (c->state == TLS_IDLE || c->state == TLS_RESOLVING) return 0;
  return uv_stream_get_write_queue_size((const uv_stream_t *)&c->tcp);
}

/* ---- closing -------------------------------------------------------------- */

/* Runs after the last close callback (or the cancelled resolve): the struct
 * is the caller's again from inside on_close. */
static void maybe_finish(tls_conn *c) {
  if (c->pending_closes > 0 || c->resolving) return;
  if (c->addrs) {
    uv_freeaddrinfo(c->addrs);
    c->addrs = c->next_ai = NULL;
  }
  if (c->ssl) {
    SSL_free(c->ssl); /* frees both BIOs */
    c->ssl = NULL;
    c->rbio = c->wbio = NULL;
  }
  c->state = TLS_IDLE;
  const char *reason = c->close_reason ? c->close_reason : "closed";
  c->cb->on_close(c, reason);
}

static void on_handle_closed(uv_handle_t *h) {
  tls_conn *c = h->data;
  c->pending_closes--;
  maybe_finish(c);
}

void tls_close(tls_conn *c, const char *reason) {
  if (c->state == TLS_IDLE || c->state == TLS_CLOSING) return;
  tls_state was = c->state;
  c->state = TLS_CLOSING;
  c->close_reason = reason;
  if (was == TLS_OPEN && c->ssl) {
    /* close_notify, best effort: the write is tried at once below and
     * cancelled by uv_close if the socket cannot take it. */
    ERR_clear_error();
    SSL_shutdown(c->ssl);
    size_t n = BIO_ctrl_pending(c->wbio);
    if (n > 0) {
      char tmp[256];
      int got = BIO_read(c->wbio, tmp, n < sizeof(tmp) ? (int)n : (int)sizeof(tmp));
      if (got > 0) {
        uv_buf_t b = uv_buf_init(tmp, (unsigned)got);
        (void)uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
      }
    }
  }
  if (c->resolving) uv_cancel((uv_req_t *)&c->gai);
  uv_timer_stop(&c->timer);
  c->pending_closes++;
  uv_close((uv_handle_t *)&c->timer, on_handle_closed);
  if (c->tcp_open) {
    c->tcp_open = false;
    c->pending_closes++;
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
  }
}

/* The connection could not be established: report it, then close. */
static void fail(tls_conn *c, int status, const char *why) {
  if (c->state == TLS_CLOSING || c->state == TLS_IDLE) return;
  if (!c->error) c->error = why;
  if (!c->connected_reported) {
    c->connected_reported = true;
    c->cb->on_connect(c, status);
  }
  tls_close(c, why);
}

static void on_timeout(uv_timer_t *t) {
  tls_conn *c = t->data;
  if (!c->connected_reported)
    fail(c, UV_ETIMEDOUT, "connect timeout");
  else if (c->cb->on_timeout)
    c->cb->on_timeout(c);
  else
    tls_close(c, "timeout");
}

void tls_set_timeout(tls_conn *c, uint64_t ms) {
  if (c->state == TLS_IDLE || c->state == TLS_CLOSING) return;
  if (ms == 0)
    uv_timer_stop(&c->timer);
  else
    uv_timer_start(&c->timer, on_timeout, ms, 0);
}

/* ---- writing -------------------------------------------------------------- */

static void on_written(uv_write_t *req, int status) {
  tls_conn *c = req->handle->data;
  free(req);
  if (status < 0 && status != UV_ECANCELED) tls_close(c, "write failed");
  else if (status == 0 && c->state == TLS_OPEN && c->cb->on_drain && tls_write_queue_size(c) == 0)
    c->cb->on_drain(c);
}

/* Writes what it can now and queues the rest ("write now, else queue").
 * Takes ownership of w. */
static int write_raw(tls_conn *c, tls_wreq *w) {
  uv_stream_t *s = (uv_stream_t *)&c->tcp;
  size_t off = 0;
  c->bytes_out += w->len;
  if (uv_stream_get_write_queue_size(s) == 0) {
    uv_buf_t b = uv_buf_init(w->data, (unsigned)w->len);
    int n = uv_try_write(s, &b, 1);
    if (n > 0) off = (size_t)n;
  }
  if (off == w->len) {
    free(w);
    return 0;
  }
  uv_buf_t b = uv_buf_init(w->data + off, (unsigned)(w->len - off));
  int r = uv_write(&w->req, s, &b, 1, on_written);
  if (r < 0) {
    free(w);
    tls_close(c, "write failed");
    return r;
  }
  if (uv_stream_get_write_queue_size(s) > TLS_MAX_WRITE_QUEUE) {
    tls_close(c, "write queue full");
    return UV_ENOBUFS;
  }
  return 0;
}

/* Sends whatever OpenSSL left in the write BIO. */
static int flush_wbio(tls_conn *c) {
  size_t n;
  while (c->state != TLS_CLOSING && (n = BIO_ctrl_pending(c->wbio)) > 0) {
    tls_wreq *w = malloc(sizeof(*w) + n);
    if (!w) {
      tls_close(c, "out of memory");
      return UV_ENOMEM;
    }
    int got = BIO_read(c->wbio, w->data, (int)n);
    if (got <= 0) {
      free(w);
      break;
    }
    w->len = (size_t)got;
    int r = write_raw(c, w);
    if (r < 0) return r;
  }
  return 0;
}

int tls_write(tls_conn *c, const void *data, size_t len) {
  if (c->state != TLS_OPEN) return UV_ENOTCONN;
  if (len == 0) return 0;
  if (!c->use_tls) {
    tls_wreq *w = malloc(sizeof(*w) + len);
    if (!w) return UV_ENOMEM;
    memcpy(w->data, data, len);
    w->len = len;
    return write_raw(c, w);
  }
  while (len > 0) {
    int chunk = len > INT32_MAX ? INT32_MAX : (int)len;
    ERR_clear_error();
    int r = SSL_write(c->ssl, data, chunk);
    if (r <= 0) {
      c->error = "SSL_write failed";
      tls_close(c, c->error);
      return UV_EPROTO;
    }
    data = (const char *)data + r;
    len -= (size_t)r;
  }
  int r = flush_wbio(c);
  if (r < 0) return r;
  return c->state == TLS_OPEN ? 0 : UV_ENOBUFS;
}

/* ---- connecting ----------------------------------------------------------- */

static void opened(tls_conn *c) {
  c->state = TLS_OPEN;
  uv_timer_stop(&c->timer);
  c->connected_reported = true;
  c->cb->on_connect(c, 0);
}

static const char *ssl_reason(const char *fallback) {
  unsigned long e = ERR_peek_error();
  const char *r = e ? ERR_reason_error_string(e) : NULL;
  return r ? r : fallback;
}

static void do_handshake(tls_conn *c) {
  ERR_clear_error();
  int r = SSL_do_handshake(c->ssl);
  int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, r);
  const char *why = e == SSL_ERROR_NONE || e == SSL_ERROR_WANT_READ ? NULL
                                                                     : ssl_reason("TLS handshake failed");
  if (flush_wbio(c) < 0) return;
  if (e == SSL_ERROR_WANT_READ) return;
  if (e != SSL_ERROR_NONE) {
    long v = SSL_get_verify_result(c->ssl);
    if (v != X509_V_OK)
      fail(c, TLS_ECERT, X509_verify_cert_error_string(v));
    else
      fail(c, TLS_EHANDSHAKE, why);
    return;
  }
  opened(c);
  /* The peer may have sent application data in the same read. */
  if (c->state == TLS_OPEN) read_plain(c);
}

static bool is_ip_literal(const char *host) {
  unsigned char tmp[16];
  return uv_inet_pton(AF_INET, host, tmp) == 0 || uv_inet_pton(AF_INET6, host, tmp) == 0;
}

static int start_tls(tls_conn *c) {
  c->ssl = SSL_new(c->ctx->ssl_ctx);
  c->rbio = BIO_new(BIO_s_mem());
  c->wbio = BIO_new(BIO_s_mem());
  if (!c->ssl || !c->rbio || !c->wbio) {
    BIO_free(c->rbio);
    BIO_free(c->wbio);
    c->rbio = c->wbio = NULL;
    return UV_ENOMEM;
  }
  /* An empty read BIO means "no bytes yet", not EOF, until the socket says so. */
  BIO_set_mem_eof_return(c->rbio, -1);
  SSL_set_bio(c->ssl, c->rbio, c->wbio);
  if (is_ip_literal(c->host)) {
    /* RFC 6066: no SNI for addresses; check the certificate's IP SAN. */
    if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), c->host) != 1) return UV_EINVAL;
  } else {
    if (SSL_set_tlsext_host_name(c->ssl, c->host) != 1) return UV_EINVAL;
    if (SSL_set1_host(c->ssl, c->host) != 1) return UV_EINVAL;
  }
  SSL_set_connect_state(c->ssl);
  c->state = TLS_HANDSHAKING;
  do_handshake(c);
  return 0;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  tls_conn *c = h->data;
  *buf = uv_buf_init(c->rbuf, sizeof(c->rbuf));
}

static void on_tcp_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  tls_conn *c = s->data;
  if (c->state == TLS_CLOSING || nread == 0) return;
  if (nread < 0) {
    const char *why = nread == UV_EOF ? "connection closed by peer" : "read error";
    if (c->rbio) BIO_set_mem_eof_return(c->rbio, 0);
    if (c->state == TLS_OPEN)
      tls_close(c, why);
    else
      fail(c, (int)nread, why);
    return;
  }
  c->bytes_in += (uint64_t)nread;
  if (!c->use_tls) {
    c->cb->on_read(c, buf->base, (size_t)nread);
    return;
  }
  if (BIO_write(c->rbio, buf->base, (int)nread) != (int)nread) {
    fail(c, UV_ENOMEM, "out of memory");
    return;
  }
  if (c->state == TLS_HANDSHAKING)
    do_handshake(c);
  else if (c->state == TLS_OPEN)
    read_plain(c);
}

static void read_plain(tls_conn *c) {
  char plain[TLS_PLAIN_BUF];
  /* Paused mid-record: the rest stays decrypted-to-be in the read BIO until
   * tls_pause_reading(false) comes back here. */
  while (c->state == TLS_OPEN && !c->paused) {
    ERR_clear_error();
    int r = SSL_read(c->ssl, plain, sizeof(plain));
    int e = r > 0 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, r);
    const char *why = (e == SSL_ERROR_NONE || e == SSL_ERROR_WANT_READ || e == SSL_ERROR_ZERO_RETURN)
                          ? NULL
                          : ssl_reason("TLS error");
    if (flush_wbio(c) < 0) return;
    if (r > 0) {
      c->cb->on_read(c, plain, (size_t)r);
      continue;
    }
    if (e == SSL_ERROR_WANT_READ) return;
    if (e == SSL_ERROR_ZERO_RETURN) {
      tls_close(c, "connection closed by peer");
      return;
    }
    c->error = why;
    tls_close(c, why);
    return;
  }
}

void tls_pause_reading(tls_conn *c, bool pause) {
  if (c->state != TLS_OPEN || c->paused == pause) return;
  c->paused = pause;
  if (pause) {
    if (c->reading) uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = false;
    return;
  }
  if (!c->reading) {
    int r = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_tcp_read);
    if (r < 0) {
      tls_close(c, "read start failed");
      return;
    }
    c->reading = true;
  }
  if (c->use_tls) read_plain(c); /* what was read before the pause */
}

static void try_next_address(tls_conn *c, int last_status);

static void on_retry_closed(uv_handle_t *h) {
  tls_conn *c = h->data;
  c->pending_closes--;
  if (c->state == TLS_CLOSING)
    maybe_finish(c);
  else
    try_next_address(c, UV_ECONNREFUSED);
}

/* This address failed: close the socket and try the resolver's next one. */
static void retry_or_fail(tls_conn *c, int status) {
  if (!c->next_ai) {
    fail(c, status, "connect failed");
    return;
  }
  c->tcp_open = false;
  c->pending_closes++;
  uv_close((uv_handle_t *)&c->tcp, on_retry_closed);
}

static void on_connected(uv_connect_t *req, int status) {
  tls_conn *c = req->data;
  if (status == UV_ECANCELED || c->state == TLS_CLOSING) return;
  if (status < 0) {
    retry_or_fail(c, status);
    return;
  }
  uv_freeaddrinfo(c->addrs);
  c->addrs = c->next_ai = NULL;
  int r = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_tcp_read);
  if (r < 0) {
    fail(c, r, "read start failed");
    return;
  }
  c->reading = true;
  if (!c->use_tls) {
    opened(c);
    return;
  }
  r = start_tls(c);
  if (r < 0) fail(c, r, "TLS setup failed");
}

static void try_next_address(tls_conn *c, int last_status) {
  struct addrinfo *ai = c->next_ai;
  if (!ai) {
    fail(c, last_status, "connect failed");
    return;
  }
  c->next_ai = ai->ai_next;
  uv_tcp_init(c->loop, &c->tcp);
  c->tcp.data = c;
  c->tcp_open = true;
  uv_tcp_nodelay(&c->tcp, 1);
  c->connect_req.data = c;
  int r = uv_tcp_connect(&c->connect_req, &c->tcp, ai->ai_addr, on_connected);
  if (r < 0) retry_or_fail(c, r);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  tls_conn *c = req->data;
  c->resolving = false;
  if (c->state == TLS_CLOSING) {
    if (res) uv_freeaddrinfo(res);
    maybe_finish(c);
    return;
  }
  if (status < 0 || !res) {
    if (res) uv_freeaddrinfo(res);
    fail(c, status < 0 ? status : UV_EAI_NONAME, "cannot resolve host");
    return;
  }
  c->addrs = c->next_ai = res;
  c->state = TLS_CONNECTING;
  try_next_address(c, UV_EAI_NONAME);
}

int tls_connect(tls_conn *c, const char *host, int port, bool use_tls, int timeout_ms) {
  if (c->state != TLS_IDLE) return UV_EBUSY;
  if (use_tls && !c->ctx) return UV_EINVAL;
  if (!host || !*host || strlen(host) > TLS_MAX_HOST || port <= 0 || port > 65535) return UV_EINVAL;
  snprintf(c->host, sizeof(c->host), "%s", host);
  c->port = port;
  c->use_tls = use_tls;
  c->connected_reported = false;
  c->paused = c->reading = false;
  c->close_reason = NULL;
  c->error = NULL;
  c->bytes_in = c->bytes_out = 0;
  char service[8];
  snprintf(service, sizeof(service), "%d", port);
  struct addrinfo hints;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  c->gai.data = c;
  /* Started first: when it fails nothing else exists and no callback comes. */
  int r = uv_getaddrinfo(c->loop, &c->gai, on_resolved, c->host, service, &hints);
  if (r < 0) return r;
  c->resolving = true;
  c->state = TLS_RESOLVING;
  uv_timer_init(c->loop, &c->timer);
  c->timer.data = c;
  if (timeout_ms > 0) uv_timer_start(&c->timer, on_timeout, (uint64_t)timeout_ms, 0);
  return 0;
}
