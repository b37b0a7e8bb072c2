/* The Alpaca market-data stream client (v2 stocks, and v1beta1 news when
 * enabled): connect, authenticate, subscribe, hand every data message on,
 * reconnect forever with exponential backoff and jitter.
 *
 *   alpaca *a; const char *err;
 *   if (alpaca_new(loop, &cfg, on_msg, pipeline, &a, &err) < 0) { print err; exit 2; }
 *   alpaca_start(a);
 *   ...on_msg(pipeline, m) for each quote, trade, bar, ... (stream_msg.h)
 *   alpaca_stop(a, on_stopped, me);   then a is freed and on_stopped runs.
 *
 * Each upstream frame is parsed once, with smsg_parse_stream: control
 * messages (success, error, subscription) drive the state machine, data
 * messages go to on_msg. Credentials come from the config (environment
 * only) and are never logged. */
#ifndef TD_ALPACA_H
#define TD_ALPACA_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "market/alpaca_rest.h"
#include "stream_msg.h"

/* Default upstream: the stocks stream of the chosen feed. */
#define ALPACA_STREAM_BASE "wss://stream.data.alpaca.markets/v2/"
/* Connect + TLS + upgrade. */
#define ALPACA_CONNECT_TIMEOUT_MS 10000
/* From the upgrade to the subscription's confirmation. Alpaca itself ends
 * an unauthenticated connection after about 10 s (error 404). */
#define ALPACA_SETUP_TIMEOUT_MS 15000
/* Reconnect delays: doubled per failed attempt from MIN up to MAX, then
 * jittered to between half and all of it so that many instances restarted
 * together do not reconnect in step. A confirmed subscription resets it. */
#define ALPACA_BACKOFF_MIN_MS 500
#define ALPACA_BACKOFF_MAX_MS 30000
/* After 402 (auth failed) or 409 (insufficient subscription) retrying
 * soon cannot help and may get the key throttled. */
#define ALPACA_BACKOFF_LONG_MS 60000
#define ALPACA_BACKOFF_LONG_MAX_MS 600000
/* 406 (connection limit exceeded): another session holds the key's one
 * slot, which frees ~0.4 s after a clean close (and up to ~90 s after an
 * unclean drop). Like Alpaca's Go SDK, the auth is sent again on the same
 * socket after n x ALPACA_AUTH_RETRY_STEP_MS (n: the retry's number),
 * capped at ALPACA_AUTH_RETRY_MAX_MS: never more than two tries a second,
 * and data flows again within the cap of the slot freeing. Alpaca closes a
 * refused socket ~10 s later; past ALPACA_AUTH_RETRY_MAX_TRIES on one
 * socket (a server that keeps it open) we close it ourselves. Either way
 * the reconnect then waits the short limit backoff, not the long one. */
#define ALPACA_AUTH_RETRY_STEP_MS 500
#define ALPACA_AUTH_RETRY_MAX_MS 2000
#define ALPACA_AUTH_RETRY_MAX_TRIES 20
#define ALPACA_BACKOFF_LIMIT_MS 500
#define ALPACA_BACKOFF_LIMIT_MAX_MS 4000
/* HTTP 429 on the upgrade: we reconnected too fast for Alpaca's limiter.
 * Much slower than a plain failure, yet quicker than the long backoff. */
#define ALPACA_BACKOFF_THROTTLED_MS 5000
#define ALPACA_BACKOFF_THROTTLED_MAX_MS 120000
/* The largest frame accepted from Alpaca. Its batches are a few KiB; 8 MiB
 * is far above any real one and still bounds memory. */
#define ALPACA_MAX_MESSAGE (8 * 1024 * 1024)
/* Bytes of our auth / subscribe messages (symbols lists included). */
#define ALPACA_MAX_REQUEST (256 * 1024)

typedef enum {
  ALPACA_DISCONNECTED,  /* not started, or stopped */
  ALPACA_CONNECTING,    /* TCP, TLS, upgrade, waiting for "connected" */
  ALPACA_AUTHENTICATING,/* auth sent */
  ALPACA_SUBSCRIBING,   /* subscribe sent */
  ALPACA_STREAMING,     /* subscription confirmed: data flows */
  ALPACA_BACKOFF,       /* waiting to reconnect */
  ALPACA_CLOSING        /* alpaca_stop called */
} alpaca_state;

typedef enum { ALPACA_STREAM_DATA, ALPACA_STREAM_NEWS, ALPACA_STREAM_COUNT } alpaca_stream_id;

/* Alpaca's documented stream error codes, in the order of alpaca_stats.errors;
 * ALPACA_ERR_OTHER counts any other code. */
#define ALPACA_ERR_CODES {400, 401, 402, 403, 404, 405, 406, 407, 409, 500}
#define ALPACA_ERR_KNOWN 10
#define ALPACA_ERR_OTHER ALPACA_ERR_KNOWN

typedef struct alpaca_stats {
  alpaca_state state;
  bool enabled;                       /* the news stream only with --alpaca-news */
  uint64_t messages[SMSG_KIND_COUNT]; /* data messages delivered, by kind */
  uint64_t messages_total;
  double msgs_per_sec;                /* over the last few seconds */
  int64_t last_message_ms;            /* wall clock (ms since 1970) of the last one, 0: none */
  uint64_t connects;                  /* connection attempts */
  uint64_t reconnects;                /* attempts after the first */
  uint64_t sessions;                  /* subscriptions confirmed */
  uint64_t errors[ALPACA_ERR_KNOWN + 1]; /* by code, see ALPACA_ERR_CODES */
  uint64_t slow_client;               /* 407 */
  uint64_t protocol_errors;           /* frames the WebSocket layer refused */
  uint64_t bad_frames;                /* frames that were not JSON array/object */
  uint64_t backoff_ms;                /* the last reconnect delay chosen */
  uint64_t limit_refusals;            /* 406 connection limit exceeded (also in errors) */
  uint64_t auth_retries;              /* auths sent again on a socket after a 406 */
  uint64_t throttled;                 /* HTTP 429 answers to the upgrade */
  int last_close_code;                /* WebSocket close code of the last disconnect */
  smsg_stats parse;                   /* stream_msg counters, skipped items by reason */
} alpaca_stats;

typedef struct alpaca alpaca;

/* Called for each valid data message (quotes, trades, bars, ..., news once
 * per symbol); `m` is valid only during the call. */
typedef void (*alpaca_msg_cb)(void *ud, const smsg_msg *m);

/* Checks the configuration (credentials APCA_API_KEY_ID/APCA_API_SECRET_KEY,
 * feed or URL, channels, symbols, CA file) and builds the client. Returns 0,
 * or a negative errno with *err a static message for the operator. */
int alpaca_new(uv_loop_t *loop, const alpaca_opts *cfg, alpaca_msg_cb on_msg, void *ud,
               alpaca **out, const char **err);
/* Connects (and keeps reconnecting) every enabled stream. */
int alpaca_start(alpaca *a);
/* Closes every stream (a WebSocket close handshake when open), then frees
 * `a` and calls done(ud) from the loop. */
void alpaca_stop(alpaca *a, void (*done)(void *ud), void *ud);

/* Counters of one stream (a copy; msgs_per_sec computed now). */
void alpaca_get_stats(const alpaca *a, alpaca_stream_id id, alpaca_stats *out);
const char *alpaca_state_name(alpaca_state s);
/* The code counted in errors[i] (i < ALPACA_ERR_KNOWN), and the index of a code. */
int alpaca_error_code(int i);
int alpaca_error_index(int64_t code);
/* Alpaca's name for an error code ("auth failed"), or "unknown error". */
const char *alpaca_error_name(int64_t code);

#endif
