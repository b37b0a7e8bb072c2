/* HTTP tests: a td_server on 127.0.0.1, port 0, in the test's own loop,
 * and plain socket clients that the test writes to and reads from while it
 * steps the loop (rfx_run_until), so a bug fails on a deadline instead of
 * hanging. Responses are split by Content-Length; a streaming response
 * (no Content-Length) is its head and then everything after it. */
#ifndef TD_HTTP_FIXTURE_H
#define TD_HTTP_FIXTURE_H

#include <errno.h>
#include <fcntl.h>

#include "http/router.h"
#include "http/server.h"
#include "redis_fixture.h"

/* What one client may receive in a test; more is a failure. */
#define HCLI_CAP (512 * 1024)
#define HCLI_MAX_RESPONSES 16
#define HFX_WAIT_MS 3000

typedef struct {
  int fd;
  char buf[HCLI_CAP + 1];
  size_t len;
  bool eof;       /* the server closed (or reset) the connection */
} hcli;

typedef struct {
  int status;
  const char *head;   /* status line and headers, up to the blank line */
  size_t head_len;
  const char *body;
  size_t body_len;
} hresp;

/* Connects to 127.0.0.1:port; the kernel completes the handshake against
 * the listening socket, the server accepts when its loop runs. */
static inline int hcli_open(hcli *c, int port) {
  memset(c, 0, sizeof(*c));
  c->fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&a, sizeof(a)) != 0) return -errno;
  fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
  return 0;
}

static inline void hcli_sendn(hcli *c, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    p += w;
    n -= (size_t)w;
  }
}
static inline void hcli_send(hcli *c, const char *s) { hcli_sendn(c, s, strlen(s)); }

/* Reads what has arrived, without blocking. */
static inline void hcli_poll(hcli *c) {
  while (!c->eof && c->len < HCLI_CAP) {
    ssize_t r = recv(c->fd, c->buf + c->len, HCLI_CAP - c->len, MSG_DONTWAIT);
    if (r > 0) {
      c->len += (size_t)r;
      c->buf[c->len] = '\0';
    } else if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
      c->eof = true;
    } else {
      return;
    }
  }
}

static inline void hcli_close(hcli *c) {
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
}

/* Forgets what was read so far (the next response starts the buffer). */
static inline void hcli_clear(hcli *c) {
  c->len = 0;
  c->buf[0] = '\0';
}

static inline const char *hfx_memmem(const char *h, size_t hn, const char *n) {
  return memmem(h, hn, n, strlen(n));
}

/* Splits the buffer into complete responses; returns how many. */
static inline int hcli_parse(const hcli *c, hresp *out, int max) {
  const char *p = c->buf, *end = c->buf + c->len;
  int n = 0;
  while (n < max && p < end) {
    const char *blank = hfx_memmem(p, (size_t)(end - p), "\r\n\r\n");
    if (!blank || strncmp(p, "HTTP/1.1 ", 9) != 0) break;
    hresp *r = &out[n];
    r->status = atoi(p + 9);
    r->head = p;
    r->head_len = (size_t)(blank + 2 - p);
    const char *cl = hfx_memmem(p, r->head_len, "\r\nContent-Length: ");
    r->body = blank + 4;
    if (!cl) { /* a stream: the rest is its body */
      r->body_len = (size_t)(end - r->body);
      n++;
      break;
    }
    r->body_len = strtoul(cl + 18, NULL, 10);
    if (r->body + r->body_len > end) break;
    p = r->body + r->body_len;
    n++;
  }
  return n;
}

static inline bool hresp_has(const hresp *r, const char *header_line) {
  return hfx_memmem(r->head, r->head_len, header_line) != NULL;
}
static inline bool hresp_body_is(const hresp *r, const char *body) {
  return r->body_len == strlen(body) && memcmp(r->body, body, r->body_len) == 0;
}

typedef struct {
  hcli *c;
  int responses;
  const char *needle;
} hfx_want;

static inline bool hfx_has_responses(void *a) {
  hfx_want *w = a;
  hresp r[HCLI_MAX_RESPONSES];
  hcli_poll(w->c);
  return hcli_parse(w->c, r, HCLI_MAX_RESPONSES) >= w->responses;
}
static inline bool hfx_has_eof(void *a) {
  hfx_want *w = a;
  hcli_poll(w->c);
  return w->c->eof;
}
static inline bool hfx_has_bytes(void *a) {
  hfx_want *w = a;
  hcli_poll(w->c);
  return hfx_memmem(w->c->buf, w->c->len, w->needle) != NULL;
}

/* Steps the loop until `n` complete responses arrived; then fills `out`. */
static inline bool hcli_wait(uv_loop_t *loop, hcli *c, int n, hresp *out) {
  hfx_want w = {c, n, NULL};
  if (!rfx_run_until(loop, hfx_has_responses, &w, HFX_WAIT_MS)) return false;
  return hcli_parse(c, out, HCLI_MAX_RESPONSES) >= n;
}
static inline bool hcli_wait_eof(uv_loop_t *loop, hcli *c) {
  hfx_want w = {c, 0, NULL};
  return rfx_run_until(loop, hfx_has_eof, &w, HFX_WAIT_MS);
}
static inline bool hcli_wait_bytes(uv_loop_t *loop, hcli *c, const char *needle) {
  hfx_want w = {c, 0, needle};
  return rfx_run_until(loop, hfx_has_bytes, &w, HFX_WAIT_MS);
}
/* Nothing more arrives and the connection stays open for `ms`. */
static inline bool hcli_quiet(uv_loop_t *loop, hcli *c, int ms) {
  size_t before = c->len;
  rfx_run_for(loop, ms);
  hcli_poll(c);
  return c->len == before && !c->eof;
}

/* A minimal HTTP/1.1 GET. */
#define GET(path) "GET " path " HTTP/1.1\r\nHost: t\r\n\r\n"

/* ---- handlers every HTTP test uses ----------------------------------------- */

/* How long hfx_h_defer waits before it answers "deferred". */
#define HFX_DEFER_MS 30

static struct {
  uv_timer_t timer;
  td_request *req;    /* the request waiting for its answer */
  int aborts;         /* on_abort calls */
} hfx_defer;

static inline void hfx_h_hello(td_request *req) { http_respond(req, 200, "text/plain", "hello", 5, NULL); }

static inline void hfx_on_defer_timer(uv_timer_t *t) {
  td_request *req = hfx_defer.req;
  hfx_defer.req = NULL;
  if (req) http_respond(req, 200, "text/plain", "deferred", 8, NULL);
}

static inline void hfx_on_defer_abort(td_request *req, void *data) {
  hfx_defer.aborts++;
  hfx_defer.req = NULL;
  uv_timer_stop(&hfx_defer.timer);
}

/* Answers HFX_DEFER_MS later, or never when `hold` (a test answers). */
static inline void hfx_defer_request(td_request *req, bool hold) {
  http_defer(req, hfx_on_defer_abort, NULL);
  hfx_defer.req = req;
  if (!hold) uv_timer_start(&hfx_defer.timer, hfx_on_defer_timer, HFX_DEFER_MS, 0);
}
static inline void hfx_h_defer(td_request *req) { hfx_defer_request(req, false); }

static inline void hfx_defer_init(uv_loop_t *loop) {
  memset(&hfx_defer, 0, sizeof(hfx_defer));
  uv_timer_init(loop, &hfx_defer.timer);
}
static inline void hfx_defer_close(void) { uv_close((uv_handle_t *)&hfx_defer.timer, NULL); }

/* ---- the server ---------------------------------------------------------- */

static inline td_server_opts hfx_opts(const td_route *routes, int n_routes, void *user) {
  return (td_server_opts){.host = "127.0.0.1", .port = 0, .max_connections = 64, .max_body_bytes = 1024,
                          .header_timeout_ms = 5000, .idle_timeout_ms = 5000, .routes = routes,
                          .n_routes = n_routes, .user = user};
}

static inline void hfx_set_flag(void *a) { *(bool *)a = true; }
static inline bool hfx_flag(void *a) { return *(bool *)a; }

/* Steps the loop until the server holds `n` open connections. */
static inline bool hfx_wait_open(uv_loop_t *loop, uint64_t n) {
  for (int i = 0; i < HFX_WAIT_MS / 5 && http_stats.open != n; i++) rfx_run_for(loop, 5);
  return http_stats.open == n;
}

/* Shuts the server down, runs the loop until it has drained, frees it. */
static inline bool hfx_stop(uv_loop_t *loop, td_server *s, int grace_ms) {
  bool done = false;
  server_shutdown(s, grace_ms, hfx_set_flag, &done);
  bool ok = rfx_run_until(loop, hfx_flag, &done, HFX_WAIT_MS);
  if (ok) server_free(s);
  return ok;
}

#endif
