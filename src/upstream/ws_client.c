/* WebSocket client over tls.h.
 *
 * States: CONNECTING (tls) -> HANDSHAKE (upgrade request sent; the response
 * parsed with llhttp; bytes after it are the first frame bytes) -> OPEN ->
 * CLOSING (a close frame went out, or the connection is going) -> IDLE.
 * One timer, the tls connection's, serves each state in turn: the connect
 * and upgrade deadline, the idle check, the close-handshake timeout. */
#include "upstream/ws_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/version.h"

static const tls_callbacks wsc_tls_cb;

void wsc_init(uv_loop_t *loop, wsc *w, tls_ctx *ctx, const wsc_callbacks *cb) {
  void *data = w->data;
  memset(w, 0, offsetof(wsc, tls));
  memset(&w->cb, 0, sizeof(*w) - offsetof(wsc, cb));
  w->data = data;
  w->cb = cb;
  w->state = WSC_IDLE;
  w->idle_ms = WSC_IDLE_MS;
  w->close_timeout_ms = WSC_CLOSE_TIMEOUT_MS;
  tls_init(loop, &w->tls, ctx, &wsc_tls_cb);
  w->tls.data = w;
}

/* ---- sending -------------------------------------------------------------- */

static int send_buf(wsc *w, td_buf *b) {
  if (!b) return UV_ENOMEM;
  int r = tls_write(&w->tls, b->data, b->len);
  buf_unref(b);
  return r;
}

int wsc_send_text(wsc *w, const char *data, size_t len) {
  if (w->state != WSC_OPEN) return UV_ENOTCONN;
  return send_buf(w, ws_frame_encode_masked(WS_OP_TEXT, data, len));
}

/* Ends the connection now with `code` and a static reason. */
static void fail(wsc *w, int code, const char *why) {
  if (!w->close_code) {
    w->close_code = code;
    w->close_why = why;
  }
  w->state = WSC_CLOSING;
  tls_close(&w->tls, why);
}

void wsc_close(wsc *w, int code, const char *reason) {
  if (w->state == WSC_IDLE || w->state == WSC_CLOSING) return;
  if (w->state != WSC_OPEN) {
    fail(w, code, reason);
    return;
  }
  w->close_code = code;
  w->close_why = reason;
  w->state = WSC_CLOSING;
  send_buf(w, ws_frame_encode_close_masked(code, reason));
  tls_set_timeout(&w->tls, w->close_timeout_ms);
}

/* ---- frames --------------------------------------------------------------- */

static bool stopped(const wsc *w) {
  return w->tls.state == TLS_CLOSING || w->tls.state == TLS_IDLE;
}

static int f_on_message(void *ud, ws_opcode op, const char *data, size_t len) {
  wsc *w = ud;
  if (op != WS_OP_TEXT) {
    if (w->state == WSC_OPEN) send_buf(w, ws_frame_encode_close_masked(WS_CLOSE_UNSUPPORTED, "binary"));
    fail(w, WS_CLOSE_UNSUPPORTED, "binary messages are not supported");
    return 1;
  }
  if (w->state != WSC_OPEN) return 0; /* after our close frame: discarded */
  w->messages_in++;
  w->cb->on_message(w, data, len);
  return stopped(w) ? 1 : 0;
}

static int f_on_ping(void *ud, const char *data, size_t len) {
  wsc *w = ud;
  w->pings_in++;
  if (w->state != WSC_OPEN) return 0; /* no frame may follow our close */
  if (send_buf(w, ws_frame_encode_masked(WS_OP_PONG, data, len)) == 0) w->pongs_out++;
  return stopped(w) ? 1 : 0;
}

static int f_on_close(void *ud, int code, const char *reason, size_t len) {
  wsc *w = ud;
  w->close_received = true;
  if (w->state == WSC_OPEN) {
    /* The server started the close: echo its code, then wait for it to
     * close the TCP connection (RFC 6455 7.1.1), bounded by a timer. */
    w->close_code = code;
    w->close_why = NULL;
    snprintf(w->close_text, sizeof(w->close_text), "%.*s", (int)len, reason);
    w->state = WSC_CLOSING;
    int echo = code == WS_CLOSE_NO_STATUS ? 0 : code;
    send_buf(w, ws_frame_encode_close_masked(echo, NULL));
    tls_set_timeout(&w->tls, w->close_timeout_ms);
  } else {
    /* The answer to our close: the handshake is complete. */
    tls_close(&w->tls, "closed");
  }
  return 1;
}

static const ws_callbacks wsc_frame_cb = {f_on_message, f_on_ping, NULL, f_on_close};

static void feed_frames(wsc *w, const char *data, size_t len) {
  if (len == 0) return;
  int r = ws_parser_feed(&w->parser, data, len, &wsc_frame_cb, w);
  if (r < 0 && r != WS_ESTOPPED) {
    int code = ws_parser_close_code(&w->parser);
    const char *why = ws_parser_error(&w->parser);
    if (w->state == WSC_OPEN) send_buf(w, ws_frame_encode_close_masked(code, why));
    fail(w, code, why ? why : "protocol error");
  }
}

/* ---- the opening handshake ------------------------------------------------ */

/* The handshake response's headers that check_upgrade reads, in this order. */
enum { H_UPGRADE, H_CONNECTION, H_ACCEPT, H_EXTENSIONS };
static const char *const handshake_headers[] = {"upgrade", "connection", "sec-websocket-accept",
                                                "sec-websocket-extensions", NULL};

static int h_on_head(resp_head *h) { return h->status == 101 ? 0 : -1; /* anything else: refused */ }

static const resp_head_callbacks wsc_head_cb = {h_on_head, NULL, NULL};

/* NULL when the 101 answers our key and offers nothing we did not ask for. */
static const char *check_upgrade(const wsc *w) {
  const resp_head *h = &w->head;
  if (strcasecmp(h->values[H_UPGRADE], "websocket") != 0) return "handshake: no Upgrade: websocket";
  if (!strcasestr(h->values[H_CONNECTION], "upgrade")) return "handshake: no Connection: upgrade";
  if (!ws_accept_matches(w->key, WS_KEY_LEN, h->values[H_ACCEPT], strlen(h->values[H_ACCEPT])))
    return "handshake: wrong Sec-WebSocket-Accept";
  if (h->seen[H_EXTENSIONS]) return "handshake: unrequested extension";
  return NULL;
}

static void opened(wsc *w, const char *rest, size_t rest_len) {
  w->state = WSC_OPEN;
  w->ping_sent = false;
  tls_set_timeout(&w->tls, w->idle_ms);
  w->cb->on_open(w);
  if (w->state == WSC_OPEN) feed_frames(w, rest, rest_len);
}

static void read_handshake(wsc *w, const char *data, size_t len) {
  llhttp_errno_t e = llhttp_execute(&w->head.parser, data, len);
  if (e == HPE_OK) return; /* more to come */
  if (e == HPE_PAUSED_UPGRADE) {
    const char *why = check_upgrade(w);
    if (why) {
      fail(w, WS_CLOSE_ABNORMAL, why);
      return;
    }
    const char *pos = llhttp_get_error_pos(&w->head.parser);
    size_t used = pos && pos >= data && pos <= data + len ? (size_t)(pos - data) : len;
    opened(w, data + used, len - used);
    return;
  }
  if (w->head.done && w->head.status != 101) {
    snprintf(w->close_text, sizeof(w->close_text), "handshake refused: HTTP %d", w->head.status);
    fail(w, WS_CLOSE_ABNORMAL, NULL);
    return;
  }
  fail(w, WS_CLOSE_ABNORMAL,
       resp_head_too_large(&w->head) ? "handshake: response head too large" : "handshake: bad response");
}

/* ---- the connection ------------------------------------------------------- */

static void t_on_connect(tls_conn *c, int status) {
  wsc *w = c->data;
  if (status < 0) return; /* on_close follows with the reason */
  char req[HCLI_MAX_PATH + TLS_MAX_HOST + 256];
  int n = snprintf(req, sizeof(req),
                   "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                   "User-Agent: tickerd/" TD_VERSION "\r\n\r\n",
                   w->url.path, w->url.authority, w->key);
  w->state = WSC_HANDSHAKE;
  uint64_t now = uv_now(c->loop);
  tls_set_timeout(c, w->handshake_deadline > now ? w->handshake_deadline - now : 1);
  tls_write(c, req, (size_t)n);
}

static void t_on_read(tls_conn *c, const char *data, size_t len) {
  wsc *w = c->data;
  w->last_rx = uv_now(c->loop);
  w->ping_sent = false;
  w->bytes_in += len;
  if (w->state == WSC_HANDSHAKE)
    read_handshake(w, data, len);
  else if (w->state == WSC_OPEN || w->state == WSC_CLOSING)
    feed_frames(w, data, len);
}

static void t_on_timeout(tls_conn *c) {
  wsc *w = c->data;
  if (w->state == WSC_HANDSHAKE) {
    fail(w, WS_CLOSE_ABNORMAL, "handshake timeout");
    return;
  }
  if (w->state != WSC_OPEN) {
    fail(w, w->close_code ? w->close_code : WS_CLOSE_ABNORMAL, "close timeout");
    return;
  }
  uint64_t now = uv_now(c->loop), quiet = now - w->last_rx;
  if (quiet < w->idle_ms) {
    tls_set_timeout(c, w->idle_ms - quiet);
  } else if (!w->ping_sent) {
    w->ping_sent = true;
    send_buf(w, ws_frame_encode_masked(WS_OP_PING, "idle", 4));
    tls_set_timeout(c, w->idle_ms);
  } else {
    send_buf(w, ws_frame_encode_close_masked(WS_CLOSE_GOING_AWAY, "idle timeout"));
    fail(w, WS_CLOSE_ABNORMAL, "idle timeout");
  }
}

static void t_on_close(tls_conn *c, const char *reason) {
  wsc *w = c->data;
  ws_parser_free(&w->parser);
  int code = w->close_code ? w->close_code : WS_CLOSE_ABNORMAL;
  const char *why = w->close_why ? w->close_why : w->close_text[0] ? w->close_text : reason;
  w->state = WSC_IDLE;
  w->cb->on_close(w, code, why);
}

static const tls_callbacks wsc_tls_cb = {t_on_connect, t_on_read, t_on_close, t_on_timeout, NULL};

int wsc_connect(wsc *w, const char *url, size_t max_message, int timeout_ms) {
  if (w->state != WSC_IDLE) return UV_EBUSY;
  if (hcli_url_parse(url, &w->url) < 0 || !w->url.websocket) return UV_EINVAL;
  ws_client_key(w->key);
  resp_head_init(&w->head, WSC_MAX_HEAD, handshake_headers, &wsc_head_cb, w);
  w->close_code = 0;
  w->close_why = NULL;
  w->close_text[0] = 0;
  w->close_received = false;
  w->max_message = max_message;
  ws_parser_init(&w->parser, WS_ROLE_CLIENT, max_message);
  w->handshake_deadline = uv_now(w->tls.loop) + (uint64_t)timeout_ms;
  w->last_rx = uv_now(w->tls.loop);
  int r = tls_connect(&w->tls, w->url.host, w->url.port, w->url.tls, timeout_ms);
  if (r < 0) {
    ws_parser_free(&w->parser);
    return r;
  }
  w->state = WSC_CONNECTING;
  return 0;
}
