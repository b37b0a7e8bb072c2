/* redis_conn: one logical Redis connection that keeps itself alive.
 *
 * An explicit state machine drives one hiredis async context at a time:
 *
 *   IDLE -> [RESOLVING] -> CONNECTING -> [AUTHENTICATING] -> [SELECTING] -> READY
 *                                     \-> PINGING (neither AUTH nor SELECT) -/
 *     any failure or loss -> BACKOFF -> (jittered delay) -> RESOLVING/CONNECTING
 *   rconn_close(): -> CLOSING -> CLOSED (on_closed)
 *
 * Host names are resolved with uv_getaddrinfo (hiredis would block), then
 * hiredis connects to the numeric address. The server must answer once
 * (AUTH, SELECT or a PING) before the connection is READY: a peer that
 * accepts TCP and never answers gets no command, and the owner keeps its
 * messages meanwhile. One timer bounds the whole handshake (resolve,
 * connect, AUTH, SELECT, PING); a watchdog drops a READY
 * connection whose oldest outstanding reply is older than the command
 * timeout (a stalled server), and reconnects. Retries never stop.
 *
 * The owner embeds a td_rconn (caller-owned memory, libuv style) and frees
 * it only after on_closed. Commands are RESP the owner formats itself; every
 * reply (or NULL when the connection went away first) comes back through
 * one on_reply callback with the owner's integer tag. */
#ifndef TD_REDIS_CONN_H
#define TD_REDIS_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include <hiredis/async.h>
#include <uv.h>

#define RCONN_DEFAULT_PORT 6379
/* Longest URL accepted: config values, not documents. */
#define RCONN_URL_MAX 1024
/* Largest db index SELECT accepts here; Redis's own default is 16 dbs. */
#define RCONN_DB_MAX 65535
/* Groups of outstanding tracked commands, one group per loop iteration in
 * which commands were sent. Past it the newest group absorbs new commands,
 * which only makes the watchdog later, never wrong about a stall. */
#define RCONN_WATCH_SLOTS 256
/* Arguments of one rconn_command_argv: the commands sent here are short. */
#define RCONN_ARGV_MAX 8

/* Smallest size hiredis's output buffer grows to once a command does not
 * fit: a loop iteration's worth of pipelined PUBLISH commands, so that a
 * batch does not regrow (and recopy) the buffer in small steps. */
#define RCONN_OBUF_MIN (64 * 1024)

typedef enum rconn_state {
  RCONN_IDLE,
  RCONN_RESOLVING,
  RCONN_CONNECTING,
  RCONN_AUTHENTICATING,
  RCONN_SELECTING,
  RCONN_PINGING,
  RCONN_READY,
  RCONN_BACKOFF,
  RCONN_CLOSING,
  RCONN_CLOSED
} rconn_state;

typedef struct rconn_url {
  bool is_unix;
  bool tls;       /* rediss://: through a redis_tls relay (redis_tls.h) */
  char *host;     /* TCP: name or numeric address (IPv6 without brackets) */
  int port;
  char *path;     /* unix socket path */
  char *user;     /* NULL: AUTH <password> */
  char *password; /* NULL: no AUTH. Secret: never logged. */
  int db;         /* 0: no SELECT */
  char *masked;   /* the URL with the password replaced by "***" */
} rconn_url;

typedef struct td_rconn td_rconn;
typedef struct td_sentinel td_sentinel;

typedef struct rconn_callbacks {
  /* The connection is READY: commands may be sent. */
  void (*on_ready)(td_rconn *c, void *ud);
  /* An attempt failed or a READY connection was lost; a retry is scheduled.
   * Pending replies have already been delivered as NULL. */
  void (*on_lost)(td_rconn *c, void *ud, const char *reason, bool was_ready);
  /* A reply to a command sent with rconn_command*(); NULL when the
   * connection went away first. Freed by hiredis when this returns. */
  void (*on_reply)(td_rconn *c, void *ud, redisReply *reply, uintptr_t tag);
  /* After rconn_close(): every handle is closed, the memory may go. */
  void (*on_closed)(td_rconn *c, void *ud);
} rconn_callbacks;

/* Zero fields take the td_limits.h defaults; tests use shorter ones. */
typedef struct rconn_options {
  const char *name; /* for logs: "publisher", "subscriber" */
  uint32_t connect_timeout_ms;
  uint32_t command_timeout_ms;
  uint32_t backoff_min_ms;
  uint32_t backoff_max_ms;
  /* AUTH with these instead of the URL's userinfo (NULL password: the
   * URL's). A Sentinel has credentials of its own, apart from the primary's
   * that the URL carries. Copied; secret, never logged. */
  const char *user;
  const char *password;
} rconn_options;

struct td_rconn {
  uv_loop_t *loop;
  rconn_state state;
  rconn_url url;
  rconn_callbacks cb;
  void *ud;
  const char *name;
  uint32_t connect_timeout_ms, command_timeout_ms;
  uint32_t backoff_min_ms, backoff_max_ms;

  redisAsyncContext *ac;   /* NULL between contexts */
  redisAsyncContext *dying; /* freed by us, disconnect callback pending */
  struct redis_tls_relay *relay; /* rediss://: this attempt's TLS relay */
  bool in_connect_cb;
  uv_timer_t timer;        /* handshake timeout, or the backoff delay */
  uv_timer_t watchdog;     /* command timeout checks while READY */
  uv_getaddrinfo_t gai;
  bool gai_active;         /* a request is out; the req is busy until its callback */
  bool gai_timed_out;
  char addr[64];           /* numeric address being connected to */
  const char *drop_reason; /* why we tore the current context down */
  const char *late_drop;   /* a drop requested where hiredis forbids freeing */
  unsigned attempt;        /* consecutive failures, drives the backoff */
  uint64_t rng;
  int closes_pending;
  bool ever_ready;

  char *scratch;            /* rconn_command_begin without in-place formatting */
  size_t scratch_cap;

  struct { uint64_t sent_ms; uint32_t n; } watch[RCONN_WATCH_SLOTS];
  uint32_t watch_head, watch_len;

  td_sentinel *sentinel; /* redis+sentinel://: asked for the address before each attempt */

  uint64_t reconnects; /* attempts made after a failure or a loss */
  uint64_t errors;     /* failed attempts and lost connections */
};

/* Parses redis://[user:password@]host[:port][/db], redis://[::1]:6379,
 * rediss:// (the same over TLS), unix:///path. Userinfo may be %-encoded.
 * Returns 0 or UV_EINVAL (bad URL); *err then names the problem. */
int rconn_url_parse(const char *url, rconn_url *out, const char **err);
void rconn_url_free(rconn_url *u);

/* Initializes `c` (IDLE). Returns 0 or the rconn_url_parse error. A
 * redis+sentinel:// URL attaches `c` to the process's Sentinel target
 * (redis/sentinel.h): the address is asked for before each attempt, and
 * ROLE must say master before the connection is READY. */
int rconn_init(td_rconn *c, uv_loop_t *loop, const char *url, const rconn_callbacks *cb,
               void *ud, const rconn_options *opt, const char **err);
/* IDLE -> first connection attempt. */
void rconn_start(td_rconn *c);
/* True when commands may be sent now. */
bool rconn_ready(const td_rconn *c);
/* How long this connection's reader has been behind what the server sends
 * (every read event since left bytes unread; redis_uv.c), 0 if it is not. */
uint64_t rconn_behind_ms(const td_rconn *c);
/* Sends a RESP command expecting one reply, watched by the command timer;
 * not for the (P)(UN)SUBSCRIBE family or MONITOR (rconn_command_untracked).
 * cmd[len] must be '\0': hiredis 0.14 scans the arguments with strchr(). 
 * Returns 0, UV_ENOTCONN when not ready, UV_ENOMEM, UV_EIO if hiredis
 * refused it. A top-level integer reply handed to on_reply is a shared
 * object, valid only during the callback like every reply. */
int rconn_command(td_rconn *c, uintptr_t tag, const char *cmd, size_t len);
/* rconn_command without a copy: begin returns room for a RESP command of up
 * to `max` bytes (NULL when not ready or out of memory), end sends the `len`
 * bytes written there, with rconn_command's results. Nothing else may touch
 * the connection in between. Never for the (P)(UN)SUBSCRIBE family or
 * MONITOR. */
char *rconn_command_begin(td_rconn *c, size_t max);
int rconn_command_end(td_rconn *c, uintptr_t tag, size_t len);
/* rconn_command with the arguments formatted by hiredis (binary safe;
 * argl NULL: strlen of each). At most RCONN_ARGV_MAX arguments. */
int rconn_command_argv(td_rconn *c, uintptr_t tag, int argc, const char **argv, const size_t *argl);
/* The same without the watchdog: (UN)SUBSCRIBE, whose replies hiredis routes
 * per channel and interleaves with messages. */
int rconn_command_untracked(td_rconn *c, uintptr_t tag, const char *cmd, size_t len);
/* Bytes formatted but not yet written to the socket (hiredis's obuf). */
size_t rconn_pending_bytes(const td_rconn *c);
/* Drops the current connection (if any) and reconnects after the backoff. */
void rconn_reconnect(td_rconn *c, const char *reason);
/* The primary moved to host:port (redis/sentinel.c): a connection that is
 * not there reconnects, one waiting in its backoff tries at once. */
void rconn_retarget(td_rconn *c, const char *host, int port);
/* Closes everything; on_closed fires once done. Safe from any callback. */
void rconn_close(td_rconn *c);
const char *rconn_state_name(rconn_state s);

#endif
