/* libFuzzer harness for the request path: bytes from a peer, in random
 * splits, through llhttp (strict mode), our callbacks and limits, the router
 * and every handler, with responses written to a real socket.
 *
 * The first byte of the input picks the split sizes; the rest is what the
 * peer sends. Each input gets a fresh connection on a socketpair. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/http_conn.c"

#include "stream/hub.h"
#include "market/pipeline.h"
#include "market/publisher.h"
#include "market/quote_store.h"
#include "market/subscriber.h"
#include "app/app.h"
#include "app/auth.h"
#include "app/routes.h"
#include "app/task.h"

static td_app app;
static td_config cfg;

static void setup(void) {
  char *argv[] = {"fuzz", "--feed", "none", "--redis-url", "redis://127.0.0.1:1", "--task-phases-ms", "1,1",
                  "--max-body-bytes", "4096", "--log-level", "error", "--port", "0", NULL};
  if (cfg_load_env(&cfg, 13, argv, NULL) != 0) abort();
  log_open(NULL, "error");
  log_set_stdout(false);
  app.loop = uv_default_loop();
  app.cfg = &cfg;
  app.store = qstore_new(16, 60000, 64);
  for (int i = 0; i < TD_REDIS_PUBLISH_CONNS; i++) app.pub[i] = pub_new(app.loop, cfg.redis_url, NULL);
  app.pipeline = pipeline_new(app.loop, app.pub, cfg.channel_prefix, app.store);
  td_hub_opts hopts;
  cfg_hub_opts(&cfg, app.loop, &auth_stream_access, &hopts);
  app.hub = hub_new(&hopts, app.store);
  app.tasks = tasks_new(app.loop, &cfg);
  int n_routes;
  const td_route *routes = app_routes(&n_routes);
  td_server_opts sopts;
  cfg_server_opts(&cfg, routes, n_routes, &app, &sopts);
  if (server_start(&app.server, app.loop, &sopts) != 0) abort();
}

static td_conn *open_conn(int fd) {
  settings_init();
  td_conn *c = calloc(1, sizeof(*c));
  c->server = app.server;
  c->id = next_conn_id++;
  uv_tcp_init(app.loop, &c->tcp);
  uv_timer_init(app.loop, &c->timer);
  c->tcp.data = c->timer.data = c;
  c->handles_open = 2;
  if (uv_tcp_open(&c->tcp, fd) != 0) abort();
  llhttp_init(&c->parser, HTTP_REQUEST, &parser_settings);
  c->parser.data = c;
  request_reset(c);
  c->state = CONN_READING;
  server_conn_opened(app.server, c);
  return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static bool ready;
  if (!ready) {
    setup();
    ready = true;
  }
  if (size < 1) return 0;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return 0;
  int big = 1 << 20;
  setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
  td_conn *c = open_conn(sv[0]);
  unsigned split = (unsigned)data[0] % 64 + 1;
  const char *p = (const char *)data + 1;
  size_t left = size - 1;
  /* the conn copies what it keeps; a fresh copy per piece catches reads past it */
  while (left > 0 && c->state != CONN_CLOSING) {
    size_t n = left < split ? left : split;
    char *piece = malloc(n);
    memcpy(piece, p, n);
    if (c->state == CONN_STREAMING) {
      if (c->ops && c->ops->on_data) c->ops->on_data(c->owner, piece, n);
    } else if (c->state == CONN_READING) {
      conn_process(c, piece, n);
    }
    free(piece);
    p += n;
    left -= n;
    split = split * 7 % 61 + 1;
  }
  conn_close(c, "fuzz input done");
  close(sv[1]);
  uv_run(app.loop, UV_RUN_NOWAIT);
  uv_run(app.loop, UV_RUN_NOWAIT);
  return 0;
}
