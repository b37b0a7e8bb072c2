/* HTTP/1.x over a connection byte queue (conn.c): the request reader around
 * llhttp, each request's life, and the response writer. One explicit state
 * machine per connection (h1_state):
 *
 *   H1_READING      waiting for / parsing a request (idle, header or body
 *                   deadline); may be paused by backpressure (paused_at)
 *   H1_DISPATCHING  a complete request is with its handler, on the stack of
 *                   the reader's loop (h1_process)
 *   H1_WAITING      the handler returned without answering (http_defer): the
 *                   reader's loop has stopped and the response resumes it
 *   H1_DRAINING     the last response is queued; the queue closes the
 *                   connection once it is written (conn_end)
 *   H1_UPGRADED     taken over by a WebSocket or SSE owner: the queue is the
 *                   owner's, this module only keeps the server's books
 *   H1_CLOSED       the connection is closing; freed after both handles close
 *
 * Requests are handled one at a time: on_message_complete pauses the parser,
 * the request is dispatched, and parsing resumes from llhttp_get_error_pos()
 * once the response is queued. A response only moves the state on: given
 * during dispatch (H1_DISPATCHING) it returns into the reader's loop, which
 * carries on; given later (H1_WAITING) it runs the loop again itself.
 * Pipelined responses therefore leave in order, and a client that does not
 * read its responses stops being read itself once TD_HTTP_WRITE_HIGH_WATER
 * bytes are queued for it (the queue says when it has drained). */
#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "base/fmt_num.h"
#include "base/hex.h"
#include "base/jsonw.h"
#include "base/log.h"
#include "base/url.h"
#include "conn_internal.h"
#include "http/http.h"
#include "http/router.h"
#include "http/server.h"
#include "llhttp.h"
#include "server_conn.h"

typedef enum { H1_READING, H1_DISPATCHING, H1_WAITING, H1_DRAINING, H1_UPGRADED, H1_CLOSED } h1_state;

/* Initial head buffer; it grows up to TD_HTTP_MAX_HEAD_BYTES. */
#define H1_HEAD_INITIAL 1024
/* Initial body buffer; it doubles up to the configured maximum. */
#define H1_BODY_INITIAL 4096
/* Status line + our fixed headers, without extra headers and body. */
#define RESP_HEAD_MAX 512

/* Offsets into the head buffer: it may move when it grows. */
typedef struct {
  uint32_t name_off, name_len, value_off, value_len;
} header_span;

typedef struct http1_conn http1_conn;
struct http1_conn {
  td_conn conn;                /* first: its queue's cache line leads the allocation */
  h1_state state;
  uv_timer_t timer;
  llhttp_t parser;
  td_server *server;
  td_conn *prev, *next;        /* server's list */
  int handles_open;

  /* current request */
  td_request req;
  char *head;                  /* url + header names and values, copied out of the read buffer */
  uint32_t head_len, head_cap;
  uint32_t url_off, url_len;
  header_span spans[TD_HTTP_MAX_HEADERS];
  int span_count;
  bool in_request;             /* between on_message_begin and on_message_complete */
  bool in_value;               /* last span callback was a header value */
  /* obs-fold detection: where the last header value span ended */
  const char *value_end;
  bool value_at_buf_end;
  const char *exec_start, *exec_end;
  bool headers_done;
  /* When the current request's headers must be complete (uv_now ms; 0: no
   * request is arriving). Set once per request and never moved by a read:
   * a peer trickling bytes cannot stretch it (slowloris). */
  uint64_t header_deadline;
  uint64_t paused_at;          /* backpressure began (uv_now ms); 0: reading */
  char *body;
  size_t body_len, body_cap;
  int error_status;            /* set by a callback that rejects the request */
  const char *error_code;
  const char *error_message;

  /* bytes read but not yet parsed (pipelined requests while paused) */
  char *pending;
  size_t pending_len;
};

static llhttp_settings_t parser_settings;

static void h1_process(http1_conn *c, const char *data, size_t len);
static void h1_arm_timer(http1_conn *c);

/* ---- small helpers -------------------------------------------------------- */

/* td_conn is the first member: a request's connection is its HTTP/1 one. */
static http1_conn *h1_of(td_conn *c) { return (http1_conn *)c; }
static const td_server_opts *h1_opts(const http1_conn *c) { return server_opts(c->server); }
static uv_loop_t *h1_loop(const http1_conn *c) { return c->timer.loop; }

static void h1_free(http1_conn *c) {
  conn_release(&c->conn);
  free(c->head);
  free(c->body);
  free(c->pending);
  free(c);
}

static void on_handle_closed(http1_conn *c) {
  if (--c->handles_open == 0) h1_free(c);
}
static void on_timer_closed(uv_handle_t *h) { on_handle_closed(h->data); }
static void hook_closed(td_conn *conn) { on_handle_closed(h1_of(conn)); }

/* The queue is closing (whoever closed it): a deferred handler hears it,
 * the server forgets the connection, the timer goes. */
static void hook_close(td_conn *conn, const char *reason) {
  http1_conn *c = h1_of(conn);
  h1_state was = c->state;
  c->state = H1_CLOSED;
  if ((was == H1_DISPATCHING || was == H1_WAITING) && c->req.deferred && !c->req.responded && c->req.on_abort) {
    c->req.on_abort(&c->req, c->req.abort_data);
  }
  server_conn_closed(c->server, conn);
  uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}

/* ---- head buffer ---------------------------------------------------------- */

static int head_append(http1_conn *c, const char *at, size_t len) {
  if (c->head_len + len > TD_HTTP_MAX_HEAD_BYTES) {
    c->error_status = 431;
    c->error_code = "headers_too_large";
    c->error_message = "request line and headers exceed 16 KiB";
    return -1;
  }
  if (c->head_len + len > c->head_cap) {
    uint32_t cap = c->head_cap ? c->head_cap : H1_HEAD_INITIAL;
    while (cap < c->head_len + len) cap *= 2;
    if (cap > TD_HTTP_MAX_HEAD_BYTES) cap = TD_HTTP_MAX_HEAD_BYTES;
    char *p = realloc(c->head, cap);
    if (!p) return -1;
    c->head = p;
    c->head_cap = cap;
  }
  memcpy(c->head + c->head_len, at, len);
  c->head_len += (uint32_t)len;
  return 0;
}

static void request_reset(http1_conn *c) {
  c->head_len = 0;
  c->url_off = c->url_len = 0;
  c->span_count = 0;
  c->in_value = false;
  c->headers_done = false;
  c->body_len = 0;
  c->error_status = 0;
  memset(&c->req, 0, sizeof(c->req));
  c->req.conn = &c->conn;
  c->req.user = h1_opts(c)->user;
  c->req.route_index = -1;
}

/* ---- llhttp callbacks ----------------------------------------------------- */

static http1_conn *parser_conn(llhttp_t *p) { return p->data; }

static int on_message_begin(llhttp_t *p) {
  http1_conn *c = parser_conn(p);
  request_reset(c);
  c->in_request = true;
  /* A connection's first request is timed from the accept (http1_accept set
   * the deadline); a later one from its first byte, which for a pipelined
   * request is the end of the previous one. */
  if (!c->header_deadline) c->header_deadline = uv_now(c->timer.loop) + h1_opts(c)->header_timeout_ms;
  return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len) {
  http1_conn *c = parser_conn(p);
  if (c->url_len == 0) c->url_off = c->head_len;
  if (head_append(c, at, len)) return HPE_USER;
  c->url_len += (uint32_t)len;
  return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len) {
  http1_conn *c = parser_conn(p);
  if (c->in_value || c->span_count == 0) {
    /* a new header starts; past the table's size, headers are parsed but not kept */
    if (c->span_count < TD_HTTP_MAX_HEADERS) {
      c->spans[c->span_count] = (header_span){c->head_len, 0, 0, 0};
    }
    c->span_count++;
    c->in_value = false;
  }
  /* Four bytes of ": " and CRLF per header count toward the head limit too. */
  if (head_append(c, at, len)) return HPE_USER;
  if (c->span_count <= TD_HTTP_MAX_HEADERS) c->spans[c->span_count - 1].name_len += (uint32_t)len;
  return 0;
}

static void reject(http1_conn *c, int status, const char *code, const char *message);

/* llhttp 8.1.0 accepts obs-fold even in strict mode and reports the folded
 * line as a second value span. A span that continues the same line starts
 * where the previous one ended (or at the start of the next read, when the
 * previous one ended the last read); anything else skipped a line break. */
static bool value_continues_line(const http1_conn *c, const char *at) {
  return at == c->value_end || (c->value_at_buf_end && at == c->exec_start);
}

static int on_header_value(llhttp_t *p, const char *at, size_t len) {
  http1_conn *c = parser_conn(p);
  if (c->in_value && !value_continues_line(c, at)) {
    reject(c, 400, "obs_fold", "folded header lines (obs-fold) are not accepted");
    return HPE_USER;
  }
  c->value_end = at + len;
  c->value_at_buf_end = at + len == c->exec_end;
  if (!c->in_value) {
    if (c->span_count <= TD_HTTP_MAX_HEADERS) c->spans[c->span_count - 1].value_off = c->head_len;
    c->in_value = true;
    if (c->head_len + 4 > TD_HTTP_MAX_HEAD_BYTES) return head_append(c, at, TD_HTTP_MAX_HEAD_BYTES) ? HPE_USER : 0;
  }
  if (head_append(c, at, len)) return HPE_USER;
  if (c->span_count <= TD_HTTP_MAX_HEADERS) c->spans[c->span_count - 1].value_len += (uint32_t)len;
  return 0;
}

static void reject(http1_conn *c, int status, const char *code, const char *message) {
  c->error_status = status;
  c->error_code = code;
  c->error_message = message;
}

/* Fills req's pointers from the head buffer, which no longer moves. */
static void request_finish_head(http1_conn *c) {
  td_request *r = &c->req;
  const char *url = c->head + c->url_off;
  const char *q = memchr(url, '?', c->url_len);
  r->path = url;
  r->path_len = q ? (size_t)(q - url) : c->url_len;
  r->query = q ? q + 1 : url + c->url_len;
  r->query_len = q ? c->url_len - r->path_len - 1 : 0;
  int n = c->span_count < TD_HTTP_MAX_HEADERS ? c->span_count : TD_HTTP_MAX_HEADERS;
  for (int i = 0; i < n; i++) {
    header_span *s = &c->spans[i];
    r->headers[i] = (td_header){c->head + s->name_off, c->head + s->value_off, s->name_len, s->value_len};
  }
  r->header_count = n;
}

static bool version_supported(const llhttp_t *p) {
  return p->http_major == 1 && (p->http_minor == 0 || p->http_minor == 1);
}

static int on_headers_complete(llhttp_t *p) {
  http1_conn *c = parser_conn(p);
  td_request *r = &c->req;
  c->headers_done = true;
  c->header_deadline = 0;
  request_finish_head(c);
  r->method = (uint8_t)p->method;
  r->http_major = p->http_major;
  r->http_minor = p->http_minor;
  r->keep_alive = llhttp_should_keep_alive(p);
  r->upgrade = p->upgrade;
  r->head = p->method == HTTP_HEAD;
  if (!version_supported(p)) {
    reject(c, 400, "bad_version", "only HTTP/1.0 and HTTP/1.1 are served");
    return HPE_USER;
  }
  if (p->http_minor == 1 && !http_header(r, "host")) {
    reject(c, 400, "missing_host", "HTTP/1.1 requests need a Host header");
    return HPE_USER;
  }
  if ((p->flags & F_CONTENT_LENGTH) && (int64_t)p->content_length > h1_opts(c)->max_body_bytes) {
    reject(c, 413, "body_too_large", "request body exceeds the configured maximum");
    return HPE_USER;
  }
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len) {
  http1_conn *c = parser_conn(p);
  int64_t max = h1_opts(c)->max_body_bytes;
  if ((int64_t)(c->body_len + len) > max) {
    reject(c, 413, "body_too_large", "request body exceeds the configured maximum");
    return HPE_USER;
  }
  if (c->body_len + len > c->body_cap) {
    size_t cap = c->body_cap ? c->body_cap : H1_BODY_INITIAL;
    while (cap < c->body_len + len) cap *= 2;
    char *b = realloc(c->body, cap);
    if (!b) return HPE_USER;
    c->body = b;
    c->body_cap = cap;
  }
  memcpy(c->body + c->body_len, at, len);
  c->body_len += len;
  return 0;
}

static int on_message_complete(llhttp_t *p) {
  http1_conn *c = parser_conn(p);
  c->in_request = false;
  /* keep-alive is only valid inside the callbacks: llhttp resets it after. */
  c->req.keep_alive = llhttp_should_keep_alive(p);
  c->req.body = c->body;
  c->req.body_len = c->body_len;
  return HPE_PAUSED;
}

static void settings_init(void) {
  static bool done;
  if (done) return;
  llhttp_settings_init(&parser_settings);
  parser_settings.on_message_begin = on_message_begin;
  parser_settings.on_url = on_url;
  parser_settings.on_header_field = on_header_field;
  parser_settings.on_header_value = on_header_value;
  parser_settings.on_headers_complete = on_headers_complete;
  parser_settings.on_body = on_body;
  parser_settings.on_message_complete = on_message_complete;
  done = true;
}

/* ---- timers --------------------------------------------------------------- */

static void on_timer(uv_timer_t *t) {
  http1_conn *c = t->data;
  uint64_t now = uv_now(t->loop);
  size_t queued = conn_queued_bytes(&c->conn);
  if (queued > 0 && now - conn_write_progress_at(&c->conn) >= h1_opts(c)->write_timeout_ms) {
    http_stats.write_timeouts++;
    td_logline *l = log_begin(TD_LOG_WARN, "client_write_timeout");
    if (l) { log_str(l, "client_ip", c->conn.peer_ip); log_int(l, "queued_bytes", (int64_t)queued); log_end(l); }
    conn_close(&c->conn, "write timeout");
    return;
  }
  /* Not reading (handling, draining, or held back by a peer that does not
   * read its responses: only the write timeout applies), or early. */
  if (c->state != H1_READING || c->paused_at || (c->header_deadline && now < c->header_deadline)) {
    h1_arm_timer(c);
    return;
  }
  /* A connection that never sent a byte since its accept is a slowloris
   * too, but a browser's speculative connection looks the same: counted,
   * logged only at debug level. */
  bool mid_request = c->in_request || c->header_deadline;
  if (mid_request) http_stats.header_timeouts++;
  else http_stats.idle_timeouts++;
  td_logline *l = log_begin(c->in_request ? TD_LOG_WARN : TD_LOG_DEBUG, mid_request ? "client_header_timeout" : "client_idle_timeout");
  if (l) { log_str(l, "client_ip", c->conn.peer_ip); log_end(l); }
  conn_close(&c->conn, mid_request ? "header timeout" : "idle timeout");
}

/* One timer per connection, armed for the earliest of: the write deadline
 * (responses queued and none of them read for --write-timeout-ms), and while
 * reading, the header deadline (fixed per request), a body that stops for
 * --header-timeout-ms, or --idle-timeout-ms between requests. Streaming
 * connections keep their own timers in their owner. */
static void h1_arm_timer(http1_conn *c) {
  if (c->state == H1_CLOSED) return;
  const td_server_opts *opts = h1_opts(c);
  size_t queued = conn_queued_bytes(&c->conn);
  uint64_t now = uv_now(h1_loop(c)), due = now + opts->write_timeout_ms;
  if (queued > 0) due = conn_write_progress_at(&c->conn) + opts->write_timeout_ms;
  if (c->state == H1_READING && !c->paused_at) {
    uint64_t d = c->header_deadline ? c->header_deadline
                                    : now + (c->in_request ? opts->header_timeout_ms : opts->idle_timeout_ms);
    if (queued == 0 || d < due) due = d;
  }
  uv_timer_start(&c->timer, on_timer, due > now ? due - now : 0, 0);
}

/* ---- reading and dispatch -------------------------------------------------- */

static void hook_data(td_conn *conn, const char *data, size_t len) { h1_process(h1_of(conn), data, len); }

/* A peer that half-closed (EOF) still gets the responses already queued for
 * it, when no request is half-read; anything else ends here. */
static void hook_read_end(td_conn *conn, int status) {
  http1_conn *c = h1_of(conn);
  if (status == UV_EOF && c->state == H1_READING && !c->in_request && conn_queued_bytes(conn) > 0) {
    conn_read_stop(conn);
    c->state = H1_DRAINING;
    conn_end(conn);
    return;
  }
  conn_close(conn, "peer closed");
}

/* Backpressure released (h1_process asked when it paused): read again,
 * parsing what was held back first. */
static void hook_drain(td_conn *conn) {
  http1_conn *c = h1_of(conn);
  if (c->state == H1_READING) h1_process(c, NULL, 0);
}

/* conn_take_over, by a handler now or later: the connection's bytes, drain
 * and end are its new owner's; only the write deadline of a stream is not
 * ours to keep. */
static void hook_take_over(td_conn *conn) {
  http1_conn *c = h1_of(conn);
  c->state = H1_UPGRADED;
  http_stats.taken_over++;
  uv_timer_stop(&c->timer);
}

static const conn_hooks h1_hooks = {hook_data, hook_read_end, hook_drain, hook_take_over, hook_close, hook_closed};

static void keep_pending(http1_conn *c, const char *data, size_t len) {
  if (len == 0) {
    c->pending_len = 0;
    return;
  }
  /* no pending buffer yet: NULL + 0 would be undefined behaviour */
  if (c->pending && data >= c->pending && data < c->pending + c->pending_len) {
    memmove(c->pending, data, len);
  } else {
    char *p = realloc(c->pending, len);
    if (!p) {
      conn_close(&c->conn, "out of memory");
      return;
    }
    c->pending = p;
    memcpy(c->pending, data, len);
  }
  c->pending_len = len;
}

static void send_error_and_close(http1_conn *c, int status, const char *code, const char *message) {
  td_request *r = &c->req;
  r->keep_alive = false;
  if (!r->request_id[0]) snprintf(r->request_id, sizeof(r->request_id), "%016llx", (unsigned long long)c->conn.id);
  if (status == 413 || status == 431) http_stats.too_large++;
  else http_stats.bad_requests++;
  td_logline *l = log_begin(TD_LOG_WARN, "client_error");
  if (l) {
    log_int(l, "status", status);
    log_str(l, "error", code);
    log_str(l, "client_ip", c->conn.peer_ip);
    log_end(l);
  }
  c->state = H1_DISPATCHING;
  http_error(r, status, code, message, NULL);
}

static void release_request_buffers(http1_conn *c) {
  free(c->head);
  c->head = NULL;
  c->head_len = c->head_cap = 0;
  free(c->body);
  c->body = NULL;
  c->body_len = c->body_cap = 0;
}

/* The handler either answers before it returns (the state has moved on) or
 * defers: then the request waits, and its response resumes the reader. */
static void dispatch(http1_conn *c) {
  c->state = H1_DISPATCHING;
  c->req.start_ns = uv_hrtime();
  http_stats.requests++;
  router_dispatch(h1_opts(c)->routes, h1_opts(c)->n_routes, &c->req);
  if (c->state == H1_DISPATCHING) c->state = H1_WAITING;
}

/* Holds the unparsed bytes and stops reading until the queue drains. */
static void pause_for_backpressure(http1_conn *c, const char *data, size_t len) {
  http_stats.backpressure_pauses++;
  keep_pending(c, data, len);
  conn_read_stop(&c->conn);
  conn_notify_drain(&c->conn);
  if (!c->paused_at) c->paused_at = uv_now(h1_loop(c)) | 1; /* never 0, which means reading */
  h1_arm_timer(c);
}

/* The reader's loop. Parses `data` (or, with NULL, what was held back in
 * `pending`) and handles every complete request in it, stopping when a
 * handler defers, when the connection was taken over, or when too much
 * output is queued. */
static void h1_process(http1_conn *c, const char *data, size_t len) {
  if (!data) {
    data = c->pending;
    len = c->pending_len;
  }
  while (c->state == H1_READING) {
    if (conn_queued_bytes(&c->conn) > TD_HTTP_WRITE_HIGH_WATER) {
      pause_for_backpressure(c, data, len);
      return;
    }
    if (c->paused_at) {
      /* Headers we did not read cannot have been late: their clock stopped. */
      if (c->header_deadline) c->header_deadline += uv_now(h1_loop(c)) - c->paused_at;
      c->paused_at = 0;
    }
    if (len == 0) {
      c->pending_len = 0;
      break;
    }
    c->exec_start = data;
    c->exec_end = data + len;
    llhttp_errno_t err = llhttp_execute(&c->parser, data, len);
    if (err == HPE_OK) {
      c->pending_len = 0;
      break;
    }
    if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
      const char *pos = llhttp_get_error_pos(&c->parser);
      len -= (size_t)(pos - data);
      data = pos;
      dispatch(c);
      if (c->state == H1_UPGRADED) {
        /* The handler is done with the request: its head and body go now
         * (not at the take-over, while the handler may still read them). */
        release_request_buffers(c);
        /* bytes after the request belong to the new protocol */
        c->pending_len = 0;
        conn_feed_owner(&c->conn, data, len);
        return;
      }
      if (c->state != H1_READING) {
        /* waiting, draining or closing: hold the rest for later */
        keep_pending(c, data, len);
        conn_read_stop(&c->conn);
        return;
      }
      if (err == HPE_PAUSED_UPGRADE) {
        /* an upgrade nobody took: the stream cannot be parsed as HTTP any more */
        c->state = H1_DRAINING;
        conn_end(&c->conn);
        return;
      }
      llhttp_resume(&c->parser);
      continue;
    }
    /* a parse error or a limit hit by a callback */
    if (c->error_status) {
      send_error_and_close(c, c->error_status, c->error_code, c->error_message);
    } else {
      send_error_and_close(c, 400, "bad_request", llhttp_get_error_reason(&c->parser));
    }
    return;
  }
  if (c->state == H1_READING) {
    conn_read_start(&c->conn);
    h1_arm_timer(c);
  }
}

/* A response is queued: the request's state moves on. During dispatch the
 * reader's loop is below us on the stack and carries on by itself; after a
 * deferral it has stopped, and runs again from here. */
static void h1_response_queued(http1_conn *c, bool keep_alive) {
  if (c->state == H1_CLOSED || c->state == H1_UPGRADED) return;
  bool dispatching = c->state == H1_DISPATCHING;
  if (!keep_alive || server_is_draining(c->server)) {
    c->state = H1_DRAINING;
    conn_read_stop(&c->conn);
    conn_end(&c->conn);
    if (c->state == H1_DRAINING) h1_arm_timer(c);
    return;
  }
  c->state = H1_READING;
  if (!dispatching) {
    llhttp_resume(&c->parser);
    h1_process(c, NULL, 0);
  }
}

/* ---- accept ---------------------------------------------------------------- */

static http1_conn *h1_alloc(td_server *s, uv_loop_t *loop) {
  settings_init();
  http1_conn *c = aligned_alloc(CONN_CACHE_LINE, sizeof(*c));
  if (!c) return NULL;
  memset(c, 0, sizeof(*c));
  c->server = s;
  conn_setup(&c->conn, loop, &h1_hooks);
  uv_timer_init(loop, &c->timer);
  c->timer.data = c;
  c->handles_open = 2;
  return c;
}

/* A connection that never opened: freed once its handles are closed. */
static void h1_discard(http1_conn *c) {
  c->state = H1_CLOSED;
  uv_close((uv_handle_t *)&c->timer, on_timer_closed);
  conn_discard(&c->conn);
}

/* The handle holds a connected socket: register the connection and read. */
static td_conn *h1_begin(http1_conn *c) {
  if (conn_ready(&c->conn) != 0) {
    h1_discard(c);
    return NULL;
  }
  llhttp_init(&c->parser, HTTP_REQUEST, &parser_settings);
  c->parser.data = c;
  request_reset(c);
  c->state = H1_READING;
  c->header_deadline = uv_now(h1_loop(c)) + h1_opts(c)->header_timeout_ms;
  server_conn_opened(c->server, &c->conn);
  h1_process(c, NULL, 0);
  return &c->conn;
}

td_conn *http1_accept(td_server *s, uv_stream_t *listener) {
  http1_conn *c = h1_alloc(s, listener->loop);
  if (!c) return NULL;
  if (uv_accept(listener, (uv_stream_t *)&c->conn.tcp) != 0) {
    h1_discard(c);
    return NULL;
  }
  return h1_begin(c);
}

td_conn *http1_adopt(td_server *s, uv_loop_t *loop, uv_os_sock_t fd) {
  http1_conn *c = h1_alloc(s, loop);
  if (!c) return NULL;
  if (uv_tcp_open(&c->conn.tcp, fd) != 0) {
    h1_discard(c);
    return NULL;
  }
  return h1_begin(c);
}

/* A connection over the limit: answer 503 and close, reading nothing. */
void http1_reject_full(td_conn *conn) {
  http1_conn *c = h1_of(conn);
  request_reset(c);
  c->state = H1_DISPATCHING;
  conn_read_stop(conn);
  snprintf(c->req.request_id, sizeof(c->req.request_id), "%016llx", (unsigned long long)conn->id);
  http_error(&c->req, 503, "too_many_connections", "the server is at its connection limit", "Retry-After: 1\r\n");
  uv_timer_start(&c->timer, on_timer, TD_HTTP_REJECT_LINGER_MS, 0);
}

/* For shutdown: a connection with no request under way closes now. */
bool http1_close_if_idle(td_conn *conn) {
  http1_conn *c = h1_of(conn);
  if (c->state == H1_UPGRADED) {
    conn_close(conn, "server shutting down");
    return true;
  }
  if (c->state == H1_READING && !c->in_request && c->pending_len == 0 && conn_queued_bytes(conn) == 0) {
    conn_close(conn, "server shutting down");
    return true;
  }
  return false;
}

void http1_list_link(td_conn *conn, td_conn **head) {
  http1_conn *c = h1_of(conn);
  c->prev = NULL;
  c->next = *head;
  if (*head) h1_of(*head)->prev = conn;
  *head = conn;
}

void http1_list_unlink(td_conn *conn, td_conn **head) {
  http1_conn *c = h1_of(conn);
  if (c->prev) h1_of(c->prev)->next = c->next;
  else *head = c->next;
  if (c->next) h1_of(c->next)->prev = c->prev;
  c->prev = c->next = NULL;
}

td_conn *http1_list_next(td_conn *conn) { return h1_of(conn)->next; }

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
  if (server_is_draining(h1_of(req->conn)->server)) req->keep_alive = false;
  td_buf *b = build_response(req, status, content_type, body, len, extra_headers, false);
  count_response(req, status);
  if (!b) {
    conn_close(req->conn, "out of memory");
    return;
  }
  conn_send(req->conn, b, 0);
  buf_unref(b);
  h1_response_queued(h1_of(req->conn), req->keep_alive);
}

void http_error(td_request *req, int status, const char *code, const char *message, const char *extra_headers) {
  jsonw w;
  jw_init(&w, 0);
  jw_object(&w, NULL);
  jw_str(&w, "error", code);
  jw_str(&w, "message", message ? message : http_status_text(status));
  jw_i64(&w, "status", status);
  jw_end(&w);
  if (w.failed) http_respond(req, 500, "application/json", "{\"error\":\"internal\",\"status\":500}", 34, NULL);
  else http_respond(req, status, "application/json", w.p, w.len, extra_headers);
  jw_free(&w);
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
