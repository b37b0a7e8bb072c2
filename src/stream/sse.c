/* GET /stream?symbols=AAPL,MSFT (&candles=..&tf=.., &trades=..): Server-Sent Events. Each quote is an
 * `event: quote` whose `id:` is its stream position, so a browser's
 * EventSource resumes with Last-Event-ID after a reconnect. A comment line
 * every --ping-interval-ms keeps proxies from closing an idle stream. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stream/candle_fan.h"
#include "stream/hub.h"
#include "base/log.h"
#include "base/td_limits.h"
#include "stream/ws_session.h"

/* Bytes a client may send on an event stream (it should send none). */
#define SSE_MAX_CLIENT_BYTES 4096
/* What EventSource waits before reconnecting. */
#define SSE_RETRY_MS 2000
/* The symbols parameter: 256 symbols of 16 bytes and commas. */
#define SSE_SYMBOLS_PARAM_MAX (TD_DEFAULT_MAX_CLIENT_SYMBOLS * (TD_SYMBOL_MAX + 1))

typedef struct {
  hub_client client;
  td_hub *hub;
  td_conn *conn;
  uv_timer_t timer;
  size_t client_bytes;
} sse_session;

static void on_data(void *owner, const char *data, size_t len) {
  sse_session *s = owner;
  s->client_bytes += len;
  if (s->client_bytes > SSE_MAX_CLIENT_BYTES) conn_close(s->conn, "client sent data on an event stream");
}

static void on_timer_closed(uv_handle_t *h) { free(h->data); }

static void on_conn_close(void *owner, const char *reason) {
  sse_session *s = owner;
  hub_detach(s->hub, &s->client);
  uv_close((uv_handle_t *)&s->timer, on_timer_closed);
}

static void on_drain(void *owner) {
  sse_session *s = owner;
  hub_client_drained(&s->client);
}

static const td_stream_ops stream_ops = {on_data, on_drain, on_conn_close};

static void on_keepalive(uv_timer_t *t) {
  sse_session *s = t->data;
  static const char comment[] = ": keep-alive\n\n";
  conn_send_copy(s->conn, comment, sizeof(comment) - 1);
}

static void on_hub_close(void *owner, int code, const char *reason) {
  sse_session *s = owner;
  conn_close(s->conn, reason);
}

/* Subscribes to each symbol of the comma-separated list; answers 400/403
 * itself and returns false on the first bad one. */
static bool subscribe_all(td_request *req, td_hub *hub, sse_session *s, char *list, const void *grant, const char **syms,
                          size_t *nsyms) {
  char *save = NULL;
  for (char *sym = strtok_r(list, ",", &save); sym; sym = strtok_r(NULL, ",", &save)) {
    if (!hub_opts(hub)->access->allows(grant, sym)) {
      http_error(req, 403, "forbidden_symbol", "the token does not allow one of the symbols", NULL);
      return false;
    }
    int rc = hub_subscribe(hub, &s->client, sym, strlen(sym));
    if (rc < 0) {
      http_error(req, rc == -E2BIG ? 400 : rc == -EINVAL ? 400 : 503,
                 rc == -E2BIG ? "too_many_symbols" : rc == -EINVAL ? "bad_symbol" : "unavailable",
                 rc == -E2BIG ? "more symbols than --max-client-symbols (or 8 patterns)"
                 : rc == -EINVAL ? "a symbol is 1-16 of A-Z 0-9 . - /; a pattern * or PREFIX*"
                                 : "the server tracks too many symbols",
                 NULL);
      return false;
    }
    if (rc == 1) syms[(*nsyms)++] = sym;
  }
  return true;
}

/* ?candles=AAPL,MSFT&tf=1m: the bars of each symbol, or, tf NULL
 * (?trades=AAPL,MSFT), its trades (stream/candle_fan.c); answers 400/403/503
 * itself and returns false on the first bad one. */
static bool subscribe_fan(td_request *req, td_hub *hub, sse_session *s, char *list, const void *grant,
                          const char *tf) {
  candle_fan *fan = hub_candles(hub);
  char *save = NULL;
  for (char *sym = strtok_r(list, ",", &save); sym; sym = strtok_r(NULL, ",", &save)) {
    if (!hub_opts(hub)->access->allows(grant, sym)) {
      http_error(req, 403, "forbidden_symbol", "the token does not allow one of the symbols", NULL);
      return false;
    }
    int rc = !fan ? -ENOENT
             : tf ? candle_fan_subscribe(fan, &s->client, sym, strlen(sym), tf, strlen(tf))
                  : candle_fan_subscribe_trades(fan, &s->client, sym, strlen(sym));
    if (rc < 0) {
      http_error(req, rc == -ENOSPC ? 503 : 400,
                 rc == -EINVAL ? "bad_symbol" : rc == -ENOENT ? "bad_timeframe" : rc == -E2BIG ? "too_many_symbols"
                                                                                              : "unavailable",
                 rc == -EINVAL ? "a symbol is 1-16 of A-Z 0-9 . - /"
                 : rc == -ENOENT ? "tf must be one of --candle-timeframes (candles on)"
                 : rc == -E2BIG  ? "more symbols than --max-client-symbols"
                                 : "the server has too many candle and trade channels",
                 NULL);
      return false;
    }
  }
  return true;
}

/* After the stream's head: `history` bars of each candle symbol. */
static void send_candle_history(td_hub *hub, sse_session *s, const char *clist, const char *tf, int history) {
  candle_fan *fan = hub_candles(hub);
  for (const char *p = clist; fan && history > 0 && *p;) {
    const char *c = strchr(p, ',');
    size_t n = c ? (size_t)(c - p) : strlen(p);
    candle_fan_send_history(fan, &s->client, p, n, tf, strlen(tf), (uint32_t)history);
    p += n + (c != NULL);
  }
}

/* ?interval_ms=250: the stream's rate (hub_set_interval). Absent: 0, every
 * quote. -1 when it is not a decimal integer in the allowed range. */
static long interval_param(td_request *req) {
  long v = 0;
  if (http_query_int(req, "interval_ms", 0, HUB_RATE_MAX_MS, &v) < 0) return -1;
  return v == 0 || v >= HUB_RATE_MIN_MS ? v : -1;
}

void sse_session_open(td_request *req, td_hub *hub) {
  const td_hub_opts *opts = hub_opts(hub);
  char *list = malloc(SSE_SYMBOLS_PARAM_MAX + 1);
  if (!list) {
    http_error(req, 500, "internal", "out of memory", NULL);
    return;
  }
  /* candles=AAPL,MSFT&tf=1m, kept whole for the history after strtok cut the copy */
  char clist[SSE_SYMBOLS_PARAM_MAX + 1], ccopy[SSE_SYMBOLS_PARAM_MAX + 1], tf[CANDLE_TF_NAME_MAX + 1] = "";
  bool has_candles = http_query_param(req, "candles", clist, sizeof(clist)) && *clist;
  if (has_candles) {
    memcpy(ccopy, clist, sizeof(ccopy));
    http_query_param(req, "tf", tf, sizeof(tf));
  }
  char tlist[SSE_SYMBOLS_PARAM_MAX + 1];
  bool has_trades = hub_candles(hub) && http_query_param(req, "trades", tlist, sizeof(tlist)) && *tlist;
  bool has_symbols = http_query_param(req, "symbols", list, SSE_SYMBOLS_PARAM_MAX + 1) && *list;
  if (!has_symbols && !has_candles && !has_trades) {
    free(list);
    http_error(req, 400, "missing_symbols",
               "GET /stream?symbols=AAPL,MSFT, /stream?candles=AAPL&tf=1m or /stream?trades=AAPL", NULL);
    return;
  }
  long rate_ms = interval_param(req);
  if (rate_ms < 0) {
    free(list);
    http_error(req, 400, "bad_interval", HUB_RATE_BAD_TEXT, NULL);
    return;
  }
  char hist_buf[16];
  int history = 0;
  if (http_query_param(req, "history", hist_buf, sizeof(hist_buf))) {
    history = atoi(hist_buf);
    if (history < 0 || history > opts->history_size) history = 0;
  }
  void *grant;
  if (!opts->access->admit(req, false, &grant)) {
    free(list);
    return;
  }
  sse_session *s = calloc(1, sizeof(*s));
  const char **syms = calloc((size_t)opts->max_client_symbols + 1, sizeof(*syms));
  size_t nsyms = 0;
  if (!s || !syms) {
    free(s);
    free(syms);
    free(list);
    opts->access->release(grant);
    http_error(req, 500, "internal", "out of memory", NULL);
    return;
  }
  if (hub_attach(hub, &s->client, req->conn, HUB_SSE, s, on_hub_close) != 0) {
    free(s);
    free(syms);
    free(list);
    opts->access->release(grant);
    http_error(req, 503, "too_many_clients", "the server is at --max-stream-clients", "Retry-After: 5\r\n");
    return;
  }
  int rate_rc = hub_set_interval(hub, &s->client, rate_ms);
  if (rate_rc < 0)
    http_error(req, 503, "unavailable", rate_rc == -ENOSPC ? HUB_RATE_FULL_TEXT : "out of memory", "Retry-After: 5\r\n");
  bool ok = rate_rc == 0 && (!has_symbols || subscribe_all(req, hub, s, list, grant, syms, &nsyms)) &&
            (!has_candles || subscribe_fan(req, hub, s, ccopy, grant, tf)) &&
            (!has_trades || subscribe_fan(req, hub, s, tlist, grant, NULL));
  opts->access->release(grant);
  if (!ok) {
    hub_detach(hub, &s->client);
    free(s);
    free(syms);
    free(list);
    return;
  }
  s->hub = hub;
  s->conn = req->conn;
  uv_timer_init(opts->loop, &s->timer);
  s->timer.data = s;
  uint64_t interval = (uint64_t)opts->ping_interval_ms;
  uv_timer_start(&s->timer, on_keepalive, hub_first_ping_ms(&s->client, interval), interval);
  http_respond_stream(req, 200, "text/event-stream", NULL, &stream_ops, s);
  char retry[32];
  int n = snprintf(retry, sizeof(retry), "retry: %d\n\n", SSE_RETRY_MS);
  conn_send_copy(s->conn, retry, (size_t)n);
  const td_header *last = http_header(req, "last-event-id");
  char last_param[64];
  if (last && last->value_len > 0) {
    hub_recover(hub, &s->client, last->value, last->value_len);
  } else if (http_query_param(req, "last_event_id", last_param, sizeof(last_param)) && *last_param) {
    hub_recover(hub, &s->client, last_param, strlen(last_param));
  } else if (has_symbols) {
    hub_send_snapshot(hub, &s->client, syms, nsyms, history);
  }
  if (has_candles) send_candle_history(hub, s, clist, tf, history);
  free(syms);
  free(list);
}
