/* The REST fallback for a symbol's latest quote: GET
 * {rest_url}/v2/stocks/{SYMBOL}/quotes/latest over https_client, answered as
 * a stream-format quote ({"T":"q","S":"AAPL","bx":...,"t":...}) so that the
 * caller handles it like any upstream quote (stream_msg.h).
 *
 * Concurrent requests for one symbol share one upstream request: the first
 * starts it, later ones join its waiter list, all get the same answer.
 * Nothing blocks the loop; every answer comes from the loop, never from
 * inside arest_get.
 *
 *   arest *r; arest_new(loop, &cfg, &r, &err);
 *   arest_get(r, "AAPL", on_quote, client, &w);
 *   ...on_quote(client, AREST_OK, "{\"T\":\"q\",...}", len)
 *   ...or AREST_NOT_FOUND (404), AREST_TIMEOUT (504), AREST_UPSTREAM_ERROR (502) */
#ifndef TD_ALPACA_REST_H
#define TD_ALPACA_REST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* What the Alpaca clients (stream and REST) are configured with; the app
 * fills it from its configuration (cfg_alpaca_opts). Strings are borrowed. */
typedef struct {
  const char *key_id;        /* APCA_API_KEY_ID: secret, never logged */
  const char *secret_key;    /* APCA_API_SECRET_KEY: secret, never logged */
  const char *feed;          /* iex, sip, ... */
  const char *url;           /* the stream URL, overriding feed */
  const char *news_url;
  const char *channels;
  bool news;
  const char *rest_url;
  const char *ca_file;
  const char *symbols;       /* comma separated */
} alpaca_opts;

/* An upstream answer slower than this is a 504 for every waiter. */
#define AREST_TIMEOUT_MS 5000
/* A latest quote is a few hundred bytes; anything near this is not one. */
#define AREST_MAX_BODY (64 * 1024)
/* Distinct symbols being fetched at once. Past it arest_get says -EBUSY
 * (503): a scan of many symbols cannot open unbounded upstream connections. */
#define AREST_MAX_PENDING 64
/* Callers waiting on one symbol's request. */
#define AREST_MAX_WAITERS 1024

typedef enum {
  AREST_OK,             /* the quote, as stream-format JSON */
  AREST_NOT_FOUND,      /* 404 upstream, or an empty quote */
  AREST_TIMEOUT,        /* no answer within the timeout */
  AREST_UPSTREAM_ERROR  /* connect/TLS failure, a non-200/404 status, bad JSON */
} arest_result;

typedef struct arest arest;
typedef struct arest_wait arest_wait;

/* json: the quote (NUL-terminated) when AREST_OK, else NULL. Valid only
 * during the call. */
typedef void (*arest_cb)(void *ud, arest_result res, const char *json, size_t len);

typedef struct arest_stats {
  uint64_t requests;        /* arest_get calls accepted */
  uint64_t upstream;        /* upstream requests started */
  uint64_t shared;          /* calls that joined a request already in flight */
  uint64_t results[4];      /* answers delivered, by arest_result */
  uint64_t busy;            /* calls refused with -EBUSY */
} arest_stats;

/* Needs the credentials (APCA_API_KEY_ID / APCA_API_SECRET_KEY) and
 * opts->rest_url. Returns 0 or a negative errno with *err set. */
int arest_new(uv_loop_t *loop, const alpaca_opts *opts, arest **out, const char **err);
/* Cancels every request in flight (no callback comes) and frees. */
void arest_free(arest *r);
/* For tests and operators: the upstream timeout in ms (default AREST_TIMEOUT_MS). */
void arest_set_timeout(arest *r, int timeout_ms);

/* Starts or joins the request for `symbol`. Returns 0 with *w set (the
 * callback comes once, unless arest_cancel(*w) is called first), -EINVAL for
 * a symbol outside [A-Z0-9./-]{1,16}, or -EBUSY past the limits above. */
int arest_get(arest *r, const char *symbol, arest_cb cb, void *ud, arest_wait **w);
/* The waiter's callback will not come (e.g. its client went away). */
void arest_cancel(arest *r, arest_wait *w);

const arest_stats *arest_get_stats(const arest *r);
/* "ok", "not_found", "timeout", "upstream_error" (the HTTP error codes). */
const char *arest_result_name(arest_result res);
/* 200, 404, 504, 502. */
int arest_http_status(arest_result res);

#endif
