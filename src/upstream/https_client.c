/* One HTTP/1.1 GET per connection over tls.h, parsed with llhttp.
 *
 * The request lives in one allocation with its tls_conn; it is freed in the
 * connection's on_close, the last callback, so nothing is freed from inside
 * a read or a parser callback. */
#include "upstream/https_client.h"

#include <ctype.h>
#include <errno.h>
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/version.h"
#include "base/url.h"
#include "upstream/resp_head.h"

struct hcli_req {
  tls_conn tls; /* first: the tls callbacks find the request from it */
  resp_head head;
  hcli_done_cb cb;
  void *ud;
  bool done;      /* the callback came, or was cancelled */
  bool complete;  /* the response was parsed to its end */
  const char *err;
  size_t max_body;
  char *body;
  size_t body_len;
  size_t body_cap;
  uint64_t deadline;
  char *request;
  size_t request_len;
};

/* ---- URLs ----------------------------------------------------------------- */

static const struct {
  const char *name;
  bool tls, ws;
  int port;
} schemes[] = {{"https", true, false, 443}, {"http", false, false, 80}, {"wss", true, true, 443}, {"ws", false, true, 80}};

int hcli_url_parse(const char *url, hcli_url *u) {
  memset(u, 0, sizeof(*u));
  url_parts parts;
  if (url_split(url, &parts, NULL) < 0 || parts.userinfo) return -EINVAL; /* no user info */
  size_t k = 0, n = sizeof(schemes) / sizeof(schemes[0]);
  while (k < n && (strlen(schemes[k].name) != parts.scheme_len ||
                   strncasecmp(parts.scheme, schemes[k].name, parts.scheme_len) != 0))
    k++;
  if (k == n) return -EINVAL;
  u->tls = schemes[k].tls;
  u->websocket = schemes[k].ws;
  int default_port = schemes[k].port;
  u->port = parts.port ? parts.port : default_port;
  if (parts.host_len > TLS_MAX_HOST) return -EINVAL;
  memcpy(u->host, parts.host, parts.host_len);
  u->host[parts.host_len] = 0;
  bool v6 = parts.ipv6;
  const char *end = parts.rest;
  /* Path and query; the fragment is never sent. Bytes that could break the
   * request line (controls, spaces) are refused, not escaped. */
  size_t plen = strcspn(end, "#");
  for (size_t i = 0; i < plen; i++)
    if ((unsigned char)end[i] <= ' ' || end[i] == 0x7f) return -EINVAL;
  bool need_slash = plen == 0 || end[0] != '/';
  if (plen + need_slash > HCLI_MAX_PATH) return -EINVAL;
  snprintf(u->path, sizeof(u->path), "%s%.*s", need_slash ? "/" : "", (int)plen, end);
  char portbuf[8] = "";
  if (u->port != default_port) snprintf(portbuf, sizeof(portbuf), ":%d", u->port);
  snprintf(u->authority, sizeof(u->authority), "%s%s%s%s", v6 ? "[" : "", u->host, v6 ? "]" : "",
           portbuf);
  return 0;
}

/* ---- the response --------------------------------------------------------- */

static int on_body(resp_head *h, const char *at, size_t len) {
  hcli_req *r = h->owner;
  if (r->body_len + len > r->max_body) {
    r->err = "response too large";
    return HPE_USER;
  }
  if (r->body_len + len + 1 > r->body_cap) {
    size_t cap = r->body_cap ? r->body_cap : 1024;
    while (cap < r->body_len + len + 1) cap *= 2;
    char *nb = realloc(r->body, cap);
    if (!nb) {
      r->err = "out of memory";
      return HPE_USER;
    }
    r->body = nb;
    r->body_cap = cap;
  }
  memcpy(r->body + r->body_len, at, len);
  r->body_len += len;
  return 0;
}

static int on_message_complete(resp_head *h) {
  hcli_req *r = h->owner;
  r->complete = true;
  return HPE_PAUSED; /* one response per connection: ignore anything after it */
}

static const resp_head_callbacks response_cb = {NULL, on_body, on_message_complete};

/* Calls back once: with the status and body when complete, else the error. */
static void finish(hcli_req *r, const char *err) {
  if (r->done) return;
  r->done = true;
  if (r->complete) {
    if (!r->body) r->body = calloc(1, 1);
    if (r->body) r->body[r->body_len] = 0;
    r->cb(r->ud, r->head.status, r->body ? r->body : "", r->body_len, NULL);
  } else {
    r->cb(r->ud, 0, NULL, 0, r->err ? r->err : err);
  }
}

/* ---- the connection ------------------------------------------------------- */

static void c_on_connect(tls_conn *c, int status) {
  hcli_req *r = (hcli_req *)c;
  if (status < 0) {
    r->err = status == UV_ETIMEDOUT ? "timeout"
             : status == TLS_ECERT  ? "certificate verify failed"
                                    : "connect failed";
    return; /* on_close follows */
  }
  uint64_t now = uv_now(c->loop);
  tls_set_timeout(c, r->deadline > now ? r->deadline - now : 1);
  if (tls_write(c, r->request, r->request_len) < 0 && !r->err) r->err = "write failed";
}

static void c_on_read(tls_conn *c, const char *data, size_t len) {
  hcli_req *r = (hcli_req *)c;
  if (r->complete || r->done) return;
  llhttp_errno_t e = llhttp_execute(&r->head.parser, data, len);
  if (r->complete) {
    finish(r, NULL);
    tls_close(c, "done");
  } else if (e != HPE_OK) {
    if (!r->err) r->err = resp_head_too_large(&r->head) ? "response head too large" : "bad response";
    tls_close(c, r->err);
  }
}

static void c_on_timeout(tls_conn *c) {
  hcli_req *r = (hcli_req *)c;
  if (!r->err) r->err = "timeout";
  tls_close(c, "timeout");
}

static void c_on_close(tls_conn *c, const char *reason) {
  hcli_req *r = (hcli_req *)c;
  /* A response without a length ends at EOF. */
  if (!r->done && !r->complete && !r->err && r->head.status > 0) llhttp_finish(&r->head.parser);
  finish(r, r->head.status > 0 ? "bad response" : "connection closed");
  free(r->body);
  free(r->request);
  free(r);
}

static const tls_callbacks hcli_tls_cb = {c_on_connect, c_on_read, c_on_close, c_on_timeout, NULL};

int hcli_get(uv_loop_t *loop, tls_ctx *ctx, const char *url, const char *headers,
             size_t max_body, int timeout_ms, hcli_done_cb cb, void *ud, hcli_req **out) {
  *out = NULL;
  hcli_url u;
  if (hcli_url_parse(url, &u) < 0 || u.websocket) return -EINVAL;
  if (u.tls && !ctx) return -EINVAL;
  hcli_req *r = calloc(1, sizeof(*r));
  if (!r) return -ENOMEM;
  r->request = malloc(HCLI_MAX_REQUEST);
  if (!r->request) {
    free(r);
    return -ENOMEM;
  }
  int n = snprintf(r->request, HCLI_MAX_REQUEST,
                   "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: tickerd/" TD_VERSION
                   "\r\nAccept: application/json\r\nConnection: close\r\n%s\r\n",
                   u.path, u.authority, headers ? headers : "");
  if (n < 0 || n >= HCLI_MAX_REQUEST) {
    free(r->request);
    free(r);
    return -E2BIG;
  }
  r->request_len = (size_t)n;
  r->cb = cb;
  r->ud = ud;
  r->max_body = max_body ? max_body : HCLI_DEFAULT_MAX_BODY;
  r->deadline = uv_now(loop) + (uint64_t)timeout_ms;
  resp_head_init(&r->head, HCLI_MAX_HEAD, NULL, &response_cb, r);
  tls_init(loop, &r->tls, ctx, &hcli_tls_cb);
  int rc = tls_connect(&r->tls, u.host, u.port, u.tls, timeout_ms);
  if (rc < 0) {
    free(r->request);
    free(r);
    return rc;
  }
  *out = r;
  return 0;
}

void hcli_cancel(hcli_req *r) {
  if (!r || r->done) return;
  r->done = true;
  tls_close(&r->tls, "cancelled");
}
