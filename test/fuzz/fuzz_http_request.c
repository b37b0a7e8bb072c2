/* libFuzzer harness for the request path, through the server's own entry
 * point: each input is one peer on a fresh socketpair, whose server end is
 * handed to server_adopt_fd() (the code path of an accepted TCP connection),
 * in a complete application built the way main.c builds it: store,
 * publishers, pipeline, ingest pacing, hub and subscriber (pointed at a
 * closed port: Redis is down for the whole run, a state the service must
 * handle anyway), tasks, server.
 *
 * The first input byte picks the sizes the rest is written in. After every
 * piece the libuv loop runs until it has nothing more to do at once, so the
 * server reads each piece separately (splits really reach the parser as
 * separate reads) and the harness reads the responses as they come, like a
 * client. So keep-alive, pipelined requests, and the WebSocket and SSE
 * takeovers (with the client's frames after the upgrade) are all reached.
 * Once the input is written, the peer half-closes; the loop runs until the
 * server has closed the connection, or a bound, after which the harness
 * closes it (a handler waiting on Redis, say).
 *
 * Checked: whatever the server sends starts as an HTTP/1.1 response, and
 * after every input the server holds no connection and no stream session. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "app/app.h"
#include "app/auth.h"
#include "app/config.h"
#include "app/ingest_pace.h"
#include "app/routes.h"
#include "app/task.h"
#include "base/log.h"
#include "base/td_limits.h"
#include "http/http.h"
#include "http/server.h"
#include "market/pipeline.h"
#include "market/publisher.h"
#include "market/quote_store.h"
#include "market/subscriber.h"
#include "stream/hub.h"

/* Loop iterations allowed for the server to finish with one input after the
 * peer half-closed, then again after it closed. Each iteration is one
 * non-blocking uv_run: a connection that is not done by then is waiting on
 * something that will not come (Redis, a timer). */
#define FUZZ_SETTLE_ITERATIONS 64
/* Output the harness reads per call; everything is read and discarded. */
#define FUZZ_READ_CHUNK 65536

static td_app app;
static td_config cfg;

static void setup(void) {
  signal(SIGPIPE, SIG_IGN); /* as main.c: a vanished peer is EPIPE */
  char *argv[] = {"fuzz", "--feed", "none", "--redis-url", "redis://127.0.0.1:1", "--task-phases-ms", "1,1",
                  "--max-body-bytes", "4096", "--log-level", "error", "--host", "127.0.0.1", "--port", "0", NULL};
  if (cfg_load_env(&cfg, (int)(sizeof(argv) / sizeof(argv[0])) - 1, argv, NULL) != 0) abort();
  log_open(NULL, "error");
  log_set_stdout(false);
  app.loop = uv_default_loop();
  app.cfg = &cfg;
  app.start_ms = uv_now(app.loop);
  app.store = qstore_new(16, 60000, 64);
  for (int i = 0; i < TD_REDIS_PUBLISH_CONNS; i++) app.pub[i] = pub_new(app.loop, cfg.redis_url, NULL);
  app.pipeline = pipeline_new(app.loop, app.pub, cfg.channel_prefix, app.store);
  app.pace = pace_new(&app, (uint32_t)cfg.ingest_max_backlog);
  td_hub_opts hopts;
  cfg_hub_opts(&cfg, app.loop, &auth_stream_access, &hopts);
  app.hub = hub_new(&hopts, app.store);
  sub_callbacks cb = {hub_on_message_id, hub_on_subscriber_state};
  sub_options opt = {.heartbeat_pub = app.pub[0],
                     .heartbeat_ms = TD_SUB_HEARTBEAT_MS,
                     .heartbeat_timeout_ms = TD_SUB_HEARTBEAT_TIMEOUT_MS,
                     .syms = app.store ? qstore_symtab(app.store) : NULL,
                     .quote_prefix = cfg.channel_prefix};
  app.sub = sub_new(app.loop, cfg.redis_url, &cb, app.hub, &opt);
  if (!app.store || !app.pipeline || !app.pace || !app.hub || !app.sub) abort();
  hub_set_subscriber(app.hub, app.sub);
  app.tasks = tasks_new(app.loop, &cfg);
  if (!app.tasks) abort();
  hub_topic_add(app.hub, "tasks"); /* {"topics":["tasks"]} subscriptions are valid */
  int n_routes;
  const td_route *routes = app_routes(&n_routes);
  td_server_opts sopts;
  cfg_server_opts(&cfg, routes, n_routes, &app, &sopts);
  if (server_start(&app.server, app.loop, &sopts) != 0) abort();
}

/* What the peer has received so far: only its start is kept, to check it. */
typedef struct {
  char head[16];
  size_t len;
  bool eof;
} peer_in;

static void peer_read(int fd, peer_in *in) {
  static char chunk[FUZZ_READ_CHUNK];
  for (;;) {
    ssize_t n = read(fd, chunk, sizeof(chunk));
    if (n > 0) {
      if (in->len < sizeof(in->head)) {
        size_t k = sizeof(in->head) - in->len < (size_t)n ? sizeof(in->head) - in->len : (size_t)n;
        memcpy(in->head + in->len, chunk, k);
      }
      in->len += (size_t)n;
      continue;
    }
    if (n == 0) in->eof = true;
    if (n < 0 && errno == EINTR) continue;
    return;
  }
}

static void pump(int fd, peer_in *in) {
  uv_run(app.loop, UV_RUN_NOWAIT);
  peer_read(fd, in);
}

/* Writes all of p, letting the server run (and reading its output) while
 * the socket buffer is full. False if the server stopped reading for good. */
static bool peer_write(int fd, const char *p, size_t n, peer_in *in) {
  int stalls = 0;
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w > 0) {
      p += w;
      n -= (size_t)w;
      stalls = 0;
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno != EAGAIN) return false; /* the server closed */
    if (++stalls > FUZZ_SETTLE_ITERATIONS) return false;
    pump(fd, in);
  }
  return true;
}

static void settle(int fd, peer_in *in) {
  for (int i = 0; i < FUZZ_SETTLE_ITERATIONS && http_stats.open > 0; i++) pump(fd, in);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static bool ready;
  if (!ready) {
    setup();
    ready = true;
  }
  if (size < 1) return 0;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) abort();
  if (fcntl(sv[1], F_SETFL, O_NONBLOCK) != 0) abort();
  td_conn *c = server_adopt_fd(app.server, sv[0]);
  if (!c) abort();
  peer_in in = {0};
  unsigned split = (unsigned)data[0] % 64 + 1;
  const char *p = (const char *)data + 1;
  size_t left = size - 1;
  /* a fresh copy per piece: the server must copy what it keeps */
  while (left > 0) {
    size_t n = left < split ? left : split;
    char *piece = malloc(n);
    if (!piece) abort();
    memcpy(piece, p, n);
    bool ok = peer_write(sv[1], piece, n, &in);
    free(piece);
    if (!ok) break;
    pump(sv[1], &in);
    p += n;
    left -= n;
    split = split * 7 % 61 + 1;
  }
  shutdown(sv[1], SHUT_WR);
  settle(sv[1], &in);
  if (http_stats.open > 0) {
    /* a request waiting on what never comes: the peer goes away */
    close(sv[1]);
    sv[1] = -1;
    settle(-1, &in);
  }
  /* c is the only connection: still open means still valid */
  if (http_stats.open > 0) conn_close(c, "fuzz input done");
  uv_run(app.loop, UV_RUN_NOWAIT);
  if (sv[1] >= 0) close(sv[1]);
  if (http_stats.open != 0) abort();
  if (in.len > 0 && memcmp(in.head, "HTTP/1.1 ", in.len < 9 ? in.len : 9) != 0) abort();
  hub_stats hs;
  hub_get_stats(app.hub, &hs);
  if (hs.clients != 0) abort();
  return 0;
}
