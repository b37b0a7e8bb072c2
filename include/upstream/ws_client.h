/* A WebSocket client (RFC 6455) over tls.h: the opening handshake (parsed
 * with llhttp), frames through ws_frame.h (masked sends; reassembly, ping ->
 * pong, the close handshake), a maximum message size, an idle check.
 *
 *   wsc w;  wsc_init(loop, &w, ctx, &callbacks);  w.data = me;
 *   wsc_connect(&w, "wss://stream.data.alpaca.markets/v2/iex", 1 << 20, 10000);
 *   ...on_open(&w): wsc_send_text(&w, "{...}", n);
 *   ...on_message(&w, text, len)
 *   wsc_close(&w, WS_CLOSE_NORMAL, "bye");
 *   ...on_close(&w, code, reason): the struct may be freed or connected again.
 *
 * The caller owns the wsc memory. on_close is the last callback of each
 * wsc_connect and comes exactly once, from the loop. */
#ifndef TD_WS_CLIENT_H
#define TD_WS_CLIENT_H

#include <llhttp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "https_client.h"
#include "resp_head.h"
#include "net/tls.h"
#include "http/ws_frame.h"

/* After our close frame, how long the server may take to answer it and
 * close the TCP connection before we close it ourselves. */
#define WSC_CLOSE_TIMEOUT_MS 3000
/* Silence from the server this long makes us send a ping; the same again
 * without a byte closes the connection ("idle timeout"). Alpaca's server
 * pings and streams far more often than this. */
#define WSC_IDLE_MS 30000
/* The handshake response head (status line and headers). */
#define WSC_MAX_HEAD (16 * 1024)

typedef struct wsc wsc;

typedef struct {
  void (*on_open)(wsc *w);
  /* A complete text message (valid UTF-8), valid only during the call. */
  void (*on_message)(wsc *w, const char *text, size_t len);
  /* The last callback. code: the server's close code, ours, the parser's
   * (1002 protocol error, 1007 bad UTF-8, 1009 too big), or 1006 when the
   * connection dropped or never opened; reason says why (not NULL). */
  void (*on_close)(wsc *w, int code, const char *reason);
} wsc_callbacks;

typedef enum {
  WSC_IDLE,       /* not connected: wsc_connect may be called */
  WSC_CONNECTING, /* TCP / TLS being set up */
  WSC_HANDSHAKE,  /* upgrade request sent, waiting for 101 */
  WSC_OPEN,       /* messages flow */
  WSC_CLOSING     /* a close frame was sent or the connection is closing */
} wsc_state;

/* Fields are private except `data` and the counters. */
struct wsc {
  void *data;
  tls_conn tls;
  const wsc_callbacks *cb;
  wsc_state state;
  size_t max_message;
  /* Set by wsc_init to WSC_IDLE_MS and WSC_CLOSE_TIMEOUT_MS; a caller (or a
   * test) may change them before wsc_connect. */
  uint64_t idle_ms;
  uint64_t close_timeout_ms;
  uint64_t handshake_deadline;
  hcli_url url;
  char key[WS_KEY_LEN + 1];
  /* the handshake response */
  resp_head head;     /* status 0 before the handshake response's head is complete */
  /* frames */
  ws_parser parser;
  uint64_t last_rx;   /* uv_now of the last byte received */
  bool ping_sent;     /* an idle ping is outstanding */
  /* how it ended */
  int close_code;
  const char *close_why;   /* static string, or NULL: close_text holds the peer's reason */
  char close_text[WS_MAX_CLOSE_REASON + 1];
  bool close_received;
  /* counters */
  uint64_t messages_in;
  uint64_t bytes_in;
  uint64_t pings_in;
  uint64_t pongs_out;
};

void wsc_init(uv_loop_t *loop, wsc *w, tls_ctx *ctx, const wsc_callbacks *cb);
/* url: ws:// or wss://. max_message: largest message accepted (1009 past it).
 * timeout_ms bounds connect, TLS and the upgrade together. Returns 0 (then
 * on_close will come) or a negative errno (no callback). */
int wsc_connect(wsc *w, const char *url, size_t max_message, int timeout_ms);
/* Sends one text message (masked). 0, or a negative errno. */
int wsc_send_text(wsc *w, const char *data, size_t len);
/* Starts the close handshake (or closes at once when not open). Idempotent. */
void wsc_close(wsc *w, int code, const char *reason);

#endif
