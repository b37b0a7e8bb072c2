/* The listener: binds, accepts, enforces the connection limit, and drains
 * connections on shutdown. */
#include "http/server.h"

#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "server_conn.h"
#include "base/td_limits.h"

typedef enum { SERVER_LISTENING, SERVER_DRAINING, SERVER_CLOSED } server_state;

/* Over the limit, connections are still accepted (so the kernel queue does
 * not fill) and answered 503; past this many more they are closed at once. */
#define SERVER_REJECT_SLACK 1024

struct td_server {
  uv_tcp_t listener;
  uv_timer_t grace_timer;
  td_server_opts opts;
  server_state state;
  td_conn *conns;
  uint64_t open;
  int port;
  void (*done)(void *);
  void *done_data;
};

const td_server_opts *server_opts(const td_server *s) { return &s->opts; }
int server_port(const td_server *s) { return s->port; }
bool server_is_draining(const td_server *s) { return s && s->state != SERVER_LISTENING; }

static void check_drained(td_server *s) {
  if (s->state == SERVER_DRAINING && s->open == 0 && s->done) {
    void (*done)(void *) = s->done;
    s->done = NULL;
    s->state = SERVER_CLOSED;
    uv_timer_stop(&s->grace_timer);
    uv_close((uv_handle_t *)&s->grace_timer, NULL);
    conn_stop_flushing();
    done(s->done_data);
  }
}

void server_conn_opened(td_server *s, td_conn *c) {
  http1_list_link(c, &s->conns);
  s->open++;
  http_stats.open = s->open;
  if (s->open > http_stats.open_peak) http_stats.open_peak = s->open;
}

void server_conn_closed(td_server *s, td_conn *c) {
  http1_list_unlink(c, &s->conns);
  s->open--;
  http_stats.open = s->open;
  check_drained(s);
}

/* Counts a new connection and applies the connection limit to it. */
static void admit(td_server *s, td_conn *c) {
  http_stats.accepted++;
  if (s->open > (uint64_t)s->opts.max_connections) {
    http_stats.rejected_full++;
    td_logline *l = log_begin(TD_LOG_WARN, "connection_rejected");
    if (l) { log_str(l, "reason", "too many connections"); log_int(l, "open", (int64_t)s->open); log_end(l); }
    if (s->open > (uint64_t)s->opts.max_connections + SERVER_REJECT_SLACK) conn_close(c, "over the limit");
    else http1_reject_full(c);
  }
}

static void on_connection(uv_stream_t *listener, int status) {
  td_server *s = listener->data;
  if (status < 0) {
    td_logline *l = log_begin(TD_LOG_ERROR, "accept_failed");
    if (l) { log_str(l, "error", uv_strerror(status)); log_end(l); }
    return;
  }
  td_conn *c = http1_accept(s, listener);
  if (c) admit(s, c);
}

td_conn *server_adopt_fd(td_server *s, int fd) {
  td_conn *c = http1_adopt(s, s->listener.loop, fd);
  if (c) admit(s, c);
  return c;
}

int server_start(td_server **out, uv_loop_t *loop, const td_server_opts *opts) {
  td_server *s = calloc(1, sizeof(*s));
  if (!s) return UV_ENOMEM;
  s->opts = *opts;
  /* 0 would close every connection with a response not yet written at once */
  if (!s->opts.write_timeout_ms) s->opts.write_timeout_ms = TD_HTTP_WRITE_TIMEOUT_MS;
  struct sockaddr_storage addr;
  int rc = uv_ip4_addr(opts->host, opts->port, (struct sockaddr_in *)&addr);
  if (rc != 0) rc = uv_ip6_addr(opts->host, opts->port, (struct sockaddr_in6 *)&addr);
  if (rc != 0) {
    free(s);
    return rc;
  }
  uv_tcp_init(loop, &s->listener);
  uv_timer_init(loop, &s->grace_timer);
  s->listener.data = s->grace_timer.data = s;
  rc = uv_tcp_bind(&s->listener, (struct sockaddr *)&addr, 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&s->listener, TD_LISTEN_BACKLOG, on_connection);
  if (rc != 0) {
    uv_close((uv_handle_t *)&s->listener, NULL);
    uv_close((uv_handle_t *)&s->grace_timer, NULL);
    /* the handles are embedded: free once their close callbacks have run */
    uv_run(loop, UV_RUN_NOWAIT);
    free(s);
    return rc;
  }
  struct sockaddr_storage bound;
  int len = sizeof(bound);
  uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &len);
  s->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                              : ((struct sockaddr_in *)&bound)->sin_port);
  *out = s;
  return 0;
}

static void on_grace_expired(uv_timer_t *t) {
  td_server *s = t->data;
  td_logline *l = log_begin(TD_LOG_WARN, "shutdown_grace_expired");
  if (l) { log_int(l, "connections", (int64_t)s->open); log_end(l); }
  for (td_conn *c = s->conns, *next; c; c = next) {
    next = http1_list_next(c);
    conn_close(c, "shutdown grace expired");
  }
}

static void on_listener_closed(uv_handle_t *h) {
  td_server *s = h->data;
  check_drained(s);
}

void server_shutdown(td_server *s, int grace_ms, void (*done)(void *), void *data) {
  if (s->state != SERVER_LISTENING) return;
  s->state = SERVER_DRAINING;
  s->done = done;
  s->done_data = data;
  uv_close((uv_handle_t *)&s->listener, on_listener_closed);
  for (td_conn *c = s->conns, *next; c; c = next) {
    next = http1_list_next(c);
    http1_close_if_idle(c);
  }
  uv_timer_start(&s->grace_timer, on_grace_expired, (uint64_t)grace_ms, 0);
}

void server_free(td_server *s) { free(s); }
