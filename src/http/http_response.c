/* Request accessors and response serialization. Every response carries
 * Content-Type, Content-Length (except streams), Date and X-Request-Id, and
 * is one shared buffer queued on its connection. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "base/fmt_num.h"
#include "http/http.h"
#include "llhttp.h"
#include "base/log.h"
#include "http/server.h"
#include "server_conn.h"
#include "base/url.h"
#include "base/hex.h"

/* Status line + our fixed headers, without extra headers and body. */
#define RESP_HEAD_MAX 512

/* ---- request accessors ---------------------------------------------------- */

const td_header *http_header(const td_request *req, const char *name) {
  size_t n = strlen(name);
  for (int i = 0; i < req->header_count; i++) {
    const td_header *h = &req->headers[i];
    if (h->name_len == n && strncasecmp(h->name, name, n) == 0) return h;
  }
  return NULL;
}

bool http_header_is(const td_request *req, const char *name, const char *value) {
  const td_header *h = http_header(req, name);
  size_t n = strlen(value);
  return h && h->value_len == n && strncasecmp(h->value, value, n) == 0;
}

/* The raw (still encoded) value of query parameter `name`. */
static bool query_value(const td_request *req, const char *name, const char **value, size_t *len) {
  size_t nlen = strlen(name), klen;
  const char *pos = req->query, *end = req->query + req->query_len, *key;
  while (url_query_next(&pos, end, &key, &klen, value, len))
    if (klen == nlen && memcmp(key, name, nlen) == 0) return true;
  return false;
}

bool http_query_param(const td_request *req, const char *name, char *out, size_t out_size) {
  const char *v;
  size_t n;
  return query_value(req, name, &v, &n) && url_decode(v, n, out, out_size, URL_DECODE_FORM) >= 0;
}

int http_query_int(const td_request *req, const char *name, long min, long max, long *out) {
  const char *v;
  size_t n;
  char buf[HTTP_QUERY_INT_MAX];
  if (!query_value(req, name, &v, &n)) return 0;
  /* Too long for any long is out of range too, not absent. Digits need no
   * percent-encoding: the raw text is the number (no "%00" cutting it short). */
  if (n == 0 || n >= sizeof(buf) || memchr(v, '%', n)) return -1;
  memcpy(buf, v, n);
  buf[n] = '\0';
  char *end;
  errno = 0;
  long x = strtol(buf, &end, 10);
  if (*end || errno == ERANGE || x < min || x > max) return -1;
  *out = x;
  return 1;
}

const char *http_method_name(const td_request *req) { return llhttp_method_name((llhttp_method_t)req->method); }

/* ---- responses ---------------------------------------------------------- */

const char *http_status_text(int status) {
  switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
  }
}

/* The Date header changes once a second; format it once a second. */
static const char *http_date(void) {
  static char cached[40];
  static time_t cached_at = -1;
  time_t now = time(NULL);
  if (now != cached_at) {
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(cached, sizeof(cached), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    cached_at = now;
  }
  return cached;
}

/* X-Request-Id: the client's own when it is short and printable, else ours. */
static void ensure_request_id(td_request *req) {
  if (req->request_id[0]) return;
  const td_header *h = http_header(req, "x-request-id");
  if (h && h->value_len > 0 && h->value_len <= TD_REQUEST_ID_MAX) {
    bool ok = true;
    for (uint32_t i = 0; i < h->value_len && ok; i++) ok = h->value[i] > 0x20 && h->value[i] < 0x7f;
    if (ok) {
      memcpy(req->request_id, h->value, h->value_len);
      req->request_id[h->value_len] = '\0';
      return;
    }
  }
  /* 16 hex digits: a per-process prefix, then a counter */
  static uint64_t counter;
  static uint32_t prefix;
  if (!prefix) prefix = (uint32_t)(uv_hrtime() ^ (uint64_t)getpid()) | 1u;
  uint64_t id = (uint64_t)prefix << 32 | (uint32_t)++counter;
  for (int i = 15; i >= 0; i--, id >>= 4) req->request_id[i] = HEX_DIGITS[id & 15];
  req->request_id[16] = '\0';
}

static void count_response(const td_request *req, int status) {
  http_stats_observe(req->route_index, status, req->start_ns ? uv_hrtime() - req->start_ns : 0);
}

/* Builds head + body into one buffer; a stream's head has no Content-Length. */
/* Appends the head piece by piece: snprintf's format parsing cost more
 * than everything else a small response needs. */
static char *put_mem(char *o, const char *s, size_t n) {
  memcpy(o, s, n);
  return o + n;
}
#define PUT_LIT(o, lit) put_mem((o), (lit), sizeof(lit) - 1)
static char *put_cstr(char *o, const char *s) { return put_mem(o, s, strlen(s)); }

static td_buf *build_response(td_request *req, int status, const char *content_type, const char *body, size_t len,
                              const char *extra_headers, bool streaming) {
  ensure_request_id(req);
  size_t extra_len = extra_headers ? strlen(extra_headers) : 0;
  bool send_body = !req->head && !streaming;
  size_t type_len = content_type ? strlen(content_type) : 0;
  td_buf *b = buf_new(RESP_HEAD_MAX + type_len + extra_len + (send_body ? len : 0));
  if (!b) return NULL;
  char *o = PUT_LIT(b->data, "HTTP/1.1 ");
  o = fmt_u64(o, (size_t)status);
  *o++ = ' ';
  o = put_cstr(o, http_status_text(status));
  if (status != 101) {
    o = PUT_LIT(o, "\r\nContent-Type: ");
    o = put_mem(o, content_type, type_len);
  }
  if (!streaming) {
    o = PUT_LIT(o, "\r\nContent-Length: ");
    o = fmt_u64(o, len);
  }
  o = PUT_LIT(o, "\r\nDate: ");
  o = put_cstr(o, http_date());
  o = PUT_LIT(o, "\r\nX-Request-Id: ");
  o = put_cstr(o, req->request_id);
  o = PUT_LIT(o, "\r\n");
  if (streaming && status != 101) {
    o = PUT_LIT(o, "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n");
  } else if (!streaming) {
    if (!req->keep_alive) o = PUT_LIT(o, "Connection: close\r\n");
    else if (req->http_minor == 0) o = PUT_LIT(o, "Connection: keep-alive\r\n");
  }
  o = put_mem(o, extra_headers ? extra_headers : "", extra_len);
  o = PUT_LIT(o, "\r\n");
  if (send_body && len) o = put_mem(o, body, len);
  b->len = (uint32_t)(o - b->data);
  return b;
}

void http_respond(td_request *req, int status, const char *content_type, const char *body, size_t len,
                  const char *extra_headers) {
  if (req->responded || !req->conn) return;
  req->responded = true;
  /* while shutting down, every response is the connection's last */
  if (server_is_draining(conn_server(req->conn))) req->keep_alive = false;
  td_buf *b = build_response(req, status, content_type, body, len, extra_headers, false);
  count_response(req, status);
  if (!b) {
    conn_close(req->conn, "out of memory");
    return;
  }
  conn_send(req->conn, b, 0);
  buf_unref(b);
  conn_response_queued(req->conn, req->keep_alive);
}

void http_respond_json(td_request *req, int status, json_t *body, const char *extra_headers) {
  char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
  json_decref(body);
  if (!text) {
    http_respond(req, 500, "application/json", "{\"error\":\"internal\",\"status\":500}", 34, NULL);
    return;
  }
  http_respond(req, status, "application/json", text, strlen(text), extra_headers);
  free(text);
}

void http_error(td_request *req, int status, const char *code, const char *message, const char *extra_headers) {
  json_t *o = json_pack("{s:s, s:s, s:i}", "error", code, "message", message ? message : http_status_text(status),
                        "status", status);
  http_respond_json(req, status, o, extra_headers);
}

void http_defer(td_request *req, td_abort_cb on_abort, void *data) {
  req->deferred = true;
  req->on_abort = on_abort;
  req->abort_data = data;
}

void http_respond_stream(td_request *req, int status, const char *content_type, const char *extra_headers,
                         const td_stream_ops *ops, void *owner) {
  if (req->responded || !req->conn) return;
  req->responded = true;
  td_buf *b = build_response(req, status, content_type, NULL, 0, extra_headers, true);
  count_response(req, status);
  if (!b) {
    conn_close(req->conn, "out of memory");
    return;
  }
  conn_take_over(req->conn, ops, owner);
  conn_send(req->conn, b, 0);
  buf_unref(b);
}
