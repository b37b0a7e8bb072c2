/* One HTTP/1.x connection: an explicit state machine around llhttp, the
 * head and body buffers of the current request, timers for slow and idle
 * peers, and the outgoing queue.
 *
 * States:
 *   CONN_READING     waiting for / parsing a request (idle, header or body deadline)
 *   CONN_HANDLING    a complete request is with its handler (maybe deferred)
 *   CONN_DRAINING    the last response is queued; close when it is written
 *   CONN_STREAMING   taken over by a WebSocket or SSE owner
 *   CONN_CLOSING     uv_close issued; freed in the last close callback
 *
 * Requests are handled one at a time: on_message_complete pauses the parser,
 * the request is dispatched, and parsing resumes from llhttp_get_error_pos()
 * once the response is queued. Pipelined responses therefore leave in order,
 * and a client that does not read its responses stops being read itself once
 * TD_HTTP_WRITE_HIGH_WATER bytes are queued for it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "http/http.h"
#include "llhttp.h"
#include "base/log.h"
#include "http/router.h"
#include "http/server.h"
#include "server_conn.h"

typedef enum { CONN_READING, CONN_HANDLING, CONN_DRAINING, CONN_STREAMING, CONN_CLOSING } conn_state;

/* Writes leave in batches of at most this many buffers (one writev). */
#define CONN_MAX_IOV 64
/* Initial head buffer; it grows up to TD_HTTP_MAX_HEAD_BYTES. */
#define CONN_HEAD_INITIAL 1024
/* A cache line: the fields one delivery touches share one (see td_conn). */
#define CONN_CACHE_LINE 64
/* First size of the list of connections to flush; it doubles as needed. */
#define CONN_FLUSH_LIST_INITIAL 1024

typedef struct {
  td_buf *buf;
  uint32_t off;   /* bytes of buf already written */
  uint32_t tag;
} out_entry;

/* Offsets into the head buffer: it may move when it grows. */
typedef struct {
  uint32_t name_off, name_len, value_off, value_len;
} header_span;

struct td_conn {
  /* The outgoing queue: everything that queueing one message and writing it
   * touches, in the first cache line. With 10,000 streaming clients every
   * delivery goes to a connection that is no longer in any cache; this
   * line, the queue entry and the kernel's socket are all it reads. */
  _Alignas(CONN_CACHE_LINE) conn_state state;
  int fd;                      /* the socket, written directly (conn_write) */
  uint32_t out_head, out_count, out_cap;   /* ring; out_cap is a power of two */
  uint32_t inflight;           /* entries in the uv_write in flight */
  uint32_t flush_index;        /* position + 1 in flush_list; 0: not listed */
  bool end_after_flush;        /* conn_end: close once the queue is written */
  bool drain_notify;           /* conn_notify_drain: call on_drain when the queue empties */
  size_t queued_bytes;
  out_entry *out;
  uint64_t last_write_progress;
  const td_stream_ops *ops;    /* taken over */
  void *owner;

  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_write_t write_req;
  llhttp_t parser;
  td_server *server;
  td_conn *prev, *next;        /* server's list */
  int handles_open;
  uint64_t id;
  char peer_ip[48];

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
  bool reading;
  bool dispatching;             /* inside router_dispatch: a response now is synchronous */
};

static llhttp_settings_t parser_settings;
static uint64_t next_conn_id = 1;
/* One read buffer for every connection: the loop is single-threaded and each
 * read is consumed (or its unparsed tail copied to `pending`) before the next. */
static char read_buf[TD_HTTP_READ_BUF];
static bool read_buf_busy;

/* Streaming connections are written once per loop iteration, not once per
 * message: the hub may queue dozens of quotes on a client while it handles
 * one read from Redis, and one writev for all of them costs one system call
 * instead of dozens. The list is walked in the prepare phase, right before
 * the loop blocks, so nothing waits longer than the current iteration. It is
 * an array (each connection knows its index) rather than a linked list, so
 * that listing a connection writes only its own first cache line. */
static td_conn **flush_list;
static uint32_t flush_count, flush_cap;
static uv_prepare_t flush_prepare;
static bool flush_prepare_ready;
/* The loop of every connection (tickerd runs one), for uv_now without
 * reading the connection's handle. */
static uv_loop_t *conn_loop;

static void conn_process(td_conn *c, const char *data, size_t len);
static void conn_flush(td_conn *c);
static void conn_arm_timer(td_conn *c);

/* ---- small helpers -------------------------------------------------------- */

static const td_server_opts *conn_opts(const td_conn *c) { return server_opts(c->server); }
td_server *conn_server(const td_conn *c) { return c->server; }

bool conn_is_closing(const td_conn *c) { return c->state == CONN_CLOSING; }
const char *conn_peer_ip(const td_conn *c) { return c->peer_ip; }
uint64_t conn_id(const td_conn *c) { return c->id; }
size_t conn_queued_bytes(const td_conn *c) { return c->queued_bytes; }

static void conn_free(td_conn *c) {
  while (c->out_count > 0) {
    buf_unref(c->out[c->out_head].buf);
    c->out_head = (c->out_head + 1) & (c->out_cap - 1);
    c->out_count--;
  }
  free(c->out);
  free(c->head);
  free(c->body);
  free(c->pending);
  free(c);
}

static void on_handle_closed(uv_handle_t *h) {
  td_conn *c = h->data;
  if (--c->handles_open == 0) conn_free(c);
}

static void flush_unlink(td_conn *c) {
  if (!c->flush_index) return;
  td_conn *last = flush_list[--flush_count];
  flush_list[c->flush_index - 1] = last;
  last->flush_index = c->flush_index;
  c->flush_index = 0;
}

void conn_close(td_conn *c, const char *reason) {
  if (c->state == CONN_CLOSING) return;
  flush_unlink(c);
  conn_state was = c->state;
  c->state = CONN_CLOSING;
  if (was == CONN_HANDLING && c->req.deferred && !c->req.responded && c->req.on_abort) {
    c->req.on_abort(&c->req, c->req.abort_data);
  }
  if (was == CONN_STREAMING && c->ops && c->ops->on_close) c->ops->on_close(c->owner, reason);
  c->ops = NULL;
  c->owner = NULL;
  server_conn_closed(c->server, c);
  uv_close((uv_handle_t *)&c->timer, on_handle_closed);
  uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

/* ---- head buffer ---------------------------------------------------------- */

static int head_append(td_conn *c, const char *at, size_t len) {
  if (c->head_len + len > TD_HTTP_MAX_HEAD_BYTES) {
    c->error_status = 431;
    c->error_code = "headers_too_large";
    c->error_message = "request line and headers exceed 16 KiB";
    return -1;
  }
  if (c->head_len + len > c->head_cap) {
    uint32_t cap = c->head_cap ? c->head_cap : CONN_HEAD_INITIAL;
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

static void request_reset(td_conn *c) {
  c->head_len = 0;
  c->url_off = c->url_len = 0;
  c->span_count = 0;
  c->in_value = false;
  c->headers_done = false;
  c->body_len = 0;
  c->error_status = 0;
  memset(&c->req, 0, sizeof(c->req));
  c->req.conn = c;
  c->req.user = conn_opts(c)->user;
  c->req.route_index = -1;
}

/* ---- llhttp callbacks ----------------------------------------------------- */

static td_conn *parser_conn(llhttp_t *p) { return p->data; }

static int on_message_begin(llhttp_t *p) {
  td_conn *c = parser_conn(p);
  request_reset(c);
  c->in_request = true;
  /* A connection's first request is timed from the accept (conn_accept set
   * the deadline); a later one from its first byte, which for a pipelined
   * request is the end of the previous one. */
  if (!c->header_deadline) c->header_deadline = uv_now(c->tcp.loop) + conn_opts(c)->header_timeout_ms;
  return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len) {
  td_conn *c = parser_conn(p);
  if (c->url_len == 0) c->url_off = c->head_len;
  if (head_append(c, at, len)) return HPE_USER;
  c->url_len += (uint32_t)len;
  return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len) {
  td_conn *c = parser_conn(p);
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

static void reject(td_conn *c, int status, const char *code, const char *message);

/* llhttp 8.1.0 accepts obs-fold even in strict mode and reports the folded
 * line as a second value span. A span that continues the same line starts
 * where the previous one ended (or at the start of the next read, when the
 * previous one ended the last read); anything else skipped a line break. */
static bool value_continues_line(const td_conn *c, const char *at) {
  return at == c->value_end || (c->value_at_buf_end && at == c->exec_start);
}

static int on_header_value(llhttp_t *p, const char *at, size_t len) {
  td_conn *c = parser_conn(p);
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

static void reject(td_conn *c, int status, const char *code, const char *message) {
  c->error_status = status;
  c->error_code = code;
  c->error_message = message;
}

/* Fills req's pointers from the head buffer, which no longer moves. */
static void request_finish_head(td_conn *c) {
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
  td_conn *c = parser_conn(p);
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
  if ((p->flags & F_CONTENT_LENGTH) && (int64_t)p->content_length > conn_opts(c)->max_body_bytes) {
    reject(c, 413, "body_too_large", "request body exceeds the configured maximum");
    return HPE_USER;
  }
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len) {
  td_conn *c = parser_conn(p);
  int64_t max = conn_opts(c)->max_body_bytes;
  if ((int64_t)(c->body_len + len) > max) {
    reject(c, 413, "body_too_large", "request body exceeds the configured maximum");
    return HPE_USER;
  }
  if (c->body_len + len > c->body_cap) {
    size_t cap = c->body_cap ? c->body_cap : 4096;
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
  td_conn *c = parser_conn(p);
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

/* ---- outgoing queue ------------------------------------------------------- */

static int out_push(td_conn *c, td_buf *b, uint32_t tag) {
  if (c->out_count == c->out_cap) {
    uint32_t cap = c->out_cap ? c->out_cap * 2 : 8;
    out_entry *n = malloc(cap * sizeof(*n));
    if (!n) return -ENOMEM;
    for (uint32_t i = 0; i < c->out_count; i++) n[i] = c->out[(c->out_head + i) & (c->out_cap - 1)];
    free(c->out);
    c->out = n;
    c->out_cap = cap;
    c->out_head = 0;
  }
  /* An HTTP connection's write deadline counts from when something first
   * waits to be written (a stream's owner keeps its own limits). */
  if (c->queued_bytes == 0 && c->state != CONN_STREAMING) c->last_write_progress = uv_now(c->tcp.loop);
  c->out[(c->out_head + c->out_count) & (c->out_cap - 1)] = (out_entry){buf_ref(b), 0, tag};
  c->out_count++;
  c->queued_bytes += b->len;
  return 0;
}

/* Removes `bytes` written bytes from the front of the queue. */
static void out_consume(td_conn *c, size_t bytes) {
  c->queued_bytes -= bytes;
  while (bytes > 0 && c->out_count > 0) {
    out_entry *e = &c->out[c->out_head];
    size_t left = e->buf->len - e->off;
    if (bytes < left) {
      e->off += (uint32_t)bytes;
      return;
    }
    bytes -= left;
    buf_unref(e->buf);
    c->out_head = (c->out_head + 1) & (c->out_cap - 1);
    c->out_count--;
  }
}

static uint32_t out_iov(td_conn *c, uv_buf_t *iov) {
  uint32_t n = c->out_count < CONN_MAX_IOV ? c->out_count : CONN_MAX_IOV;
  for (uint32_t i = 0; i < n; i++) {
    out_entry *e = &c->out[(c->out_head + i) & (c->out_cap - 1)];
    iov[i] = (uv_buf_t){.base = e->buf->data + e->off, .len = e->buf->len - e->off};
  }
  return n;
}

size_t conn_conflate(td_conn *c, uint32_t max_tag) {
  /* Entries in a write in flight, or partly written, stay. Among the rest,
   * walking from the newest, an entry whose tag was already seen is
   * superseded. Tags are small integers (1..max_tag, whatever the owner
   * means by them), so a bitmap, kept between calls, makes this one pass. */
  static uint64_t *seen;
  static size_t seen_words;
  uint32_t first = c->inflight, n = c->out_count;
  if (n <= first + 1) return 0;
  size_t words = (size_t)max_tag / 64 + 1;
  if (words > seen_words) {
    uint64_t *grown = realloc(seen, words * sizeof(*seen));
    if (!grown) return 0; /* nothing conflated: the hard limit still holds */
    seen = grown;
    seen_words = words;
  }
  memset(seen, 0, words * sizeof(*seen));
  size_t dropped = 0;
  uint32_t w = n; /* compact towards the tail, newest kept in place */
  for (uint32_t i = n; i-- > first;) {
    out_entry e = c->out[(c->out_head + i) & (c->out_cap - 1)];
    bool superseded = false;
    if (e.tag != 0 && e.tag <= max_tag && e.off == 0) {
      uint64_t bit = 1ULL << (e.tag % 64);
      superseded = seen[e.tag / 64] & bit;
      seen[e.tag / 64] |= bit;
    }
    if (superseded) {
      c->queued_bytes -= e.buf->len;
      buf_unref(e.buf);
      dropped++;
    } else {
      c->out[(c->out_head + --w) & (c->out_cap - 1)] = e;
    }
  }
  /* entries [first, w) are now stale copies: shift the in-flight ones up */
  for (uint32_t i = first; i-- > 0;) c->out[(c->out_head + i + (w - first)) & (c->out_cap - 1)] = c->out[(c->out_head + i) & (c->out_cap - 1)];
  c->out_head = (c->out_head + (w - first)) & (c->out_cap - 1);
  c->out_count -= (uint32_t)dropped;
  return dropped;
}

static void on_write_done(uv_write_t *wr, int status) {
  td_conn *c = wr->data;
  size_t bytes = 0;
  for (uint32_t i = 0; i < c->inflight; i++) {
    out_entry *e = &c->out[(c->out_head + i) & (c->out_cap - 1)];
    bytes += e->buf->len - e->off;
  }
  c->inflight = 0;
  if (c->state == CONN_CLOSING) return; /* conn_free unrefs what is left */
  if (status < 0) {
    conn_close(c, "write failed");
    return;
  }
  out_consume(c, bytes);
  c->last_write_progress = uv_now(conn_loop);
  conn_flush(c);
}

/* What uv_try_write does, on the descriptor kept in the connection's first
 * cache line: uv_try_write reads four cache lines of the handle to find it
 * and to check for queued writes, which conn_flush knows about already (a
 * uv_write is in flight only while `inflight` > 0, and conn_flush alone
 * writes). MSG_NOSIGNAL: a peer that went away is an error, not a signal. */
static int conn_write(td_conn *c, const uv_buf_t *iov, uint32_t n) {
  struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = n};
  ssize_t w;
  do {
    w = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
  } while (w < 0 && errno == EINTR);
  if (w >= 0) return (int)w;
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) return UV_EAGAIN;
  return -errno;
}

/* Write now, else queue: conn_write takes what the socket accepts at once;
 * only the remainder goes through uv_write. */
static void conn_flush(td_conn *c) {
  if (c->state == CONN_CLOSING || c->inflight > 0) return;
  uv_buf_t iov[CONN_MAX_IOV];
  while (c->out_count > 0) {
    uint32_t n = out_iov(c, iov);
    int w = conn_write(c, iov, n);
    if (w == UV_EAGAIN) break;
    if (w < 0) {
      conn_close(c, "write failed");
      return;
    }
    out_consume(c, (size_t)w);
    c->last_write_progress = uv_now(conn_loop);
  }
  if (c->out_count > 0) {
    uint32_t n = out_iov(c, iov);
    c->inflight = n;
    c->write_req.data = c;
    int rc = uv_write(&c->write_req, (uv_stream_t *)&c->tcp, iov, n, on_write_done);
    if (rc < 0) {
      c->inflight = 0;
      conn_close(c, "write failed");
    }
    return;
  }
  /* everything is written */
  if (c->state == CONN_DRAINING || c->end_after_flush) {
    conn_close(c, "response complete");
  } else if (c->state == CONN_STREAMING && c->drain_notify) {
    c->drain_notify = false;
    if (c->ops && c->ops->on_drain) c->ops->on_drain(c->owner);
  } else if (c->state == CONN_READING && !c->reading) {
    /* backpressure released: read again, parsing what was held back first */
    conn_process(c, NULL, 0);
  }
}

void conn_end(td_conn *c) {
  if (c->state == CONN_CLOSING) return;
  c->end_after_flush = true;
  if (c->out_count == 0 && c->inflight == 0) conn_close(c, "ended");
}

void conn_notify_drain(td_conn *c) { c->drain_notify = true; }

/* From the end: conn_flush may close a connection, and unlisting moves the
 * last entry, which has been taken off already. */
static void on_flush_prepare(uv_prepare_t *h) {
  while (flush_count > 0) {
    td_conn *c = flush_list[--flush_count];
    c->flush_index = 0;
    conn_flush(c);
  }
}

static bool flush_list_grow(void) {
  uint32_t cap = flush_cap ? flush_cap * 2 : CONN_FLUSH_LIST_INITIAL;
  td_conn **l = realloc(flush_list, cap * sizeof(*l));
  if (!l) return false;
  flush_list = l;
  flush_cap = cap;
  return true;
}

static void flush_later(td_conn *c) {
  if (c->flush_index || c->inflight > 0) return; /* a write in flight flushes on completion */
  if (!flush_prepare_ready) {
    uv_prepare_init(c->tcp.loop, &flush_prepare);
    uv_prepare_start(&flush_prepare, on_flush_prepare);
    uv_unref((uv_handle_t *)&flush_prepare); /* it must not keep the loop alive */
    flush_prepare_ready = true;
  }
  if (flush_count == flush_cap && !flush_list_grow()) {
    conn_flush(c); /* out of memory: write now rather than not at all */
    return;
  }
  flush_list[flush_count++] = c;
  c->flush_index = flush_count;
}

void conn_stop_flushing(void) {
  if (!flush_prepare_ready) return;
  uv_close((uv_handle_t *)&flush_prepare, NULL);
  flush_prepare_ready = false;
  if (flush_count == 0) {
    free(flush_list);
    flush_list = NULL;
    flush_cap = 0;
  }
}

int conn_send(td_conn *c, td_buf *b, uint32_t tag) {
  if (c->state == CONN_CLOSING) return -EPIPE;
  int rc = out_push(c, b, tag);
  if (rc != 0) return rc;
  /* HTTP responses go out at once; streams once per iteration */
  if (c->state == CONN_STREAMING) flush_later(c);
  else conn_flush(c);
  return 0;
}

int conn_send_copy(td_conn *c, const void *p, size_t n) {
  td_buf *b = buf_from(p, n);
  if (!b) return -ENOMEM;
  int rc = conn_send(c, b, 0);
  buf_unref(b);
  return rc;
}

/* ---- timers --------------------------------------------------------------- */

static void on_timer(uv_timer_t *t) {
  td_conn *c = t->data;
  uint64_t now = uv_now(t->loop);
  if (c->queued_bytes > 0 && now - c->last_write_progress >= conn_opts(c)->write_timeout_ms) {
    http_stats.write_timeouts++;
    td_logline *l = log_begin(TD_LOG_WARN, "client_write_timeout");
    if (l) { log_str(l, "client_ip", c->peer_ip); log_int(l, "queued_bytes", (int64_t)c->queued_bytes); log_end(l); }
    conn_close(c, "write timeout");
    return;
  }
  /* Not reading (handling, draining, or held back by a peer that does not
   * read its responses: only the write timeout applies), or early. */
  if (c->state != CONN_READING || c->paused_at || (c->header_deadline && now < c->header_deadline)) {
    conn_arm_timer(c);
    return;
  }
  /* A connection that never sent a byte since its accept is a slowloris
   * too, but a browser's speculative connection looks the same: counted,
   * logged only at debug level. */
  bool mid_request = c->in_request || c->header_deadline;
  if (mid_request) http_stats.header_timeouts++;
  else http_stats.idle_timeouts++;
  td_logline *l = log_begin(c->in_request ? TD_LOG_WARN : TD_LOG_DEBUG, mid_request ? "client_header_timeout" : "client_idle_timeout");
  if (l) { log_str(l, "client_ip", c->peer_ip); log_end(l); }
  conn_close(c, mid_request ? "header timeout" : "idle timeout");
}

/* One timer per connection, armed for the earliest of: the write deadline
 * (responses queued and none of them read for --write-timeout-ms), and while
 * reading, the header deadline (fixed per request), a body that stops for
 * --header-timeout-ms, or --idle-timeout-ms between requests. Streaming
 * connections keep their own timers in their owner. */
static void conn_arm_timer(td_conn *c) {
  if (c->state == CONN_CLOSING) return;
  const td_server_opts *opts = conn_opts(c);
  uint64_t now = uv_now(c->timer.loop), due = now + opts->write_timeout_ms;
  if (c->queued_bytes > 0) due = c->last_write_progress + opts->write_timeout_ms;
  if (c->state == CONN_READING && !c->paused_at) {
    uint64_t d = c->header_deadline ? c->header_deadline
                                    : now + (c->in_request ? opts->header_timeout_ms : opts->idle_timeout_ms);
    if (c->queued_bytes == 0 || d < due) due = d;
  }
  uv_timer_start(&c->timer, on_timer, due > now ? due - now : 0, 0);
}

/* ---- reading and dispatch -------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  if (read_buf_busy) { /* cannot happen on one thread, but never hand out the buffer twice */
    *buf = uv_buf_init(NULL, 0);
    return;
  }
  read_buf_busy = true;
  *buf = uv_buf_init(read_buf, sizeof(read_buf));
}

static void stop_reading(td_conn *c) {
  if (c->reading) uv_read_stop((uv_stream_t *)&c->tcp);
  c->reading = false;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  td_conn *c = s->data;
  read_buf_busy = false;
  if (nread == 0) return; /* EAGAIN: not EOF */
  if (nread < 0) {
    /* A peer that half-closed (EOF) still gets the responses already queued
     * for it, when no request is half-read; anything else ends here. */
    if (nread == UV_EOF && c->state == CONN_READING && !c->in_request && c->queued_bytes > 0) {
      stop_reading(c);
      c->state = CONN_DRAINING;
      return;
    }
    conn_close(c, "peer closed");
    return;
  }
  if (c->state == CONN_STREAMING) {
    if (c->ops && c->ops->on_data) c->ops->on_data(c->owner, buf->base, (size_t)nread);
    return;
  }
  conn_process(c, buf->base, (size_t)nread);
}

static void keep_pending(td_conn *c, const char *data, size_t len) {
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
      conn_close(c, "out of memory");
      return;
    }
    c->pending = p;
    memcpy(c->pending, data, len);
  }
  c->pending_len = len;
}

static void send_error_and_close(td_conn *c, int status, const char *code, const char *message) {
  td_request *r = &c->req;
  r->keep_alive = false;
  if (!r->request_id[0]) snprintf(r->request_id, sizeof(r->request_id), "%016llx", (unsigned long long)c->id);
  if (status == 413 || status == 431) http_stats.too_large++;
  else http_stats.bad_requests++;
  td_logline *l = log_begin(TD_LOG_WARN, "client_error");
  if (l) {
    log_int(l, "status", status);
    log_str(l, "error", code);
    log_str(l, "client_ip", c->peer_ip);
    log_end(l);
  }
  c->state = CONN_HANDLING;
  http_error(r, status, code, message, NULL);
}

static void release_request_buffers(td_conn *c) {
  free(c->head);
  c->head = NULL;
  c->head_len = c->head_cap = 0;
  free(c->body);
  c->body = NULL;
  c->body_len = c->body_cap = 0;
}

static void dispatch(td_conn *c) {
  c->state = CONN_HANDLING;
  c->req.start_ns = uv_hrtime();
  http_stats.requests++;
  c->dispatching = true;
  router_dispatch(conn_opts(c)->routes, conn_opts(c)->n_routes, &c->req);
  c->dispatching = false;
}

/* Parses `data` (or, with NULL, what was held back in `pending`) and handles
 * every complete request in it, stopping when a handler defers, when the
 * connection was taken over, or when too much output is queued. */
static void conn_process(td_conn *c, const char *data, size_t len) {
  if (!data) {
    data = c->pending;
    len = c->pending_len;
  }
  while (c->state == CONN_READING) {
    if (c->queued_bytes > TD_HTTP_WRITE_HIGH_WATER) {
      /* backpressure: hold the unparsed bytes, stop reading until the queue drains */
      http_stats.backpressure_pauses++;
      keep_pending(c, data, len);
      stop_reading(c);
      if (!c->paused_at) c->paused_at = uv_now(c->tcp.loop) | 1; /* never 0, which means reading */
      conn_arm_timer(c);
      return;
    }
    if (c->paused_at) {
      /* Headers we did not read cannot have been late: their clock stopped. */
      if (c->header_deadline) c->header_deadline += uv_now(c->tcp.loop) - c->paused_at;
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
      if (c->state == CONN_STREAMING) {
        /* The handler is done with the request: its head and body go now
         * (not in conn_take_over, while the handler may still read them). */
        release_request_buffers(c);
        /* bytes after the request belong to the new protocol */
        c->pending_len = 0;
        if (len && c->ops && c->ops->on_data) c->ops->on_data(c->owner, data, len);
        return;
      }
      if (c->state != CONN_READING) {
        /* deferred, draining or closing: hold the rest for later */
        keep_pending(c, data, len);
        stop_reading(c);
        return;
      }
      if (err == HPE_PAUSED_UPGRADE) {
        /* an upgrade nobody took: the stream cannot be parsed as HTTP any more */
        c->state = CONN_DRAINING;
        conn_flush(c);
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
  if (c->state == CONN_READING) {
    if (!c->reading && uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) c->reading = true;
    conn_arm_timer(c);
  }
}

/* Called by http_respond*() once a response is queued. */
void conn_response_queued(td_conn *c, bool keep_alive) {
  if (c->state == CONN_CLOSING || c->state == CONN_STREAMING) return;
  if (!keep_alive || server_is_draining(c->server)) {
    c->state = CONN_DRAINING;
    stop_reading(c);
    conn_flush(c);
    if (c->state == CONN_DRAINING) conn_arm_timer(c);
    return;
  }
  c->state = CONN_READING;
  if (!c->dispatching) {
    llhttp_resume(&c->parser);
    conn_process(c, NULL, 0);
  }
  /* a synchronous handler returns into conn_process, which resumes itself */
}

void conn_take_over(td_conn *c, const td_stream_ops *ops, void *owner) {
  c->state = CONN_STREAMING;
  c->ops = ops;
  c->owner = owner;
  http_stats.taken_over++;
  uv_timer_stop(&c->timer);
  if (!c->reading && uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) c->reading = true;
}

/* ---- accept ---------------------------------------------------------------- */

static void peer_name(td_conn *c) {
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  c->peer_ip[0] = '\0';
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0) return;
  if (ss.ss_family == AF_INET) uv_ip4_name((struct sockaddr_in *)&ss, c->peer_ip, sizeof(c->peer_ip));
  else if (ss.ss_family == AF_INET6) uv_ip6_name((struct sockaddr_in6 *)&ss, c->peer_ip, sizeof(c->peer_ip));
}

static td_conn *conn_alloc(td_server *s, uv_loop_t *loop) {
  settings_init();
  td_conn *c = aligned_alloc(CONN_CACHE_LINE, sizeof(*c));
  if (!c) return NULL;
  memset(c, 0, sizeof(*c));
  conn_loop = loop;
  c->server = s;
  c->id = next_conn_id++;
  uv_tcp_init(loop, &c->tcp);
  uv_timer_init(loop, &c->timer);
  c->tcp.data = c->timer.data = c;
  c->handles_open = 2;
  return c;
}

/* A connection that never opened: freed once its handles are closed. */
static void conn_discard(td_conn *c) {
  c->state = CONN_CLOSING;
  uv_close((uv_handle_t *)&c->timer, on_handle_closed);
  uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

/* The handle holds a connected socket: register the connection and read. */
static td_conn *conn_begin(td_conn *c) {
  uv_os_fd_t fd = -1;
  if (uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0) {
    conn_discard(c);
    return NULL;
  }
  c->fd = fd;
  uv_tcp_nodelay(&c->tcp, 1);
  peer_name(c);
  llhttp_init(&c->parser, HTTP_REQUEST, &parser_settings);
  c->parser.data = c;
  request_reset(c);
  c->state = CONN_READING;
  c->last_write_progress = uv_now(conn_loop);
  c->header_deadline = uv_now(conn_loop) + conn_opts(c)->header_timeout_ms;
  server_conn_opened(c->server, c);
  conn_process(c, NULL, 0);
  return c;
}

td_conn *conn_accept(td_server *s, uv_stream_t *listener) {
  td_conn *c = conn_alloc(s, listener->loop);
  if (!c) return NULL;
  if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
    conn_discard(c);
    return NULL;
  }
  return conn_begin(c);
}

td_conn *conn_adopt(td_server *s, uv_loop_t *loop, uv_os_sock_t fd) {
  td_conn *c = conn_alloc(s, loop);
  if (!c) return NULL;
  if (uv_tcp_open(&c->tcp, fd) != 0) {
    conn_discard(c);
    return NULL;
  }
  return conn_begin(c);
}

/* A connection over the limit: answer 503 and close, reading nothing. */
void conn_reject_full(td_conn *c) {
  request_reset(c);
  c->state = CONN_HANDLING;
  stop_reading(c);
  snprintf(c->req.request_id, sizeof(c->req.request_id), "%016llx", (unsigned long long)c->id);
  http_error(&c->req, 503, "too_many_connections", "the server is at its connection limit", "Retry-After: 1\r\n");
  uv_timer_start(&c->timer, on_timer, TD_HTTP_REJECT_LINGER_MS, 0);
}

/* For shutdown: a connection with no request under way closes now. */
bool conn_close_if_idle(td_conn *c) {
  if (c->state == CONN_STREAMING) {
    conn_close(c, "server shutting down");
    return true;
  }
  if (c->state == CONN_READING && !c->in_request && c->pending_len == 0 && c->queued_bytes == 0) {
    conn_close(c, "server shutting down");
    return true;
  }
  return false;
}

void conn_list_link(td_conn *c, td_conn **head) {
  c->prev = NULL;
  c->next = *head;
  if (*head) (*head)->prev = c;
  *head = c;
}

void conn_list_unlink(td_conn *c, td_conn **head) {
  if (c->prev) c->prev->next = c->next;
  else *head = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = NULL;
}

td_conn *conn_list_next(td_conn *c) { return c->next; }
