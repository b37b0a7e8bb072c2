/* The connection byte queue: one socket, its reads, and its bounded-by-the-
 * owner queue of shared buffers (conn_internal.h has the struct).
 *
 * States (conn_state):
 *   CONN_OPEN       read and written for its creator, the HTTP/1 module:
 *                   a queued response is written at once
 *   CONN_STREAMING  taken over by a WebSocket or SSE owner: bytes read go to
 *                   its on_data, and the queue is written once per loop
 *                   iteration (conn_send lists it for the prepare phase)
 *   CONN_CLOSING    uv_close issued; the creator frees it in on_closed
 *
 * Writing: try the write now on the descriptor (sendmsg, MSG_DONTWAIT) and
 * hand only the remainder to uv_write; at most one uv_write is in flight,
 * and the entries it holds stay put (conflation never touches them). When
 * the queue empties the connection closes if conn_end asked for it, or tells
 * whoever asked with conn_notify_drain. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "base/td_limits.h"
#include "http/http_stats.h"
#include "conn_internal.h"

static uint64_t next_conn_id = 1;
/* One read buffer for every connection: the loop is single-threaded and each
 * read is consumed (or its unparsed tail copied by the reader) before the next. */
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

static void conn_flush(td_conn *c);

bool conn_is_closing(const td_conn *c) { return c->state == CONN_CLOSING; }
const char *conn_peer_ip(const td_conn *c) { return c->peer_ip; }
uint64_t conn_id(const td_conn *c) { return c->id; }
size_t conn_queued_bytes(const td_conn *c) { return c->queued_bytes; }
uint64_t conn_write_progress_at(const td_conn *c) { return c->last_write_progress; }
void conn_notify_drain(td_conn *c) { c->drain_notify = true; }

/* ---- set-up and end ----------------------------------------------------------- */

void conn_setup(td_conn *c, uv_loop_t *loop, const conn_hooks *hooks) {
  conn_loop = loop;
  c->hooks = hooks;
  c->id = next_conn_id++;
  uv_tcp_init(loop, &c->tcp);
  c->tcp.data = c;
}

static void peer_name(td_conn *c) {
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  c->peer_ip[0] = '\0';
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0) return;
  if (ss.ss_family == AF_INET) uv_ip4_name((struct sockaddr_in *)&ss, c->peer_ip, sizeof(c->peer_ip));
  else if (ss.ss_family == AF_INET6) uv_ip6_name((struct sockaddr_in6 *)&ss, c->peer_ip, sizeof(c->peer_ip));
}

int conn_ready(td_conn *c) {
  uv_os_fd_t fd = -1;
  if (uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0) return -1;
  c->fd = fd;
  uv_tcp_nodelay(&c->tcp, 1);
  peer_name(c);
  c->state = CONN_OPEN;
  c->last_write_progress = uv_now(conn_loop);
  return 0;
}

static void on_tcp_closed(uv_handle_t *h) {
  td_conn *c = h->data;
  c->hooks->on_closed(c);
}

void conn_discard(td_conn *c) {
  c->state = CONN_CLOSING;
  uv_close((uv_handle_t *)&c->tcp, on_tcp_closed);
}

void conn_release(td_conn *c) {
  while (c->out_count > 0) {
    buf_unref(c->out[c->out_head].buf);
    c->out_head = (c->out_head + 1) & (c->out_cap - 1);
    c->out_count--;
  }
  free(c->out);
  c->out = NULL;
  c->out_cap = 0;
  c->queued_bytes = 0;
}

static void flush_unlink(td_conn *c) {
  if (!c->flush_index) return;
  td_conn *last = flush_list[--flush_count];
  flush_list[c->flush_index - 1] = last;
  last->flush_index = c->flush_index;
  c->flush_index = 0;
}

/* The owner hears first (and drops its pointer), then the creator. */
void conn_close(td_conn *c, const char *reason) {
  if (c->state == CONN_CLOSING) return;
  flush_unlink(c);
  conn_state was = c->state;
  c->state = CONN_CLOSING;
  if (was == CONN_STREAMING && c->ops && c->ops->on_close) c->ops->on_close(c->owner, reason);
  c->ops = NULL;
  c->owner = NULL;
  c->hooks->on_close(c, reason);
  uv_close((uv_handle_t *)&c->tcp, on_tcp_closed);
}

void conn_end(td_conn *c) {
  if (c->state == CONN_CLOSING) return;
  c->end_after_flush = true;
  if (c->out_count == 0 && c->inflight == 0) conn_close(c, "ended");
}

/* ---- reading ------------------------------------------------------------------ */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  if (read_buf_busy) { /* cannot happen on one thread, but never hand out the buffer twice */
    *buf = uv_buf_init(NULL, 0);
    return;
  }
  read_buf_busy = true;
  *buf = uv_buf_init(read_buf, sizeof(read_buf));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  td_conn *c = s->data;
  read_buf_busy = false;
  if (nread == 0) return; /* EAGAIN: not EOF */
  if (c->state == CONN_STREAMING) {
    if (nread < 0) conn_close(c, "peer closed");
    else if (c->ops && c->ops->on_data) c->ops->on_data(c->owner, buf->base, (size_t)nread);
    return;
  }
  if (nread < 0) c->hooks->on_read_end(c, (int)nread);
  else c->hooks->on_data(c, buf->base, (size_t)nread);
}

void conn_read_start(td_conn *c) {
  if (!c->reading && uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) c->reading = true;
}

void conn_read_stop(td_conn *c) {
  if (c->reading) uv_read_stop((uv_stream_t *)&c->tcp);
  c->reading = false;
}

void conn_take_over(td_conn *c, const td_stream_ops *ops, void *owner) {
  c->state = CONN_STREAMING;
  c->ops = ops;
  c->owner = owner;
  c->hooks->on_take_over(c);
  conn_read_start(c);
}

void conn_feed_owner(td_conn *c, const char *data, size_t len) {
  if (len && c->state == CONN_STREAMING && c->ops && c->ops->on_data) c->ops->on_data(c->owner, data, len);
}

/* ---- the queue ---------------------------------------------------------------- */

static int out_push(td_conn *c, td_buf *b, uint32_t tag) {
  if (c->out_count == c->out_cap) {
    uint32_t cap = c->out_cap ? c->out_cap * 2 : CONN_QUEUE_INITIAL;
    conn_entry *n = malloc(cap * sizeof(*n));
    if (!n) return -ENOMEM;
    for (uint32_t i = 0; i < c->out_count; i++) n[i] = c->out[(c->out_head + i) & (c->out_cap - 1)];
    free(c->out);
    c->out = n;
    c->out_cap = cap;
    c->out_head = 0;
  }
  /* An HTTP connection's write deadline counts from when something first
   * waits to be written (a stream's owner keeps its own limits). */
  if (c->queued_bytes == 0 && c->state != CONN_STREAMING) c->last_write_progress = uv_now(conn_loop);
  c->out[(c->out_head + c->out_count) & (c->out_cap - 1)] = (conn_entry){buf_ref(b), 0, tag};
  c->out_count++;
  c->queued_bytes += b->len;
  return 0;
}

/* Removes `bytes` written bytes from the front of the queue. */
static void out_consume(td_conn *c, size_t bytes) {
  c->queued_bytes -= bytes;
  while (bytes > 0 && c->out_count > 0) {
    conn_entry *e = &c->out[c->out_head];
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

/* Gathers the front of the queue, at most CONN_MAX_IOV entries. */
static uint32_t out_iov(td_conn *c, uv_buf_t *iov) {
  uint32_t n = c->out_count < CONN_MAX_IOV ? c->out_count : CONN_MAX_IOV;
  for (uint32_t i = 0; i < n; i++) {
    conn_entry *e = &c->out[(c->out_head + i) & (c->out_cap - 1)];
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
    conn_entry e = c->out[(c->out_head + i) & (c->out_cap - 1)];
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

/* ---- writing ------------------------------------------------------------------ */

static void on_write_done(uv_write_t *wr, int status) {
  td_conn *c = wr->data;
  size_t bytes = 0;
  for (uint32_t i = 0; i < c->inflight; i++) {
    conn_entry *e = &c->out[(c->out_head + i) & (c->out_cap - 1)];
    bytes += e->buf->len - e->off;
  }
  c->inflight = 0;
  if (c->state == CONN_CLOSING) return; /* conn_release unrefs what is left */
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

/* The queue is empty: end, or tell whoever asked (the owner once taken
 * over, else the creator). */
static void out_emptied(td_conn *c) {
  if (c->end_after_flush) {
    conn_close(c, "response complete");
  } else if (c->drain_notify) {
    c->drain_notify = false;
    if (c->state == CONN_STREAMING) {
      if (c->ops && c->ops->on_drain) c->ops->on_drain(c->owner);
    } else {
      c->hooks->on_drain(c);
    }
  }
}

/* Write now, else queue: conn_write takes what the socket accepts at once;
 * only the remainder goes through uv_write. */
static void conn_flush(td_conn *c) {
  if (c->state == CONN_CLOSING || c->inflight > 0) return;
  uv_buf_t iov[CONN_MAX_IOV];
  bool stream = c->state == CONN_STREAMING;
  while (c->out_count > 0) {
    uint32_t n = out_iov(c, iov);
    int w = conn_write(c, iov, n);
    http_stats.stream_sends += stream;
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
    http_stats.stream_sends += stream;
    if (rc < 0) {
      c->inflight = 0;
      conn_close(c, "write failed");
    }
    return;
  }
  out_emptied(c);
}

/* Set for one flush by conn_conflate_next_flush (0: none). */
static uint32_t conflate_max_tag;

void conn_conflate_next_flush(uint32_t max_tag) { conflate_max_tag = max_tag; }

/* From the end: conn_flush may close a connection, and unlisting moves the
 * last entry, which has been taken off already. */
static void on_flush_prepare(uv_prepare_t *h) {
  uint32_t conflate = conflate_max_tag;
  conflate_max_tag = 0;
  http_stats.stream_overload_flushes += conflate != 0;
  while (flush_count > 0) {
    td_conn *c = flush_list[--flush_count];
    c->flush_index = 0;
    if (conflate) http_stats.stream_overload_conflated += conn_conflate(c, conflate);
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
    uv_prepare_init(conn_loop, &flush_prepare);
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
