/* A minimal HTTP/1.1 client: one GET per connection over tls.h (https:// or
 * http://), the response parsed with llhttp, the body bounded, the whole
 * exchange bounded by a timeout. Also the URL parser that ws_client and
 * alpaca use for ws:// and wss:// URLs.
 *
 *   hcli_req *r;
 *   hcli_get(loop, ctx, "https://data.alpaca.markets/v2/...", "APCA-API-KEY-ID: k\r\n",
 *            HCLI_DEFAULT_MAX_BODY, 5000, on_done, me, &r);
 *   ...on_done(me, 200, body, len, NULL)  or  on_done(me, 0, NULL, 0, "timeout")
 *
 * The callback comes exactly once, from the loop (never from inside
 * hcli_get), unless hcli_cancel was called first. */
#ifndef TD_HTTPS_CLIENT_H
#define TD_HTTPS_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "net/tls.h"

/* Path and query of a URL we request; Alpaca's longest are a few hundred bytes. */
#define HCLI_MAX_PATH 2048
/* Status line and headers of a response. Past it: "response head too large". */
#define HCLI_MAX_HEAD (16 * 1024)
/* A latest-quote answer is well under 1 KiB; 1 MiB leaves room for any
 * error page without letting a broken upstream fill our memory. */
#define HCLI_DEFAULT_MAX_BODY (1024 * 1024)
/* The request line and headers we send. */
#define HCLI_MAX_REQUEST 8192

typedef struct {
  bool tls;        /* https or wss */
  bool websocket;  /* ws or wss */
  char host[TLS_MAX_HOST + 1];   /* without brackets */
  int port;
  char path[HCLI_MAX_PATH + 1];  /* path and query; "/" when the URL has none */
  char authority[TLS_MAX_HOST + 16]; /* the Host header: host, [v6], ":port" unless default */
} hcli_url;

/* Parses http://, https://, ws:// and wss:// URLs: host name, IPv4, or IPv6
 * literal in brackets; optional port; no user info. Returns 0 or -EINVAL. */
int hcli_url_parse(const char *url, hcli_url *out);

/* status: the HTTP status (body and len the response body, NUL-terminated),
 * or 0 with err a static string: "timeout", "connect failed",
 * "certificate verify failed: ...", "response too large", "bad response",
 * "connection closed". */
typedef void (*hcli_done_cb)(void *ud, int status, const char *body, size_t len,
                             const char *err);

typedef struct hcli_req hcli_req;

/* Starts a GET. `headers`: extra header lines, each ending in "\r\n" (or
 * NULL). `ctx` may be NULL for http:// URLs. Returns 0 with *out set, or a
 * negative errno (bad URL, too long) and no callback. */
int hcli_get(uv_loop_t *loop, tls_ctx *ctx, const char *url, const char *headers,
             size_t max_body, int timeout_ms, hcli_done_cb cb, void *ud, hcli_req **out);
/* The callback will not be called; the request's memory is released from
 * the loop. Must not be called after the callback came. */
void hcli_cancel(hcli_req *r);

#endif
