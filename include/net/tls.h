/* A client connection over TCP, with or without TLS, on a libuv loop.
 *
 * TLS runs through OpenSSL memory BIOs: bytes read from the socket go into
 * the read BIO, and whatever OpenSSL puts into the write BIO is written to
 * the socket after every SSL call. Certificates are verified by default
 * (the system store or --ca-file), with SNI and a host-name check, TLS 1.2
 * at least. Without TLS (ws:// and http:// URLs) the same object carries
 * plain TCP, so that callers and tests need only one code path.
 *
 *   tls_ctx *ctx; tls_ctx_new(&ctx, cfg->ca_file, &err);
 *   tls_conn c;   tls_init(loop, &c, ctx, &callbacks);  c.data = me;
 *   tls_connect(&c, "stream.data.alpaca.markets", 443, true, 10000);
 *   ...on_connect(&c, 0): tls_write(&c, buf, n);
 *   ...on_read(&c, data, n)
 *   tls_close(&c, "done");
 *   ...on_close(&c, reason): the struct may be freed or connected again.
 *
 * The caller owns the tls_conn memory. on_close is always the last callback
 * of a tls_connect and comes exactly once, from a libuv close callback after
 * every handle of the connection is closed. */
#ifndef TD_TLS_H
#define TD_TLS_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* Above this many bytes queued on the socket the peer is not reading fast
 * enough: the connection is closed ("write queue full") rather than let
 * memory grow. Our upstream writes are a few small control messages, so
 * 4 MiB can only mean a stuck peer. */
#define TLS_MAX_WRITE_QUEUE (4 * 1024 * 1024)
/* Socket bytes read per read callback: one maximum TLS record (16 KiB) plus
 * its overhead fits, so a record never needs two reads to decrypt. */
#define TLS_READ_BUF (17 * 1024)
/* Plaintext bytes handed to on_read per SSL_read. */
#define TLS_PLAIN_BUF (16 * 1024)
/* Longest host name we connect to (RFC 1035: 253 characters). */
#define TLS_MAX_HOST 255

/* on_connect status values besides libuv's (UV_ETIMEDOUT, UV_ECONNREFUSED, ...). */
#define TLS_EHANDSHAKE (-EPROTO)  /* the TLS handshake failed; see tls_error() */
#define TLS_ECERT (-EACCES)       /* the peer's certificate did not verify */

typedef struct tls_ctx tls_ctx;
typedef struct tls_conn tls_conn;

typedef struct {
  /* status 0: connected (and the handshake done). Negative: the connection
   * failed; on_close follows. */
  void (*on_connect)(tls_conn *c, int status);
  /* Plaintext from the peer; valid only during the call. */
  void (*on_read)(tls_conn *c, const char *data, size_t len);
  /* The last callback: every handle is closed. `reason` is a static string
   * (the one given to tls_close, or why the connection ended). */
  void (*on_close)(tls_conn *c, const char *reason);
  /* Optional: the timer of tls_set_timeout fired on an open connection.
   * NULL: the connection closes with reason "timeout". (Before on_connect
   * the timer is the connect timeout and always fails the connection.) */
  void (*on_timeout)(tls_conn *c);
  /* Optional: every byte queued on the socket has been written. A relay
   * that stopped feeding tls_write past a high water resumes here. */
  void (*on_drain)(tls_conn *c);
} tls_callbacks;

typedef enum {
  TLS_IDLE,        /* initialised or closed: tls_connect may be called */
  TLS_RESOLVING,   /* uv_getaddrinfo in flight */
  TLS_CONNECTING,  /* uv_tcp_connect in flight */
  TLS_HANDSHAKING, /* TCP up, TLS handshake in progress */
  TLS_OPEN,        /* on_connect(0) was called; reads and writes flow */
  TLS_CLOSING      /* handles closing; on_close is next */
} tls_state;

/* Fields are private except `data`. */
struct tls_conn {
  void *data;
  uv_loop_t *loop;
  tls_ctx *ctx;
  const tls_callbacks *cb;
  tls_state state;
  bool use_tls;
  bool connected_reported; /* on_connect was called */
  uint8_t pending_closes;  /* handle close callbacks still to come */
  bool resolving;          /* the getaddrinfo request has not called back */
  bool tcp_open;           /* tcp is initialised and not yet closing */
  bool reading;            /* uv_read_start is in effect (tls_pause_reading) */
  bool paused;             /* the owner asked for no more on_read for now */
  const char *close_reason;
  const char *error;       /* static string: why the connection failed */
  char host[TLS_MAX_HOST + 1];
  int port;
  uv_getaddrinfo_t gai;
  struct addrinfo *addrs;   /* the resolver's answer, until connected */
  struct addrinfo *next_ai; /* the address to try when this one fails */
  uv_connect_t connect_req;
  uv_tcp_t tcp;
  uv_timer_t timer;
  struct ssl_st *ssl;
  struct bio_st *rbio; /* network -> OpenSSL */
  struct bio_st *wbio; /* OpenSSL -> network */
  uint64_t bytes_in;
  uint64_t bytes_out;
  char rbuf[TLS_READ_BUF];
};

/* An SSL_CTX for clients: TLS >= 1.2, peer verification on, trust from
 * `ca_file` (PEM) or the system store when NULL/"". Returns 0 or a negative
 * errno; *err then says why (static string). */
int tls_ctx_new(tls_ctx **out, const char *ca_file, const char **err);
/* Presents a client certificate (PEM chain) and its private key (PEM) to
 * servers that ask for one (Redis with tls-auth-clients). Returns 0 or a
 * negative errno; *err names the file that failed, never its contents. */
int tls_ctx_use_client_cert(tls_ctx *ctx, const char *cert_file, const char *key_file, const char **err);
void tls_ctx_free(tls_ctx *ctx);

void tls_init(uv_loop_t *loop, tls_conn *c, tls_ctx *ctx, const tls_callbacks *cb);
/* Resolves, connects and (use_tls) handshakes within timeout_ms. `host` may be
 * a name, an IPv4 or an IPv6 literal (without brackets). The resolved
 * addresses are tried in order until one accepts. Returns 0 (then
 * on_connect and on_close will come) or a negative errno (no callback). */
int tls_connect(tls_conn *c, const char *host, int port, bool use_tls, int timeout_ms);
/* Encrypts and queues `len` bytes (copied). Returns 0 or a negative errno:
 * UV_ENOTCONN when not open, UV_ENOBUFS when the queue limit was passed
 * (the connection is then closing). */
int tls_write(tls_conn *c, const void *data, size_t len);
/* Closes now (a TLS close_notify is sent best effort). Idempotent; on_close
 * comes later from the loop, never from inside this call. */
void tls_close(tls_conn *c, const char *reason);
/* (Re)arms the connection's timer: after ms without a further call the
 * connection closes with reason "timeout". 0 disarms it. */
void tls_set_timeout(tls_conn *c, uint64_t ms);
/* Stops (true) or resumes (false) reading the socket, and so on_read: a
 * relay whose other side cannot take more bytes pushes back on the peer
 * through TCP instead of buffering. Has effect once the connection is open. */
void tls_pause_reading(tls_conn *c, bool pause);
/* Why the last connection failed (static string), or NULL. */
const char *tls_error(const tls_conn *c);
/* Bytes queued on the socket, not yet written. */
size_t tls_write_queue_size(const tls_conn *c);

#endif
