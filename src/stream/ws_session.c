/* GET /ws: the WebSocket handshake on llhttp's upgrade path, then one session
 * per client: frames parsed by ws_frame, JSON actions (subscribe,
 * unsubscribe, list), pings, the close handshake, and the hub for quotes.
 *
 * States:
 *   WSS_OPEN      exchanging messages
 *   WSS_CLOSING   our close frame is queued; waiting for the peer's, at most TD_WS_CLOSE_WAIT_MS
 *   WSS_DONE      the connection is gone; the session is freed when its timer has closed */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "stream/candle_fan.h"
#include "stream/hub.h"
#include "base/jsonw.h"
#include "base/log.h"
#include "base/td_limits.h"
#include "http/ws_deflate.h"
#include "http/ws_frame.h"
#include "stream/ws_session.h"

/* How long we wait for the peer's close frame after sending ours. */
#define TD_WS_CLOSE_WAIT_MS 2000

typedef enum { WSS_OPEN, WSS_CLOSING, WSS_DONE } wss_state;

typedef struct {
  hub_client client;
  td_hub *hub;
  td_conn *conn;
  ws_parser parser;
  uv_timer_t timer;        /* pings, the idle limit and the close wait */
  wss_state state;
  uint64_t last_heard;     /* loop ms of the last frame from the client */
  void *grant;             /* from the app's access control */
} ws_session;

ws_stats ws_counters;

/* ---- sending -------------------------------------------------------------- */

static void send_frame(ws_session *s, td_buf *b) {
  if (!b) return;
  conn_send(s->conn, b, 0);
  buf_unref(b);
}

/* A new message for hub_send_json: an open object. */
static void msg_begin(jsonw *w) {
  jw_init(w, 0);
  jw_object(w, NULL);
}

/* The strings of a client's JSON array (the symbols it named) as member `key`. */
static void write_names(jsonw *w, const char *key, const json_t *names) {
  size_t i;
  json_t *v;
  jw_array(w, key);
  json_array_foreach(names, i, v) jw_strn(w, NULL, json_string_value(v), json_string_length(v));
  jw_end(w);
}

static void send_error(ws_session *s, const char *code, const char *message, const char *symbol) {
  jsonw w;
  msg_begin(&w);
  jw_str(&w, "error", code);
  jw_str(&w, "message", message);
  if (symbol) jw_str(&w, "symbol", symbol);
  hub_send_json(s->hub, &s->client, "error", &w);
}

/* ---- actions -------------------------------------------------------------- */

/* Subscribes (on) or unsubscribes the client for each of `symbols`: their
 * bars of timeframe `tf`, or, tf NULL, their trades (stream/candle_fan.c).
 * Errors are answered per symbol; returns the symbols done. */
static json_t *fan_each(ws_session *s, candle_fan *fan, json_t *symbols, const char *tf, size_t tfn, bool on) {
  json_t *v, *ok = json_array();
  size_t i;
  json_array_foreach(symbols, i, v) {
    const char *sym = json_string_value(v);
    size_t n = sym ? json_string_length(v) : 0;
    if (on && sym && !hub_opts(s->hub)->access->allows(s->grant, sym)) {
      send_error(s, "forbidden_symbol", "the token does not allow this symbol", sym);
      continue;
    }
    int rc = !sym ? -EINVAL
             : tf ? (on ? candle_fan_subscribe(fan, &s->client, sym, n, tf, tfn)
                        : candle_fan_unsubscribe(fan, &s->client, sym, n, tf, tfn))
                  : (on ? candle_fan_subscribe_trades(fan, &s->client, sym, n)
                        : candle_fan_unsubscribe_trades(fan, &s->client, sym, n));
    if (rc == -EINVAL) send_error(s, "bad_symbol", "a symbol is 1-16 of A-Z 0-9 . - /", sym);
    else if (rc == -ENOENT) send_error(s, "bad_timeframe", "no such timeframe (see --candle-timeframes)", tf);
    else if (rc == -E2BIG) send_error(s, "too_many_symbols", "this connection has --max-client-symbols already", sym);
    else if (rc < 0) send_error(s, "unavailable", "the server has too many candle and trade channels", sym);
    else if (rc == 1 || on) json_array_append(ok, v);
  }
  return ok;
}

/* "candles": {"symbols": [..], "tf": "1m"}: each symbol's bars of that
 * timeframe, with `history` past bars first. */
static void candles_action(ws_session *s, json_t *spec, bool on, int history) {
  candle_fan *fan = hub_candles(s->hub);
  json_t *symbols = json_object_get(spec, "symbols"), *tf = json_object_get(spec, "tf"), *v;
  if (!fan || !json_is_array(symbols) || !json_is_string(tf)) {
    send_error(s, fan ? "bad_request" : "candles_off",
               fan ? "\"candles\" takes {\"symbols\": [..], \"tf\": \"1m\"}" : "this server builds no candles", NULL);
    return;
  }
  const char *tfs = json_string_value(tf);
  size_t i, tfn = json_string_length(tf);
  json_t *ok = fan_each(s, fan, symbols, tfs, tfn, on);
  jsonw w;
  msg_begin(&w);
  jw_object(&w, "candles");
  write_names(&w, "symbols", ok);
  jw_strn(&w, "tf", tfs, tfn);
  jw_end(&w);
  hub_send_json(s->hub, &s->client, on ? "subscribed" : "unsubscribed", &w);
  json_array_foreach(ok, i, v) {
    if (on && history > 0)
      candle_fan_send_history(fan, &s->client, json_string_value(v), json_string_length(v), tfs, tfn, (uint32_t)history);
  }
  json_decref(ok);
}

/* "trades": ["AAPL"]: each symbol's trades as they are published (the
 * dashboard's tape), live only. */
static void trades_action(ws_session *s, json_t *symbols, bool on) {
  candle_fan *fan = hub_candles(s->hub);
  if (!fan || !json_is_array(symbols)) {
    send_error(s, fan ? "bad_request" : "unavailable", fan ? "\"trades\" takes [\"AAPL\", ..]" : "no trade streams here",
               NULL);
    return;
  }
  json_t *ok = fan_each(s, fan, symbols, NULL, 0, on);
  jsonw w;
  msg_begin(&w);
  write_names(&w, "trades", ok);
  json_decref(ok);
  hub_send_json(s->hub, &s->client, on ? "subscribed" : "unsubscribed", &w);
}

/* "interval_ms": the client's rate, for all its symbols (hub_set_interval).
 * false (answered with an error) when refused: the subscribe is then not
 * carried out at all. */
static bool set_interval(ws_session *s, const json_t *interval) {
  int rc = json_is_integer(interval) ? hub_set_interval(s->hub, &s->client, json_integer_value(interval)) : -EINVAL;
  if (rc == -EINVAL) send_error(s, "bad_interval", HUB_RATE_BAD_TEXT, NULL);
  else if (rc < 0) send_error(s, "unavailable", rc == -ENOSPC ? HUB_RATE_FULL_TEXT : "out of memory", NULL);
  return rc == 0;
}

static void do_subscribe(ws_session *s, json_t *msg) {
  td_hub *hub = s->hub;
  const td_stream_access *access = hub_opts(hub)->access;
  json_t *symbols = json_object_get(msg, "symbols"), *topics = json_object_get(msg, "topics");
  json_t *since = json_object_get(msg, "since"), *history = json_object_get(msg, "history");
  json_t *candles = json_object_get(msg, "candles"), *trades = json_object_get(msg, "trades");
  json_t *interval = json_object_get(msg, "interval_ms");
  if ((symbols && !json_is_array(symbols)) || (topics && !json_is_array(topics)) || (since && !json_is_string(since)) ||
      (history && !json_is_integer(history)) || (!symbols && !topics && !candles && !trades && !interval)) {
    send_error(s, "bad_request",
               "subscribe takes \"symbols\": [..] and/or \"topics\": [..], optional \"since\": string, \"history\": int, "
               "\"interval_ms\": int",
               NULL);
    return;
  }
  int hist = history ? (int)json_integer_value(history) : 0;
  if (hist < 0 || hist > hub_opts(s->hub)->history_size) {
    send_error(s, "bad_history", "history must be from 0 to --history-size", NULL);
    return;
  }
  if (interval && !set_interval(s, interval)) return;
  if (candles) candles_action(s, candles, true, hist);
  if (trades) trades_action(s, trades, true);
  if (!symbols && !topics && interval) {
    jsonw w;
    msg_begin(&w);
    write_names(&w, "symbols", NULL);
    jw_u64(&w, "interval_ms", hub_client_interval(hub, &s->client));
    hub_send_json(hub, &s->client, "subscribed", &w);
  }
  if (!symbols && !topics) return;
  json_t *ok = json_array();
  const char **fresh = calloc(json_array_size(symbols) + 1, sizeof(*fresh));
  size_t nfresh = 0, i;
  json_t *v;
  json_array_foreach(symbols, i, v) {
    const char *sym = json_string_value(v);
    size_t n = sym ? json_string_length(v) : 0;
    if (!sym) {
      send_error(s, "bad_symbol", "symbols must be strings", NULL);
      continue;
    }
    if (!access->allows(s->grant, sym)) {
      send_error(s, "forbidden_symbol", "the token does not allow this symbol", sym);
      continue;
    }
    int rc = hub_subscribe(hub, &s->client, sym, n);
    if (rc == -EINVAL) send_error(s, "bad_symbol", "a symbol is 1-16 of A-Z 0-9 . - /; a pattern * or PREFIX*", sym);
    else if (rc == -E2BIG) send_error(s, "too_many_symbols", "this connection has --max-client-symbols (or 8 patterns) already", sym);
    else if (rc < 0) send_error(s, "unavailable", "the server tracks too many symbols", sym);
    else {
      json_array_append(ok, v);
      if (fresh && rc == 1) fresh[nfresh++] = sym;
    }
  }
  json_array_foreach(topics, i, v) {
    const char *t = json_string_value(v);
    if (!t || hub_set_topic(hub, &s->client, t, true) != 0) send_error(s, "bad_topic", "no such topic", t);
  }
  jsonw w;
  msg_begin(&w);
  write_names(&w, "symbols", ok);
  json_decref(ok);
  if (interval) jw_u64(&w, "interval_ms", hub_client_interval(hub, &s->client));
  hub_send_json(hub, &s->client, "subscribed", &w);
  if (since) hub_recover(hub, &s->client, json_string_value(since), json_string_length(since));
  else hub_send_snapshot(hub, &s->client, fresh, nfresh, hist);
  free(fresh);
}

static void do_unsubscribe(ws_session *s, json_t *msg) {
  json_t *symbols = json_object_get(msg, "symbols"), *topics = json_object_get(msg, "topics"), *v;
  json_t *candles = json_object_get(msg, "candles"), *trades = json_object_get(msg, "trades");
  if (candles) candles_action(s, candles, false, 0);
  if (trades) trades_action(s, trades, false);
  if ((candles || trades) && !symbols && !topics) return;
  if ((symbols && !json_is_array(symbols)) || (topics && !json_is_array(topics))) {
    send_error(s, "bad_request", "unsubscribe takes \"symbols\": [..] and/or \"topics\": [..]", NULL);
    return;
  }
  json_t *done = json_array();
  size_t i;
  json_array_foreach(symbols, i, v) {
    const char *sym = json_string_value(v);
    if (sym && hub_unsubscribe(s->hub, &s->client, sym, json_string_length(v)) == 1) json_array_append(done, v);
  }
  json_array_foreach(topics, i, v) {
    const char *t = json_string_value(v);
    if (t) hub_set_topic(s->hub, &s->client, t, false);
  }
  jsonw w;
  msg_begin(&w);
  write_names(&w, "symbols", done);
  json_decref(done);
  hub_send_json(s->hub, &s->client, "unsubscribed", &w);
}

static void do_list(ws_session *s) {
  jsonw w;
  msg_begin(&w);
  hub_write_client_symbols(s->hub, &s->client, &w, "symbols");
  hub_write_client_topics(s->hub, &s->client, &w, "topics");
  uint32_t interval = hub_client_interval(s->hub, &s->client);
  if (interval) jw_u64(&w, "interval_ms", interval);   /* throttled clients only: "list" is otherwise unchanged */
  hub_send_json(s->hub, &s->client, "list", &w);
}

/* ---- frame callbacks ------------------------------------------------------- */

static int on_message(void *ud, ws_opcode op, const char *data, size_t len) {
  ws_session *s = ud;
  ws_counters.messages_in++;
  if (s->state != WSS_OPEN) return 0;
  if (op != WS_OP_TEXT) {
    ws_counters.bad_messages++;
    send_error(s, "bad_message", "messages are JSON text frames", NULL);
    return 0;
  }
  json_error_t jerr;
  json_t *msg = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
  const char *action = msg ? json_string_value(json_object_get(msg, "action")) : NULL;
  if (!msg || !json_is_object(msg)) {
    ws_counters.bad_messages++;
    char m[200];
    snprintf(m, sizeof(m), "not a JSON object: %s", msg ? "wrong type" : jerr.text);
    send_error(s, "bad_json", m, NULL);
  } else if (!action) {
    ws_counters.bad_messages++;
    send_error(s, "bad_action", "\"action\" must be subscribe, unsubscribe or list", NULL);
  } else if (!strcmp(action, "subscribe")) {
    do_subscribe(s, msg);
  } else if (!strcmp(action, "unsubscribe")) {
    do_unsubscribe(s, msg);
  } else if (!strcmp(action, "list")) {
    do_list(s);
  } else {
    ws_counters.bad_messages++;
    send_error(s, "bad_action", "\"action\" must be subscribe, unsubscribe or list", NULL);
  }
  json_decref(msg);
  return s->state == WSS_DONE;
}

static int on_ping(void *ud, const char *data, size_t len) {
  ws_session *s = ud;
  if (s->state == WSS_OPEN) send_frame(s, ws_frame_encode(WS_OP_PONG, data, len));
  return 0;
}

static int on_pong(void *ud, const char *data, size_t len) { return 0; }

static int on_close_frame(void *ud, int code, const char *reason, size_t len) {
  ws_session *s = ud;
  if (s->state == WSS_OPEN) {
    /* echo the code, as RFC 6455 5.5.1 asks, then close once it is written */
    s->state = WSS_CLOSING;
    send_frame(s, ws_frame_encode_close(code == WS_CLOSE_NO_STATUS ? WS_CLOSE_NORMAL : code, ""));
  }
  conn_end(s->conn);
  return 1;
}

static const ws_callbacks frame_callbacks = {on_message, on_ping, on_pong, on_close_frame};

/* ---- connection callbacks --------------------------------------------------- */

static void on_data(void *owner, const char *data, size_t len) {
  ws_session *s = owner;
  if (s->state == WSS_DONE) return;
  s->last_heard = uv_now(hub_opts(s->hub)->loop);
  int rc = ws_parser_feed(&s->parser, data, len, &frame_callbacks, s);
  if (rc < 0 && rc != WS_ESTOPPED && s->state == WSS_OPEN) {
    ws_counters.protocol_errors++;
    td_logline *l = log_begin(TD_LOG_WARN, "ws_protocol_error");
    if (l) {
      log_str(l, "client_ip", conn_peer_ip(s->conn));
      log_str(l, "error", ws_parser_error(&s->parser));
      log_int(l, "close_code", ws_parser_close_code(&s->parser));
      log_end(l);
    }
    s->state = WSS_CLOSING;
    send_frame(s, ws_frame_encode_close(ws_parser_close_code(&s->parser), ws_parser_error(&s->parser)));
    conn_end(s->conn);
  }
}

static void on_timer_closed(uv_handle_t *h) {
  ws_session *s = h->data;
  hub_opts(s->hub)->access->release(s->grant);
  free(s);
}

static void on_conn_close(void *owner, const char *reason) {
  ws_session *s = owner;
  s->state = WSS_DONE;
  hub_detach(s->hub, &s->client);
  ws_parser_free(&s->parser);
  uv_close((uv_handle_t *)&s->timer, on_timer_closed);
}

static void on_drain(void *owner) {
  ws_session *s = owner;
  hub_client_drained(&s->client);
}

static const td_stream_ops stream_ops = {on_data, on_drain, on_conn_close};

static void on_timer(uv_timer_t *t) {
  ws_session *s = t->data;
  uint64_t now = uv_now(t->loop);
  if (s->state == WSS_CLOSING) {
    conn_close(s->conn, "close handshake timed out");
    return;
  }
  if (now - s->last_heard >= (uint64_t)hub_opts(s->hub)->stream_idle_ms) {
    ws_counters.idle_closes++;
    td_logline *l = log_begin(TD_LOG_INFO, "ws_idle_closed");
    if (l) { log_str(l, "client_ip", conn_peer_ip(s->conn)); log_end(l); }
    s->state = WSS_CLOSING;
    send_frame(s, ws_frame_encode_close(WS_CLOSE_GOING_AWAY, "idle timeout"));
    conn_end(s->conn);
    uv_timer_start(&s->timer, on_timer, TD_WS_CLOSE_WAIT_MS, 0);
    return;
  }
  send_frame(s, ws_frame_encode(WS_OP_PING, NULL, 0));
}

/* The hub closes slow clients; their queue is full, so no close frame can
 * get through in time: the connection goes at once. */
static void on_hub_close(void *owner, int code, const char *reason) {
  ws_session *s = owner;
  conn_close(s->conn, reason);
}

/* ---- the handshake ------------------------------------------------------------ */

static bool header_has_token(const td_request *req, const char *name, const char *token) {
  const td_header *h = http_header(req, name);
  if (!h) return false;
  size_t tn = strlen(token);
  const char *p = h->value, *end = h->value + h->value_len;
  while (p < end) {
    while (p < end && (*p == ' ' || *p == ',')) p++;
    const char *q = p;
    while (q < end && *q != ',') q++;
    const char *e = q;
    while (e > p && e[-1] == ' ') e--;
    if ((size_t)(e - p) == tn && !strncasecmp(p, token, tn)) return true;
    p = q;
  }
  return false;
}

/* permessage-deflate: the first acceptable offer over every
 * Sec-WebSocket-Extensions line. 1 accepted, 0 none, -EINVAL a line that
 * does not parse (answered 400: no extension could be agreed from it). */
static int negotiate_deflate(const td_request *req, wsd_agreement *z) {
  int rc = 0, offered = 0;
  for (int i = 0; i < req->header_count; i++) {
    const td_header *h = &req->headers[i];
    if (h->name_len != strlen("sec-websocket-extensions") ||
        strncasecmp(h->name, "sec-websocket-extensions", h->name_len))
      continue;
    wsd_agreement later; /* every line is parsed: a malformed one is refused even after an accepted one */
    int r = wsd_negotiate(h->value, h->value_len, rc ? &later : z);
    if (r < 0) {
      wsd_counters.offers_malformed++;
      return r;
    }
    rc |= r;
    offered |= memmem(h->value, h->value_len, "permessage-deflate", strlen("permessage-deflate")) != NULL;
  }
  if (rc) wsd_counters.offers_accepted++;
  else if (offered) wsd_counters.offers_declined++;
  return rc;
}

void ws_session_open(td_request *req, td_hub *hub) {
  const td_hub_opts *opts = hub_opts(hub);
  const td_header *key = http_header(req, "sec-websocket-key");
  if (!req->upgrade || !header_has_token(req, "upgrade", "websocket") || !header_has_token(req, "connection", "upgrade")) {
    http_error(req, 426, "upgrade_required", "GET /ws is a WebSocket endpoint", "Upgrade: websocket\r\n");
    return;
  }
  if (!http_header_is(req, "sec-websocket-version", "13")) {
    http_error(req, 426, "unsupported_version", "only WebSocket version 13 is supported", "Sec-WebSocket-Version: 13\r\n");
    return;
  }
  char accept[WS_ACCEPT_LEN + 1];
  if (!key || ws_accept_key(key->value, key->value_len, accept) != 0) {
    http_error(req, 400, "bad_websocket_key", "Sec-WebSocket-Key must be base64 of 16 bytes", NULL);
    return;
  }
  wsd_agreement z = {0};
  if (negotiate_deflate(req, &z) < 0) {
    http_error(req, 400, "bad_extensions", "Sec-WebSocket-Extensions does not follow RFC 6455 9.1", NULL);
    return;
  }
  void *grant;
  if (!opts->access->admit(req, true, &grant)) return;
  ws_session *s = calloc(1, sizeof(*s));
  if (!s) {
    opts->access->release(grant);
    http_error(req, 500, "internal", "out of memory", NULL);
    return;
  }
  if (hub_attach(hub, &s->client, req->conn, HUB_WS, s, on_hub_close) != 0) {
    free(s);
    opts->access->release(grant);
    http_error(req, 503, "too_many_clients", "the server is at --max-stream-clients", "Retry-After: 5\r\n");
    return;
  }
  s->hub = hub;
  s->conn = req->conn;
  s->grant = grant;
  s->state = WSS_OPEN;
  s->last_heard = uv_now(opts->loop);
  ws_parser_init(&s->parser, WS_ROLE_SERVER, (size_t)opts->ws_max_message);
  if (z.window_bits) ws_parser_allow_deflate(&s->parser);
  s->client.deflate_bits = z.window_bits;
  uv_timer_init(opts->loop, &s->timer);
  s->timer.data = s;
  uint64_t interval = (uint64_t)opts->ping_interval_ms;
  uv_timer_start(&s->timer, on_timer, hub_first_ping_ms(&s->client, interval), interval);
  ws_counters.sessions++;
  char headers[128 + WSD_RESPONSE_MAX];
  snprintf(headers, sizeof(headers), "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s",
           accept, z.window_bits ? z.response : "");
  http_respond_stream(req, 101, NULL, headers, &stream_ops, s);
}
