/* The listening socket, the set of open connections, their limits, and a
 * graceful shutdown. Connections themselves are http_conn.c's. */
#ifndef TD_SERVER_H
#define TD_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct td_app;
typedef struct td_server td_server;
typedef struct td_conn td_conn;

/* Counters for /status and /metrics. */
typedef struct {
  uint64_t accepted;
  uint64_t open;
  uint64_t rejected_full;     /* 503: too many connections */
  uint64_t requests;
  uint64_t responses[6];      /* by status class: [2] = 2xx ... */
  uint64_t bad_requests;      /* 400 from the parser or our checks */
  uint64_t too_large;         /* 413 and 431 */
  uint64_t header_timeouts;
  uint64_t idle_timeouts;
  uint64_t write_timeouts;
  uint64_t backpressure_pauses;
  uint64_t taken_over;        /* WebSocket / SSE */
} td_http_stats;

extern td_http_stats http_stats;

/* Binds and listens. Returns 0 or a negative libuv error. */
int server_start(td_server **out, struct td_app *app);
int server_port(const td_server *s);
/* Stops accepting, lets in-flight requests finish, closes idle and streaming
 * connections, and after `grace_ms` closes whatever is left. `done` runs
 * once every connection is closed. */
void server_shutdown(td_server *s, int grace_ms, void (*done)(void *), void *data);
bool server_is_draining(const td_server *s);

/* For http_conn.c: registration of connections. */
/* Frees the server once server_shutdown has completed and the loop ran. */
void server_free(td_server *s);

void server_conn_opened(td_server *s, td_conn *c);
void server_conn_closed(td_server *s, td_conn *c);
struct td_app *server_app(const td_server *s);

#endif
