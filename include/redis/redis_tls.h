/* redis_tls: TLS to Redis (rediss://) under hiredis, with the project's one
 * TLS engine (net/tls.h).
 *
 * hiredis 0.14 (Debian bookworm) has no TLS and cannot adopt a socket it
 * did not open; hiredis 1.x has TLS hooks that 0.14 lacks. So TLS goes
 * under hiredis as an in-process relay that works the same on both:
 *
 *   hiredis --plain RESP--> unix socket --> relay --tls_write--> TCP+TLS --> Redis
 *   hiredis <--plain RESP-- unix socket <-- relay <--on_read---- TCP+TLS <-- Redis
 *
 * The relay connects and verifies the TLS session first (tls_connect: names
 * resolved off the loop, the certificate checked against the system store
 * or the configured CA, the host name or IP address checked, TLS >= 1.2,
 * an optional client certificate). Only then does it listen on a unix
 * socket in a fresh private directory (mode 0700) and hand its path to the
 * owner, whose hiredis context connects there as it would to unix://. The
 * relay accepts exactly one peer, checks with SO_PEERCRED that it is this
 * process, and removes the socket file and the directory once hiredis has
 * sent its first bytes (hiredis 1.x re-runs connect() on the path to see
 * that the connect completed, so the listener must live until then). Bytes
 * then flow both ways with backpressure: past REDIS_TLS_HIGH_WATER queued
 * on one side the relay stops reading the other until it drains, so a slow
 * Redis or a slow hiredis is felt through the sockets, never buffered here.
 * Either side closing closes the other: hiredis sees a lost connection.
 *
 * The trust and the client certificate are process-wide (one SSL_CTX for
 * every rediss:// connection): redis_tls_configure once at startup. */
#ifndef TD_REDIS_TLS_H
#define TD_REDIS_TLS_H

#include <uv.h>

#include "net/tls.h"

/* Bytes queued towards one side past which the relay stops reading the
 * other: about four maximal reads, enough to keep a pipelined publish
 * batch moving without a second copy of Redis's backlog in this process. */
#define REDIS_TLS_HIGH_WATER (256 * 1024)
/* Bytes read from hiredis's socket per read callback. */
#define REDIS_TLS_READ_BUF (64 * 1024)

typedef struct redis_tls_opts {
  const char *ca_file;   /* PEM bundle; NULL or "": the system store */
  const char *cert_file; /* client certificate chain (PEM), or NULL */
  const char *key_file;  /* its private key (PEM); needed with cert_file */
} redis_tls_opts;

/* Loads the trust (and the client certificate) used by every later rediss://
 * connection. Returns 0 or a negative errno with *err saying which file
 * failed (static string; never the key's contents). */
int redis_tls_configure(const redis_tls_opts *o, const char **err);
/* The process's TLS context for Redis, made from the system store on first
 * use when redis_tls_configure was not called. NULL (and *err) on failure. */
tls_ctx *redis_tls_ctx(const char **err);
/* Frees the context (connections still open keep their own reference). */
void redis_tls_shutdown(void);

typedef struct redis_tls_relay redis_tls_relay;

typedef struct redis_tls_relay_cb {
  /* The TLS session is up: connect hiredis to the unix socket at `path`
   * (redisAsyncConnectUnix). */
  void (*on_ready)(void *ud, const char *path);
  /* The TLS session could not be made: `reason` is "connect failed",
   * "TLS certificate refused" or "TLS handshake failed", `detail` what
   * OpenSSL or libuv said (both static strings). Release the relay. */
  void (*on_fail)(void *ud, const char *reason, const char *detail);
} redis_tls_relay_cb;

/* Starts a relay to host:port (a name or an IP literal, checked against the
 * certificate). Returns 0 and *out (then exactly one of on_ready or on_fail
 * follows, never from inside this call) or a negative errno with *err. */
int redis_tls_relay_start(uv_loop_t *loop, const char *host, int port, const redis_tls_relay_cb *cb,
                          void *ud, redis_tls_relay **out, const char **err);
/* The owner lets go: no callback comes after this. The relay closes both
 * sides (if open) and frees itself once libuv has closed its handles. */
void redis_tls_relay_release(redis_tls_relay *r);

#endif
