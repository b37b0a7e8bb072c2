/* fanout_client: the fan-out benchmark's load generator.
 *
 * One libuv loop holds N subscriber connections to one server and, unless
 * --pub none, a fixed-rate publisher to the same server. The publisher
 * stamps every message with its creation time ("t", RFC 3339, ns) and, for
 * nchan, its own per-symbol "seq"; tickerd assigns "seq" itself. Each
 * subscriber records now - t in a log-bucket histogram (µs) and counts a
 * gap in a symbol's seq as lost messages.
 *
 * After all clients are connected it steps through --rates (messages/s over
 * all symbols): per rate a warm-up, then --runs measurement windows, one
 * JSON line per window and one "summary" line with the medians. It stops
 * stepping after the first rate whose median p99 passes --stop-p99-ms or
 * that lost a message or saw an error.
 *
 * Targets (--mode):
 *   sse-tickerd  GET /stream?symbols=A,B               publisher: POST /quotes
 *   ws-tickerd   GET /ws + {"action":"subscribe",...}   publisher: POST /quotes
 *   sse-nchan    GET /sub/A,B (Accept: text/event-stream) publisher: POST /pub/A
 *   ws-nchan     GET /sub/A,B as WebSocket (to check the framing code)
 *
 * --interval-ms I (tickerd only) subscribes every client with interval_ms
 * I (per-client rate). A seq gap is then a throttled update, counted as
 * "throttled", not lost; the latency histogram is each delivered quote's
 * staleness (its age when it reached the client), and a client-symbol is
 * offered at most one delivery per interval.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

#include <llhttp.h>
#include <uv.h>

#include "base/buf.h"
#include "http/ws_deflate.h"
#include "http/ws_frame.h"

/* Bytes a client may hold of an unfinished SSE event, and the largest
 * WebSocket message it accepts. Quotes are a few hundred bytes; more than
 * this means the stream is not what we expect. */
#define FB_PEND_MAX (1 << 20)
/* Longest header name we need to recognise (Sec-WebSocket-Accept). */
#define FB_HEADER_NAME_MAX 24
/* One read buffer for every client: the read callback consumes it before
 * libuv asks for the next one. */
#define FB_READ_BUF (256 * 1024)
/* Connections being opened at once: past the server's listen backlog the
 * kernel drops SYNs and the client waits a second per retry. */
#define FB_DEFAULT_CONNECT_CONCURRENCY 256
#define FB_DEFAULT_CONNECT_TIMEOUT_MS 60000
/* Publisher clock: one batch per tick. */
#define FB_PUB_TICK_MS 1
/* A stalled loop publishes at most this much backlog at once. */
#define FB_PUB_MAX_CATCHUP_MS 100
/* Requests sent and not yet answered; beyond it the publisher skips
 * messages (counted) rather than queueing without bound. */
#define FB_PUB_MAX_INFLIGHT 8192
/* Quotes per POST /quotes request. */
#define FB_PUB_TICKERD_BATCH 64
/* A rate is sustained when at least this share of the offered deliveries
 * arrived within the windows (messages in flight at a window's edges and
 * clock granularity cost a few per cent at low rates). */
#define FB_SUSTAINED_SHARE 0.95
/* After a loop iteration that read fewer than FB_NAP_BATCH messages, the
 * client sleeps --nap-us (this default) before it polls again. Without it,
 * while a server writes one quote to each of 1,000 sockets, the client wakes
 * for every one or two of them: each wake-up is a context switch here and a
 * cross-CPU wake-up charged to the server's write, work that remote clients
 * would never cost the server. Asleep, it is not woken; afterwards one
 * epoll_wait returns everything written meanwhile. Latency is measured when
 * the client reads, so it includes the nap: at most this much. */
#define FB_DEFAULT_NAP_US 500
#define FB_NAP_BATCH 128
#define FB_MAX_RUNS 32
#define FB_MAX_RATES 64
/* Latency histogram: 128 exact µs values, then 64 sub-buckets per power of
 * two (1.6 % precision) up to 2^46 µs. */
#define FB_H_SUB 128
#define FB_H_HALF 64
#define FB_H_EXPS 40
#define FB_H_BUCKETS (FB_H_SUB + FB_H_EXPS * FB_H_HALF)

typedef enum { FB_SSE_TICKERD, FB_WS_TICKERD, FB_SSE_NCHAN, FB_WS_NCHAN } fb_mode;
typedef enum { FB_PUB_NONE, FB_PUB_TICKERD, FB_PUB_NCHAN } fb_pub_kind;
typedef enum { FB_CL_IDLE, FB_CL_CONNECTING, FB_CL_HANDSHAKE, FB_CL_STREAMING, FB_CL_CLOSED } fb_client_state;

typedef struct fb_hist {
  uint64_t count;
  uint64_t max;
  uint64_t b[FB_H_BUCKETS];
} fb_hist;

typedef struct fb_client {
  uv_tcp_t tcp;
  uv_connect_t connect_req;
  llhttp_t http;
  fb_client_state state;
  bool ws;          /* stream is WebSocket frames (after the 101) */
  bool counted;     /* already counted as ready or failed */
  int index;
  char *pend;       /* unfinished SSE event */
  uint32_t pend_len, pend_cap;
  ws_parser *wsp;   /* after the 101 only */
  /* WebSocket handshake: our key and the server's Sec-WebSocket-Accept. */
  char ws_key[WS_KEY_LEN + 1];
  char hname[FB_HEADER_NAME_MAX];
  uint8_t hname_len;
  char accept[WS_ACCEPT_LEN + 4];
  uint8_t accept_len;
} fb_client;

typedef struct fb_window {
  uint64_t deliveries, lost, dup, errors, published, skipped, parse_errors;
  uint64_t throttled;       /* --interval-ms: updates the server replaced by a newer one */
  uint64_t bytes_in;        /* subscribers' bytes read after their handshake */
  fb_hist hist;
} fb_window;

typedef struct fb_pub {
  uv_tcp_t tcp;
  uv_connect_t connect_req;
  uv_timer_t timer;
  llhttp_t http;
  bool connected, closing;
  uint64_t sent_reqs, answered_reqs;
  double rate;
  uint64_t rate_start_ns;
  uint64_t rate_sent;       /* messages counted against the current rate */
  uint64_t sym_next;        /* round robin over symbols */
  uint64_t *seq;            /* per symbol, nchan only */
} fb_pub;

typedef struct fb_result {
  double dps, p50, p99, max, pub_rate, server_cpu, aux_cpu, client_cpu, idle_cpu, bytes_per_delivery;
  uint64_t deliveries, lost, dup, errors, skipped, rss_kb, throttled;
} fb_result;

/* Options. */
static struct {
  fb_mode mode;
  fb_pub_kind pub;
  const char *host;
  int port;
  int clients, symbols, per_client;
  const char *prefix;
  double rates[FB_MAX_RATES];
  int nrates;
  int runs, warmup_ms, window_ms, connect_concurrency, connect_timeout_ms;
  double stop_p99_ms;
  int deadline_s;
  int server_pid, aux_pid;
  int gap_every;
  int nap_us;
  int retries;
  bool deflate;               /* ws-tickerd: offer permessage-deflate */
  const char *wildcard;       /* tickerd modes: every client subscribes to this pattern alone ("*") */
  int interval_ms;            /* tickerd: the clients' interval_ms; 0: every quote */
  const char *label;
} opt;

/* Run state. */
static struct {
  uv_loop_t *loop;
  struct sockaddr_in addr;
  fb_client *clients;
  int32_t *sub_sym;          /* clients * per_client symbol indexes */
  int64_t *last_seq;         /* clients * per_client, 0: none yet */
  int next_connect, in_flight, ready, failed, closed;
  uint64_t start_ns;
  char *rbuf;
  fb_window win;
  bool measuring;
  uv_timer_t phase_timer, connect_timer;
  int rate_idx, run_idx, attempt;
  fb_result runs[FB_MAX_RUNS];
  uint64_t w_start_ns, w_cpu_us, w_srv_ticks, w_aux_ticks, w_idle_ticks;
  fb_pub pub;
  uint64_t now_ns;            /* cached per read callback */
  uv_check_t nap_check;
  uint32_t iter_reads;        /* subscriber reads in this loop iteration */
  int exit_code;
} st;

static llhttp_settings_t client_settings, pub_settings;

static uint64_t fb_realtime_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t fb_mono_ns(void) { return uv_hrtime(); }

/* ---- histogram ----------------------------------------------------------- */

static int fb_hist_index(uint64_t v) {
  if (v < FB_H_SUB) return (int)v;
  int msb = 63 - __builtin_clzll(v);
  int e = msb - 6;
  if (e > FB_H_EXPS) return FB_H_BUCKETS - 1;
  return FB_H_SUB + (e - 1) * FB_H_HALF + (int)((v >> e) - FB_H_HALF);
}

/* The highest value that lands in bucket i, as HdrHistogram reports. */
static uint64_t fb_hist_value(int i) {
  if (i < FB_H_SUB) return (uint64_t)i;
  int e = (i - FB_H_SUB) / FB_H_HALF + 1;
  uint64_t m = (uint64_t)((i - FB_H_SUB) % FB_H_HALF + FB_H_HALF);
  return ((m + 1) << e) - 1;
}

static void fb_hist_record(fb_hist *h, uint64_t v) {
  h->b[fb_hist_index(v)]++;
  h->count++;
  if (v > h->max) h->max = v;
}

static uint64_t fb_hist_pct(const fb_hist *h, double p) {
  if (!h->count) return 0;
  uint64_t want = (uint64_t)(p * (double)h->count + 0.999999);
  if (want < 1) want = 1;
  uint64_t seen = 0;
  for (int i = 0; i < FB_H_BUCKETS; i++) {
    seen += h->b[i];
    if (seen >= want) return fb_hist_value(i) < h->max ? fb_hist_value(i) : h->max;
  }
  return h->max;
}

/* ---- payload fields -------------------------------------------------------- */

/* "2026-11-21T20:00:00.123456789Z" -> ns since the epoch, or -1. The minute
 * is cached: within a run almost every stamp shares it. */
static int64_t fb_parse_rfc3339(const char *s, size_t n) {
  static char cached[16];
  static int64_t cached_base = -1;
  if (n < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':') return -1;
  if (cached_base < 0 || memcmp(cached, s, 16)) {
    struct tm tm = {0};
    for (int i = 0; i < 16; i++)
      if (i != 4 && i != 7 && i != 10 && i != 13 && (s[i] < '0' || s[i] > '9')) return -1;
    tm.tm_year = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0') - 1900;
    tm.tm_mon = (s[5] - '0') * 10 + (s[6] - '0') - 1;
    tm.tm_mday = (s[8] - '0') * 10 + (s[9] - '0');
    tm.tm_hour = (s[11] - '0') * 10 + (s[12] - '0');
    tm.tm_min = (s[14] - '0') * 10 + (s[15] - '0');
    memcpy(cached, s, 16);
    cached_base = (int64_t)timegm(&tm);
  }
  if (s[17] < '0' || s[17] > '9' || s[18] < '0' || s[18] > '9') return -1;
  int64_t ns = (cached_base + (s[17] - '0') * 10 + (s[18] - '0')) * 1000000000ll;
  size_t i = 19;
  if (i < n && s[i] == '.') {
    int64_t frac = 0, scale = 100000000;
    for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
      if (scale) { frac += (s[i] - '0') * scale; scale /= 10; }
    }
    ns += frac;
  }
  if (i >= n || s[i] != 'Z') return -1;
  return ns;
}

/* The value after the first `key` (e.g. "\"S\":\"") inside [p, p+n), or
 * NULL. `at` is the index of a byte of the key that is rare in a quote
 * message: memchr jumps from one of those to the next, where memmem read
 * every byte (it was most of the load generator's time per message). */
static const char *fb_find(const char *p, size_t n, const char *key, size_t klen, size_t at) {
  const char *end = p + n, *c = p + at;
  while (c < end && (c = memchr(c, key[at], (size_t)(end - c)))) {
    const char *k = c - at;
    if ((size_t)(end - k) >= klen && !memcmp(k, key, klen)) return k + klen;
    c++;
  }
  return NULL;
}

/* The same for the last `key`: "t" and "seq" are the last fields of a quote
 * (the publisher puts "t" last, tickerd and this publisher append "seq" and
 * "epoch"), so the search from the end stops after a few bytes. */
static const char *fb_rfind(const char *p, size_t n, const char *key, size_t klen, size_t at) {
  const char *end = p + n, *c;
  size_t lim = n;
  while (lim > at && (c = memrchr(p + at, key[at], lim - at))) {
    const char *k = c - at;
    if ((size_t)(end - k) >= klen && !memcmp(k, key, klen)) return k + klen;
    lim = (size_t)(c - p);
  }
  return NULL;
}

static int fb_client_slot(int client, int64_t sym) {
  if (opt.wildcard) return sym >= 0 && sym < opt.symbols ? (int)sym : -1; /* slot j is symbol j */
  const int32_t *subs = st.sub_sym + (size_t)client * (size_t)opt.per_client;
  for (int j = 0; j < opt.per_client; j++)
    if (subs[j] == sym) return j;
  return -1;
}

/* One delivered message (SSE data or WebSocket text frame). Messages that
 * carry no "t" (comments, acks, pings) are not deliveries. */
static void fb_message(fb_client *c, const char *p, size_t n) {
  const char *end = p + n;
  /* 't' of the key "t"; 'q' of "seq"; 'S' of "S": none of them occurs in
   * the fields after "t" (a timestamp, digits, lowercase hex). */
  const char *t = fb_rfind(p, n, "\"t\":\"", 5, 1);
  if (!t) {
    return;
  }
  int64_t stamp = fb_parse_rfc3339(t, (size_t)(end - t));
  const char *sq = fb_rfind(p, n, "\"seq\":", 6, 3);
  const char *sy = fb_find(p, n, "\"S\":\"", 5, 1);
  size_t plen = strlen(opt.prefix);
  if (stamp < 0 || !sq || !sy || (size_t)(end - sy) < plen || memcmp(sy, opt.prefix, plen)) {
    st.win.parse_errors++;
    return;
  }
  int64_t seq = 0, sym = 0;
  for (; sq < end && *sq >= '0' && *sq <= '9'; sq++) seq = seq * 10 + (*sq - '0');
  for (sy += plen; sy < end && *sy >= '0' && *sy <= '9'; sy++) sym = sym * 10 + (*sy - '0');
  if (!st.now_ns) st.now_ns = fb_realtime_ns();
  int slot = fb_client_slot(c->index, sym);
  if (slot < 0) {
    st.win.parse_errors++;
    return;
  }
  int64_t *last = st.last_seq + (size_t)c->index * (size_t)opt.per_client + slot;
  if (*last && seq > *last + 1) {
    if (opt.interval_ms) st.win.throttled += (uint64_t)(seq - *last - 1);
    else st.win.lost += (uint64_t)(seq - *last - 1);
  }
  if (*last && seq <= *last) st.win.dup++;
  else *last = seq;
  st.win.deliveries++;
  int64_t lat_ns = (int64_t)st.now_ns - stamp;
  fb_hist_record(&st.win.hist, lat_ns > 0 ? (uint64_t)lat_ns / 1000 : 0);
}

/* ---- client connections ---------------------------------------------------- */

static void fb_client_connect_next(void);
static void fb_start_phases(void);

static void fb_client_counted(fb_client *c, bool ok) {
  if (c->counted) return;
  c->counted = true;
  st.in_flight--;
  if (ok) st.ready++;
  else st.failed++;
  fb_client_connect_next();
}

static void fb_on_client_close(uv_handle_t *h) {
  fb_client *c = h->data;
  free(c->pend);
  c->pend = NULL;
  c->pend_len = c->pend_cap = 0;
  if (c->wsp) {
    ws_parser_free(c->wsp);
    free(c->wsp);
    c->wsp = NULL;
  }
}

static void fb_client_fail(fb_client *c, const char *why) {
  if (c->state == FB_CL_CLOSED) return;
  if (st.closed + st.failed < 5) fprintf(stderr, "fanout_client: client %d: %s\n", c->index, why);
  if (c->state == FB_CL_STREAMING) st.win.errors++;
  c->state = FB_CL_CLOSED;
  st.closed++;
  fb_client_counted(c, false);
  uv_close((uv_handle_t *)&c->tcp, fb_on_client_close);
}

static void fb_on_write_free(uv_write_t *req, int status) {
  free(req->data);
  free(req);
}

static int fb_write_copy(uv_stream_t *s, const char *p, size_t n) {
  uv_write_t *req = malloc(sizeof *req);
  char *copy = malloc(n);
  if (!req || !copy) { free(req); free(copy); return UV_ENOMEM; }
  memcpy(copy, p, n);
  req->data = copy;
  uv_buf_t b = uv_buf_init(copy, (unsigned)n);
  int r = uv_write(req, s, &b, 1, fb_on_write_free);
  if (r) { free(copy); free(req); }
  return r;
}

/* A WebSocket client that sends (its subscribe, a pong) soon after it
 * received puts its socket in Linux's interactive ("pingpong") mode, where
 * data is acknowledged by the delayed-ACK timer rather than when it is read.
 * That timer is armed on the CPU that ran the server's write (loopback does
 * the receive there) and fires there 40 ms later: sending and processing the
 * client's ACK for every quote would be charged to the server, which a remote
 * client never costs it. The SSE clients (nchan's too) never send after
 * their request and acknowledge on read. TCP_QUICKACK after each of our
 * writes leaves interactive mode again, so every target is measured with the
 * same acknowledgement pattern. */
static void fb_quickack(uv_stream_t *s) {
  uv_os_fd_t fd;
  int one = 1;
  if (uv_fileno((uv_handle_t *)s, &fd) == 0) setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
}

static void fb_on_write_unref(uv_write_t *req, int status) {
  if (status == 0) fb_quickack(req->handle);
  buf_unref(req->data);
  free(req);
}

/* A client frame, masked with a fresh key (ws_frame.h). */
static int fb_ws_send(fb_client *c, ws_opcode op, const char *p, size_t n) {
  td_buf *b = ws_frame_encode_masked(op, p, n);
  uv_write_t *req = malloc(sizeof *req);
  if (!b || !req) {
    if (b) buf_unref(b);
    free(req);
    return UV_ENOMEM;
  }
  req->data = b;
  uv_buf_t ub = uv_buf_init(b->data, b->len);
  int r = uv_write(req, (uv_stream_t *)&c->tcp, &ub, 1, fb_on_write_unref);
  if (r) {
    buf_unref(b);
    free(req);
  }
  return r;
}

static size_t fb_symbol_list(int client, const char *sep, const char *quote, char *out, size_t cap) {
  size_t len = 0;
  if (opt.wildcard) {
    int w = snprintf(out, cap, "%s%s%s", quote, opt.wildcard, quote);
    return w > 0 && (size_t)w < cap ? (size_t)w : 0;
  }
  for (int j = 0; j < opt.per_client; j++) {
    int w = snprintf(out + len, cap - len, "%s%s%s%d%s", j ? sep : "", quote, opt.prefix,
                     st.sub_sym[(size_t)client * (size_t)opt.per_client + j], quote);
    if (w < 0 || (size_t)w >= cap - len) return 0;
    len += (size_t)w;
  }
  return len;
}

static void fb_client_subscribed(fb_client *c) {
  c->state = FB_CL_STREAMING;
  if (opt.mode == FB_WS_TICKERD) {
    char syms[3000], msg[3200];
    if (!fb_symbol_list(c->index, ",", "\"", syms, sizeof syms)) { fb_client_fail(c, "too many symbols"); return; }
    char rate[40] = "";
    if (opt.interval_ms) snprintf(rate, sizeof rate, ",\"interval_ms\":%d", opt.interval_ms);
    int n = snprintf(msg, sizeof msg, "{\"action\":\"subscribe\",\"symbols\":[%s]%s}", syms, rate);
    if (fb_ws_send(c, WS_OP_TEXT, msg, (size_t)n)) { fb_client_fail(c, "subscribe write failed"); return; }
  }
  fb_client_counted(c, true);
}

/* Consumes complete SSE events ("\n\n"-terminated) from p; returns bytes used. */
static size_t fb_sse_consume(fb_client *c, const char *p, size_t n) {
  size_t used = 0;
  while (used < n) {
    const char *e = p + used;
    /* an event ends at an empty line: memchr per line, not memmem per byte */
    while ((e = memchr(e, '\n', n - (size_t)(e - p))) && e + 1 < p + n && e[1] != '\n') e++;
    if (!e || e + 1 >= p + n) break;
    size_t len = (size_t)(e - (p + used));
    fb_message(c, p + used, len);
    used += len + 2;
  }
  return used;
}

static int fb_ws_on_message(void *ud, ws_opcode op, const char *data, size_t len) {
  fb_message(ud, data, len);
  return 0;
}

static int fb_ws_on_ping(void *ud, const char *data, size_t len) {
  fb_ws_send(ud, WS_OP_PONG, data, len);
  return 0;
}

static int fb_ws_on_close(void *ud, int code, const char *reason, size_t len) {
  fb_client_fail(ud, "server closed the WebSocket");
  return 1;
}

static const ws_callbacks fb_ws_callbacks = {
    .on_message = fb_ws_on_message, .on_ping = fb_ws_on_ping, .on_close = fb_ws_on_close};

/* WebSocket bytes: the parser reassembles partial frames itself. */
static void fb_ws_feed(fb_client *c, const char *p, size_t n) {
  int r = ws_parser_feed(c->wsp, p, n, &fb_ws_callbacks, c);
  if (r < 0 && r != WS_ESTOPPED) fb_client_fail(c, ws_parser_error(c->wsp));
}

/* Feeds SSE body bytes, keeping an unfinished event in c->pend. */
static void fb_sse_feed(fb_client *c, const char *p, size_t n) {
  size_t used;
  if (c->pend_len == 0) {
    used = fb_sse_consume(c, p, n);
    p += used;
    n -= used;
    if (!n) return;
  }
  if ((size_t)c->pend_len + n > FB_PEND_MAX) { fb_client_fail(c, "event too large"); return; }
  if (c->pend_len + n > c->pend_cap) {
    uint32_t cap = c->pend_cap ? c->pend_cap : 1024;
    while (cap < c->pend_len + n) cap *= 2;
    char *np = realloc(c->pend, cap);
    if (!np) { fb_client_fail(c, "out of memory"); return; }
    c->pend = np;
    c->pend_cap = cap;
  }
  memcpy(c->pend + c->pend_len, p, n);
  c->pend_len += (uint32_t)n;
  if (c->pend_len == n) return; /* just stashed the tail */
  used = fb_sse_consume(c, c->pend, c->pend_len);
  if (c->state == FB_CL_CLOSED) return;
  memmove(c->pend, c->pend + used, c->pend_len - used);
  c->pend_len -= (uint32_t)used;
}

static int fb_on_header_field(llhttp_t *h, const char *at, size_t n) {
  fb_client *c = h->data;
  for (size_t i = 0; i < n; i++) {
    if (c->hname_len < FB_HEADER_NAME_MAX) c->hname[c->hname_len] = (char)(at[i] | 0x20);
    if (c->hname_len < UINT8_MAX) c->hname_len++;
  }
  return 0;
}

static int fb_on_header_value(llhttp_t *h, const char *at, size_t n) {
  fb_client *c = h->data;
  static const char name[] = "sec-websocket-accept";
  if (c->hname_len != sizeof name - 1 || memcmp(c->hname, name, sizeof name - 1)) return 0;
  for (size_t i = 0; i < n && c->accept_len < sizeof c->accept; i++) c->accept[c->accept_len++] = at[i];
  return 0;
}

static int fb_on_header_value_complete(llhttp_t *h) {
  ((fb_client *)h->data)->hname_len = 0;
  return 0;
}

static int fb_on_headers_complete(llhttp_t *h) {
  fb_client *c = h->data;
  bool want_ws = opt.mode == FB_WS_TICKERD || opt.mode == FB_WS_NCHAN;
  if (want_ws && h->status_code == 101) {
    if (!ws_accept_matches(c->ws_key, WS_KEY_LEN, c->accept, c->accept_len)) {
      fb_client_fail(c, "Sec-WebSocket-Accept does not match our key");
      return -1;
    }
    return 2; /* no body; pause for the upgrade */
  }
  if (want_ws || h->status_code != 200) {
    char why[64];
    snprintf(why, sizeof why, "handshake answered HTTP %d", h->status_code);
    fb_client_fail(c, why);
    return -1;
  }
  fb_client_subscribed(c);
  return 0;
}

static int fb_on_body(llhttp_t *h, const char *at, size_t n) {
  fb_client *c = h->data;
  if (c->state == FB_CL_STREAMING) fb_sse_feed(c, at, n);
  return c->state == FB_CL_CLOSED ? -1 : 0;
}

static int fb_on_message_complete(llhttp_t *h) {
  fb_client *c = h->data;
  /* A 101 completes a body-less message before the upgrade pause. */
  if (h->status_code != 101) fb_client_fail(c, "stream ended");
  return 0;
}

static void fb_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  b->base = st.rbuf;
  b->len = FB_READ_BUF;
}

static void fb_on_client_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
  fb_client *c = s->data;
  if (nread == 0) return;
  if (nread < 0) { fb_client_fail(c, uv_strerror((int)nread)); return; }
  st.now_ns = 0; /* stamped lazily at the first message of this read */
  st.iter_reads++;
  if (c->ws) {
    if (st.measuring) st.win.bytes_in += (uint64_t)nread;
    fb_ws_feed(c, b->base, (size_t)nread);
    return;
  }
  llhttp_errno_t e = llhttp_execute(&c->http, b->base, (size_t)nread);
  if (c->state == FB_CL_CLOSED) return;
  if (e == HPE_PAUSED_UPGRADE) {
    size_t off = (size_t)(llhttp_get_error_pos(&c->http) - b->base);
    c->wsp = malloc(sizeof *c->wsp);
    if (!c->wsp) { fb_client_fail(c, "out of memory"); return; }
    ws_parser_init(c->wsp, WS_ROLE_CLIENT, FB_PEND_MAX);
    /* the server inflates nothing we did not offer; RSV1 is an error otherwise */
    if (opt.deflate) ws_parser_allow_deflate(c->wsp);
    c->ws = true;
    fb_client_subscribed(c);
    if (c->state == FB_CL_STREAMING && off < (size_t)nread) fb_ws_feed(c, b->base + off, (size_t)nread - off);
  } else if (e != HPE_OK) {
    fb_client_fail(c, llhttp_errno_name(e));
  }
}

static void fb_on_client_connect(uv_connect_t *req, int status) {
  fb_client *c = req->data;
  if (status) { fb_client_fail(c, uv_strerror(status)); return; }
  char syms[3000], head[3600];
  int n;
  c->state = FB_CL_HANDSHAKE;
  switch (opt.mode) {
  case FB_SSE_TICKERD:
    fb_symbol_list(c->index, ",", "", syms, sizeof syms);
    n = snprintf(head, sizeof head,
                 "GET /stream?symbols=%s&interval_ms=%d HTTP/1.1\r\nHost: %s:%d\r\nAccept: text/event-stream\r\n\r\n",
                 syms, opt.interval_ms, opt.host, opt.port);
    break;
  case FB_SSE_NCHAN:
    fb_symbol_list(c->index, ",", "", syms, sizeof syms);
    n = snprintf(head, sizeof head, "GET /sub/%s HTTP/1.1\r\nHost: %s:%d\r\nAccept: text/event-stream\r\n\r\n",
                 syms, opt.host, opt.port);
    break;
  default:
    if (opt.mode == FB_WS_NCHAN) fb_symbol_list(c->index, ",", "", syms, sizeof syms);
    ws_client_key(c->ws_key);
    n = snprintf(head, sizeof head,
                 "GET %s%s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n",
                 opt.mode == FB_WS_NCHAN ? "/sub/" : "/ws", opt.mode == FB_WS_NCHAN ? syms : "", opt.host, opt.port,
                 c->ws_key, opt.deflate ? "Sec-WebSocket-Extensions: permessage-deflate\r\n" : "");
    break;
  }
  if (fb_write_copy((uv_stream_t *)&c->tcp, head, (size_t)n)) { fb_client_fail(c, "write failed"); return; }
  uv_read_start((uv_stream_t *)&c->tcp, fb_alloc, fb_on_client_read);
}

static void fb_client_connect_next(void) {
  while (st.in_flight < opt.connect_concurrency && st.next_connect < opt.clients) {
    fb_client *c = &st.clients[st.next_connect++];
    st.in_flight++;
    c->state = FB_CL_CONNECTING;
    uv_tcp_init(st.loop, &c->tcp);
    c->tcp.data = c;
    c->connect_req.data = c;
    llhttp_init(&c->http, HTTP_RESPONSE, &client_settings);
    c->http.data = c;
    int r = uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr *)&st.addr, fb_on_client_connect);
    if (r) fb_client_fail(c, uv_strerror(r));
  }
  if (st.ready + st.failed == opt.clients && !uv_is_active((uv_handle_t *)&st.phase_timer) && st.rate_idx == 0 &&
      st.run_idx == 0)
    fb_start_phases();
}

static void fb_on_connect_timeout(uv_timer_t *t) {
  fprintf(stderr, "fanout_client: %d of %d clients ready after %d ms; measuring with those\n", st.ready,
          opt.clients, opt.connect_timeout_ms);
  fb_start_phases();
}

/* ---- publisher ------------------------------------------------------------- */

static void fb_pub_connect(void);
static void fb_abort(void);

static void fb_on_pub_close(uv_handle_t *h) {
  if (st.pub.closing) return;
  fb_pub_connect(); /* the server closed a keep-alive connection: reopen */
}

static void fb_pub_fail(const char *why) {
  if (!st.pub.connected) return;
  fprintf(stderr, "fanout_client: publisher: %s\n", why);
  st.win.errors++;
  st.pub.connected = false;
  /* Requests in flight are gone; later gaps in seq count what was lost. */
  st.pub.answered_reqs = st.pub.sent_reqs;
  uv_close((uv_handle_t *)&st.pub.tcp, fb_on_pub_close);
}

static int fb_pub_on_headers_complete(llhttp_t *h) {
  if (h->status_code < 200 || h->status_code > 299) {
    char why[64];
    snprintf(why, sizeof why, "publish answered HTTP %d", h->status_code);
    st.win.errors++;
    if (st.win.errors < 5) fprintf(stderr, "fanout_client: %s\n", why);
  }
  return 0;
}

static int fb_pub_on_message_complete(llhttp_t *h) {
  st.pub.answered_reqs++;
  return 0;
}

static void fb_pub_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
  if (nread == 0) return;
  if (nread < 0) { fb_pub_fail(uv_strerror((int)nread)); return; }
  llhttp_errno_t e = llhttp_execute(&st.pub.http, b->base, (size_t)nread);
  if (e != HPE_OK) fb_pub_fail(llhttp_errno_name(e));
}

static void fb_pub_on_connect(uv_connect_t *req, int status) {
  if (status) {
    fprintf(stderr, "fanout_client: publisher connect: %s\n", uv_strerror(status));
    st.win.errors++;
    st.exit_code = 1;
    fb_abort();
    return;
  }
  st.pub.connected = true;
  llhttp_init(&st.pub.http, HTTP_RESPONSE, &pub_settings);
  uv_read_start((uv_stream_t *)&st.pub.tcp, fb_alloc, fb_pub_read);
}

static void fb_pub_connect(void) {
  uv_tcp_init(st.loop, &st.pub.tcp);
  uv_tcp_nodelay(&st.pub.tcp, 1);
  uv_tcp_connect(&st.pub.connect_req, &st.pub.tcp, (const struct sockaddr *)&st.addr, fb_pub_on_connect);
}

/* RFC 3339 with nanoseconds, UTC: what Alpaca sends and tickerd relays. */
static size_t fb_format_time(uint64_t ns, char *out) {
  time_t sec = (time_t)(ns / 1000000000ull);
  struct tm tm;
  gmtime_r(&sec, &tm);
  size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
  n += (size_t)snprintf(out + n, 32 - n, ".%09" PRIu64 "Z", (uint64_t)(ns % 1000000000ull));
  return n;
}

/* Appends one quote. nchan gets seq and epoch from us, so that it carries
 * the same bytes that tickerd adds. */
static int fb_quote(char *out, size_t cap, int sym, const char *ts, uint64_t seq) {
  int n = snprintf(out, cap,
                   "{\"T\":\"q\",\"S\":\"%s%d\",\"bx\":\"V\",\"bp\":189.5,\"bs\":3,\"ax\":\"V\",\"ap\":189.52,"
                   "\"as\":1,\"c\":[\"R\"],\"z\":\"C\",\"t\":\"%s\"",
                   opt.prefix, sym, ts);
  if (seq) n += snprintf(out + n, cap - (size_t)n, ",\"seq\":%" PRIu64 ",\"epoch\":\"00000000fa2b2e2c\"}", seq);
  else n += snprintf(out + n, cap - (size_t)n, "}");
  return n;
}

static void fb_pub_send(int count) {
  static char buf[8 << 20];
  char ts[40], body[FB_PUB_TICKERD_BATCH * 256], q[256];
  size_t len = 0;
  fb_format_time(fb_realtime_ns(), ts);
  while (count > 0 && len + sizeof body + 512 < sizeof buf) {
    if (opt.pub == FB_PUB_NCHAN) {
      int sym = (int)(st.pub.sym_next++ % (uint64_t)opt.symbols);
      /* --gap-every K checks the loss counter: every K-th seq is never sent. */
      if (opt.gap_every && (st.pub.seq[sym] + 1) % (uint64_t)opt.gap_every == 0) st.pub.seq[sym]++;
      int bl = fb_quote(body, sizeof body, sym, ts, ++st.pub.seq[sym]);
      len += (size_t)snprintf(buf + len, sizeof buf - len,
                              "POST /pub/%s%d HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                              "Content-Length: %d\r\n\r\n%s",
                              opt.prefix, sym, opt.host, opt.port, bl, body);
      count--;
    } else {
      size_t bl = 0;
      body[bl++] = '[';
      for (int i = 0; i < FB_PUB_TICKERD_BATCH && count > 0; i++, count--) {
        int sym = (int)(st.pub.sym_next++ % (uint64_t)opt.symbols);
        int ql = fb_quote(q, sizeof q, sym, ts, 0);
        if (i) body[bl++] = ',';
        memcpy(body + bl, q, (size_t)ql);
        bl += (size_t)ql;
      }
      body[bl++] = ']';
      body[bl] = 0;
      len += (size_t)snprintf(buf + len, sizeof buf - len,
                              "POST /quotes HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                              "Content-Length: %zu\r\n\r\n%s",
                              opt.host, opt.port, bl, body);
    }
    st.pub.sent_reqs++;
  }
  if (len && fb_write_copy((uv_stream_t *)&st.pub.tcp, buf, len)) fb_pub_fail("write failed");
}

static void fb_pub_tick(uv_timer_t *t) {
  if (!st.pub.connected || st.pub.rate <= 0) return;
  uint64_t now = fb_mono_ns();
  double elapsed = (double)(now - st.pub.rate_start_ns) / 1e9;
  uint64_t due = (uint64_t)(st.pub.rate * elapsed);
  if (due <= st.pub.rate_sent) return;
  uint64_t n = due - st.pub.rate_sent;
  uint64_t cap = (uint64_t)(st.pub.rate * FB_PUB_MAX_CATCHUP_MS / 1000.0) + 1;
  if (n > cap) n = cap;
  uint64_t per_req = opt.pub == FB_PUB_NCHAN ? 1 : FB_PUB_TICKERD_BATCH;
  uint64_t inflight = st.pub.sent_reqs - st.pub.answered_reqs;
  uint64_t room = inflight >= FB_PUB_MAX_INFLIGHT ? 0 : (FB_PUB_MAX_INFLIGHT - inflight) * per_req;
  uint64_t send = n < room ? n : room;
  st.win.skipped += due - st.pub.rate_sent - send;
  st.pub.rate_sent = due;
  if (send) fb_pub_send((int)send);
  st.win.published += send;
}

static void fb_pub_set_rate(double rate) {
  st.pub.rate = rate;
  st.pub.rate_start_ns = fb_mono_ns();
  st.pub.rate_sent = 0;
}

/* ---- measurement phases ---------------------------------------------------- */

static uint64_t fb_proc_ticks(int pid) {
  if (pid <= 0) return 0;
  char path[64], line[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  size_t n = fread(line, 1, sizeof line - 1, f);
  fclose(f);
  line[n] = 0;
  char *p = strrchr(line, ')');
  unsigned long long ut = 0, stt = 0;
  /* Fields after the command: state ppid pgrp session tty tpgid flags minflt
   * cminflt majflt cmajflt utime stime. */
  if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &stt) != 2) return 0;
  return ut + stt;
}

/* Idle ticks of the whole machine (idle + iowait): the machine is shared,
 * and a window where other work took the cores must say so. */
static uint64_t fb_machine_idle_ticks(void) {
  unsigned long long v[5] = {0};
  FILE *f = fopen("/proc/stat", "r");
  if (!f) return 0;
  int n = fscanf(f, "cpu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4]);
  fclose(f);
  return n == 5 ? v[3] + v[4] : 0;
}

static uint64_t fb_proc_rss_kb(int pid) {
  if (pid <= 0) return 0;
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", pid);
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  uint64_t kb = 0;
  while (fgets(line, sizeof line, f))
    if (!strncmp(line, "VmRSS:", 6)) kb = strtoull(line + 6, NULL, 10);
  fclose(f);
  return kb;
}

static uint64_t fb_self_cpu_us(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (uint64_t)ru.ru_utime.tv_sec * 1000000 + (uint64_t)ru.ru_utime.tv_usec +
         (uint64_t)ru.ru_stime.tv_sec * 1000000 + (uint64_t)ru.ru_stime.tv_usec;
}

static const char *fb_mode_name(fb_mode m) {
  static const char *names[] = {"sse-tickerd", "ws-tickerd", "sse-nchan", "ws-nchan"};
  return names[m];
}

/* Deliveries/s offered at `pub_rate` messages/s: each message reaches the
 * clients of its symbol; with --interval-ms a client-symbol gets at most
 * one per interval. */
static double fb_offered(double pub_rate) {
  double per_pair = pub_rate / opt.symbols;
  if (opt.interval_ms && per_pair > 1000.0 / opt.interval_ms) per_pair = 1000.0 / opt.interval_ms;
  return per_pair * opt.clients * opt.per_client;
}

static void fb_window_begin(void) {
  memset(&st.win, 0, sizeof st.win);
  st.w_start_ns = fb_mono_ns();
  st.w_cpu_us = fb_self_cpu_us();
  st.w_srv_ticks = fb_proc_ticks(opt.server_pid);
  st.w_aux_ticks = fb_proc_ticks(opt.aux_pid);
  st.w_idle_ticks = fb_machine_idle_ticks();
  st.measuring = true;
}

static fb_result fb_window_end(void) {
  fb_result r = {0};
  double secs = (double)(fb_mono_ns() - st.w_start_ns) / 1e9;
  double hz = (double)sysconf(_SC_CLK_TCK);
  st.measuring = false;
  r.deliveries = st.win.deliveries;
  r.dps = (double)st.win.deliveries / secs;
  r.p50 = (double)fb_hist_pct(&st.win.hist, 0.50);
  r.p99 = (double)fb_hist_pct(&st.win.hist, 0.99);
  r.max = (double)st.win.hist.max;
  r.lost = st.win.lost;
  r.dup = st.win.dup;
  r.errors = st.win.errors + st.win.parse_errors;
  r.skipped = st.win.skipped;
  r.throttled = st.win.throttled;
  r.pub_rate = (double)st.win.published / secs;
  r.client_cpu = (double)(fb_self_cpu_us() - st.w_cpu_us) / 1e6 / secs;
  if (opt.server_pid) r.server_cpu = (double)(fb_proc_ticks(opt.server_pid) - st.w_srv_ticks) / hz / secs;
  if (opt.aux_pid) r.aux_cpu = (double)(fb_proc_ticks(opt.aux_pid) - st.w_aux_ticks) / hz / secs;
  r.idle_cpu = (double)(fb_machine_idle_ticks() - st.w_idle_ticks) / hz / secs;
  r.rss_kb = fb_proc_rss_kb(opt.server_pid);
  r.bytes_per_delivery = st.win.deliveries ? (double)st.win.bytes_in / (double)st.win.deliveries : 0;
  printf("{\"label\":\"%s\",\"mode\":\"%s\",\"clients\":%d,\"connected\":%d,\"symbols\":%d,\"per_client\":%d,"
         "\"rate\":%.0f,\"run\":%d,\"duration_s\":%.3f,\"pub_rate\":%.0f,\"offered_dps\":%.0f,"
         "\"deliveries\":%" PRIu64 ",\"deliveries_per_s\":%.0f,\"p50_us\":%.0f,\"p99_us\":%.0f,\"max_us\":%.0f,"
         "\"lost\":%" PRIu64 ",\"dup\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"skipped\":%" PRIu64 ","
         "\"client_cpu\":%.2f,\"server_cpu\":%.2f,\"aux_cpu\":%.2f,\"idle_cpu\":%.2f,\"server_rss_kb\":%" PRIu64
         ",\"bytes_per_delivery\":%.1f,\"interval_ms\":%d,\"throttled\":%" PRIu64 "}\n",
         opt.label, fb_mode_name(opt.mode), opt.clients, st.ready - (st.closed - st.failed), opt.symbols,
         opt.per_client, opt.rates[st.rate_idx], st.run_idx, secs, r.pub_rate,
         fb_offered(r.pub_rate), r.deliveries, r.dps, r.p50, r.p99, r.max, r.lost,
         r.dup, r.errors, r.skipped, r.client_cpu, r.server_cpu, r.aux_cpu, r.idle_cpu, r.rss_kb, r.bytes_per_delivery,
         opt.interval_ms, r.throttled);
  fflush(stdout);
  return r;
}

static int fb_cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double fb_median(size_t off) {
  double v[FB_MAX_RUNS];
  for (int i = 0; i < opt.runs; i++) v[i] = *(const double *)((const char *)&st.runs[i] + off);
  qsort(v, (size_t)opt.runs, sizeof v[0], fb_cmp_double);
  return opt.runs % 2 ? v[opt.runs / 2] : (v[opt.runs / 2 - 1] + v[opt.runs / 2]) / 2;
}

/* Prints the medians of this rate's runs; returns whether the rate was
 * sustained. */
static bool fb_summary(void) {
  uint64_t lost = 0, errors = 0, skipped = 0, rss = 0, throttled = 0;
  double max = 0;
  for (int i = 0; i < opt.runs; i++) {
    lost += st.runs[i].lost;
    errors += st.runs[i].errors;
    skipped += st.runs[i].skipped;
    throttled += st.runs[i].throttled;
    if (st.runs[i].rss_kb > rss) rss = st.runs[i].rss_kb;
    if (st.runs[i].max > max) max = st.runs[i].max;
  }
  double p99 = fb_median(offsetof(fb_result, p99));
  double pub_rate = fb_median(offsetof(fb_result, pub_rate));
  double dps = fb_median(offsetof(fb_result, dps));
  double offered = fb_offered(pub_rate);
  printf("{\"summary\":true,\"attempt\":%d,\"label\":\"%s\",\"mode\":\"%s\",\"clients\":%d,\"connected\":%d,\"symbols\":%d,"
         "\"per_client\":%d,\"rate\":%.0f,\"runs\":%d,\"pub_rate\":%.0f,\"offered_dps\":%.0f,"
         "\"deliveries_per_s\":%.0f,\"p50_us\":%.0f,\"p99_us\":%.0f,\"max_us\":%.0f,\"lost\":%" PRIu64
         ",\"errors\":%" PRIu64 ",\"skipped\":%" PRIu64 ",\"client_cpu\":%.2f,\"server_cpu\":%.2f,"
         "\"aux_cpu\":%.2f,\"idle_cpu\":%.2f,\"server_rss_kb\":%" PRIu64 ",\"bytes_per_delivery\":%.1f,"
         "\"interval_ms\":%d,\"throttled\":%" PRIu64 "}\n",
         st.attempt, opt.label, fb_mode_name(opt.mode), opt.clients, st.ready - (st.closed - st.failed),
         opt.symbols, opt.per_client, opt.rates[st.rate_idx], opt.runs, pub_rate, offered, dps,
         fb_median(offsetof(fb_result, p50)), p99, max, lost, errors, skipped,
         fb_median(offsetof(fb_result, client_cpu)), fb_median(offsetof(fb_result, server_cpu)),
         fb_median(offsetof(fb_result, aux_cpu)), fb_median(offsetof(fb_result, idle_cpu)), rss,
         fb_median(offsetof(fb_result, bytes_per_delivery)), opt.interval_ms, throttled);
  fflush(stdout);
  bool all_connected = st.ready - (st.closed - st.failed) == opt.clients;
  /* The same rule as the report's "sustained": a server that falls behind
   * shows it in throughput before its p99 catches up. */
  bool kept_up = dps >= FB_SUSTAINED_SHARE * offered && !skipped;
  return p99 <= opt.stop_p99_ms * 1000 && !lost && !errors && all_connected && kept_up;
}

static void fb_finish(void) {
  uv_timer_stop(&st.phase_timer);
  uv_timer_stop(&st.pub.timer);
  uv_stop(st.loop);
}

/* The server went away: report the window under way, with its errors. */
static void fb_abort(void) {
  if (st.measuring) {
    st.runs[st.run_idx] = fb_window_end();
    opt.runs = st.run_idx + 1;
    fb_summary();
  }
  fb_finish();
}

/* The phase timer walks: warm-up, run 0 .. runs-1, next rate's warm-up ... */
static void fb_on_phase(uv_timer_t *t) {
  if (st.measuring) {
    st.runs[st.run_idx] = fb_window_end();
    if (++st.run_idx < opt.runs) {
      fb_window_begin();
      uv_timer_start(t, fb_on_phase, (uint64_t)opt.window_ms, 0);
      return;
    }
    bool sustained = fb_summary();
    bool deadline = opt.deadline_s && (fb_mono_ns() - st.start_ns) / 1000000000ull >= (uint64_t)opt.deadline_s;
    bool all_connected = st.ready - (st.closed - st.failed) == opt.clients;
    /* On a shared machine a burst of other work can sink one rate: try it
     * again (--retries) before calling it the limit. */
    if (!sustained && all_connected && st.attempt < opt.retries && !deadline) {
      st.attempt++;
    } else {
      if (!sustained || deadline || ++st.rate_idx >= opt.nrates) { fb_finish(); return; }
      st.attempt = 0;
    }
    st.run_idx = 0;
    fb_pub_set_rate(opt.rates[st.rate_idx]);
    uv_timer_start(t, fb_on_phase, (uint64_t)opt.warmup_ms, 0);
    return;
  }
  fb_window_begin();
  uv_timer_start(t, fb_on_phase, (uint64_t)opt.window_ms, 0);
}

/* Runs after each poll phase (see FB_DEFAULT_NAP_US). */
static void fb_nap(uv_check_t *h) {
  uint32_t reads = st.iter_reads;
  st.iter_reads = 0;
  if (reads == 0 || reads >= FB_NAP_BATCH) return;
  struct timespec ts = {0, (long)opt.nap_us * 1000};
  nanosleep(&ts, NULL);
}

static void fb_start_phases(void) {
  uv_timer_stop(&st.connect_timer);
  if (uv_is_active((uv_handle_t *)&st.phase_timer) || st.measuring) return;
  fprintf(stderr, "fanout_client: %s: %d of %d clients ready in %.1f s\n", opt.label, st.ready, opt.clients,
          (double)(fb_mono_ns() - st.start_ns) / 1e9);
  if (opt.pub != FB_PUB_NONE) uv_timer_start(&st.pub.timer, fb_pub_tick, FB_PUB_TICK_MS, FB_PUB_TICK_MS);
  if (opt.nap_us > 0) uv_check_start(&st.nap_check, fb_nap);
  fb_pub_set_rate(opt.rates[0]);
  uv_timer_start(&st.phase_timer, fb_on_phase, (uint64_t)opt.warmup_ms, 0);
}

/* ---- setup ----------------------------------------------------------------- */

static void fb_usage(void) {
  fprintf(stderr,
          "usage: fanout_client --mode sse-tickerd|ws-tickerd|sse-nchan|ws-nchan --port P [options]\n"
          "  --host 127.0.0.1        server address (numeric)\n"
          "  --clients N             subscriber connections (100)\n"
          "  --symbols M             symbols <prefix>0 .. <prefix>M-1 (10)\n"
          "  --per-client K          symbols per client: client i takes (i*K + j) %% M (1)\n"
          "  --prefix FB             symbol name prefix\n"
          "  --pub tickerd|nchan|none  publisher (default: by mode)\n"
          "  --rates R1,R2,...       messages/s over all symbols, stepped (1000)\n"
          "  --runs 3 --warmup-ms 1000 --window-ms 3000\n"
          "  --stop-p99-ms 100       stop stepping past this median p99 (or on loss/errors)\n"
          "  --deadline-s S          stop stepping after S seconds (0: none)\n"
          "  --retries R             measure a rate that was not sustained again, up to R times (0)\n"
          "  --connect-concurrency 256 --connect-timeout-ms 60000\n"
          "  --server-pid PID --aux-pid PID   sample CPU (and the server's RSS) per window\n"
          "  --label TEXT            copied into every JSON line\n"
          "  --gap-every K           nchan publisher skips every K-th seq (checks the loss count)\n"
          "  --nap-us 500            sleep after a poll that read < 128 messages (0: never)\n"
          "  --deflate               ws-tickerd: offer permessage-deflate (RFC 7692) and inflate\n"
          "  --wildcard PATTERN      tickerd modes: each client subscribes to PATTERN (\"*\") alone, which must\n"
          "                          match every <prefix>N; it is counted as a subscriber of all M symbols\n"
          "  --interval-ms I         tickerd: subscribe with interval_ms I (per-client rate; 0: every quote)\n");
}

static int fb_parse_args(int argc, char **argv) {
  opt.host = "127.0.0.1";
  opt.clients = 100;
  opt.symbols = 10;
  opt.per_client = 1;
  opt.prefix = "FB";
  opt.rates[0] = 1000;
  opt.nrates = 1;
  opt.runs = 3;
  opt.warmup_ms = 1000;
  opt.window_ms = 3000;
  opt.stop_p99_ms = 100;
  opt.connect_concurrency = FB_DEFAULT_CONNECT_CONCURRENCY;
  opt.connect_timeout_ms = FB_DEFAULT_CONNECT_TIMEOUT_MS;
  opt.label = "";
  opt.nap_us = FB_DEFAULT_NAP_US;
  opt.pub = (fb_pub_kind)-1;
  int mode = -1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) { fb_usage(); exit(0); }
    if (!strcmp(a, "--deflate")) { opt.deflate = true; continue; } /* the one flag without a value */
    if (!v) { fprintf(stderr, "fanout_client: %s needs a value\n", a); return -1; }
    i++;
    if (!strcmp(a, "--mode")) {
      for (int m = 0; m < 4; m++)
        if (!strcmp(v, fb_mode_name((fb_mode)m))) mode = m;
    } else if (!strcmp(a, "--pub")) {
      opt.pub = !strcmp(v, "tickerd") ? FB_PUB_TICKERD : !strcmp(v, "nchan") ? FB_PUB_NCHAN
              : !strcmp(v, "none") ? FB_PUB_NONE : (fb_pub_kind)-2;
    } else if (!strcmp(a, "--host")) opt.host = v;
    else if (!strcmp(a, "--port")) opt.port = atoi(v);
    else if (!strcmp(a, "--clients")) opt.clients = atoi(v);
    else if (!strcmp(a, "--symbols")) opt.symbols = atoi(v);
    else if (!strcmp(a, "--per-client")) opt.per_client = atoi(v);
    else if (!strcmp(a, "--prefix")) opt.prefix = v;
    else if (!strcmp(a, "--wildcard")) opt.wildcard = v;
    else if (!strcmp(a, "--runs")) opt.runs = atoi(v);
    else if (!strcmp(a, "--warmup-ms")) opt.warmup_ms = atoi(v);
    else if (!strcmp(a, "--window-ms")) opt.window_ms = atoi(v);
    else if (!strcmp(a, "--stop-p99-ms")) opt.stop_p99_ms = atof(v);
    else if (!strcmp(a, "--deadline-s")) opt.deadline_s = atoi(v);
    else if (!strcmp(a, "--connect-concurrency")) opt.connect_concurrency = atoi(v);
    else if (!strcmp(a, "--connect-timeout-ms")) opt.connect_timeout_ms = atoi(v);
    else if (!strcmp(a, "--server-pid")) opt.server_pid = atoi(v);
    else if (!strcmp(a, "--aux-pid")) opt.aux_pid = atoi(v);
    else if (!strcmp(a, "--label")) opt.label = v;
    else if (!strcmp(a, "--gap-every")) opt.gap_every = atoi(v);
    else if (!strcmp(a, "--nap-us")) opt.nap_us = atoi(v);
    else if (!strcmp(a, "--retries")) opt.retries = atoi(v);
    else if (!strcmp(a, "--interval-ms")) opt.interval_ms = atoi(v);
    else if (!strcmp(a, "--rates")) {
      opt.nrates = 0;
      for (char *p = (char *)v; *p && opt.nrates < FB_MAX_RATES;) {
        opt.rates[opt.nrates++] = strtod(p, &p);
        if (*p == ',') p++;
        else if (*p) return -1;
      }
    } else {
      fprintf(stderr, "fanout_client: unknown option %s\n", a);
      return -1;
    }
  }
  if (mode < 0 || opt.port <= 0 || opt.clients <= 0 || opt.symbols <= 0 || opt.per_client <= 0 ||
      opt.per_client > opt.symbols || opt.per_client > 255 || opt.runs < 1 || opt.runs > FB_MAX_RUNS ||
      opt.nrates < 1 || opt.window_ms <= 0 || opt.nap_us < 0 || opt.nap_us > 100000 || opt.connect_concurrency <= 0 || opt.pub == (fb_pub_kind)-2 ||
      opt.interval_ms < 0)
    return -1;
  opt.mode = (fb_mode)mode;
  if (opt.wildcard) { /* one pattern that matches every symbol: all M of them per client */
    if (opt.mode != FB_SSE_TICKERD && opt.mode != FB_WS_TICKERD) return -1;
    opt.per_client = opt.symbols;
  }
  if (opt.pub == (fb_pub_kind)-1)
    opt.pub = opt.mode == FB_SSE_NCHAN || opt.mode == FB_WS_NCHAN ? FB_PUB_NCHAN : FB_PUB_TICKERD;
  return 0;
}

/* Every client needs a descriptor; raise the soft limit (and the hard one
 * when we may) to what the run needs. */
static void fb_raise_nofile(void) {
  struct rlimit rl;
  rlim_t need = (rlim_t)opt.clients + 64;
  if (getrlimit(RLIMIT_NOFILE, &rl)) return;
  if (rl.rlim_cur >= need) return;
  if (rl.rlim_max < need) {
    struct rlimit want = {need, need};
    if (!setrlimit(RLIMIT_NOFILE, &want)) return;
  }
  rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
  setrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < need)
    fprintf(stderr, "fanout_client: RLIMIT_NOFILE %llu < %llu: some connections will fail\n",
            (unsigned long long)rl.rlim_cur, (unsigned long long)need);
}

static void fb_on_signal(uv_signal_t *s, int sig) { fb_finish(); }

/* Closing with a reset leaves no TIME_WAIT behind: repeated runs of 10,000
 * clients would otherwise exhaust the ephemeral ports of 127.0.0.1. */
static void fb_close_all(uv_handle_t *h, void *arg) {
  if (uv_is_closing(h)) return;
  if (h->type != UV_TCP || uv_tcp_close_reset((uv_tcp_t *)h, NULL)) uv_close(h, NULL);
}

int main(int argc, char **argv) {
  if (fb_parse_args(argc, argv)) { fb_usage(); return 2; }
  signal(SIGPIPE, SIG_IGN);
  fb_raise_nofile();
  if (uv_ip4_addr(opt.host, opt.port, &st.addr)) { fprintf(stderr, "fanout_client: bad host\n"); return 2; }
  st.loop = uv_default_loop();
  st.rbuf = malloc(FB_READ_BUF);
  st.clients = calloc((size_t)opt.clients, sizeof *st.clients);
  st.sub_sym = calloc((size_t)opt.clients * (size_t)opt.per_client, sizeof *st.sub_sym);
  st.last_seq = calloc((size_t)opt.clients * (size_t)opt.per_client, sizeof *st.last_seq);
  st.pub.seq = calloc((size_t)opt.symbols, sizeof *st.pub.seq);
  if (!st.rbuf || !st.clients || !st.sub_sym || !st.last_seq || !st.pub.seq) return 1;
  for (int i = 0; i < opt.clients; i++) {
    st.clients[i].index = i;
    for (int j = 0; j < opt.per_client; j++)
      st.sub_sym[(size_t)i * (size_t)opt.per_client + j] =
          opt.wildcard ? j : (int32_t)(((int64_t)i * opt.per_client + j) % opt.symbols);
  }
  llhttp_settings_init(&client_settings);
  client_settings.on_header_field = fb_on_header_field;
  client_settings.on_header_value = fb_on_header_value;
  client_settings.on_header_value_complete = fb_on_header_value_complete;
  client_settings.on_headers_complete = fb_on_headers_complete;
  client_settings.on_body = fb_on_body;
  client_settings.on_message_complete = fb_on_message_complete;
  llhttp_settings_init(&pub_settings);
  pub_settings.on_headers_complete = fb_pub_on_headers_complete;
  pub_settings.on_message_complete = fb_pub_on_message_complete;

  uv_signal_t sigint, sigterm;
  uv_signal_init(st.loop, &sigint);
  uv_signal_init(st.loop, &sigterm);
  uv_signal_start(&sigint, fb_on_signal, SIGINT);
  uv_signal_start(&sigterm, fb_on_signal, SIGTERM);
  uv_unref((uv_handle_t *)&sigint);
  uv_unref((uv_handle_t *)&sigterm);
  uv_timer_init(st.loop, &st.phase_timer);
  uv_timer_init(st.loop, &st.connect_timer);
  uv_timer_init(st.loop, &st.pub.timer);
  uv_check_init(st.loop, &st.nap_check);
  uv_unref((uv_handle_t *)&st.nap_check);
  st.start_ns = fb_mono_ns();
  if (opt.pub != FB_PUB_NONE) fb_pub_connect();
  uv_timer_start(&st.connect_timer, fb_on_connect_timeout, (uint64_t)opt.connect_timeout_ms, 0);
  fb_client_connect_next();
  uv_run(st.loop, UV_RUN_DEFAULT);

  st.pub.closing = true;
  uv_walk(st.loop, fb_close_all, NULL);
  uv_run(st.loop, UV_RUN_DEFAULT);
  return st.exit_code ? st.exit_code : (st.ready ? 0 : 1);
}
