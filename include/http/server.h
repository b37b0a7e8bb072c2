/* The listening socket, the set of open connections, their limits, and a
 * graceful shutdown. Connections themselves are http1.c's (over conn.c). */
#ifndef TD_SERVER_H
#define TD_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "http/http.h"
#include "http/http_stats.h"

typedef struct td_server td_server;
typedef struct td_conn td_conn;
typedef struct td_route td_route;

/* What the server needs from its caller; copied by server_start. The HTTP
 * layer knows nothing above it: requests reach the application through
 * `routes` (dispatched by the router) and carry `user` as req->user. */
typedef struct {
  const char *host;
  int port;
  int max_connections;
  int64_t max_body_bytes;
  uint64_t header_timeout_ms;
  uint64_t idle_timeout_ms;
  uint64_t write_timeout_ms;   /* responses queued and none read for this long: closed (0: TD_HTTP_WRITE_TIMEOUT_MS) */
  const td_route *routes;
  int n_routes;
  void *user;
} td_server_opts;


/* Binds and listens. Returns 0 or a negative libuv error. */
int server_start(td_server **out, uv_loop_t *loop, const td_server_opts *opts);
int server_port(const td_server *s);
/* Serves a connected stream socket that did not come through the listener
 * (the fuzz harness hands in one end of a socketpair): the same connection
 * code, limits and counters as an accepted one. Returns the connection, or
 * NULL when it could not be set up (then `fd` is still the caller's). */
td_conn *server_adopt_fd(td_server *s, int fd);
/* Stops accepting, lets in-flight requests finish, closes idle and streaming
 * connections, and after `grace_ms` closes whatever is left. `done` runs
 * once every connection is closed. */
void server_shutdown(td_server *s, int grace_ms, void (*done)(void *), void *data);
bool server_is_draining(const td_server *s);

/* For http1.c: registration of connections. */
/* Frees the server once server_shutdown has completed and the loop ran. */
void server_free(td_server *s);

void server_conn_opened(td_server *s, td_conn *c);
void server_conn_closed(td_server *s, td_conn *c);
const td_server_opts *server_opts(const td_server *s);

#endif
