/* Between server.c (which accepts and keeps the list of connections) and
 * http1.c (which runs each connection). Not for other modules. */
#ifndef TD_SERVER_CONN_H
#define TD_SERVER_CONN_H

#include <stdbool.h>
#include <uv.h>

#include "conn_internal.h"
#include "http/http.h"
#include "http/server.h"

td_conn *http1_accept(td_server *s, uv_stream_t *listener);
/* A connected socket from elsewhere (server_adopt_fd). NULL if libuv refuses
 * it; the descriptor is then still the caller's. */
td_conn *http1_adopt(td_server *s, uv_loop_t *loop, uv_os_sock_t fd);
/* A connection over the limit: answer 503 and close, reading nothing. */
void http1_reject_full(td_conn *c);
/* For shutdown: closes the connection if no request is under way. */
bool http1_close_if_idle(td_conn *c);

void http1_list_link(td_conn *c, td_conn **head);
void http1_list_unlink(td_conn *c, td_conn **head);
td_conn *http1_list_next(td_conn *c);

#endif
