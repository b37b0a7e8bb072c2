/* Between server.c (which accepts and keeps the list of connections) and
 * http_conn.c (which runs each connection) and http_response.c. Not for
 * other modules. */
#ifndef TD_SERVER_CONN_H
#define TD_SERVER_CONN_H

#include <stdbool.h>
#include <uv.h>

#include "http/http.h"
#include "http/server.h"

td_conn *conn_accept(td_server *s, uv_stream_t *listener);
/* A connected socket from elsewhere (server_adopt_fd). NULL if libuv refuses
 * it; the descriptor is then still the caller's. */
td_conn *conn_adopt(td_server *s, uv_loop_t *loop, uv_os_sock_t fd);
/* A connection over the limit: answer 503 and close, reading nothing. */
void conn_reject_full(td_conn *c);
/* For shutdown: closes the connection if no request is under way. */
bool conn_close_if_idle(td_conn *c);
td_server *conn_server(const td_conn *c);
/* Called by http_respond*() once a response is queued. */
void conn_response_queued(td_conn *c, bool keep_alive);

/* Closes the per-iteration flush of streaming connections (at shutdown). */
void conn_stop_flushing(void);

void conn_list_link(td_conn *c, td_conn **head);
void conn_list_unlink(td_conn *c, td_conn **head);
td_conn *conn_list_next(td_conn *c);

#endif
